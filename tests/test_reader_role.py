"""A BI reader on PostgreSQL: `hubshare db grant-reader ROLE` makes a role that can read the
published views and run the read commands, cannot write, cannot read the raw tables, and keeps
its grants when an upgrade recreates the views. Every view and column is described."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import create_engine, inspect, text

from hubshare.fakehub import FakeHub
from schemas import warehouse
from tasks.migrate import refresh_views
from tests.conftest import PG_ADMIN_URL
from tests.test_cli import invoke

pytestmark = [pytest.mark.postgres, pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]
DAY = "2024-01-15"


@pytest.fixture
def published_pg(env, postgres_url, hand_models, monkeypatch) -> Iterator[str]:
    from datetime import date

    from flows.daily import daily

    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", postgres_url)
    with FakeHub(hand_models) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        daily(run_date=date.fromisoformat(DAY), backdate=True)
    yield postgres_url


@pytest.fixture
def role(published_pg) -> Iterator[str]:
    name = f"bi_reader_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(published_pg, autocommit=True) as admin:
        admin.execute(f'DROP OWNED BY "{name}"')  # its grants, here and on the database
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP ROLE IF EXISTS "{name}"')


def as_role(url: str, role: str) -> str:
    return url.replace("postgres@", f"{role}@", 1)


def test_a_reader_role_reads_the_views_and_nothing_else(published_pg, role, monkeypatch):
    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", published_pg)
    granted = invoke("db", "grant-reader", role)
    assert granted.returncode == 0, granted.stderr
    assert invoke("db", "grant-reader", role).returncode == 0  # idempotent: updates the role

    reader = as_role(published_pg, role)
    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", reader)
    shares = invoke("shares", "--format", "json")
    assert shares.returncode == 0, shares.stderr
    assert {row["country"] for row in json.loads(shares.stdout)} >= {"CN", "US"}
    runs = invoke("runs", "--format", "json")
    assert runs.returncode == 0, runs.stderr
    assert [r["status"] for r in json.loads(runs.stdout)] == ["published"]

    with psycopg.connect(reader, autocommit=True) as connection:
        rows = connection.execute("SELECT COUNT(*) FROM published_org_share").fetchone()
        assert rows is not None and rows[0] > 0
        for statement in (
            "SELECT * FROM country_share",  # a raw table
            "SELECT * FROM model_day",
            "INSERT INTO reader_role VALUES ('x', now())",
            "DELETE FROM etl_run",
            "CREATE TABLE mine (x int)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                connection.execute(statement)

    # An upgrade that recreates a view keeps the role's grant on it.
    changed = dict(warehouse.VIEWS)
    changed["published_org_share"] = changed["published_org_share"].replace(
        "s.share", "s.share, s.downloads AS downloads_again"
    )
    monkeypatch.setattr("tasks.migrate.VIEWS", changed)
    with create_engine(published_pg).begin() as connection:
        assert refresh_views(connection) == ["published_org_share"]
    with psycopg.connect(reader, autocommit=True) as connection:
        assert connection.execute("SELECT downloads_again FROM published_org_share").fetchone()


def test_every_view_and_column_is_described(published_pg):
    engine = create_engine(published_pg)
    with engine.connect() as connection:
        inspector = inspect(connection)
        undescribed = [
            f"{table}.{column['name']}"
            for table in [*inspector.get_table_names(), *inspector.get_view_names()]
            for column in inspector.get_columns(table)
            if table != "alembic_version" and not column.get("comment")
        ]
        views = {
            name: connection.execute(
                text("SELECT obj_description(CAST(:name AS regclass))"), {"name": name}
            ).scalar()
            for name in inspector.get_view_names()
        }
    assert undescribed == []
    assert all(views.values()) and set(views) == set(warehouse.VIEWS)


def test_grant_reader_refuses_sqlite_and_odd_names(env, monkeypatch, tmp_path):
    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", f"sqlite:///{tmp_path / 'w.db'}")
    sqlite = invoke("db", "grant-reader", "bi")
    assert sqlite.returncode == 6 and "needs a PostgreSQL warehouse" in sqlite.stderr
    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", PG_ADMIN_URL)
    odd = invoke("db", "grant-reader", 'bi"; DROP TABLE etl_run; --')
    assert odd.returncode == 2 and "use lower-case letters" in odd.stderr


def test_the_reader_reads_the_views_and_the_schema_revision_as_documented(
    published_pg, role, monkeypatch
):
    """The reader's SELECT grants are the BI views and `alembic_version` (the read commands check
    the schema revision), nothing more; README.md and docs/operations.md say so."""
    from hubshare.resources import IMPORT_ROOT

    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", published_pg)
    assert invoke("db", "grant-reader", role).returncode == 0
    with psycopg.connect(published_pg, autocommit=True) as connection:
        readable = {
            name
            for (name,) in connection.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'p', 'm')"
                " AND has_table_privilege(%s, c.oid, 'SELECT')",
                (role,),
            )
        }
    assert readable == {*warehouse.VIEWS, "alembic_version"}
    readme = " ".join((IMPORT_ROOT / "README.md").read_text().split())
    assert "the schema revision (`alembic_version`), nothing else" in readme
    operations = " ".join((IMPORT_ROOT / "docs" / "operations.md").read_text().split())
    assert "reads the BI views and the schema revision, nothing else" in operations
