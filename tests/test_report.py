"""`hubshare report`: one self-contained HTML file with the shares over time in both views and
their ranges, the latest table, coverage and provenance; and the daily run refreshes it."""

from __future__ import annotations

import json
from datetime import date, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from hubshare.fakehub import FakeHub
from tests.browser import check_report_layout, report_page
from tests.test_backfill import models_on
from tests.test_cli import invoke

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]
DATES = [date(2024, 1, 1) + timedelta(weeks=n) for n in range(3)]


class Parsed(HTMLParser):
    """What a browser would load and show: tags with their attributes, table cells by table."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self._table = dict(attrs).get("id") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(path: Path) -> Parsed:
    parsed = Parsed()
    parsed.feed(path.read_text(encoding="utf-8"))
    return parsed


@pytest.fixture
def three_published_dates(env, monkeypatch):
    from flows.daily import daily

    for week, day in enumerate(DATES):
        with FakeHub(models_on(week)) as hub:
            monkeypatch.setenv("HF_ENDPOINT", hub.url)
            daily(run_date=day, backdate=True)
    return env


def test_the_report_is_one_offline_file_with_every_section(three_published_dates, tmp_path):
    out = tmp_path / "report.html"
    result = invoke("report", "--out", str(out))
    assert result.returncode == 0, result.stderr
    parsed = parse(out)
    # Self-contained: nothing to fetch (no script, stylesheet, image or frame from anywhere).
    loads = [
        (tag, attrs)
        for tag, attrs in parsed.tags
        if tag in ("script", "link", "img", "iframe", "object") or "src" in attrs
    ]
    assert loads == []
    # One chart per bucket, each with both views: a line and a band per view.
    charts = [a["data-bucket"] for tag, a in parsed.tags if tag == "svg" and "data-bucket" in a]
    assert charts[:2] == ["CN", "US"] and "UNKNOWN" not in charts
    lines = [(a["data-bucket"], a["data-view"]) for tag, a in parsed.tags if tag == "polyline"]
    assert ("CN", "uploader") in lines and ("CN", "origin") in lines and ("US", "origin") in lines
    assert {bucket for bucket, _ in lines} == set(charts)
    bands = [(a["data-bucket"], a["data-view"]) for tag, a in parsed.tags if tag == "polygon"]
    assert sorted(bands) == sorted(lines)
    # The latest table: the uploader view of the hand fixture (CN 1,500 of 3,010 in every week).
    latest = {row[0]: row for row in parsed.tables["latest"] if row}
    assert latest["CN"][1:3] == ["49.83%", "49.8%–55.1%"]
    assert latest["CN"][3].endswith("%") and latest["CN"][4] == "69.9%–69.9%"  # origin view
    # Coverage and provenance: one row per published run, oldest first.
    text = " ".join(parsed.text)
    assert f"On {DATES[-1]}, the mapping classifies 94.68% of downloads" in " ".join(text.split())
    runs = [row for row in parsed.tables["runs"] if row]
    assert [row[0] for row in runs] == [str(d) for d in DATES]
    assert all(len(row[2]) == 12 for row in runs)
    assert runs[-1][4] == "9,030"  # downloads with thousands separators
    # As a reader sees it: every line inside its chart, nothing wider than a 1000 px window.
    with report_page(out) as page:
        check_report_layout(page, tmp_path / "report-1000px.png")

    only_last = tmp_path / "last.html"
    assert invoke("report", "--out", str(only_last), "--from", str(DATES[-1])).returncode == 0
    assert [row[0] for row in parse(only_last).tables["runs"] if row] == [str(DATES[-1])]
    empty = invoke(
        "report", "--out", str(tmp_path / "none.html"), "--from", "2016-01-01", "--to", "2016-01-02"
    )
    assert empty.returncode == 6 and "nothing to report" in empty.stderr


def test_the_daily_run_refreshes_the_report(three_published_dates):
    report = three_published_dates / "reports" / "hubshare-report.html"
    runs: list[Any] = [row for row in parse(report).tables["runs"] if row]
    assert [row[0] for row in runs] == [str(d) for d in DATES]


def test_the_daily_run_publishes_the_report_to_prefect(three_published_dates):
    """The Prefect UI shows the report's headline table and chart data, not a worker's path."""
    import asyncio

    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    day = DATES[-1]

    async def read() -> dict[str | None, Any]:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(
                        any_=[f"daily-report-{day}", f"daily-report-series-{day}"]
                    )
                ),
                sort=ArtifactSort.CREATED_DESC,
            )
        # The Prefect server is the session's: other tests' runs of this date keep artifacts
        # under the same keys, so the newest of each key is this fixture's last run's.
        return {artifact.key: artifact for artifact in reversed(found)}

    by_key = asyncio.run(read())
    headline = by_key[f"daily-report-{day}"]
    assert headline.type == "markdown"
    assert f"| since {DATES[0]} |" in headline.data
    # The hand fixture's week 3: CN's origin share moved a little, its uploader share not at all.
    assert "| CN | 49.83% (49.8%–55.1%) | +0.00 pp | 69.88% (69.9%–69.9%) | -0.02 pp |" in (
        headline.data
    )
    assert str(three_published_dates) not in headline.data  # the data dir's key, not a path
    series = by_key[f"daily-report-series-{day}"]
    assert series.type == "table"
    rows = json.loads(series.data) if isinstance(series.data, str) else series.data
    cn = [r for r in rows if r["country"] == "CN" and r["view"] == "uploader"]
    assert [r["date"] for r in cn] == [str(d) for d in DATES]
    assert cn[-1]["share (%)"] == pytest.approx(49.834, abs=1e-3)
