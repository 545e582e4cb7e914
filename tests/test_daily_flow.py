"""The real daily flow (Prefect test harness, huggingface_hub client, fake Hub on loopback),
loading SQLite and PostgreSQL warehouses."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import create_engine, text

from hubshare.errors import GateFailedError
from hubshare.fakehub import FakeHub, Fault
from hubshare.read_warehouse import list_runs, published_shares
from tests.test_attribution import EXPECTED_ORIGIN, EXPECTED_UPLOADER

DAY = date(2024, 1, 15)
TOKEN = "hf_FLOWtokenMUSTnotLEAK987654321"  # noqa: S105 - a fake token to hunt for

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]


@pytest.fixture
def hub(hand_models, monkeypatch):
    with FakeHub(hand_models, token=TOKEN) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        yield fake


def run_daily(day: date = DAY) -> dict[str, Any]:
    from flows.daily import daily

    return daily(run_date=day, backdate=True)


def shares_of(url: str, attribution: str, day: date = DAY) -> dict[str, int]:
    frame = published_shares(create_engine(url), day, attribution)
    return dict(frame.select("country", "downloads").rows())


def count(url: str, sql: str) -> int:
    with create_engine(url).connect() as connection:
        return int(connection.execute(text(sql)).scalar_one())


def test_daily_publishes_exact_shares_and_reruns_as_version_two(hub, warehouse_url, monkeypatch):
    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", warehouse_url)
    first = run_daily()
    assert (first["version"], first["status"]) == (1, "published")
    assert shares_of(warehouse_url, "uploader") == EXPECTED_UPLOADER
    assert shares_of(warehouse_url, "origin") == EXPECTED_ORIGIN
    model_tables = ("model_dim", "model_origin", "model_day")
    stored = {
        table: count(warehouse_url, f"SELECT COUNT(*) FROM {table}") for table in model_tables
    }
    assert stored["model_dim"] == stored["model_day"] == 9 < stored["model_origin"]

    second = run_daily()
    assert (second["version"], second["status"]) == (2, "published")
    assert second["shares_sha256"] == first["shares_sha256"]
    runs = list_runs(create_engine(warehouse_url), DAY)
    assert runs["version"].to_list() == [1, 2]
    assert runs["published"].to_list() == [False, True]
    assert runs["run_id"].n_unique() == 2
    # Both versions keep their shares; the per-model facts are stored once: version 2's are
    # identical to version 1's, so it wrote no model rows and the published view shows them
    # under version 2.
    assert count(warehouse_url, "SELECT COUNT(DISTINCT run_id) FROM country_share") == 2
    assert {t: count(warehouse_url, f"SELECT COUNT(*) FROM {t}") for t in model_tables} == stored
    facts = count(
        warehouse_url,
        "SELECT COUNT(DISTINCT facts_sha256) FROM etl_run WHERE status = 'published'",
    )
    assert facts == 1
    assert (
        count(
            warehouse_url,
            f"SELECT COUNT(*) FROM published_model_fact WHERE run_id = '{second['run_id']}' "
            "AND version = 2",
        )
        == 9
    )


def test_a_rerun_under_a_new_mapping_replaces_the_dates_model_facts(
    hub, warehouse_url, monkeypatch, tmp_path
):
    from tests.test_backfill import new_mapping

    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", warehouse_url)
    first = run_daily()
    monkeypatch.setenv("HUBSHARE_MAPPING", str(new_mapping(tmp_path)))  # randomuser: DE
    second = run_daily()
    assert second["version"] == 2 and second["shares_sha256"] != first["shares_sha256"]
    facts = "SELECT model_id, uploader_bucket FROM published_model_fact ORDER BY model_id"
    with create_engine(warehouse_url).connect() as connection:
        published = {model: bucket for model, bucket in connection.execute(text(facts))}
        digests = connection.execute(
            text("SELECT COUNT(DISTINCT facts_sha256) FROM etl_run WHERE facts_sha256 IS NOT NULL")
        ).scalar_one()
    randomuser = {model: bucket for model, bucket in published.items() if "randomuser" in model}
    assert randomuser and set(randomuser.values()) == {"DE"}
    assert len(published) == 9 and digests == 2
    # The date keeps one set of facts; models whose content changed got new dimension rows
    # (the uploader's own, and the fine-tune whose origin is now German), the others kept theirs.
    assert count(warehouse_url, "SELECT COUNT(*) FROM model_day") == 9
    changed = count(warehouse_url, "SELECT COUNT(*) FROM model_dim") - 9
    assert len(randomuser) <= changed < 9


def test_failing_gate_publishes_nothing(hub, warehouse_url, monkeypatch):
    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", warehouse_url)
    published = run_daily()
    before = published_shares(create_engine(warehouse_url), DAY, "uploader")

    monkeypatch.setenv("HUBSHARE_MAX_UNKNOWN_SHARE", "0.01")  # UNKNOWN is 5.3 % here
    with pytest.raises(GateFailedError, match="rejected by the quality gate.*UNKNOWN"):
        run_daily()
    runs = list_runs(create_engine(warehouse_url), DAY)
    assert runs.select("version", "status", "published").rows() == [
        (1, "published", True),
        (2, "rejected", False),
    ]
    assert "UNKNOWN" in runs["status_reason"][1]
    rejected = runs["run_id"][1]
    for table in ("country_share", "org_share", "concentration"):
        assert (
            count(warehouse_url, f"SELECT COUNT(*) FROM {table} WHERE run_id = '{rejected}'") == 0
        )
    assert count(warehouse_url, "SELECT COUNT(*) FROM model_day") == 9  # the published run's
    facts = f"SELECT COUNT(*) FROM etl_run WHERE run_id = '{rejected}' AND facts_sha256 IS NULL"
    assert count(warehouse_url, facts) == 1
    assert (
        count(
            warehouse_url,
            f"SELECT COUNT(*) FROM quality_result WHERE run_id = '{rejected}' AND NOT success",
        )
        >= 1
    )
    after = published_shares(create_engine(warehouse_url), DAY, "uploader")
    assert after.equals(before)
    assert published["run_id"] == after["run_id"][0]


def test_noisy_crawl_with_token_matches_a_clean_run_and_never_writes_the_token(
    hand_models, env, monkeypatch, caplog, capfd
):
    """429 + 503 + dropped connection + a model repeated across pages + private models visible
    to the token: the same raw snapshot and shares as a clean run, and the token nowhere."""
    import logging

    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

    caplog.set_level(logging.DEBUG)
    with FakeHub(hand_models) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        monkeypatch.setenv("HUBSHARE_DATA_DIR", str(env / "clean"))
        clean = run_daily()

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HUBSHARE_DATA_DIR", str(env / "noisy"))
    faults = [
        Fault(1, "429", retry_after=0),
        Fault(3, "503"),
        Fault(4, "drop"),
        Fault(5, "repeat_previous"),
    ]
    with FakeHub(hand_models, token=TOKEN, faults=faults) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        noisy = run_daily()
        assert all(request.had_auth for request in fake.requests)
        assert sorted(r.fault for r in fake.requests if r.fault) == [
            "429",
            "503",
            "drop",
            "repeat_previous",
        ]
    assert noisy["raw_sha256"] == clean["raw_sha256"]
    assert noisy["shares_sha256"] == clean["shares_sha256"]
    runs = list_runs(create_engine(f"sqlite:///{env / 'noisy' / 'warehouse.db'}"), DAY)
    assert runs.select("row_count").item() == 9

    leaks = [p for p in env.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert leaks == []
    assert TOKEN not in caplog.text
    captured = capfd.readouterr()
    assert TOKEN not in captured.out + captured.err
    prefect_db = Path(PREFECT_API_DATABASE_CONNECTION_URL.value().split("///")[-1])
    prefect_files = list(prefect_db.parent.glob(prefect_db.name + "*"))
    assert prefect_files, f"the harness database was not found at {prefect_db}"
    for path in prefect_files:  # Prefect's run logs and parameters live there
        assert TOKEN.encode() not in path.read_bytes()


def test_flow_run_name_and_artifacts(hub, env, monkeypatch):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    outcome = run_daily()

    async def read() -> tuple[str, list[Any]]:
        async with get_client() as client:
            runs = await client.read_flow_runs()
            run = next(r for r in runs if str(r.id) == outcome_flow_run_id())
            artifacts = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(
                        any_=["daily-shares", f"daily-shares-{DAY}", f"daily-quality-{DAY}"]
                    )
                )
            )
            return run.name, [a for a in artifacts if a.flow_run_id == run.id]

    def outcome_flow_run_id() -> str:
        runs = list_runs(create_engine(f"sqlite:///{env / 'warehouse.db'}"), DAY)
        return str(runs.filter(pl.col("run_id") == outcome["run_id"])["flow_run_id"][0])

    name, artifacts = asyncio.run(read())
    assert name == f"daily-{DAY}"
    by_key = {artifact.key: artifact for artifact in artifacts}
    assert set(by_key) == {"daily-shares", f"daily-shares-{DAY}", f"daily-quality-{DAY}"}
    assert by_key["daily-shares"].data == by_key[f"daily-shares-{DAY}"].data
    # No contested rows in the hand mapping: the range only adds the UNKNOWN downloads (5.32 %).
    assert "| CN | 49.83% (49.83%–55.15%) | 69.90% (69.90%–69.90%) |" in by_key["daily-shares"].data
    assert by_key[f"daily-quality-{DAY}"].type == "table"


def test_a_rejected_run_keeps_latest_artifacts_and_lists_failed_checks_first(hub, env, monkeypatch):
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactCollectionFilter,
        ArtifactCollectionFilterKey,
    )

    run_daily()  # published: the latest artifacts show it

    async def latest(key: str) -> Any:
        async with get_client() as client:
            found = await client.read_latest_artifacts(
                artifact_filter=ArtifactCollectionFilter(
                    key=ArtifactCollectionFilterKey(any_=[key])
                )
            )
            return found[0]

    published = asyncio.run(latest("daily-shares"))
    monkeypatch.setenv("HUBSHARE_MAX_UNKNOWN_SHARE", "0.01")
    with pytest.raises(GateFailedError):
        run_daily()
    assert asyncio.run(latest("daily-shares")).latest_id == published.latest_id  # not rejected
    rejected = asyncio.run(latest(f"daily-shares-{DAY}"))
    assert "v2, REJECTED by the quality gate" in rejected.data
    data = asyncio.run(latest(f"daily-quality-{DAY}")).data
    quality = json.loads(data) if isinstance(data, str) else data
    assert [row["success"] for row in quality[:2]] == ["false", "true"]  # the failure on top
    assert quality[0]["observed"].startswith("UNKNOWN share 0.0531")
