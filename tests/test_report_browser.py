"""The HTML report in a real headless browser (Debian's chromium through Playwright): what moves
is visible. Each bucket gets its own chart at its own scale, so a small bucket's rise is not
flattened under a large one; ticks are round; dates label the x axis; points tell their value on
hover; a 1000 px window never scrolls sideways. The screenshot is kept in the test's tmp_path."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from tasks.report import (
    RUN_COLUMNS,
    CountryMove,
    ReportData,
    nice_ticks,
    percent_labels,
    render_report,
    report_headline_markdown,
    report_series_rows,
)
from tests.browser import check_report_layout, report_page

DATES = [date(2024, 9, 20) + timedelta(days=9 * n) for n in range(8)]
#: Uploader-view shares on the first and last date (the origin view a little apart), like the
#: bundled sample: US dominates, CN rises from 3.5 % to 5.7 %.
MOVES_FROM_TO = {
    "US": (0.655, 0.62),
    "INTL": (0.128, 0.127),
    "CN": (0.035, 0.057),
    "FR": (0.043, 0.043),
    "DE": (0.037, 0.036),
    "GB": (0.019, 0.019),
    "UNKNOWN": (0.025, 0.025),
}
TOTAL = 1_234_567_890


def moving_shares(dates: list[date] = DATES) -> pl.DataFrame:
    rows = []
    for n, day in enumerate(dates):
        for country, (first, last) in MOVES_FROM_TO.items():
            for view, offset in (("uploader", 0.0), ("origin", 0.002)):
                share = first + (last - first) * n / max(len(dates) - 1, 1) + offset
                wide = 0.0 if country == "UNKNOWN" else 0.03 if country != "US" else 0.16
                rows.append(
                    (day, view, country, round(share * TOTAL), share, share - 0.001, share + wide)
                )
    return pl.DataFrame(
        rows,
        schema=["snapshot_date", "attribution", "country", "downloads", "share", "low", "high"],
        orient="row",
    )


def published_runs(dates: list[date] = DATES) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "snapshot_date": day,
                "version": 1,
                "run_id": f"{n:08d}-0f3a-4c1e-9b7d-a8e2f1c4d5b6",
                "row_count": 1_987_654,
                "total_downloads": TOTAL,
                "raw_sha256": "ab" * 32,
                "mapping_sha256": "cd" * 32,
                "shares_sha256": "ef" * 32,
                "code_version": "0.1.0+g9a490c0-dirty-with-a-long-local-version-label",
                "finished_at": datetime(2024, 9, 21, tzinfo=UTC),
            }
            for n, day in enumerate(dates)
        ]
    ).select(RUN_COLUMNS)


@pytest.fixture
def report(tmp_path: Path) -> Path:
    moves = (CountryMove(DATES[4], "acme-labs", "FR", "CN"),)
    html = render_report(ReportData(moving_shares(), published_runs(), moves))
    out = tmp_path / "report.html"
    out.write_text(html, encoding="utf-8")
    return out


def is_round(step: float) -> bool:
    """1, 2, 2.5 or 5 times a power of ten."""
    mantissa = f"{step:.6e}".split("e")[0].rstrip("0").rstrip(".")
    return mantissa in ("1", "2", "2.5", "5")


def test_every_bucket_moves_visibly_in_its_own_chart(report, tmp_path):
    screenshot = tmp_path / "report-1000px.png"
    with report_page(report) as page:
        charts = check_report_layout(page, screenshot)
        by_bucket = {chart["bucket"]: chart for chart in charts}
        assert list(by_bucket) == ["US", "INTL", "CN", "FR", "DE", "GB"]  # UNKNOWN not charted
        # CN's rise from 3.5 % to 5.7 % spans a good part of its chart's height (a shared axis
        # with US at 65 % gave it 3 %).
        cn = by_bucket["CN"]
        height = cn["plot"]["bottom"] - cn["plot"]["top"]
        rise = next(line["box"] for line in cn["lines"] if line["view"] == "uploader")
        assert (rise["bottom"] - rise["top"]) / height > 0.2
        # Both views in every chart, told apart by colour (and dash) with a legend.
        assert all({line["view"] for line in c["lines"]} == {"uploader", "origin"} for c in charts)
        strokes = page.eval_on_selector_all(
            "#charts polyline.line", "ls => [...new Set(ls.map(l => l.getAttribute('stroke')))]"
        )
        assert len(strokes) == 2
        assert "Uploader view" in page.inner_text("#legend")
        assert "Origin view" in page.inner_text("#legend")
        # Round ticks on the share axis; several dates along the x axis.
        for svg in page.query_selector_all("#charts svg"):
            ticks = [
                float(t.rstrip("%")) / 100
                for t in svg.eval_on_selector_all(
                    "text.axis:not(.date)", "ts => ts.map(t => t.textContent)"
                )
            ]
            steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:], strict=False)}
            assert len(ticks) >= 3 and len(steps) == 1 and is_round(steps.pop()), ticks
            dates = svg.eval_on_selector_all("text.date", "ts => ts.map(t => t.textContent)")
            assert len(dates) >= 3 and dates[0] == str(DATES[0]) and dates[-1] == str(DATES[-1])
        # A point tells its value on hover (an SVG <title>, the browser's tooltip).
        titles = page.eval_on_selector_all(
            "svg[data-bucket=CN] circle title", "ts => ts.map(t => t.textContent)"
        )
        assert (
            f"CN, uploader view, {DATES[-1]}: 5.70% (range 5.60%–8.70%), " in titles[len(DATES) - 1]
        )
        # The date acme-labs moved from FR to CN is marked, and named in the charts it touches.
        marks = page.eval_on_selector_all(
            "svg[data-bucket=CN] .mapping-change", "ms => ms.map(m => m.textContent)"
        )
        assert marks == [f"{DATES[4]}: acme-labs FR → CNacme-labs FR → CN"]
        # Counts with thousands separators; the wide provenance table scrolls in its own box.
        downloads = page.eval_on_selector_all(
            "#runs tbody tr", "rs => rs.map(r => r.cells[4].textContent)"
        )
        assert downloads == ["1,234,567,890"] * len(DATES)
        box = page.eval_on_selector("#runs", "t => t.parentElement.getBoundingClientRect().right")
        assert box <= 1000
    assert screenshot.stat().st_size > 10_000


@pytest.mark.parametrize(
    "dates",
    [[DATES[0]], [date(2025, 1, 1) + timedelta(days=n) for n in range(400)]],
    ids=["one-date", "400-dates"],
)
def test_one_date_and_a_long_history_fit_too(dates, tmp_path):
    out = tmp_path / "report.html"
    out.write_text(render_report(ReportData(moving_shares(dates), published_runs(dates))))
    with report_page(out) as page:
        charts = check_report_layout(page, tmp_path / "report.png")
        labels = page.eval_on_selector_all(
            "svg[data-bucket=CN] text.date", "ts => ts.map(t => t.textContent)"
        )
    assert len(charts) == 6
    # Every label a published date, the first and the last among them, in order.
    assert labels[0] == str(dates[0]) and labels[-1] == str(dates[-1])
    assert len(labels) == min(len(dates), 4) and labels == sorted(labels)


def test_nice_ticks_are_round_and_cover_the_values():
    assert nice_ticks(0.035, 0.087) == [0.02, 0.04, 0.06, 0.08, 0.1]
    assert nice_ticks(0.46, 0.69) == [0.4, 0.5, 0.6, 0.7]
    assert percent_labels(nice_ticks(0.0191, 0.0199)) == [
        "1.90%",
        "1.92%",
        "1.94%",
        "1.96%",
        "1.98%",
        "2.00%",
    ]
    flat = nice_ticks(0.05, 0.05)
    assert flat[0] < 0.05 < flat[-1]
    assert nice_ticks(0.0, 0.001)[0] == 0.0  # never below zero


def test_the_prefect_artifacts_carry_the_headline_and_the_series():
    data = ReportData(moving_shares(), published_runs())
    markdown = report_headline_markdown(data, "reports/hubshare-report.html")
    assert "| CN | 5.70% (5.6%–8.7%) | +2.20 pp | 5.90% (5.8%–8.9%) | +2.20 pp |" in markdown
    assert "`reports/hubshare-report.html` in the data dir" in markdown  # no worker path
    series = report_series_rows(data)
    assert len(series) == 6 * 2 * len(DATES)  # the charted buckets, both views, every date
    cn_last = next(
        r
        for r in series
        if (r["country"], r["view"], r["date"]) == ("CN", "uploader", str(DATES[-1]))
    )
    assert cn_last["share (%)"] == pytest.approx(5.7)
    assert {r["country"] for r in series} == {"US", "INTL", "CN", "FR", "DE", "GB"}
