"""Migrations: a fresh warehouse matches the schema module, a warehouse made by release 0.1.0 is
upgraded in place with its data, views are replaced when their definition changes, and read
commands never write."""

from __future__ import annotations

import ast
import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from hubshare.errors import WarehouseError
from hubshare.warehouse import MIGRATIONS, head_revision, require_current
from schemas import warehouse
from tasks.migrate import refresh_views, upgrade_warehouse
from tests.conftest import FIXTURES
from tests.test_cli import invoke

OLD_RELEASE = {
    "sqlite": FIXTURES / "warehouse-0.1.0.sqlite.sql",
    "postgres": FIXTURES / "warehouse-0.1.0.postgres.sql",
}
# What the 0.1.0 fixtures hold: one published run of the hand-made models (2024-01-15).
OLD_ROWS = {
    "etl_run": 1,
    "country_share": 14,
    "org_share": 26,
    "model_fact": 9,
    "quality_result": 48,
}


def load_old_release(url: str, kind: str) -> None:
    script = OLD_RELEASE[kind].read_text()
    if kind == "sqlite":
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        lite = sqlite3.connect(path)
        lite.executescript(script)
        lite.close()
    else:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(script)  # a trusted fixture, not user input


# The same data after revision 0006: the published run's 9 model rows moved to the dimension
# and the daily fact (0.1.0 stored the headline definition only, so org_share keeps its rows).
UPGRADED_ROWS = {name: rows for name, rows in OLD_ROWS.items() if name != "model_fact"} | {
    "model_dim": 9,
    "model_day": 9,
}

MODEL_FACTS = (
    "SELECT model_oid, model_id, uploader, uploader_bucket, downloads_30d, downloads_all_time, "
    "likes, created_at, pipeline_tag, base_models FROM {table} ORDER BY model_oid"
)


def counts(url: str, tables: dict[str, int] = OLD_ROWS) -> dict[str, int]:
    with create_engine(url).connect() as connection:
        return {
            table: connection.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
            for table in tables
        }


def model_facts(url: str, table: str) -> list[tuple[object, ...]]:
    with create_engine(url).connect() as connection:
        return [tuple(row) for row in connection.execute(text(MODEL_FACTS.format(table=table)))]


def schema_differences(url: str) -> list[object]:
    with create_engine(url).connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": warehouse.include_object}
        )
        return list(compare_metadata(context, warehouse.metadata()))


def test_a_fresh_warehouse_is_exactly_the_schema_module(warehouse_url):
    assert upgrade_warehouse(create_engine(warehouse_url)) == head_revision()
    assert schema_differences(warehouse_url) == []  # the revisions reproduce schemas/warehouse.py
    with create_engine(warehouse_url).connect() as connection:
        assert set(inspect(connection).get_view_names()) == set(warehouse.VIEWS)


