"""Alembic environment: hubshare runs migrations on a connection it opens itself (see
`tasks/migrate.py`), against the one schema module `schemas/warehouse.py`."""

from __future__ import annotations

from alembic import context

from schemas.warehouse import include_object, metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata(),
    render_as_batch=True,  # SQLite alters tables by copying them
    compare_type=True,
    include_object=include_object,
)
with context.begin_transaction():
    context.run_migrations()
