"""Every run that starts gets its `etl_run` row, and a run that does not publish is announced
to `HUBSHARE_ALERT_WEBHOOK_URL` (a receiver on loopback)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from hubshare.errors import ExtractError, GateFailedError
from hubshare.fakehub import FakeHub
from tests.test_cli import invoke

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]
DAY = date(2024, 1, 15)


class Receiver(HTTPServer):
    received: list[dict[str, Any]]


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass


@pytest.fixture
def webhook(monkeypatch) -> Iterator[list[dict[str, Any]]]:
    server = Receiver(("127.0.0.1", 0), _Handler)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(
        "HUBSHARE_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{server.server_address[1]}/hook?k=s3cret"
    )
    yield server.received
    server.shutdown()
    server.server_close()


def ui_url() -> str:
    from prefect.settings import PREFECT_UI_URL

    return str(PREFECT_UI_URL.value())


def failure_artifact(flow_run_id: str) -> Any:
    """The markdown artifact a run that did not publish left."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )

    [found] = [a for a in asyncio.run(read()) if str(a.key).startswith("daily-failure-")]
    return found


def runs_json() -> list[dict[str, Any]]:
    result = invoke("runs", "--format", "json")
    assert result.returncode == 0, result.stderr
    runs: list[dict[str, Any]] = json.loads(result.stdout)
    return runs


def test_a_failed_run_is_recorded_and_announced(env, webhook, warehouse_url, monkeypatch):
    from flows.daily import daily

    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", warehouse_url)  # SQLite and PostgreSQL
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("HUBSHARE_EXTRACT_TASK_RETRIES", "0")
    monkeypatch.setenv("HUBSHARE_HTTP_MAX_RETRIES", "0")
    with pytest.raises(ExtractError):
        daily(run_date=DAY, backdate=True)

    [alert] = webhook
    assert alert["status"] == "failed" and alert["snapshot_date"] == str(DAY)
    assert alert["version"] == 1 and alert["run_id"] == alert["flow_run_id"]
    assert "127.0.0.1:9" in alert["reason"] and "\n" not in alert["reason"]
    # The flow run in the UI (derived from the harness's API), and what to do.
    assert alert["flow_run_url"] == f"{ui_url()}/runs/flow-run/{alert['flow_run_id']}"
    assert "HF_ENDPOINT is reachable" in alert["what_to_do"]
    failure = failure_artifact(alert["flow_run_id"])
    assert failure.key == f"daily-failure-{DAY}"
    assert f"**Reason:** {alert['reason']}" in failure.data
    assert f"**What to do:** {alert['what_to_do']}" in failure.data
    assert f"`hubshare run --date {DAY}`: the crawl resumes" in failure.data
    [run] = runs_json()
    assert (run["run_id"], run["status"], run["version"]) == (alert["run_id"], "failed", 1)
    assert run["status_reason"] == alert["reason"]
    assert run["raw_sha256"] is None and run["shares_sha256"] is None  # it never got that far
    table = invoke("runs")
    assert table.returncode == 0 and "failed" in table.stdout


def test_a_rejected_run_is_announced_once_with_its_version(env, webhook, hand_models, monkeypatch):
    from flows.daily import daily

    monkeypatch.setenv("HUBSHARE_MAX_UNKNOWN_SHARE", "0.01")  # randomuser's 160 of 3,010 fail
    with FakeHub(hand_models) as hub, pytest.raises(GateFailedError):
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        daily(run_date=DAY, backdate=True)
    [alert] = webhook
    assert (alert["status"], alert["version"]) == ("rejected", 1)
    assert "UNKNOWN share" in alert["reason"]
    assert f"`daily-quality-{DAY}` artifact" in alert["what_to_do"]
    assert "HUBSHARE_MAX_UNKNOWN_SHARE" in failure_artifact(alert["flow_run_id"]).data
    assert [(r["status"], r["version"]) for r in runs_json()] == [("rejected", 1)]


def test_no_webhook_no_alert_but_the_row_all_the_same(env, monkeypatch):
    from flows.daily import daily

    monkeypatch.delenv("HUBSHARE_ALERT_WEBHOOK_URL", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HUBSHARE_EXTRACT_TASK_RETRIES", "0")
    monkeypatch.setenv("HUBSHARE_HTTP_MAX_RETRIES", "0")
    for _ in range(2):
        with pytest.raises(ExtractError):
            daily(run_date=DAY, backdate=True)
    assert [(r["status"], r["version"]) for r in runs_json()] == [("failed", 1), ("failed", 2)]


def test_a_crashed_run_is_recorded_and_announced(env, webhook, hand_models, monkeypatch):
    """A process-level exit inside the flow (what an interrupt or a dying worker raises) ends the
    run Crashed: the on_crashed hook records and announces it."""
    from flows.daily import daily

    def exit_now(*args: Any, **kwargs: Any) -> Any:
        raise SystemExit(3)

    monkeypatch.setattr("tasks.inputs.load_mapping", exit_now)  # inside attribute-countries
    with FakeHub(hand_models) as hub, pytest.raises(SystemExit):
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        daily(run_date=DAY, backdate=True)
    [alert] = webhook
    assert (alert["status"], alert["version"]) == ("crashed", 1)
    assert "The process ended mid-run" in failure_artifact(alert["flow_run_id"]).data
    [run] = runs_json()
    assert (run["status"], run["run_id"]) == ("crashed", alert["run_id"])
    assert run["raw_sha256"] is None  # it stopped before the load
