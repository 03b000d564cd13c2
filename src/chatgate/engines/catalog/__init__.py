"""What can be served: model profiles (the YAML under ``engines/profiles/``), their fit on
the hardware, and the model settings that outlive a restart."""
