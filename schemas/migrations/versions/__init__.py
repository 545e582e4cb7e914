"""The revisions, each carrying the code it runs (alembic skips this file)."""
