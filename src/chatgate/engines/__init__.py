"""Engines: registry of models and endpoints, the shared client, supervision."""
