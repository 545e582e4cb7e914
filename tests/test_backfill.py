"""Backfill after a mapping change equals fresh runs; reproduce proves every run, and names
the input that was altered."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from flows.recompute import reproduce_run
from hubshare.fakehub import FakeHub
from hubshare.read_warehouse import list_runs
from hubshare.settings import Settings
from tests.conftest import HAND_MAPPING, HAND_MODELS, read_models
from tests.test_cli import invoke

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]
# Weekly, so that later dates also carry a 7-day window over stored snapshots.
DATES = [date(2024, 1, 1) + timedelta(weeks=n) for n in range(5)]


def models_on(week: int) -> list[dict[str, Any]]:
    models = read_models(HAND_MODELS)
    for model in models:
        model["downloads"] = model["downloads"] * (week + 1)
        model["downloadsAllTime"] = model["downloadsAllTime"] + 7 * model["downloads"] * week
    return models


def new_mapping(tmp_path: Path) -> Path:
    """The hand mapping plus one fix: randomuser turns out to be a German company."""
    rows = HAND_MAPPING.read_text().splitlines(keepends=True)
    rows.append("randomuser,DE,company,Random GmbH,https://example.org/random,fixture\n")
    header, body = rows[0], sorted(rows[1:], key=lambda r: (r.split(",")[0].lower(), r))
    path = tmp_path / "org_country_v2.csv"
    path.write_text(header + "".join(body))
    return path


def daily_runs(monkeypatch: pytest.MonkeyPatch) -> dict[date, dict[str, Any]]:
    from flows.daily import daily

    outcomes = {}
    for week, day in enumerate(DATES):
        with FakeHub(models_on(week)) as hub:
            monkeypatch.setenv("HF_ENDPOINT", hub.url)
            outcomes[day] = daily(run_date=day, backdate=True)
    return outcomes


def test_backfill_after_a_mapping_change_equals_fresh_runs(
    env, tmp_path, monkeypatch, warehouse_url
):
    from flows.backfill import backfill_with_limit

    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", warehouse_url)
    monkeypatch.setenv("HUBSHARE_BACKFILL_CONCURRENCY", "2")
    first = daily_runs(monkeypatch)
    assert {o["version"] for o in first.values()} == {1}

    fixed = new_mapping(tmp_path)
    monkeypatch.setenv("HUBSHARE_MAPPING", str(fixed))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a backfill never crawls
    summary = backfill_with_limit(DATES[0], DATES[-1] + timedelta(days=1), False, True)
    assert summary["failed"] == 0 and summary["skipped"] == []
    # Days between the weekly snapshots, and the extra last day, have no raw snapshot.
    assert (
        len(summary["missing"]) == 30 - 5
        and str(DATES[-1] + timedelta(days=1)) in (summary["missing"])
    )
    backfilled = {date.fromisoformat(r["snapshot_date"]): r for r in summary["runs"]}
    assert sorted(backfilled) == DATES and {r["version"] for r in backfilled.values()} == {2}

    # Five fresh daily runs with the new mapping, in a data dir and warehouse of their own.
    monkeypatch.setenv("HUBSHARE_DATA_DIR", str(tmp_path / "fresh"))
    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", f"sqlite:///{tmp_path / 'fresh.db'}")
    fresh = daily_runs(monkeypatch)
    runs = list_runs(create_engine(warehouse_url), None)
    sha = {(r["snapshot_date"], r["version"]): r["shares_sha256"] for r in runs.to_dicts()}
    for day in DATES:
        assert sha[(day, 2)] == fresh[day]["shares_sha256"]
        assert sha[(day, 1)] == first[day]["shares_sha256"]
        assert sha[(day, 2)] != sha[(day, 1)]  # randomuser's downloads moved to DE

    # A second backfill finds everything done with the same inputs.
    monkeypatch.setenv("HUBSHARE_DATA_DIR", str(env))
    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", warehouse_url)
    again = backfill_with_limit(DATES[0], DATES[-1], False, True)
    assert again["runs"] == [] and len(again["skipped"]) == 5
    forced = backfill_with_limit(DATES[0], DATES[0], True, True)
    assert [(r["snapshot_date"], r["version"]) for r in forced["runs"]] == [(str(DATES[0]), 3)]
    runs = list_runs(create_engine(warehouse_url), None)

    # Every run of the database reproduces; an altered raw file is named.
    settings = Settings()
    for run_id in runs["run_id"]:
        result = reproduce_run(run_id, settings)
        assert result.ok, result.problems
    raw = env / "raw" / DATES[2].isoformat() / "snapshot.parquet"
    raw.write_bytes(raw.read_bytes()[:-8] + b"altered!")
    by_date = {r["run_id"]: r["snapshot_date"] for r in runs.to_dicts()}
    for run_id, day in by_date.items():
        result = reproduce_run(run_id, settings)
        if day == DATES[2]:
            assert not result.ok
            assert f"raw snapshot {raw} has sha256" in result.problems[0]
        elif day == DATES[3]:  # its 7-day window starts from the altered snapshot
            assert not result.ok
            assert f"window start snapshot of {DATES[2]}" in result.problems[0]
        else:
            assert result.ok

    # The command: exit 0 only when reproduced, else the differing input in one line.
    altered_run = next(r for r, d in by_date.items() if d == DATES[2])
    intact_run = next(r for r, d in by_date.items() if d == DATES[0])
    ok = invoke("reproduce", intact_run)
    assert ok.returncode == 0 and "reproduced" in ok.stdout
    failed = invoke("reproduce", altered_run)
    assert failed.returncode == 5
    assert f"raw snapshot {raw} has sha256" in failed.stderr.strip().splitlines()[-1]
