"""Migrate: bring a warehouse to the schema this code declares (alembic revisions under
`schemas/migrations/`), then replace the BI views whose definition changed.

Writers (`hubshare run`, backfills, `hubshare db upgrade`) call `upgrade_warehouse`; readers
(`shares`, `runs`, `explain`, `reproduce`) call `hubshare.warehouse.require_current`, which
never writes: a warehouse that is missing or behind is an error that says which command fixes it.
"""

from __future__ import annotations

import fcntl
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy
from alembic import command
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from hubshare.errors import UsageError, WarehouseError
from hubshare.provenance import sha256_bytes
from hubshare.warehouse import (
    TABLES,
    advisory_lock,
    alembic_config,
    current_revision,
    first_line,
    head_revision,
    redacted,
    sql_literal,
)
from schemas.warehouse import VIEWS, view_column_comment, view_comment

#: The first release's tables, without alembic: such a warehouse is stamped at this revision.
FIRST_RELEASE = "0001"
#: Serialises concurrent upgrades of one PostgreSQL database (the bytes of "hubshare").
_LOCK_KEY = 0x6875627368617265
VIEW_DEFINITION = TABLES["view_definition"]
READER_ROLE = TABLES["reader_role"]


@contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    """SQLite runs DDL outside the transaction that pysqlite opens, so two processes creating
    one fresh warehouse would both try; they take turns on a lock file beside it instead
    (PostgreSQL uses an advisory lock)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(path.name + ".migrate-lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade_warehouse(engine: Engine) -> str:
    """Create or upgrade the warehouse to the head revision and refresh the views, in one
    transaction. A warehouse made by the first release (tables, no `alembic_version`) is
    upgraded in place, keeping its data. Returns the revision."""
    try:
        with _sqlite_file_lock(engine), engine.begin() as connection:
            advisory_lock(connection, _LOCK_KEY)
            revision = current_revision(connection)
            if revision is None and inspect(connection).has_table("etl_run"):
                command.stamp(alembic_config(connection), FIRST_RELEASE)
                revision = FIRST_RELEASE
            if revision != head_revision():
                # Views are derived: drop them so that revisions can rebuild the tables under
                # them (SQLite's batch mode does), and recreate them from their current SQL.
                drop_views(connection)
                command.upgrade(alembic_config(connection), "head")
            refresh_views(connection)
    except SQLAlchemyError as err:
        raise WarehouseError(f"warehouse {redacted(engine)}: {first_line(err)}") from None
    return head_revision()


def drop_views(connection: Connection) -> None:
    existing = set(inspect(connection).get_view_names())
    for name in VIEWS:
        if name in existing:
            connection.execute(text(f"DROP VIEW {name}"))
    if inspect(connection).has_table("view_definition"):
        connection.execute(VIEW_DEFINITION.delete())


def refresh_views(connection: Connection) -> list[str]:
    """Replace every BI view whose definition differs from the one it was created from (all of
    them on a warehouse that never recorded one). Returns the views replaced."""
    recorded: dict[str, str] = {
        name: digest
        for name, digest in connection.execute(
            select(VIEW_DEFINITION.c.view_name, VIEW_DEFINITION.c.definition_sha256)
        ).all()
    }
    existing = set(inspect(connection).get_view_names())
    replaced = []
    for name, definition in VIEWS.items():
        digest = sha256_bytes(definition.encode())
        if recorded.get(name) == digest and name in existing:
            continue
        connection.execute(text(f"DROP VIEW IF EXISTS {name}"))
        connection.execute(text(f"CREATE VIEW {name} AS {definition}"))
        if connection.dialect.name == "postgresql":
            describe_view(connection, name)
        connection.execute(VIEW_DEFINITION.delete().where(VIEW_DEFINITION.c.view_name == name))
        connection.execute(
            VIEW_DEFINITION.insert(), [{"view_name": name, "definition_sha256": digest}]
        )
        replaced.append(name)
    if replaced and connection.dialect.name == "postgresql":
        renew_reader_grants(connection)  # a recreated view has lost its grants
    return replaced


def describe_view(connection: Connection, name: str) -> None:
    """COMMENT ON the view and on each of its columns (PostgreSQL), for BI tools."""
    connection.execute(text(f"COMMENT ON VIEW {name} IS {sql_literal(view_comment(name))}"))
    for column in inspect(connection).get_columns(name):
        comment = view_column_comment(column["name"])
        if comment:
            connection.execute(
                text(f"COMMENT ON COLUMN {name}.{column['name']} IS {sql_literal(comment)}")
            )


#: What a reader role may SELECT: the BI views, and the schema revision (so that the read
#: commands can check it).
READER_OBJECTS = (*VIEWS, "alembic_version")
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _grant(connection: Connection, role: str) -> None:
    quoted = connection.dialect.identifier_preparer.quote(role)
    connection.execute(text(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {quoted}"))
    connection.execute(text(f"GRANT USAGE ON SCHEMA public TO {quoted}"))
    for name in READER_OBJECTS:
        connection.execute(text(f"GRANT SELECT ON {name} TO {quoted}"))


def renew_reader_grants(connection: Connection) -> None:
    for role in connection.execute(select(READER_ROLE.c.role_name)).scalars().all():
        _grant(connection, role)


def grant_reader(engine: Engine, role: str) -> list[str]:
    """Create (or update) a PostgreSQL role that can read the BI views and nothing else; its
    grants are renewed whenever an upgrade recreates a view. Returns what it may read."""
    if engine.dialect.name != "postgresql":
        raise WarehouseError(
            f"grant-reader needs a PostgreSQL warehouse; {redacted(engine)} has no roles "
            "(share the SQLite file read-only instead)"
        )
    if not _ROLE_NAME.match(role):
        raise UsageError(
            f"role {role!r}: use lower-case letters, digits and underscores (at most 63)"
        )
    refusal = _reader_refusal(engine, role)
    if refusal:
        raise UsageError(f"role {role} cannot be a reader: {refusal}; name a role of its own")
    upgrade_warehouse(engine)
    try:
        with engine.begin() as connection:
            quoted = connection.dialect.identifier_preparer.quote(role)
            roles = sqlalchemy.table("pg_roles", sqlalchemy.column("rolname"))
            exists = connection.execute(
                select(roles.c.rolname).where(roles.c.rolname == role)
            ).first()
            if exists is None:
                connection.execute(text(f"CREATE ROLE {quoted} LOGIN"))
            database = connection.execute(select(func.current_database())).scalar_one()
            connection.execute(
                text(
                    "GRANT CONNECT ON DATABASE "
                    f"{connection.dialect.identifier_preparer.quote(database)} TO {quoted}"
                )
            )
            _grant(connection, role)
            connection.execute(READER_ROLE.delete().where(READER_ROLE.c.role_name == role))
            connection.execute(
                READER_ROLE.insert(), [{"role_name": role, "granted_at": datetime.now(UTC)}]
            )
    except SQLAlchemyError as err:
        raise WarehouseError(f"warehouse {redacted(engine)}: {first_line(err)}") from None
    return list(READER_OBJECTS)


#: Names PostgreSQL gives a meaning of its own: granting to them grants to everyone, to nobody,
#: or to whoever connects.
RESERVED_ROLES = ("public", "none", "current_user", "session_user", "current_role")


def _reader_refusal(engine: Engine, role: str) -> str:
    """Why `role` must not be made a reader ('' when it may be): a reader's grants are revoked
    and re-granted on every upgrade, so the warehouse's owner or the connecting role would lose
    its own access, and a superuser reads everything whatever it is granted."""
    if role in RESERVED_ROLES:
        return f"{role!r} is a reserved name in PostgreSQL, not a role"
    if role.startswith("pg_"):
        return "pg_* roles are PostgreSQL's own"
    try:
        with engine.connect() as connection:
            return _role_conflicts(connection, role)
    except SQLAlchemyError as err:
        raise WarehouseError(f"warehouse {redacted(engine)}: {first_line(err)}") from None


def _role_conflicts(connection: Connection, role: str) -> str:
    users = connection.execute(text("SELECT current_user, session_user")).one()
    reasons = []
    if role in tuple(users):
        reasons.append("it is the role this HUBSHARE_WAREHOUSE_URL connects as (the ETL's own)")
    superuser = connection.execute(
        text("SELECT rolsuper FROM pg_roles WHERE rolname = :role"), {"role": role}
    ).scalar()
    if superuser:
        reasons.append("it is a superuser (it reads and writes everything, whatever it is granted)")
    owns = connection.execute(
        text(
            "SELECT string_agg(DISTINCT kind, ', ') FROM ("
            " SELECT 'the schema' AS kind FROM pg_namespace"
            "  WHERE nspname = current_schema() AND pg_get_userbyid(nspowner) = :role"
            " UNION ALL SELECT 'tables' FROM pg_tables"
            "  WHERE schemaname = current_schema() AND tableowner = :role"
            " UNION ALL SELECT 'views' FROM pg_views"
            "  WHERE schemaname = current_schema() AND viewowner = :role"
            " UNION ALL SELECT 'the database' FROM pg_database"
            "  WHERE datname = current_database() AND pg_get_userbyid(datdba) = :role"
            ") AS owned"
        ),
        {"role": role},
    ).scalar()
    if owns:
        reasons.append(f"it owns the warehouse's {owns} (the ETL would lose its own grants)")
    return "; ".join(reasons)
