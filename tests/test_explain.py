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
from tasks.explain import BucketChange, Part, explain_shares, rounded_parts, summarise
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
    assert "| uploader | CN | 60.00% | 50.00% | -10.0000 |" in latest.data
    # A summary: CN's three parts, largest first (all above the 0.01 pp threshold).
    cn_row = next(line for line in latest.data.splitlines() if "| uploader | CN |" in line)
    assert cn_row.endswith(
        "| change of the population total (population_total) -10.0000; "
        "models new since the first date (new_models) +8.3333; Qwen (organisation) -8.3333 |"
    )


def bucket(*contributions: Fraction) -> BucketChange:
    """A bucket whose organisation parts are `contributions` (shares), from 10 %."""
    parts = tuple(Part("organisation", f"org{i:02d}", c) for i, c in enumerate(contributions))
    start = Fraction(1, 10)
    return BucketChange("US", "uploader", start, start + sum(contributions, Fraction(0)), parts)


def test_a_summary_keeps_the_largest_parts_and_sums_the_rest_exactly():
    # 3 parts of at least 0.01 pp (0.0001 as a share), 40 tiny ones of -0.00001 pp each.
    tiny = [Fraction(-1, 10**7)] * 40
    change = bucket(Fraction(3, 1000), Fraction(-2, 10**4), Fraction(1, 10**4), *tiny)
    summary = summarise(change)  # defaults: at most 5 parts of at least 0.01 pp
    assert [(p.kind, p.name) for p in summary.parts] == [
        ("organisation", "org00"),
        ("organisation", "org01"),
        ("organisation", "org02"),
        ("rest", "… 40 other parts"),
    ]
    assert summary.parts[-1].contribution == Fraction(-40, 10**7)
    assert sum((p.contribution for p in summary.parts), Fraction(0)) == change.change
    # Rounded as the terminal shows them (4 decimals of a point), they still add up.
    _, _, delta, shown = rounded_parts(summary, 6)
    assert sum(shown, Decimal(0)) == delta
    # At most `top` parts, even when more pass the threshold; nothing hidden: no rest line.
    assert [p.name for p in summarise(change, top=1).parts] == ["org00", "… 42 other parts"]
    assert len(summarise(change, top=100, threshold_pp=Fraction(0)).parts) == 43
    assert summarise(bucket(Fraction(1, 100)), top=1).parts == (
        Part("organisation", "org00", Fraction(1, 100)),
    )


def test_explain_leads_with_a_summary_and_all_shows_every_part(two_published_dates, monkeypatch):
    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", two_published_dates)
    span = ("--from", str(D1), "--to", str(D2))
    full = orjson.loads(invoke("explain", *span, "--format", "json").stdout)
    every_part = sum(len(b["parts"]) for b in full)
    assert every_part > len(full)  # some bucket has more than one part to summarise
    top_one = invoke("explain", *span, "--top", "1", "--threshold", "0")
    assert top_one.returncode == 0, top_one.stderr
    lines = top_one.stdout.splitlines()
    # Per view a title; per bucket a line, its one largest part, and one `rest` line when it
    # has more.
    bound = 2 + sum(1 + min(len(b["parts"]), 1) + (len(b["parts"]) > 1) for b in full)
    assert len(lines) <= bound, top_one.stdout
    assert "other part" in top_one.stdout and "Qwen" not in top_one.stdout  # CN's 3rd part
    everything = invoke("explain", *span, "--all")
    assert everything.returncode == 0, everything.stderr
    assert "Qwen" in everything.stdout and "other part" not in everything.stdout
    part_lines = [line for line in everything.stdout.splitlines() if line.startswith("    ")]
    assert len(part_lines) == every_part
    at = next(i for i, line in enumerate(lines) if line.startswith("CN "))
    assert lines[at : at + 3] == [
        "CN        60.00% →  50.00%  -10.0000 pp",
        "     -10.0000  population_total  change of the population total",
        "      +0.0000  rest              … 2 other parts",
    ]
    # A threshold above every part: each bucket shown is its change in one `rest` line, and the
    # buckets that moved less are counted, not listed.
    high = invoke("explain", *span, "--threshold", "15", "--attribution", "uploader")
    assert "other buckets moved less than 15 pp" in high.stdout
    assert "CN" not in high.stdout  # -10 pp, each part at most 10 pp
