"""Database layer: models, async engine/session factory, migrations."""
