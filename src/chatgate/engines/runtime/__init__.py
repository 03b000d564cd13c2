"""Engines chatgate runs itself: command lines, supervised processes and their liveness, the
embedded llama-server, model switching, and the fleet's leader that runs the local engine."""
