"""A hostile Hub (issue 19, breaks 1-3): a next link to another host, a listing that loops and a
gzip bomb each stop the crawl with an ExtractError (exit 4, one line); the token never reaches
the other host, the pages stored stay resumable and nothing published changes."""

from __future__ import annotations

import gzip
import tracemalloc
from datetime import date, timedelta
from pathlib import Path

import pytest

from hubshare.errors import ExtractError, PageTooLargeError, TransientExtractError
from hubshare.fakehub import FakeHub, Fault, gzip_bomb
from hubshare.settings import Settings
from tasks.extract import crawl_pages
from tests.test_cli import closed_port, dump, hub, invoke, published, published_once
from tests.test_hub_client import TOKEN, RecordingServer, foreign_answer

__all__ = ["hub", "published", "published_once"]  # fixtures used here, defined in test_cli

DAY = date(2024, 1, 15)
MiB = 2**20


def stored_pages(data_dir: Path, day: date = DAY) -> list[str]:
    return sorted(p.name for p in (data_dir / "raw" / day.isoformat() / "pages").glob("page-*"))


def crawl_settings(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return Settings()


def test_a_foreign_next_link_mid_crawl_never_gets_the_token(env, hand_models, monkeypatch):
    """Page 2 links page 3 to another port: refused before any request goes there; page 1
    stays stored and a crawl against the mended Hub resumes at page 2."""
    port = closed_port()
    with RecordingServer(foreign_answer).running() as foreign:
        faults = [Fault(2, "foreign_next", target=foreign.url)]
        with FakeHub(hand_models, token=TOKEN, faults=faults, port=port) as fake:
            with pytest.raises(ExtractError) as caught:
                crawl_pages(DAY, crawl_settings(fake.url, monkeypatch))
            assert [r.had_auth for r in fake.requests] == [True, True]
        assert foreign.received == []
    assert not isinstance(caught.value, TransientExtractError)  # not retried: exit 4
    refused = f"another origin, {foreign.url} (HF_ENDPOINT is http://127.0.0.1:{port})"
    assert refused in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert stored_pages(env) == ["page-000001.json.gz"]
    with FakeHub(hand_models, token=TOKEN, port=port) as fake:
        state = crawl_pages(DAY, crawl_settings(fake.url, monkeypatch))
        first = fake.requests[0]
    assert "cursor" in dict(first.query)  # resumed at page 2, not page 1
    assert state.done and state.pages == 4  # 10 models (the token shows the private one), 3 a page


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("cyclic_next", "already requested in this crawl: the Hub's listing loops"),
        ("cursor_churn", "is identical to page 2: the Hub's listing loops"),
    ],
)
def test_a_listing_that_loops_stops_and_stays_resumable(
    env, hand_models, monkeypatch, kind, reason
):
    """Request 2 (page 2) links its next page back to itself (`cyclic_next`: the same URL; or
    `cursor_churn`: a new URL serving page 2 again). The crawl stops at the first repeat; the
    pages before the repeat stay stored, and a later crawl resumes after them."""
    port = closed_port()
    with FakeHub(hand_models, faults=[Fault(2, kind)], port=port) as fake:
        with pytest.raises(ExtractError, match=reason) as caught:
            crawl_pages(DAY, crawl_settings(fake.url, monkeypatch))
        served = fake.list_request_count
    assert not isinstance(caught.value, TransientExtractError)
    # cyclic_next: page 2 names itself, nothing more is asked. cursor_churn: its new URL
    # serves page 2 again (request 3), refused as page 3.
    expected = {"cyclic_next": (2, ["page-000001.json.gz"]),
                "cursor_churn": (3, ["page-000001.json.gz", "page-000002.json.gz"])}  # fmt: skip
    assert (served, stored_pages(env)) == expected[kind]
    with FakeHub(hand_models, token=TOKEN, port=port) as fake:
        state = crawl_pages(DAY, crawl_settings(fake.url, monkeypatch))
        resumed_at = dict(fake.requests[0].query)
    assert "cursor" in resumed_at and state.done and state.resumes == 1
    # cursor_churn: the stored page 2 names the churned link, asked once more on resuming; it
    # serves page 2's models again as page 3 (duplicates, which the snapshot counts and drops).
    assert state.pages == {"cyclic_next": 4, "cursor_churn": 5}[kind]


def test_a_crawl_past_its_model_bound_stops_and_resumes_with_a_larger_one(
    env, hand_models, monkeypatch
):
    """HUBSHARE_MAX_CRAWL_MODELS=6 at 3 a page: at most 2 pages, though the Hub links a third.
    The 2 pages stay stored; a larger bound resumes at page 3."""
    monkeypatch.setenv("HUBSHARE_MAX_CRAWL_MODELS", "6")
    port = closed_port()
    with FakeHub(hand_models, port=port) as fake, pytest.raises(ExtractError) as caught:
        crawl_pages(DAY, crawl_settings(fake.url, monkeypatch))
    assert str(caught.value).startswith(
        "the Hub's listing goes on past page 2, more than HUBSHARE_MAX_CRAWL_MODELS=6 models at "
        "HUBSHARE_PAGE_SIZE=3: stopped"
    )
    assert stored_pages(env) == ["page-000001.json.gz", "page-000002.json.gz"]
    monkeypatch.setenv("HUBSHARE_MAX_CRAWL_MODELS", "12")
    with FakeHub(hand_models, port=port) as fake:
        state = crawl_pages(DAY, crawl_settings(fake.url, monkeypatch))
        assert fake.list_request_count == 2  # pages 3 and 4 only
    assert state.done and state.pages == 4


