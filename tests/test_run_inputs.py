"""RunInputs: what a run read, recorded in its etl_run row and read back unchanged."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, ClassVar

import orjson
import polars as pl
import pytest
from sqlalchemy import create_engine, text

from hubshare.errors import WarehouseError
from schemas.run import DECIDES_SHARES, RunInputs
from tasks.load import RunRecord, ensure_schema, load_run, record_unfinished_run
from tasks.quality import QUALITY_REPORT_SCHEMA
from tests.conftest import FIXTURES

ROW = "SELECT run_id, snapshot_date, raw_sha256, mapping_sha256, parameters FROM etl_run"

INPUTS = RunInputs(
    snapshot_date=date(2024, 1, 15),
    backdate=True,
    raw_sha256="a" * 64,
    mapping_path=Path("/srv/hubshare/org_country.csv"),
    mapping_sha256="b" * 64,
    window_starts={date(2024, 1, 8): "c" * 64, date(2023, 12, 16): "d" * 64},
    endpoint="http://127.0.0.1:8080",
    page_size=3,
    max_row_drop=0.05,
    max_unknown_share=0.5,
    previous_row_count=9,
)


def rejected_run(inputs: RunInputs, run_id: str) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        snapshot_date=inputs.snapshot_date,
        flow_run_id=None,
        started_at=datetime(2024, 1, 15, 6, tzinfo=UTC),
        code_version="test",
        definition="downloads_30d",
        raw_sha256=inputs.raw_sha256,
        mapping_sha256=inputs.mapping_sha256,
        shares_sha256="e" * 64,
        row_count=9,
        rows_listed=9,
        duplicates_dropped=0,
        private_dropped=0,
        total_downloads=3010,
        parameters=inputs.to_parameters(),
        report={},
    )


@pytest.fixture
def sqlite_warehouse(tmp_path: Path):
    engine = create_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
    ensure_schema(engine)
    return engine


def test_inputs_round_trip_through_the_etl_run_row(sqlite_warehouse):
    empty_quality = pl.DataFrame(schema=QUALITY_REPORT_SCHEMA)
    load_run(
        sqlite_warehouse,
        rejected_run(INPUTS, "run-1"),
        {},
        empty_quality,
        published=False,
        reason="test",
    )
    with sqlite_warehouse.connect() as connection:
        row = connection.execute(text(ROW)).one()
    read = RunInputs.from_run_row(row._mapping)
    assert read == INPUTS
    assert read.window_starts == INPUTS.window_starts  # dates again, not text
    # The parameters keep the keys every run has written, the SHA-256 stay in their columns.
    assert set(orjson.loads(row.parameters)) == {
        "run_date",
        "backdate",
        "endpoint",
        "mapping",
        "page_size",
        "max_row_drop",
        "max_unknown_share",
        "previous_row_count",
        "window_inputs",
    }
    assert orjson.loads(row.parameters)["window_inputs"] == {
        "2024-01-08": "c" * 64,
        "2023-12-16": "d" * 64,
    }


def _release_0_1_0(tmp_path: Path) -> sqlite3.Connection:
    lite = sqlite3.connect(tmp_path / "old.db")
    lite.executescript((FIXTURES / "warehouse-0.1.0.sqlite.sql").read_text())
    lite.row_factory = sqlite3.Row
    return lite


def test_a_row_of_release_0_1_0_reads_and_writes_back_byte_for_byte(tmp_path):
    lite = _release_0_1_0(tmp_path)
    row = lite.execute(ROW).fetchone()
    inputs = RunInputs.from_run_row(dict(row))
    assert inputs.snapshot_date == date(2024, 1, 15)
    assert inputs.raw_sha256 == row["raw_sha256"]
    assert inputs.mapping_path == Path("/tmp/oldrel/tests/fixtures/org_country.csv")  # noqa: S108
    assert inputs.window_starts == {}
    assert inputs.previous_row_count is None
    stored = orjson.dumps(inputs.to_parameters(), option=orjson.OPT_SORT_KEYS).decode()
    assert stored == row["parameters"]


class InputsWithAccountTypes(RunInputs):
    """RunInputs as a later release may extend it: one more input, with its default."""

    account_types_sha256: Annotated[str | None, DECIDES_SHARES] = None


class InputsBeforeAccountTypes(RunInputs):
    """RunInputs as the release before account types read it: without the field."""

    account_types_sha256: ClassVar[None] = None  # type: ignore[misc]


def test_a_new_input_keeps_older_rows_readable_and_older_code_reads_newer_rows(tmp_path):
    old = dict(_release_0_1_0(tmp_path).execute(ROW).fetchone())
    extended = InputsWithAccountTypes.from_run_row(old)
    assert extended.account_types_sha256 is None
    assert extended.raw_sha256 == old["raw_sha256"]

    newer = InputsWithAccountTypes.model_validate(
        INPUTS.model_dump() | {"account_types_sha256": "f" * 64}
    )
    parameters = newer.to_parameters()
    assert parameters["account_types_sha256"] == "f" * 64
    row = {
        "run_id": "run-2",
        "snapshot_date": "2024-01-15",
        "raw_sha256": newer.raw_sha256,
        "mapping_sha256": newer.mapping_sha256,
        "parameters": orjson.dumps(parameters, option=orjson.OPT_SORT_KEYS).decode(),
    }
    older = InputsBeforeAccountTypes.from_run_row(row)
    # the key it does not know is ignored
    assert older.model_dump() == INPUTS.model_dump(exclude={"account_types_sha256"})
    assert InputsWithAccountTypes.from_run_row(row) == newer
    # A backfill compares the new input too: another account types file makes a date due.
    assert "account_types_sha256" in newer.deciding_shares()
    assert (
        newer.deciding_shares()
        != newer.model_copy(update={"account_types_sha256": "0" * 64}).deciding_shares()
    )


def test_only_the_inputs_that_decide_the_shares_are_compared():
    assert set(INPUTS.deciding_shares()) == {"raw_sha256", "mapping_sha256", "window_starts"}
    moved = INPUTS.model_copy(update={"endpoint": "https://huggingface.co", "page_size": 1000})
    assert moved.deciding_shares() == INPUTS.deciding_shares()


def test_a_run_that_failed_before_reading_its_inputs_is_named(sqlite_warehouse):
    record_unfinished_run(
        sqlite_warehouse,
        run_id="run-failed",
        snapshot_date=date(2024, 1, 16),
        flow_run_id=None,
        started_at=datetime(2024, 1, 16, 6, tzinfo=UTC),
        status="failed",
        reason="the Hub did not answer",
        parameters={"run_date": "2024-01-16"},
    )
    with sqlite_warehouse.connect() as connection:
        row = connection.execute(text(ROW)).one()
    with pytest.raises(WarehouseError, match="run run-failed: its recorded inputs do not read"):
        RunInputs.from_run_row(row._mapping)


@pytest.mark.parametrize("kind", ["json", "pickle"])
def test_prefect_can_persist_and_pass_the_inputs(kind):
    from prefect.serializers import JSONSerializer, PickleSerializer

    serializer = JSONSerializer() if kind == "json" else PickleSerializer()
    assert serializer.loads(serializer.dumps(INPUTS)) == INPUTS
