"""Revision 0007 (issue 18): `country_share.downloads_by_default` on a warehouse of release
0.1.0, on SQLite and PostgreSQL. The runs from before read null, through the table, the views and
`hubshare shares`; a new run stores it."""

from __future__ import annotations

from datetime import date

import orjson
import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

from hubshare.fakehub import FakeHub
from hubshare.warehouse import alembic_config
from tasks.migrate import drop_views, upgrade_warehouse
from tests.test_cli import invoke
from tests.test_migrations import OLD_ROWS, counts, load_old_release


def by_default_of(url: str, table: str) -> list[object]:
    with create_engine(url).connect() as connection:
        return list(connection.execute(text(f"SELECT downloads_by_default FROM {table}")).scalars())


def test_0007_upgrades_release_0_1_0_and_old_rows_read_null(warehouse_url, monkeypatch):
    kind = "sqlite" if warehouse_url.startswith("sqlite") else "postgres"
    load_old_release(warehouse_url, kind)
    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", warehouse_url)
    upgraded = invoke("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert counts(warehouse_url, {"country_share": 0})["country_share"] == OLD_ROWS["country_share"]
    assert by_default_of(warehouse_url, "country_share") == [None] * OLD_ROWS["country_share"]
    for view in ("published_country_share", "latest_country_share"):
        assert by_default_of(warehouse_url, view) == [None] * OLD_ROWS["country_share"]
    with create_engine(warehouse_url).connect() as connection:
        [column] = [
            c
            for c in inspect(connection).get_columns("country_share")
            if c["name"] == "downloads_by_default"
        ]
    assert column["nullable"] and "BIGINT" in str(column["type"]).upper()
    shares = invoke("shares", "--date", "2024-01-15", "--format", "json")
    assert shares.returncode == 0, shares.stderr
    rows = orjson.loads(shares.stdout)
    assert rows and {row["downloads_by_default"] for row in rows} == {None}
    table = invoke("shares", "--date", "2024-01-15")
    assert table.returncode == 0
    assert "by default (no reviewed mapping row): n/a" in " ".join(table.stdout.split())


def test_0007_downgrades_and_upgrades_again(warehouse_url):
    engine = create_engine(warehouse_url)
    upgrade_warehouse(engine)
    with engine.begin() as connection:
        drop_views(connection)  # as upgrade_warehouse does before revisions rebuild tables
        command.downgrade(alembic_config(connection), "0006")
        columns = {c["name"] for c in inspect(connection).get_columns("country_share")}
    assert "downloads_by_default" not in columns
    upgrade_warehouse(engine)
    with engine.connect() as connection:
        columns = {c["name"] for c in inspect(connection).get_columns("country_share")}
    assert "downloads_by_default" in columns


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_a_new_run_stores_it(env, warehouse_url, hand_models, monkeypatch):
    """The hand-made models under the hand mapping, nothing typed: only UNKNOWN rests on the
    default (randomuser's 90 + 70 in the uploader view), every other bucket has 0."""
    from flows.daily import daily

    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", warehouse_url)
    with FakeHub(hand_models) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        daily(run_date=date(2024, 1, 15), backdate=True)
    shares = invoke("shares", "--date", "2024-01-15", "--format", "json")
    assert shares.returncode == 0, shares.stderr
    rows = {row["country"]: row for row in orjson.loads(shares.stdout)}
    assert {country: row["downloads_by_default"] for country, row in rows.items()} == {
        "CN": 0,
        "US": 0,
        "INTL": 0,
        "UNKNOWN": 160,
    }
    csv = invoke("shares", "--date", "2024-01-15", "--format", "csv")
    assert csv.stdout.splitlines()[0].split(",")[8] == "downloads_by_default"
    table = invoke("shares", "--date", "2024-01-15")
    assert "by default (no reviewed mapping row): UNKNOWN 160 of 160" in " ".join(
        table.stdout.split()
    )
