"""The one Hub client against real local servers: the same-origin rule (the token and the crawl
stay on HF_ENDPOINT) and the JSON GET that the next endpoints use."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from hubshare.errors import ExtractError, TransientExtractError
from hubshare.fakehub import FakeHub, Fault
from hubshare.hub import HubClient
from hubshare.settings import Settings
from tasks.extract import crawl_pages
from tests.test_cli import invoke

DAY = date(2024, 1, 15)
TOKEN = "hf_TESTtokenNEVERforeign0123456789"  # noqa: S105 - a fake token to hunt for
PAGE = orjson.dumps([{"_id": "65a1", "id": "org/model", "downloads": 3}])

#: (status, headers, body) a test server answers to a request's path (with its query).
Answer = Callable[[str], tuple[int, list[tuple[str, str]], bytes]]


class RecordingServer:
    """An HTTP server on 127.0.0.1 that records every request's path and headers."""

    def __init__(self, answer: Answer) -> None:
        self.received: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                server.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                status, headers, body = answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[RecordingServer]:
        thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        try:
            yield self
        finally:
            self._http.shutdown()
            self._http.server_close()
            thread.join(timeout=5)


def page_linking_to(target: str) -> Answer:
    """A Hub whose first page links its next page to `target`."""

    def answer(path: str) -> tuple[int, list[tuple[str, str]], bytes]:
        return 200, [("Link", f'<{target}/api/models?cursor=x>; rel="next"')], PAGE

    return answer


def redirecting_to(target: str) -> Answer:
    """A Hub that redirects every request to `target`, same path."""

    def answer(path: str) -> tuple[int, list[tuple[str, str]], bytes]:
        return 302, [("Location", f"{target}{path}")], b"{}"

    return answer


def foreign_answer(path: str) -> tuple[int, list[tuple[str, str]], bytes]:
    return 200, [], b"[]"


def hub_settings(endpoint: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HUBSHARE_DATA_DIR", str(data_dir))
    return Settings()


@pytest.mark.parametrize("hub_answer", [page_linking_to, redirecting_to])
def test_the_crawl_never_leaves_hf_endpoints_origin(env, monkeypatch, hub_answer):
    """A next page or a redirect on another port of the same host is another origin: the crawl
    stops with an ExtractError (exit 4) naming it, and that server receives nothing (so never
    the token); the page that named it is not stored."""
    with RecordingServer(foreign_answer).running() as foreign:
        with RecordingServer(hub_answer(foreign.url)).running() as hub:
            settings = hub_settings(hub.url, env, monkeypatch)
            with pytest.raises(ExtractError) as caught:
                crawl_pages(DAY, settings)
        assert foreign.received == []
    assert not isinstance(caught.value, TransientExtractError)
    assert foreign.url.removeprefix("http://") in str(caught.value)
    assert "another origin" in str(caught.value)
    assert TOKEN not in str(caught.value)
    [(_, headers)] = hub.received  # HF_ENDPOINT itself got the token, once
    assert headers["authorization"] == f"Bearer {TOKEN}"
    pages = env / "raw" / DAY.isoformat() / "pages"
    assert list(pages.glob("page-*")) == []


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_a_foreign_next_page_exits_4_naming_its_host(env, monkeypatch):
    with RecordingServer(foreign_answer).running() as foreign:
        with RecordingServer(page_linking_to(foreign.url)).running() as hub:
            monkeypatch.setenv("HF_ENDPOINT", hub.url)
            monkeypatch.setenv("HF_TOKEN", TOKEN)
            result = invoke("run", "--date", str(DAY), "--backdate")
        assert foreign.received == []
    assert result.returncode == 4, result.stderr
    assert foreign.url.removeprefix("http://") in result.stderr
    assert TOKEN not in result.stdout + result.stderr


def test_a_redirect_on_hf_endpoint_is_followed_with_the_token(env, hand_models, monkeypatch):
    with FakeHub(hand_models, token=TOKEN) as fake:
        settings = hub_settings(fake.url, env, monkeypatch)
        old_id = str(hand_models[0]["id"])

        def rename(models: list[dict[str, Any]]) -> None:
            models[0]["id"] = f"{old_id}-renamed"

        fake.mutate(rename)
        with HubClient(settings) as hub:
            reply = hub.get_json(f"/api/models/{old_id}")
        assert [r.status for r in fake.requests] == [307, 200]
        assert all(r.had_auth for r in fake.requests)
    assert reply.status == 200 and reply.attempts == 2
    assert reply.body["id"] == f"{old_id}-renamed"


def test_the_json_get_answers_404_as_a_value(env, hand_models, monkeypatch):
    with (
        FakeHub(hand_models) as fake,
        HubClient(hub_settings(fake.url, env, monkeypatch)) as hub,
    ):
        missing = hub.get_json("/api/models/nobody/nothing")
        found = hub.get_json(f"/api/models/{hand_models[0]['id']}")
    assert (missing.status, missing.found, missing.body) == (404, False, None)
    assert found.found and found.body["_id"] == hand_models[0]["_id"]


def test_the_json_get_waits_out_a_rate_limit(env, hand_models, monkeypatch):
    """429 with `RateLimit: r=0;t=0` and no Retry-After: huggingface_hub waits the reset (plus
    one second) and asks again."""
    with FakeHub(hand_models, faults=[Fault(1, "429", reset=0)]) as fake:
        with HubClient(hub_settings(fake.url, env, monkeypatch)) as hub:
            reply = hub.get_json("/api/models", [("limit", 2)])
        assert [r.status for r in fake.requests] == [429, 200]
        waited = fake.requests[1].at - fake.requests[0].at
    assert reply.status == 200 and reply.attempts == 2 and len(reply.body) == 2
    assert waited >= 1.0  # the RateLimit reset, not the settings' 0.01 s backoff


def test_the_json_get_gives_up_on_a_rate_limit_that_outlasts_its_retries(
    env, hand_models, monkeypatch
):
    monkeypatch.setenv("HUBSHARE_HTTP_MAX_RETRIES", "1")
    faults = [Fault(n, "429", retry_after=0) for n in (1, 2)]
    with (
        FakeHub(hand_models, faults=faults) as fake,
        HubClient(hub_settings(fake.url, env, monkeypatch)) as hub,
        pytest.raises(TransientExtractError, match="HTTP 429 after 1 retries"),
    ):
        hub.get_json("/api/models")
