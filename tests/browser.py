"""A real headless browser for checking the HTML report as a reader sees it: Debian's `chromium`
driven by Playwright (no browser download). Absent chromium skips locally but fails in CI
(`CI` set), where `.ci/run` installs it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

WIDTH = 1000  # px: the narrowest window the report must fit without scrolling sideways


def chromium_path() -> str:
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but no chromium is installed (`apt-get install -y chromium`)")
        pytest.skip("chromium is not installed (`apt-get install -y chromium`)")
    return found


@contextmanager
def report_page(report: Path) -> Iterator[Any]:
    """`report` opened at a 1000 px wide viewport, offline: any request leaving the file fails
    the check below rather than loading."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 900})
            outside: list[str] = []
            page.on(
                "request",
                lambda request: (
                    outside.append(request.url) if not request.url.startswith("file:") else None
                ),
            )
            page.goto(report.resolve().as_uri())
            yield page
            assert outside == [], f"the report fetched {outside}"
        finally:
            browser.close()


#: Per chart: its bucket, its plot area and each line's box, in CSS pixels as rendered.
GEOMETRY_JS = """() => [...document.querySelectorAll('#charts svg')].map(svg => {
  const box = e => { const r = e.getBoundingClientRect();
                     return {left: r.left, right: r.right, top: r.top, bottom: r.bottom}; };
  return {
    bucket: svg.dataset.bucket,
    plot: box(svg.querySelector('rect.plot')),
    svg: box(svg),
    lines: [...svg.querySelectorAll('polyline.line')].map(
      l => ({view: l.dataset.view, box: box(l)})),
  };
})"""


def check_report_layout(page: Any, screenshot: Path) -> list[dict[str, Any]]:
    """The checks every report passes in the browser: each line inside its chart's plot area,
    no chart outside the viewport, no page-wide horizontal scroll at 1000 px; a full-page
    screenshot is kept at `screenshot`. Returns the charts' geometry for further checks."""
    page.screenshot(path=str(screenshot), full_page=True)
    charts: list[dict[str, Any]] = page.evaluate(GEOMETRY_JS)
    assert charts, "no chart rendered"
    slack = 1.5  # half the stroke width, and rounding
    for chart in charts:
        plot = chart["plot"]
        assert chart["lines"], f"{chart['bucket']}: no line"
        for line in chart["lines"]:
            box = line["box"]
            assert plot["left"] - slack <= box["left"] <= box["right"] <= plot["right"] + slack, (
                chart
            )
            assert plot["top"] - slack <= box["top"] <= box["bottom"] <= plot["bottom"] + slack, (
                chart
            )
        assert chart["svg"]["right"] <= WIDTH, chart
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH
    return charts
