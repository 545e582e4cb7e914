"""The one warehouse module (hubshare/warehouse.py): one engine per URL, reads that never
migrate, and dates and timestamps that read the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import Engine, create_engine, inspect
from sqlalchemy.engine import Connection

from hubshare import warehouse
from hubshare.errors import WarehouseError
from hubshare.read_warehouse import list_runs
from hubshare.warehouse import (
    MODEL_DAY,
    TABLES,
    bulk_insert,
    bulk_insert_in_turn,
    previous_published_date,
    previous_row_count,
    record_next_version,
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


# --- the bulk path of SQLite: large frames go through a stage file ------------------------------

MODEL_DIM_ROWS = pl.DataFrame(
    {
        "model_key": [1, 2, 3],
        "model_oid": ["a" * 24, "b" * 24, "c" * 24],
        "content_digest": [-(2**63), 2**63 - 1, 0],
        "model_id": ["org/m", 'O\'Neil/"quoted", comma', "ünï/cødé ✓"],
        "uploader": ["org", "O'Neil", "ünï"],
        "created_at": [datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), None, None],
        "last_modified": [None, datetime(2023, 12, 31, 23, 59, tzinfo=UTC), None],
        "pipeline_tag": [None, "text-generation", ""],
        "library_name": ["transformers", None, None],
        "gated": ["false", "auto", None],
        "base_relation": [None, "merge", None],
        "base_models": [None, "x/y,z/w", None],
        "uploader_bucket": ["CN", "US", "UNKNOWN"],
    },
    schema_overrides={"created_at": pl.Datetime("us", "UTC"), "last_modified": pl.Datetime("us")},
)
MODEL_ORIGIN_ROWS = pl.DataFrame(
    {
        "model_key": [1, 2, 2, 3],
        "origin_org": ["org", "a", "b", "ünï"],
        "origin_bucket": ["CN", "US", "INTL", "UNKNOWN"],
        "weight": [1.0, 1 / 3, 2 / 3, 1.0],
        "weight_num": [1, 1, 2, 1],
        "weight_den": [1, 3, 3, 1],
    }
)
MODEL_DAY_ROWS = pl.DataFrame(
    {
        "snapshot_date": [DAY, DAY, DAY],
        "model_key": [1, 2, 3],
        "downloads_30d": [0, 2**62, 7],
        "downloads_all_time": [None, 2**62, 9],
        "likes": [3, None, 0],
    }
)
FRAMES = {
    "model_dim": MODEL_DIM_ROWS,
    "model_origin": MODEL_ORIGIN_ROWS,
    "model_day": MODEL_DAY_ROWS,
}


def stored_rows(engine: Engine, table: str) -> list[tuple[object, ...]]:
    """Every row of `table` as SQLite holds it: each value and its storage class."""
    columns = ", ".join(f"{c.name}, typeof({c.name})" for c in TABLES[table].columns)
    with engine.connect() as connection:
        return [tuple(row) for row in connection.exec_driver_sql(f"SELECT {columns} FROM {table}")]


def write_frames(connection: Connection, version: int) -> None:
    bulk_insert_in_turn(connection, [(TABLES[name], frame) for name, frame in FRAMES.items()])


def test_a_staged_sqlite_load_stores_what_executemany_stores(tmp_path, monkeypatch):
    stored = {}
    # Through executemany, a stage of each frame, and each frame's rows in two stages.
    for name, min_rows, split_rows in (
        ("executemany", 10**9, 10**9),
        ("staged", 1, 10**9),
        ("split", 1, 1),
    ):
        monkeypatch.setattr(warehouse, "STAGE_MIN_ROWS", min_rows)
        monkeypatch.setattr(warehouse, "STAGE_SPLIT_MIN_ROWS", split_rows)
        engine = warehouse_engine(f"sqlite:///{tmp_path / name}.db")
        upgrade_warehouse(engine)
        record_next_version(engine, "run-1", DAY, "published", write_frames, failure="loading")
        stored[name] = {table: stored_rows(engine, table) for table in FRAMES}
    assert stored["staged"] == stored["executemany"] == stored["split"]
    assert [len(rows) for rows in stored["split"].values()] == [3, 4, 3]
    assert not [path for path in tmp_path.iterdir() if "hubshare-stage" in path.name]


def test_stages_are_split_only_into_as_many_files_as_sqlite_can_still_attach(tmp_path, monkeypatch):
    """A transaction's stages stay attached until it ends, and SQLite attaches at most 10: a
    frame staged when fewer than `STAGE_PARTS` can still be attached goes into fewer files."""
    monkeypatch.setattr(warehouse, "STAGE_MIN_ROWS", 1)
    monkeypatch.setattr(warehouse, "STAGE_SPLIT_MIN_ROWS", 1)
    monkeypatch.setattr(warehouse, "STAGE_PARTS", 3)
    days = [DAY + timedelta(days=n) for n in range(4)]  # 3 stages a day would need 12

    def write_days(connection: Connection, version: int) -> None:
        for day in days:
            bulk_insert(connection, MODEL_DAY, MODEL_DAY_ROWS.with_columns(snapshot_date=day))

    engine = warehouse_engine(f"sqlite:///{tmp_path / 'w.db'}")
    upgrade_warehouse(engine)
    record_next_version(engine, "run-1", DAY, "published", write_days, failure="loading")
    stored = stored_rows(engine, "model_day")
    assert len(stored) == 12
    assert {row[0] for row in stored} == {str(day) for day in days}


def test_a_failed_staged_load_writes_nothing_and_lets_its_stages_go(monkeypatch):
    """A load that fails after its staged rows went in rolls all of them back, says why, and
    detaches its stages from a connection the pool keeps."""
    monkeypatch.setattr(warehouse, "STAGE_MIN_ROWS", 1)
    monkeypatch.setattr(warehouse, "STAGE_SPLIT_MIN_ROWS", 1)  # each frame in two stages
    engine = create_engine("sqlite://")  # one pooled connection, kept between loads
    upgrade_warehouse(engine)

    def write_twice(connection: Connection, version: int) -> None:
        write_frames(connection, version)
        bulk_insert(connection, MODEL_DAY, MODEL_DAY_ROWS)

    def write_twice_in_one_go(connection: Connection, version: int) -> None:
        loads = [(TABLES[name], frame) for name, frame in FRAMES.items()]
        bulk_insert_in_turn(connection, [*loads, (MODEL_DAY, MODEL_DAY_ROWS)])

    for attempt in range(12):  # more than SQLite's 10 attached databases
        # The day's rows twice: the second copy fails after the others went in.
        write = write_twice if attempt % 2 else write_twice_in_one_go
        with pytest.raises(WarehouseError, match=r"loading failed.*UNIQUE constraint failed"):
            record_next_version(engine, f"r{attempt}", DAY, "published", write, "loading failed")
    assert all(stored_rows(engine, name) == [] for name in FRAMES)
    record_next_version(engine, "run-1", DAY, "published", write_frames, failure="loading")
    assert len(stored_rows(engine, "model_origin")) == 4
    with engine.connect() as connection:
        attached = [row[1] for row in connection.exec_driver_sql("PRAGMA database_list")]
    assert "main" in attached and not [name for name in attached if "stage" in name]


def test_model_facts_in_order_store_what_shuffled_ones_store(tmp_path, hand_models):
    """A run's origins come in the facts' model order and get their keys by position; in any
    other order they are joined: two days (the second with one model's content changed, a merge
    among them) store the same rows either way."""
    from tasks.load import store_model_facts
    from tests.test_attribution import attribute

    fact, origin, _ = attribute(hand_models, tmp_path / "one")
    assert origin["model_oid"].n_unique() < origin.height  # a merge: one model, several rows
    changed = fact.with_columns(
        pl.when(pl.int_range(pl.len()) == 2)
        .then(pl.lit("text-classification"))
        .otherwise(pl.col("pipeline_tag"))
        .alias("pipeline_tag")
    )
    stored = {}
    for shuffled in (False, True):
        engine = warehouse_engine(f"sqlite:///{tmp_path / str(shuffled)}.db")
        upgrade_warehouse(engine)
        for day, frame in ((DAY, fact), (DAY + timedelta(days=1), changed)):
            ordered = origin.sample(fraction=1.0, shuffle=True, seed=5) if shuffled else origin
            with engine.begin() as connection:
                store_model_facts(connection, day, frame, ordered)
        stored[shuffled] = {
            table: sorted(stored_rows(engine, table), key=str)
            for table in ("model_dim", "model_origin", "model_day")
        }
    assert stored[True] == stored[False]
    assert [len(rows) for rows in stored[True].values()] == [
        fact.height + 1,
        origin.height + origin.filter(pl.col("model_oid") == fact["model_oid"][2]).height,
        2 * fact.height,
    ]


def test_model_facts_scanned_from_stored_files_store_what_frames_store(
    tmp_path, hand_models, monkeypatch, warehouse_url
):
    """The daily load scans a run's stored per-model files and reads them a few rows at a time
    (here two or three; on SQLite each table staged in two parts, on PostgreSQL copied a slice at
    a time): two days, the second with one model's content changed, store the same rows as the
    frames held in memory."""
    from tasks import load
    from tests.test_attribution import attribute

    monkeypatch.setattr(warehouse, "STAGE_MIN_ROWS", 1)
    monkeypatch.setattr(warehouse, "STAGE_SPLIT_MIN_ROWS", 1)
    monkeypatch.setattr(warehouse, "STAGE_CHUNK_ROWS", 3)
    monkeypatch.setattr(warehouse, "COPY_CHUNK_ROWS", 3)
    monkeypatch.setattr(warehouse, "SCAN_BLOCK_ROWS", 2)
    monkeypatch.setattr(load, "DIGEST_BATCH_ROWS", 2)
    fact, origin, _ = attribute(hand_models, tmp_path / "one")
    assert fact.height > 6 and origin["model_oid"].n_unique() < origin.height
    changed = fact.with_columns(
        pl.when(pl.int_range(pl.len()) == 4)
        .then(pl.lit("text-classification"))
        .otherwise(pl.col("pipeline_tag"))
        .alias("pipeline_tag")
    )
    engine = warehouse_engine(warehouse_url)
    upgrade_warehouse(engine)
    tables = ("model_day", "model_origin", "model_dim")
    stored = {}
    for scanned in (False, True):
        with engine.begin() as connection:
            for table in tables:  # each way from an empty dimension: the same keys
                connection.exec_driver_sql(f"DELETE FROM {table}")
        for number, frame in enumerate((fact, changed)):
            frames: tuple[pl.DataFrame | pl.LazyFrame, ...] = (frame, origin)
            if scanned:
                paths = [tmp_path / f"{number}-{name}.parquet" for name in ("fact", "origin")]
                frame.write_parquet(paths[0])
                origin.write_parquet(paths[1])
                frames = tuple(pl.scan_parquet(path) for path in paths)
            with engine.begin() as connection:
                load.store_model_facts(connection, DAY + timedelta(days=number), *frames)
        with engine.connect() as connection:
            stored[scanned] = {
                table: sorted(
                    (tuple(row) for row in connection.exec_driver_sql(f"SELECT * FROM {table}")),
                    key=str,
                )
                for table in tables
            }
    assert stored[True] == stored[False]
    assert [len(stored[True][table]) for table in reversed(tables)] == [
        fact.height + 1,
        origin.height + origin.filter(pl.col("model_oid") == fact["model_oid"][4]).height,
        2 * fact.height,
    ]


def test_a_known_digest_is_reused_only_for_its_own_model(tmp_path, hand_models):
    """Keys are found by the 64-bit digest and then the model's id: a row of another model with
    the same digest (a collision, made here by hand) is never reused, whether that digest is
    known once or twice; a content stored twice (an edit outside hubshare) stops the load,
    naming the fix."""
    from tasks.load import store_model_facts
    from tests.test_attribution import attribute

    fact, origin, _ = attribute(hand_models, tmp_path / "one")
    engine = warehouse_engine(f"sqlite:///{tmp_path / 'w.db'}")
    upgrade_warehouse(engine)
    n = fact.height

    def store(days: int) -> list[int]:
        day = DAY + timedelta(days=days)
        with engine.begin() as connection:
            store_model_facts(connection, day, fact, origin)
            rows = connection.exec_driver_sql(
                "SELECT model_key FROM model_day WHERE snapshot_date = ? ORDER BY model_key",
                (str(day),),
            ).fetchall()
        return [key for (key,) in rows]

    def sql(statement: str, oid: str) -> None:
        with engine.begin() as connection:
            connection.exec_driver_sql(statement, {"oid": oid})

    copy = "INSERT INTO model_dim SELECT model_key + {add}, {oid}, content_digest, model_id, " + (
        "uploader, created_at, last_modified, pipeline_tag, library_name, gated, base_relation, "
        "base_models, uploader_bucket FROM model_dim WHERE model_oid = :oid"
    )
    assert store(0) == list(range(1, n + 1))
    # The second model's only row now belongs to another model: that content is new again.
    sql(
        "UPDATE model_dim SET model_oid = 'eeeeeeeeeeeeeeeeeeeeeeee' WHERE model_oid = :oid",
        fact["model_oid"][1],
    )
    assert store(1) == [1, *range(3, n + 2)]
    # The first model's digest, known twice: once for it, once for another model.
    sql(copy.format(add=100, oid="'ffffffffffffffffffffffff'"), fact["model_oid"][0])
    assert store(2) == [1, *range(3, n + 2)]
    sql(copy.format(add=200, oid=":oid"), fact["model_oid"][0])  # its content, stored twice
    with pytest.raises(WarehouseError, match="delete the duplicate with the higher model_key"):
        store(3)
