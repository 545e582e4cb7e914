"""Alembic's environment and revisions of the warehouse schema: a package so that import-linter
sees what they import (pyproject.toml: migrations import nothing of the pipeline)."""
