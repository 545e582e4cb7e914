"""Long work shows itself: a backfill prints its flow run's URL and a line per date as it ends,
and leaves progress and summary artifacts; the Hub's backoff waits are printed as they happen;
`hubshare runs` shows UTC times, durations and one-line reasons (real flows under the Prefect
harness, the real `hubshare` command, the fake Hub on loopback)."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import date, timedelta
from typing import Any

import pytest

from hubshare.fakehub import FakeHub, Fault
from tests.conftest import HAND_MAPPING, run_hubshare
from tests.test_backfill import models_on, new_mapping

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]
DATES = [date(2024, 3, 1) + timedelta(days=n) for n in range(3)]
UI = "http://prefect-ui.example.test"


def artifacts(flow_run_id: str) -> list[Any]:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )

    return asyncio.run(read())


def log_messages(flow_run_id: str) -> list[str]:
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    async def read() -> list[str]:
        async with get_client() as client:
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            )
            return [log.message for log in logs]

    return asyncio.run(read())


def test_a_backfill_shows_its_url_each_date_and_a_summary(env, tmp_path, monkeypatch):
    from flows.daily import daily

    # Two dates published with the old mapping, the third already with the new one.
    for n, day in enumerate(DATES):
        if n == 2:
            monkeypatch.setenv("HUBSHARE_MAPPING", str(new_mapping(tmp_path)))
        with FakeHub(models_on(n)) as hub:
            monkeypatch.setenv("HF_ENDPOINT", hub.url)
            daily(run_date=day, backdate=True)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a backfill never crawls

    end = DATES[-1] + timedelta(days=1)  # no raw snapshot
    result = run_hubshare(
        "backfill", "--start", str(DATES[0]), "--end", str(end), "--mapping-only",
        env={"PREFECT_UI_URL": UI},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    [url_line] = [line for line in lines if line.startswith("Backfill flow run: ")]
    match = re.fullmatch(
        rf"Backfill flow run: {re.escape(UI)}/runs/flow-run/([0-9a-f-]{{36}})", url_line
    )
    assert match, url_line
    flow_run_id = match.group(1)
    # A line per date, each before the closing count.
    dated = [line for line in lines if re.match(r"\d{4}-\d\d-\d\d: ", line)]
    assert (
        sorted(dated)
        == sorted(
            [
                f"{DATES[2]}: skipped already done with the same inputs",
                *(
                    line
                    for line in dated
                    if re.fullmatch(
                        rf"({DATES[0]}|{DATES[1]}): published v2 \(run [0-9a-f-]{{36}}\)", line
                    )
                ),
            ]
        )
        and len(dated) == 3
    )
    assert lines.index(dated[-1]) < next(i for i, line in enumerate(lines) if "re-run" in line)

    found = {artifact.type: artifact for artifact in artifacts(flow_run_id)}
    assert found["progress"].data == 100.0
    summary = found["table"]
    assert summary.key == "backfill-summary"
    assert summary.description.startswith(
        f"Backfill {DATES[0]}..{end}: 2 published / 0 failed / 1 skipped, 1 without a raw snapshot"
    )
    rows = json.loads(summary.data) if isinstance(summary.data, str) else summary.data
    assert [(row["date"], row["outcome"], row["version"]) for row in rows] == [
        (str(DATES[0]), "published", "2"),
        (str(DATES[1]), "published", "2"),
        (str(DATES[2]), "skipped", ""),
        (str(end), "missing", ""),
    ]
    assert all(len(row["run_id"]) == 36 for row in rows[:2])
    assert rows[3]["reason"] == "no raw snapshot"
    messages = log_messages(flow_run_id)
    assert f"Backfill {DATES[0]}..{end}: 2 published / 0 failed / 1 skipped" in messages

    # A date the gate rejects: its line says failed and why; the summary counts it.
    failed = run_hubshare(
        "backfill", "--start", str(DATES[0]), "--end", str(DATES[0]), "--force",
        env={
            "PREFECT_UI_URL": UI,
            "HUBSHARE_MAX_UNKNOWN_SHARE": "0.01",
            "HUBSHARE_MAPPING": str(HAND_MAPPING),  # randomuser UNKNOWN again
        },
    )  # fmt: skip
    assert failed.returncode == 1, failed.stderr
    [line] = [line for line in failed.stderr.splitlines() if line.startswith(f"{DATES[0]}: ")]
    assert line.startswith(f"{DATES[0]}: failed {DATES[0]} run ") and "UNKNOWN share" in line
    again = failed.stderr.split("Backfill flow run: ")[1].split("/runs/flow-run/")[1].split()[0]
    [table] = [a for a in artifacts(again) if a.type == "table"]
    assert "0 published / 1 failed / 0 skipped" in table.description


def test_without_a_ui_url_no_url_line(env, monkeypatch):
    """The temporary server of a command without PREFECT_API_URL has no UI, and ends with the
    command: no URL is printed for it."""
    with FakeHub(models_on(0)) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert run_hubshare("run", "--date", str(DATES[0]), "--backdate").returncode == 0
    result = run_hubshare(
        "backfill", "--start", str(DATES[0]), "--end", str(DATES[0]), "--force",
        env={"PREFECT_API_URL": ""},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Backfill flow run:" not in result.stderr
    assert re.search(rf"^{DATES[0]}: published v2 \(run ", result.stderr, re.MULTILINE)


def test_the_hubs_backoff_waits_are_printed_as_they_happen(env, hand_models, monkeypatch):
    monkeypatch.setenv("HUBSHARE_HTTP_MAX_RETRIES", "2")
    faults = [Fault(1, "503"), Fault(2, "429", retry_after=0)]
    with FakeHub(hand_models, faults=faults) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        result = run_hubshare("run", "--date", str(DATES[0]), "--backdate")
    assert result.returncode == 0, result.stderr
    waits = [line for line in result.stderr.splitlines() if line.startswith("Hub: ")]
    assert waits == [
        "Hub: HTTP 503; waiting 0.01 s before retry 1/2",
        "Hub: HTTP 429; waiting 1 s before retry 2/2",  # Retry-After 0, + 1 s
    ]


def test_an_unreachable_hub_is_not_silent(env, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://user:pw@127.0.0.1:9")
    monkeypatch.setenv("HUBSHARE_EXTRACT_TASK_RETRIES", "0")
    monkeypatch.setenv("HUBSHARE_HTTP_MAX_RETRIES", "2")
    result = run_hubshare("run", "--date", str(DATES[0]), "--backdate")
    assert result.returncode == 4, result.stderr
    waits = [line for line in result.stderr.splitlines() if line.startswith("Hub: ")]
    assert len(waits) == 2 and all("refused" in line.lower() for line in waits), waits
    assert waits[1].endswith("waiting 0.02 s before retry 2/2")
    assert "user:pw" not in result.stderr

    # `hubshare runs`: when it started (UTC, marked), how long it took, the reason in one line.
    table = run_hubshare("runs")
    assert table.returncode == 0, table.stderr
    [row] = [line for line in table.stdout.splitlines() if str(DATES[0]) in line]
    assert re.search(r"│ \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ │ \d+\.\d s +│", row), row
    assert "failed" in row and row.rstrip(" │").endswith("…")
    [full] = json.loads(run_hubshare("runs", "--format", "json").stdout)
    assert len(full["status_reason"]) > 80 and full["status_reason"][:60] in row
    assert full["started_at"].endswith("+00:00") and full["finished_at"].endswith("+00:00")
