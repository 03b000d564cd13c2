"""Client-compatibility tests: the official SDKs against chatgate (a package, so that the
embedded engine they share starts once for all of them: see conftest.py)."""
