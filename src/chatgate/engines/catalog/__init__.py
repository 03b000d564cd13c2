"""What can be served: model profiles (the YAML under ``engines/profiles/``), hardware fit, the
registry of models and endpoints, and the settings that outlive a restart."""
