"""A visible crawl: a progress artifact updated as pages arrive, page and 429-wait logs in the
run's logs (the Prefect UI), a terminal progress bar for CLI runs, and a dead Hub that fails
the run without a crawl-level retry."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from datetime import date
from typing import Any

import pytest
from rich.console import Console

from hubshare.errors import ExtractError
from hubshare.fakehub import FakeHub, Fault
from hubshare.progress import CRAWL_LOGGER, crawl_progress
from hubshare.settings import Settings

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]
DAY = date(2024, 1, 15)


async def _run_details(flow_run_id: Any) -> tuple[list[str], list[Any], list[Any]]:
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    async with get_client() as client:
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        tasks = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return [entry.message for entry in logs], artifacts, tasks


def test_pages_show_in_the_run_logs_and_a_progress_artifact(env, hand_models, monkeypatch):
    from flows.daily import daily

    # The first listing request is rate-limited: huggingface_hub's wait must reach the run logs.
    with FakeHub(hand_models, faults=[Fault(1, "429", retry_after=0)]) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        outcome = daily(run_date=DAY, backdate=True)
    # Logs reach the API in batches: give the last batch a few seconds.
    for _ in range(20):
        messages, artifacts, _ = asyncio.run(_run_details(outcome["run_id"]))
        pages = [m for m in messages if m.startswith("Page ") and " stored: " in m]
        if len(pages) >= 3 and any("Rate limited" in m for m in messages):
            break
        time.sleep(0.5)
    assert len(pages) == 3  # the 9 public models, 3 per page
    assert pages[-1].endswith("- last page")
    assert any("Rate limited" in m for m in messages), messages
    [crawl] = [a for a in artifacts if a.key == f"crawl-{DAY}"]
    assert crawl.type == "progress" and float(crawl.data) == 100.0
    assert crawl.description == "3 pages, 9 models this attempt, 1 retries (done)"


def test_a_dead_hub_fails_the_run_without_a_crawl_retry(env, monkeypatch):
    from flows.daily import daily

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("HUBSHARE_EXTRACT_TASK_RETRIES", raising=False)  # the default: 2
    monkeypatch.setenv("HUBSHARE_HTTP_MAX_RETRIES", "1")
    assert Settings().extract_task_retries == 2
    with pytest.raises(ExtractError, match="is HF_ENDPOINT reachable"):
        daily(run_date=DAY, backdate=True)
    from tests.test_alerts import runs_json

    [run] = runs_json()
    _, _, tasks = asyncio.run(_run_details(run["flow_run_id"]))
    [extract] = [t for t in tasks if t.name.startswith("extract-snapshot")]
    assert extract.run_count == 1  # no page ever arrived: no crawl-level retry


def test_the_default_backoff_gives_up_within_a_minute():
    settings = Settings()
    waits = [
        min(settings.http_base_wait * 2**attempt, settings.http_max_wait)
        for attempt in range(settings.http_max_retries)
    ]
    # Refused connections fail at once; the waits between the attempts are what a dead Hub costs.
    assert sum(waits) <= 60, waits


def test_the_terminal_bar_follows_the_pages():
    output = io.StringIO()
    console = Console(file=output, force_terminal=True, width=100)
    logger = logging.getLogger(CRAWL_LOGGER)
    with crawl_progress(console) as bar:
        assert bar is not None
        for page, models, done in ((1, 3, False), (2, 3, False), (3, 1, True)):
            logger.info(
                "Page %d: %d models",
                page,
                models,
                extra={"crawl_page": page, "crawl_models": models, "crawl_done": done},
            )
        description = bar.progress.tasks[0].description
    assert description == "crawling the Hub: page 3, 7 models (done)"
    assert "crawling the Hub" in output.getvalue()
    assert bar.progress.tasks[0].completed == 3
    assert not [h for h in logger.handlers if h is bar]  # removed afterwards
    with crawl_progress(Console(file=io.StringIO(), force_terminal=False)) as none:
        assert none is None  # not a terminal: no bar, the page log lines instead
