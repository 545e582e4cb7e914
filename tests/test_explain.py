"""`hubshare explain`: a share change decomposed into parts that add up exactly, computed by hand
for a two-date scenario with new models, a growing population and a mapping change."""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal
from fractions import Fraction
from typing import Any

import orjson
import pytest
from sqlalchemy import create_engine

from hubshare.fakehub import FakeHub
from hubshare.settings import Settings
from tasks.explain import BucketChange, explain_shares, rounded_parts
from tests.test_backfill import new_mapping
from tests.test_cli import invoke

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]
D1, D2 = date(2024, 1, 1), date(2024, 1, 8)


def model(n: int, repo: str, downloads: int, tags: list[str] | None = None) -> dict[str, Any]:
    return {
        "_id": f"{n:024d}",
        "id": repo,
        "author": repo.split("/")[0],
        "downloads": downloads,
        "downloadsAllTime": downloads * 10,
        "likes": 0,
        "createdAt": "2023-06-01T00:00:00.000Z",
        "lastModified": "2023-06-01T00:00:00.000Z",
        "tags": tags or [],
        "private": False,
    }


# randomuser fine-tunes Meta's model: unmapped on D1 (its origin is Meta's, US), then mapped as
# a German company on D2 (a developer organisation: its own country in both views).
FINETUNE = ["base_model:meta-llama/B", "base_model:finetune:meta-llama/B"]
ON_D1 = [
    model(1, "Qwen/A", 600),
    model(2, "meta-llama/B", 300),
    model(3, "randomuser/C", 100, FINETUNE),
]
ON_D2 = [
    model(1, "Qwen/A", 500),
    model(2, "meta-llama/B", 300),
    model(3, "randomuser/C", 100, FINETUNE),
    model(4, "Qwen/New", 100),
    model(5, "meta-llama/New2", 200),
]
T1, T2 = 1000, 1200


def parts_of(change: BucketChange) -> dict[tuple[str, str], Fraction]:
    return {(p.kind, p.name): p.contribution for p in change.parts}


@pytest.fixture
def two_published_dates(env, tmp_path, monkeypatch, warehouse_url):
    from flows.daily import daily

    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", warehouse_url)
    with FakeHub(ON_D1) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        daily(run_date=D1, backdate=True)
    monkeypatch.setenv("HUBSHARE_MAPPING", str(new_mapping(tmp_path)))  # randomuser: DE
    with FakeHub(ON_D2) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        daily(run_date=D2, backdate=True)
    return warehouse_url


def test_parts_add_up_exactly_by_hand(two_published_dates):
    changes = explain_shares(D1, D2, Settings(), create_engine(two_published_dates))
    by = {(c.attribution, c.country): c for c in changes}

    cn = by[("uploader", "CN")]
    assert (cn.share_from, cn.share_to) == (Fraction(600, T1), Fraction(600, T2))
    assert parts_of(cn) == {
        ("new_models", "models new since the first date"): Fraction(100, T2),
        ("organisation", "Qwen"): Fraction(-100, T2),  # Qwen/A lost 100
        ("population_total", "change of the population total"): 600
        * (Fraction(1, T2) - Fraction(1, T1)),
    }
    us = by[("uploader", "US")]
    assert us.change == Fraction(500, T2) - Fraction(300, T1) == Fraction(7, 60)
    assert parts_of(us) == {
        ("new_models", "models new since the first date"): Fraction(200, T2),
        ("population_total", "change of the population total"): Fraction(-1, 20),
    }
    # The mapping change moves randomuser from UNKNOWN to DE, in both views.
    assert parts_of(by[("uploader", "DE")]) == {("mapping", "randomuser"): Fraction(100, T2)}
    # UNKNOWN organisations are stored as one row, so the UNKNOWN side names that row.
    assert parts_of(by[("uploader", "UNKNOWN")]) == {
        ("mapping", "(namespaces with no country)"): Fraction(-100, T2),
        ("population_total", "change of the population total"): Fraction(-1, 60),
    }
    # Origin view: under D1's mapping the fine-tune went to Meta; under D2's it is German.
    origin_us = by[("origin", "US")]
    assert origin_us.change == Fraction(500, T2) - Fraction(400, T1) == Fraction(1, 60)
    assert parts_of(origin_us) == {
        ("mapping", "meta-llama"): Fraction(-100, T2),
        ("new_models", "models new since the first date"): Fraction(200, T2),
        ("population_total", "change of the population total"): Fraction(-1, 15),
    }
    assert parts_of(by[("origin", "DE")]) == {("mapping", "randomuser"): Fraction(100, T2)}
    for change in changes:
        assert sum((p.contribution for p in change.parts), Fraction(0)) == change.change
        share_from, share_to, delta, rounded = rounded_parts(change)
        assert sum(rounded, Decimal(0)) == delta == share_to - share_from


def test_the_command_prints_parts_that_sum_to_the_change(two_published_dates, monkeypatch):
    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", two_published_dates)
    result = invoke("explain", "--from", str(D1), "--to", str(D2), "--format", "json")
    assert result.returncode == 0, result.stderr
    payload = orjson.loads(result.stdout)
    assert {(b["attribution"], b["country"]) for b in payload} >= {
        ("uploader", "CN"),
        ("uploader", "DE"),
        ("origin", "US"),
    }
    for bucket in payload:
        assert set(bucket) == {
            "country",
            "attribution",
            "share_from",
            "share_to",
            "change",
            "parts",
        }
        # Decimal parsing: the printed numbers add up exactly, not merely approximately.
        change = Decimal(str(bucket["change"]))
        assert change == Decimal(str(bucket["share_to"])) - Decimal(str(bucket["share_from"]))
        assert sum((Decimal(str(p["contribution"])) for p in bucket["parts"]), Decimal(0)) == change
    cn = next(b for b in payload if (b["attribution"], b["country"]) == ("uploader", "CN"))
    assert (cn["share_from"], cn["share_to"], cn["change"]) == (0.6, 0.5, -0.1)

    one = invoke(
        "explain", "--from", str(D1), "--to", str(D2), "--country", "DE",
        "--attribution", "origin", "--format", "json",
    )  # fmt: skip
    assert [(b["attribution"], b["country"]) for b in orjson.loads(one.stdout)] == [
        ("origin", "DE")
    ]
    table = invoke("explain", "--from", str(D1), "--to", str(D2), "--country", "CN")
    assert table.returncode == 0 and "Qwen" in table.stdout and "new_models" in table.stdout

    backwards = invoke("explain", "--from", str(D2), "--to", str(D1))
    assert backwards.returncode == 2  # usage
    assert backwards.stderr.strip() == f"error: --from {D2} must precede --to {D1}"
    unpublished = invoke("explain", "--from", "2023-12-25", "--to", str(D2))
    assert unpublished.returncode == 6 and "no published run for 2023-12-25" in unpublished.stderr
    bad = invoke("explain", "--from", str(D1), "--to", str(D2), "--country", "Germany")
    assert bad.returncode == 2 and "--country 'Germany'" in bad.stderr


def test_the_daily_run_explains_itself_against_the_previous_date(two_published_dates):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["daily-explain"]))
            )

    latest = max(asyncio.run(read()), key=lambda a: a.created)
    assert f"{D1} → {D2}" in latest.data
    assert "| uploader | CN | 60.00% | 50.00% | -10.00 |" in latest.data
