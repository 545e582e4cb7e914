"""Windows from downloadsAllTime differences, the first-year cohort, and concentration."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import polars as pl
import pytest
from sqlalchemy import create_engine

from hubshare.fakehub import FakeHub
from hubshare.read_warehouse import list_runs, published_shares
from hubshare.settings import Settings
from tasks.extract import extract_snapshot
from tasks.shares import concentration
from tests.test_cli import invoke

DAYS = [date(2024, 1, 1) + timedelta(days=n) for n in range(10)]
LAST = DAYS[-1]  # the 7-day window ending on it starts on 2024-01-03


def models_on(index: int) -> list[dict[str, Any]]:
    """Ten daily states of four models with known counters (index 0 = 2024-01-01)."""

    def model(n: int, model_id: str, created: str, all_time: int, downloads: int) -> dict[str, Any]:
        return {
            "_id": f"{n:024x}",
            "id": model_id,
            "author": model_id.split("/")[0],
            "downloads": downloads,
            "downloadsAllTime": all_time,
            "createdAt": created,
            "tags": [],
            "private": False,
        }

    models = [
        # First year ends 2024-01-06: 3 of its 7 window days count in the cohort.
        model(1, "Qwen/old", "2023-01-06T12:00:00.000Z", 1000 + 10 * index, 300),
        model(2, "meta-llama/young", "2023-12-01T00:00:00.000Z", 500 + 20 * index, 600),
        # The Hub recomputed this counter down on the last day: a negative difference.
        model(
            3,
            "randomuser/shrinking",
            "2023-05-01T00:00:00.000Z",
            300 + 5 * index if index < 9 else 280,
            150,
        ),
    ]
    if index >= 5:  # created 2024-01-06, absent from the window's start snapshot
        models.append(
            model(4, "hobbyist/new", "2024-01-06T08:00:00.000Z", 50 * (index - 4), 50 * (index - 4))
        )
    return models


# Hand-computed over [2024-01-03, 2024-01-10): Qwen/old 1090 - 1020 = 70 (cohort: 70 * 3/7 = 30),
# meta-llama/young 680 - 540 = 140, randomuser 280 - 310 < 0 -> 0, hobbyist/new 250 - 0 = 250.
WINDOW_7D = {"CN": 70, "US": 140, "INTL": 250, "UNKNOWN": 0}
WINDOW_7D_FIRST_YEAR = {"CN": 30, "US": 140, "INTL": 250, "UNKNOWN": 0}


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_ten_daily_snapshots_give_hand_computed_windows(env, monkeypatch):
    from flows.daily import daily

    for index, day in enumerate(DAYS[:-1]):
        with FakeHub(models_on(index)) as hub:
            monkeypatch.setenv("HF_ENDPOINT", hub.url)
            extract_snapshot(day, Settings(), allow_backdated=True)
    with FakeHub(models_on(9)) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        outcome = daily(run_date=LAST, backdate=True)
    engine = create_engine(f"sqlite:///{env / 'warehouse.db'}")

    def shares(definition: str, cohort: str) -> dict[str, int]:
        frame = published_shares(engine, LAST, "uploader", definition, cohort)
        return dict(frame.select("country", "downloads").rows())

    assert shares("window_7d", "all") == WINDOW_7D
    assert shares("window_7d", "first_year") == WINDOW_7D_FIRST_YEAR
    assert shares("downloads_30d", "all") == {"CN": 300, "US": 600, "UNKNOWN": 150, "INTL": 250}
    with pytest.raises(Exception, match="window_30d/all .*needs the raw snapshot 30 days"):
        published_shares(engine, LAST, "uploader", "window_30d", "all")
    assert list_runs(engine, LAST)["status"].to_list() == ["published"]
    report = json.loads(_report(engine, outcome))
    assert report["windows"]["window_7d"] == {
        "start": "2024-01-03",
        "negative_differences": 1,
        "negative_downloads": 30,
        "new_models": 1,
    }

    # The CLI: stored windows, and any span computed now from the raw snapshots.
    stored = invoke(
        "shares",
        "--date",
        str(LAST),
        "--window",
        "7d",
        "--cohort",
        "first_year",
        "--format",
        "json",
    )
    assert stored.returncode == 0, stored.stderr
    assert {r["country"]: r["downloads"] for r in json.loads(stored.stdout)} == (
        WINDOW_7D_FIRST_YEAR
    )
    span = invoke("shares", "--window", "2024-01-03..2024-01-10", "--format", "json")
    assert span.returncode == 0, span.stderr
    assert {r["country"]: r["downloads"] for r in json.loads(span.stdout)} == WINDOW_7D
    titled = invoke("shares", "--window", "2024-01-03..2024-01-10")
    assert "2024-01-10 computed now, uploader view" in titled.stdout
    assert "vNone" not in titled.stdout

    # A later date whose snapshot carries no createdAt, with no snapshot 7 days before it.
    later = date(2024, 1, 20)
    undated = [{k: v for k, v in m.items() if k != "createdAt"} for m in models_on(9)]
    with FakeHub(undated) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        daily(run_date=later, backdate=True)
    # Its first_year cohort cannot be computed: said so, not 0 % everywhere (data: exit 5).
    cohort = invoke("shares", "--cohort", "first_year")
    assert cohort.returncode == 5, cohort.stdout
    assert cohort.stderr.strip() == (
        f"error: no model of {later}'s snapshot has a createdAt (4 models): the first_year "
        "cohort (downloads_30d) needs each model's creation date; use --cohort all"
    )
    span = invoke("shares", "--window", f"{LAST}..{later}", "--cohort", "first_year")
    assert (
        span.returncode == 5 and "has a createdAt" in span.stderr and "--cohort all" in span.stderr
    )
    # The latest date has no 7-day window; the earlier one has: named, with what to pass.
    window = invoke("shares", "--window", "7d")
    assert window.returncode == 6
    assert f"no published shares for {later} (the latest published date) under window_7d/all" in (
        window.stderr
    )
    assert window.stderr.strip().endswith(
        f"published window_7d/all dates: {LAST}: pass --date {LAST}"
    )
    assert invoke("shares", "--window", "7d", "--date", str(LAST)).returncode == 0


def _report(engine: Any, outcome: dict[str, Any]) -> str:
    from sqlalchemy import text

    with engine.connect() as connection:
        return str(
            connection.execute(
                text("SELECT report FROM etl_run WHERE run_id = :r"), {"r": outcome["run_id"]}
            ).scalar_one()
        )


def test_concentration_measures():
    orgs = pl.DataFrame(
        {
            "definition": ["downloads_30d"] * 3,
            "cohort": ["all"] * 3,
            "attribution": ["uploader"] * 3,
            "org": ["a", "b", "c"],
            "bucket": ["US"] * 3,
            "downloads": [10, 30, 60],
            "share": [0.1, 0.3, 0.6],
        }
    )
    row = concentration(orgs).row(0, named=True)
    assert row["orgs"] == 3
    assert row["hhi"] == pytest.approx(100 + 900 + 3600)
    # Gini: sum((2i - n - 1) x_i) / (n sum x) over ascending x = (-20 + 0 + 120) / 300.
    assert row["gini"] == pytest.approx(1 / 3)
    assert row["top10_share"] == pytest.approx(1.0)
