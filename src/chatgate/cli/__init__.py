"""The ``chatgate`` command line."""