def test_a_warehouse_of_release_0_1_0_is_upgraded_in_place(warehouse_url, monkeypatch):
    kind = "sqlite" if warehouse_url.startswith("sqlite") else "postgres"
    load_old_release(warehouse_url, kind)
    assert counts(warehouse_url) == OLD_ROWS
    facts_before = model_facts(warehouse_url, "model_fact")
    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", warehouse_url)

    # Reading refuses the old schema, in one line, and changes nothing.
    before = _fingerprint(warehouse_url)
    refused = invoke("shares", "--date", "2024-01-15")
    assert refused.returncode == 6
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith("error: warehouse ") and line.endswith(
        f" is at schema revision of hubshare 0.1.0, this hubshare reads {head_revision()}: "
        "run `hubshare db upgrade`"
    )
    assert _fingerprint(warehouse_url) == before

    upgraded = invoke("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert counts(warehouse_url, UPGRADED_ROWS) == UPGRADED_ROWS  # every row kept
    # The published run's per-model facts read the same through the BI view.
    assert model_facts(warehouse_url, "published_model_fact") == facts_before
    assert schema_differences(warehouse_url) == []
    shares = invoke("shares", "--date", "2024-01-15", "--format", "json")
    assert shares.returncode == 0, shares.stderr
    # The old run's shares read through the replaced views; it has no ranges (null).
    assert '"country": "CN"' in shares.stdout and '"share_low": null' in shares.stdout
    again = invoke("db", "upgrade")
    assert again.returncode == 0 and counts(warehouse_url, UPGRADED_ROWS) == UPGRADED_ROWS


def test_views_are_replaced_when_their_definition_changes(warehouse_url, monkeypatch):
    engine = create_engine(warehouse_url)
    upgrade_warehouse(engine)
    with engine.begin() as connection:
        assert refresh_views(connection) == []  # nothing changed
    changed = dict(warehouse.VIEWS)
    changed["latest_country_share"] = changed["latest_country_share"].replace(
        "s.share_high", "s.share_high, s.downloads AS downloads_again"
    )
    monkeypatch.setattr("tasks.migrate.VIEWS", changed)
    with engine.begin() as connection:
        assert refresh_views(connection) == ["latest_country_share"]
    with engine.connect() as connection:
        columns = [c["name"] for c in inspect(connection).get_columns("latest_country_share")]
    assert columns[-1] == "downloads_again"


def test_read_commands_never_create_a_warehouse(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "warehouse.db"
    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", f"sqlite:///{missing}")
    for args in (("shares",), ("runs",), ("explain", "--from", "2024-01-01", "--to", "2024-01-02")):
        result = invoke(*args)
        assert result.returncode == 6
        assert result.stderr.strip().startswith(f"error: no warehouse at sqlite:///{missing}")
    assert not missing.exists() and not missing.parent.exists()
    with pytest.raises(WarehouseError, match="is empty: run `hubshare run`"):
        empty = tmp_path / "empty.db"
        sqlite3.connect(empty).close()
        require_current(create_engine(f"sqlite:///{empty}"))


def _fingerprint(url: str) -> str:
    """The bytes of a SQLite file, or the catalogue and row counts of a PostgreSQL database."""
    if url.startswith("sqlite"):
        return hashlib.sha256(Path(url.removeprefix("sqlite:///")).read_bytes()).hexdigest()
    with create_engine(url).connect() as connection:
        tables = sorted(inspect(connection).get_table_names())
    return repr((tables, counts(url)))


#: The project's own packages: a revision imports none of them but the migrations folder itself.
PIPELINE_PACKAGES = ("tasks", "flows", "hubshare", "schemas")
REVISIONS_PACKAGE = "schemas.migrations.versions"


def pipeline_imports(source: str) -> list[str]:
    """The modules of the pipeline that a revision's source imports, at any depth (an import
    inside `upgrade()` runs the live code just the same)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            # A relative import is resolved against the revisions' package.
            base = REVISIONS_PACKAGE.rsplit(".", node.level - 1)[0] if node.level else ""
            names = [".".join(part for part in (base, node.module) if part)]
        else:
            continue
        found += [
            name
            for name in names
            if name.split(".")[0] in PIPELINE_PACKAGES
            and not (name + ".").startswith("schemas.migrations.")
        ]
    return found


def test_revisions_carry_the_code_they_run():
    """The pipeline's code follows the schema at head; an upgrade from an old warehouse runs
    every revision since, each on the schema of its time."""
    revisions = sorted((MIGRATIONS / "versions").glob("[0-9]*.py"))
    assert "0006_model_dimension.py" in [path.name for path in revisions]
    leaks = {path.name: pipeline_imports(path.read_text()) for path in revisions}
    assert {name: modules for name, modules in leaks.items() if modules} == {}
    # What 0006 did before it was frozen is caught, at module level or inside a function.
    assert pipeline_imports(
        "from schemas.frames import MODEL_FACT_SCHEMA\n"
        "def upgrade():\n    from tasks.load import store_model_facts\n    import hubshare.errors\n"
    ) == ["schemas.frames", "tasks.load", "hubshare.errors"]
    assert pipeline_imports("from ...frames import X\nfrom .. import env") == ["schemas.frames"]


def test_the_import_contracts_hold():
    """pyproject.toml's import-linter contracts: layers, frozen migrations, no cycles."""
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--no-cache"],
        cwd=MIGRATIONS.parent.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
