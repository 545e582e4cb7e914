"""The one warehouse module (hubshare/warehouse.py): one engine per URL, reads that never
migrate, and dates and timestamps that read the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import inspect

from hubshare.errors import WarehouseError
from hubshare.read_warehouse import list_runs
from hubshare.warehouse import (
    previous_published_date,
    previous_row_count,
    run_row,
    warehouse_engine,
)
from tasks.load import record_unfinished_run
from tasks.migrate import upgrade_warehouse

DAY = date(2024, 1, 15)


def test_one_engine_per_url_and_a_bad_url_hides_its_password(tmp_path):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    assert warehouse_engine(url) is warehouse_engine(url)
    assert warehouse_engine(url) is not warehouse_engine(f"sqlite:///{tmp_path / 'other.db'}")
    with pytest.raises(WarehouseError) as raised:
        warehouse_engine("nosuchdialect://analyst:s3cret-pw@db.example/warehouse")
    assert "s3cret-pw" not in str(raised.value)
    assert "analyst:***@db.example" in str(raised.value)


def test_reads_never_create_or_migrate_a_warehouse(warehouse_url):
    engine = warehouse_engine(warehouse_url)
    with pytest.raises(WarehouseError, match="hubshare db upgrade"):
        previous_row_count(engine, DAY)
    with pytest.raises(WarehouseError, match="hubshare db upgrade"):
        run_row(engine, "no-such-run")
    if engine.dialect.name == "sqlite":
        assert not Path(str(engine.url.database)).exists()
    else:
        with engine.connect() as connection:
            assert inspect(connection).get_table_names() == []


def test_dates_and_timestamps_read_the_same_on_both_backends(warehouse_url):
    engine = warehouse_engine(warehouse_url)
    upgrade_warehouse(engine)
    started = datetime(2024, 1, 15, 3, 4, 5, 123456, tzinfo=timezone(timedelta(hours=2)))
    record_unfinished_run(
        engine,
        run_id="run-1",
        snapshot_date=DAY,
        flow_run_id=None,
        started_at=started.astimezone(UTC),
        status="failed",
        reason="fixture",
        parameters={},
    )
    runs = list_runs(engine, DAY)
    [run] = runs.to_dicts()
    assert run["snapshot_date"] == DAY
    assert run["started_at"] == started
    assert run["started_at"].tzinfo is not None
    assert run["started_at"].utcoffset() == timedelta(0)
    row = run_row(engine, "run-1")
    assert row is not None and row["snapshot_date"] == DAY
    assert previous_row_count(engine, DAY) is None
    assert previous_published_date(engine, date.max) is None
