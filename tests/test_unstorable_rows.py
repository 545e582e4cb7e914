"""A model the warehouse cannot hold never blocks a date (issue 19, break 10): it is left out of
the warehouse's facts and counted in the run's quality results and artifact, the date publishes
and reproduces. And a backfill that finds no snapshot at all says so (exit 5)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import polars as pl
import pytest
from sqlalchemy import create_engine, text

from hubshare.fakehub import FakeHub
from hubshare.fakehub_scenarios import with_unstorable_models
from hubshare.provenance import synthetic_object_id
from tests.conftest import run_hubshare

DAY = "2024-01-15"

#: The odd models of the scenario, by the column each breaks (ids as the scenario makes them).
EXCLUDED = {
    "model_dim.gated": synthetic_object_id("hobbyist/unstorable-gated-too-long"),
    "model_dim.model_id": synthetic_object_id("hobbyist/unstorable-id-over-256"),
    "model_dim.pipeline_tag": synthetic_object_id("hobbyist/unstorable-nul-in-pipeline-tag"),
}


def latest_artifact_rows(key: str) -> list[dict[str, Any]]:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactCollectionFilter,
        ArtifactCollectionFilterKey,
    )

    async def read() -> Any:
        async with get_client() as client:
            found = await client.read_latest_artifacts(
                artifact_filter=ArtifactCollectionFilter(
                    key=ArtifactCollectionFilterKey(any_=[key])
                )
            )
            return found[0].data

    data = asyncio.run(read())
    rows: list[dict[str, Any]] = json.loads(data) if isinstance(data, str) else data
    return rows


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_odd_models_are_excluded_counted_and_the_date_publishes(
    env, warehouse_url, hand_models, monkeypatch
):
    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", warehouse_url)
    with FakeHub(with_unstorable_models(hand_models)) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        result = run_hubshare("run", "--date", DAY, "--backdate")
    assert result.returncode == 0, result.stderr
    assert "error:" not in result.stderr

    engine = create_engine(warehouse_url)
    with engine.connect() as connection:
        run_id, status, failures, rows, total = connection.execute(
            text(
                "SELECT run_id, status, quality_failures, row_count, total_downloads "
                "FROM etl_run WHERE snapshot_date = :day"
            ),
            {"day": DAY},
        ).one()
        checks = connection.execute(
            text(
                "SELECT column_name, success, observed, expected FROM quality_result "
                "WHERE run_id = :run AND suite = 'warehouse' ORDER BY check_no"
            ),
            {"run": run_id},
        ).all()
        stored_oids = set(
            connection.execute(
                text(
                    "SELECT d.model_oid FROM model_day f JOIN model_dim d "
                    "ON d.model_key = f.model_key"
                )
            ).scalars()
        )
    # The 9 public hand models and the 3 odd ones are the run's population and count in its shares
    # (7 downloads each on top of the hand models' 3,010); only the 9 are stored as facts.
    assert (status, failures, rows) == ("published", 0, 12)
    assert total == 3_010 + 3 * 7
    assert len(stored_oids) == 9
    assert stored_oids.isdisjoint(EXCLUDED.values())
    # One passing check per rule that excluded a model, saying which column, rule and model.
    assert [(column, success) for column, success, _, _ in checks] == [
        ("model_dim.gated", True),
        ("model_dim.model_id", True),
        ("model_dim.pipeline_tag", True),
    ]
    gated, model_id, nul = checks
    assert gated.observed == (
        f"1 model(s) excluded from the warehouse's facts, e.g. {EXCLUDED['model_dim.gated']}: "
        "'manual-approval-by-the-authors' (30 characters)"
    )
    assert gated.expected == "at most 8 characters, else the model is excluded"
    assert model_id.observed.endswith("(309 characters)")
    assert model_id.expected == "at most 256 characters, else the model is excluded"
    assert "'text\\x00generation'" in nul.observed  # escaped: no NUL reaches the warehouse
    assert nul.expected == "no NUL character, else the model is excluded"

    artifact = latest_artifact_rows(f"daily-quality-{DAY}")
    shown = [row for row in artifact if row["suite"] == "warehouse"]
    assert [row["column"] for row in shown] == [column for column, *_ in checks]
    assert [row["observed"] for row in shown] == [check.observed for check in checks]

    reproduced = run_hubshare("reproduce", run_id)
    assert reproduced.returncode == 0, reproduced.stderr
    assert reproduced.stdout.startswith(f"reproduced: run {run_id}")


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_a_run_without_odd_models_says_none_was_excluded(env, hand_models, monkeypatch):
    with FakeHub(hand_models) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert run_hubshare("run", "--date", DAY, "--backdate").returncode == 0
    shown = [
        row for row in latest_artifact_rows(f"daily-quality-{DAY}") if row["suite"] == "warehouse"
    ]
    assert [(row["column"], row["success"], row["observed"]) for row in shown] == [
        (None, "true", "0 models excluded")
    ]


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_a_backfill_that_finds_no_snapshot_exits_5_naming_the_span(env):
    result = run_hubshare("backfill", "--start", "2024-02-01", "--end", "2024-02-03")
    assert result.returncode == 5
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(
        "error: backfill 2024-02-01..2024-02-03: none of its 3 date(s) has a raw snapshot under "
        f"{env / 'raw'}"
    )


def test_a_model_is_excluded_from_both_frames_when_either_breaks_a_rule():
    from tasks.load import storable_model_frames

    fact = pl.DataFrame(
        {
            "model_oid": ["a", "b", "c"],
            "model_id": ["o/a", "o/b", "o/c"],
            "gated": [None, "auto", "manual"],
        }
    )
    origin = pl.DataFrame(
        {
            "model_oid": ["a", "b", "b", "c"],
            "origin_org": ["o", "o", "x" * 129, "o"],
            "origin_bucket": ["US", "US", "UNKNOWN", "US"],
        }
    )
    kept_fact, kept_origin, excluded = storable_model_frames(fact, origin)
    # b's second origin row names an organisation longer than model_origin.origin_org (128):
    # the whole model goes, from both frames (its dimension digest covers its origin rows).
    assert kept_fact["model_oid"].to_list() == ["a", "c"]
    assert kept_origin["model_oid"].to_list() == ["a", "c"]
    assert excluded.drop("value").rows() == [
        ("model_origin.origin_org", "at most 128 characters", "b")
    ]
    # Nothing excluded: the very frames come back.
    same_fact, same_origin, none = storable_model_frames(kept_fact, kept_origin)
    assert same_fact is kept_fact and same_origin is kept_origin and none.is_empty()


def test_a_share_row_the_warehouse_cannot_hold_is_named():
    from hubshare.warehouse import TABLES
    from tasks.load import unstorable

    org_share = pl.DataFrame({"org": ["fine", "evil\x00org"], "bucket": ["US", "US"]})
    assert unstorable(TABLES["org_share"], org_share) == (
        "org_share.org value 'evil\\x00org' (8 characters) breaks: no NUL character"
    )
    assert unstorable(TABLES["org_share"], org_share.head(1)) is None
