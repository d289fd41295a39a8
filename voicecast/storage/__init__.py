"""Storage: SQLAlchemy 2 models, engine and session set-up, migrations."""