def test_a_gzip_bomb_is_refused_without_inflating(env, hand_models, monkeypatch):
    """Page 2 is 1 MiB of gzip that inflates to 1 GiB: the read stops past the 8 MiB cap, so
    the crawl never holds more than a few caps; the first 8 MiB are quarantined, not stored."""
    monkeypatch.setenv("HUBSHARE_MAX_PAGE_BYTES", str(8 * MiB))
    port = closed_port()
    with FakeHub(hand_models, faults=[Fault(2, "gzip_bomb", size=1024 * MiB)], port=port) as fake:
        settings = crawl_settings(fake.url, monkeypatch)
        tracemalloc.start()
        try:
            with pytest.raises(PageTooLargeError) as caught:
                crawl_pages(DAY, settings)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 64 * MiB  # not the GiB the page inflates to
    message = str(caught.value)
    assert message.startswith("page 2: ")
    assert "decompresses to more than 8,388,608 bytes (HUBSHARE_MAX_PAGE_BYTES)" in message
    pages = env / "raw" / DAY.isoformat() / "pages"
    assert stored_pages(env) == ["page-000001.json.gz"]
    kept = pages / "quarantine" / "page-000002.json.gz"
    assert str(kept) in message
    assert gzip.decompress(kept.read_bytes()) == b" " * (8 * MiB)
    with FakeHub(hand_models, port=port) as fake:
        assert crawl_pages(DAY, crawl_settings(fake.url, monkeypatch)).pages == 4


def test_the_cap_counts_a_pages_bytes(env, hand_models, monkeypatch):
    """The token's 4 pages are 1,054, 1,223, 1,161 and 324 bytes: a cap of 1,223 reads them all,
    one of 1,222 refuses page 2."""
    monkeypatch.setenv("HUBSHARE_MAX_PAGE_BYTES", "1223")
    with FakeHub(hand_models) as fake:
        state = crawl_pages(DAY, crawl_settings(fake.url, monkeypatch))
    assert state.done and state.pages == 4
    monkeypatch.setenv("HUBSHARE_MAX_PAGE_BYTES", "1222")
    with FakeHub(hand_models) as fake, pytest.raises(PageTooLargeError, match="^page 2: "):
        crawl_pages(DAY + timedelta(days=1), crawl_settings(fake.url, monkeypatch))


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize(
    ("fault", "names"),
    [
        ("foreign_next", "another origin, http://127.0.0.1:"),
        ("cyclic_next", "the Hub's listing loops"),
        ("gzip_bomb", "decompresses to more than 1,048,576 bytes (HUBSHARE_MAX_PAGE_BYTES)"),
    ],
)
def test_a_hostile_hub_fails_the_run_with_one_line_and_changes_nothing_published(
    published, hand_models, monkeypatch, fault, names
):
    """Through the real CLI, on a warehouse with a published 2024-01-15: a run of 2024-01-16
    against the hostile Hub exits 4 with one `error:` line, the token reaches no other host and
    nothing published changes; the next run against the mended Hub resumes and publishes."""
    before = dump(published)
    monkeypatch.setenv("HUBSHARE_EXTRACT_TASK_RETRIES", "0")
    monkeypatch.setenv("HUBSHARE_MAX_PAGE_BYTES", str(MiB))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    args = ("run", "--date", "2024-01-16", "--backdate")
    port = closed_port()
    with RecordingServer(foreign_answer).running() as foreign:
        target = foreign.url if fault == "foreign_next" else None
        hostile = Fault(2, fault, target=target, size=64 * MiB)
        with FakeHub(hand_models, token=TOKEN, faults=[hostile], port=port) as fake:
            monkeypatch.setenv("HF_ENDPOINT", fake.url)
            result = invoke(*args)
        assert foreign.received == []
    assert result.returncode == 4, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and names in line
    assert TOKEN not in result.stdout + result.stderr
    after = dump(published)
    after.pop("etl_run"), before.pop("etl_run")
    assert after == before  # no fact, share or pointer changed
    assert stored_pages(published.parent, date(2024, 1, 16)) == ["page-000001.json.gz"]
    with FakeHub(hand_models, token=TOKEN, port=port) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        mended = invoke(*args)
        assert "cursor" in dict(fake.requests[0].query)  # resumed at page 2
    assert mended.returncode == 0, mended.stderr


def test_the_fake_hubs_gzip_bomb_is_valid_gzip():
    bomb = gzip_bomb(3 * MiB)
    assert len(bomb) < 4 * 1024  # about a thousand times smaller than what it inflates to
    assert gzip.decompress(bomb) == b" " * (3 * MiB)  # CRC and length checked by gzip


@pytest.mark.parametrize(
    ("fault", "problem"),
    [
        (lambda: Fault(1, "foreign_next"), "Fault.target is the foreign_next fault's origin"),
        (lambda: Fault(1, "cyclic_next", target="http://x"), "Fault.target is the foreign_next"),
        (lambda: Fault(1, "gzip_bomb", on="overview"), "gzip_bomb is a listing fault"),
        (lambda: Fault(1, "gzip_bomb", size=MiB + 1), "Fault.size is a whole number of MiB"),
    ],
)
def test_the_hostile_faults_are_checked(fault, problem):
    with pytest.raises(ValueError, match=problem):
        fault()
