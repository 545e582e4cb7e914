"""Promises kept under bad input and faults (issue 9): each case asserts the exit code or the
error, and that nothing stored is lost, half-written or leaked."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from hubshare.fakehub import FakeHub
from hubshare.read_warehouse import list_runs
from tests.test_cli import invoke, last_line

DAY = date(2024, 1, 15)


def files_containing(folder: Path, needle: bytes) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_credentials_in_the_endpoint_are_never_written(env, hand_models, monkeypatch, capfd):
    from flows.daily import daily

    with FakeHub(hand_models) as hub:
        host = hub.url.split("://", 1)[1]
        monkeypatch.setenv("HF_ENDPOINT", f"http://crawler:s3cretpw@{host}")
        outcome = daily(run_date=DAY, backdate=True)
    assert outcome["status"] == "published"
    assert files_containing(env, b"s3cretpw") == []  # state.json, manifest, run files, warehouse
    out, err = capfd.readouterr()
    assert "s3cretpw" not in out + err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("shares", "--date", "2024-1-15"), "--date '2024-1-15' is not a date in the form"),
        (("shares", "--date", "2024-W03-1"), "--date '2024-W03-1' is not a date in the form"),
        (("shares", "--date", "2024-01-15x"), "--date '2024-01-15x' is not a date in the form"),
        (("runs", "--date", "1999-12-31"), "--date 1999-12-31 is before 2016-01-01"),
        (("shares", "--date", "2999-01-01"), "--date 2999-01-01 is in the future"),
        (("run", "--date", "2999-01-01", "--backdate"), "--date 2999-01-01 is in the future"),
        (("backfill", "--start", "2024-01-01", "--end", "2999-01-01"), "--end 2999-01-01 is in"),
        (
            ("shares", "--window", "2024-01-01..2999-01-01"),
            "--window 2999-01-01 is in the future",
        ),
        (("shares", "--window", "2024-01-01..24-01-08"), "--window '24-01-08' is not a date"),
        (("explain", "--from", "2024-01-01", "--to", "2024-13-01"), "--to '2024-13-01' is not"),
    ],
)
def test_dates_are_strict(env, args, message):
    result = invoke(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [last_line(result.stderr)]
    assert message in last_line(result.stderr)


def test_versions_stay_unique_when_two_loads_of_a_date_race(env, tmp_path):
    """Two processes loading one date at the same instant (SQLite): the database's unique
    (snapshot_date, version) makes the loser take the next version."""
    from tasks.load import record_unfinished_run, warehouse_engine
    from tasks.migrate import upgrade_warehouse

    url = f"sqlite:///{tmp_path / 'race.db'}"
    upgrade_warehouse(warehouse_engine(url))
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def load(n: int) -> None:
        try:
            barrier.wait()
            record_unfinished_run(
                warehouse_engine(url),
                run_id=f"run-{n}",
                snapshot_date=DAY,
                flow_run_id=None,
                started_at=datetime.now(UTC),
                status="failed",
                reason="race",
                parameters={},
            )
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=load, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    versions = sorted(list_runs(create_engine(url), DAY)["version"].to_list())
    assert versions == [1, 2, 3, 4]


def test_reproduce_takes_a_unique_prefix_of_a_run_id(env, tmp_path, monkeypatch):
    from tasks.load import record_unfinished_run, warehouse_engine

    url = f"sqlite:///{tmp_path / 'w.db'}"
    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", url)
    for run_id in ("abcdef01-0000", "abcdef02-0000"):
        record_unfinished_run(
            warehouse_engine(url),
            run_id=run_id,
            snapshot_date=DAY - timedelta(days=1),
            flow_run_id=None,
            started_at=datetime.now(UTC),
            status="failed",
            reason="fixture",
            parameters={},
        )
    ambiguous = invoke("reproduce", "abcdef0")
    assert ambiguous.returncode == 2
    assert last_line(ambiguous.stderr) == (
        "error: run id 'abcdef0' matches 2 runs (abcdef01, abcdef02): give more characters"
    )
    unknown = invoke("reproduce", "ffff")
    assert unknown.returncode == 2 and "no run id starts with 'ffff'" in unknown.stderr
    found = invoke("reproduce", "abcdef01")
    # The prefix resolved: the failed run has nothing to reproduce, and says so.
    assert "abcdef01-0000" in last_line(found.stderr)
