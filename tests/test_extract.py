"""Extract against the project's fake Hub through huggingface_hub's real HTTP client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import orjson
import pytest

from hubshare.errors import MalformedPageError, SnapshotError, TransientExtractError
from hubshare.fakehub import FakeHub, Fault
from hubshare.hub import check_page as _check_page
from hubshare.settings import Settings
from tasks.extract import crawl_pages, extract_snapshot
from tasks.snapshot import STORED_BY_EARLIER_RUN, STORED_BY_THIS_RUN, manifest_key, snapshot_key

DAY = date(2024, 1, 15)
TOKEN = "hf_TESTtokenNEVERwritten0123456789"  # noqa: S105 - a fake token to hunt for


def settings_for(hub: FakeHub, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HUBSHARE_DATA_DIR", str(data_dir))
    return Settings()


def files_containing(root: Path, needle: str) -> list[Path]:
    return [
        path for path in root.rglob("*") if path.is_file() and needle.encode() in path.read_bytes()
    ]


def test_faults_duplicates_and_private_models_give_the_clean_snapshot(
    env, hand_models, tmp_path, monkeypatch
):
    with FakeHub(hand_models) as hub:
        clean = extract_snapshot(
            DAY, settings_for(hub, tmp_path / "clean", monkeypatch), allow_backdated=True
        ).manifest
    faults = [
        Fault(2, "429", retry_after=0),
        Fault(4, "503"),
        Fault(5, "drop"),
        Fault(6, "repeat_previous"),
    ]
    with FakeHub(hand_models, faults=faults, token=TOKEN) as hub:
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        noisy_dir = tmp_path / "noisy"
        noisy = extract_snapshot(
            DAY, settings_for(hub, noisy_dir, monkeypatch), allow_backdated=True
        ).manifest
        assert all(request.had_auth for request in hub.requests)
        served = [request.fault for request in hub.requests if request.fault]
    assert sorted(served) == ["429", "503", "drop", "repeat_previous"]
    assert noisy.sha256 == clean.sha256
    assert (noisy.row_count, clean.row_count) == (9, 9)
    assert (noisy.retries, noisy.duplicates_dropped, noisy.private_dropped) == (3, 1, 1)
    assert (clean.retries, clean.duplicates_dropped, clean.private_dropped) == (0, 0, 0)
    assert files_containing(noisy_dir, TOKEN) == []


CRAWLER = """
import sys
from datetime import date
from hubshare.settings import Settings
from tasks.extract import crawl_pages
crawl_pages(date.fromisoformat(sys.argv[1]), Settings())
"""


def test_killed_crawl_resumes_without_refetching_page_one(env, hand_models, monkeypatch):
    # Page 3 hangs; the crawler process is SIGKILLed while waiting for it.
    with FakeHub(hand_models, faults=[Fault(3, "slow", delay=30)]) as hub:
        settings = settings_for(hub, env, monkeypatch)
        pages = env / "raw" / DAY.isoformat() / "pages"
        child = subprocess.Popen(  # noqa: S603 - our own interpreter and code
            [sys.executable, "-c", CRAWLER, DAY.isoformat()],
            env=os.environ.copy(),
            cwd=Path(__file__).parent.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while not (pages / "page-000002.json.gz").exists():
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            assert time.monotonic() < deadline, "the crawler never stored page 2"
            time.sleep(0.05)
        while hub.list_request_count < 3:
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        before = len(hub.requests)
        manifest = extract_snapshot(DAY, settings, allow_backdated=True).manifest
        resumed = hub.requests[before:]
    first_page = [r for r in hub.requests if not any(k == "cursor" for k, _ in r.query)]
    assert len(first_page) == 1  # page 1 was fetched by the killed process only
    assert all(any(k == "cursor" for k, _ in r.query) for r in resumed)
    assert manifest.resumes == 1 and manifest.row_count == 9
    with FakeHub(hand_models) as hub:
        clean = extract_snapshot(
            DAY, settings_for(hub, env / "clean", monkeypatch), allow_backdated=True
        ).manifest
    assert manifest.sha256 == clean.sha256


def test_retries_exhausted_keep_the_stored_pages(env, hand_models, monkeypatch):
    faults = [Fault(n, "503") for n in range(2, 7)]  # page 2 fails 5 times; 3 retries allowed
    with FakeHub(hand_models, faults=faults) as hub:
        settings = settings_for(hub, env, monkeypatch)
        with pytest.raises(TransientExtractError, match="HTTP 503 after 3 retries"):
            crawl_pages(DAY, settings)
        state = crawl_pages(DAY, settings)  # started again: resumes at page 2
    assert state.done and state.resumes == 1
    assert [r.status for r in hub.requests].count(200) == state.pages


def test_malformed_page_is_a_clear_error(env, hand_models, monkeypatch):
    with (
        FakeHub(hand_models, faults=[Fault(2, "malformed")]) as hub,
        pytest.raises(MalformedPageError, match="page 2 .*not valid JSON"),
    ):
        extract_snapshot(DAY, settings_for(hub, env, monkeypatch), allow_backdated=True)
    assert not (env / snapshot_key(DAY)).exists()


def test_unreachable_endpoint_is_a_clear_error(env, monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HUBSHARE_HTTP_MAX_RETRIES", "1")
    with pytest.raises(TransientExtractError, match=rf"127.0.0.1:{port}.*ConnectError"):
        extract_snapshot(DAY, Settings(), allow_backdated=True)


def test_stored_snapshot_is_reused_and_checked(env, hand_models, monkeypatch):
    with FakeHub(hand_models) as hub:
        settings = settings_for(hub, env, monkeypatch)
        first = extract_snapshot(DAY, settings, allow_backdated=True)
        served = hub.list_request_count
        again = extract_snapshot(DAY, settings)  # no crawl, no backdating needed
        assert hub.list_request_count == served
    assert again.manifest == first.manifest
    assert (first.stored_by, again.stored_by) == (STORED_BY_THIS_RUN, STORED_BY_EARLIER_RUN)
    assert (env / manifest_key(DAY)).exists()
    path = env / snapshot_key(DAY)
    path.write_bytes(path.read_bytes() + b"tampered")
    with pytest.raises(SnapshotError, match="altered"):
        extract_snapshot(DAY, settings)


def test_past_date_without_snapshot_needs_backdate(env, monkeypatch):
    with pytest.raises(SnapshotError, match="keeps no history"):
        extract_snapshot(DAY, Settings())


GOOD_ITEM = {
    "_id": "65a1",
    "id": "org/model",
    "author": "org",
    "downloads": 3,
    "downloadsAllTime": 2**63 - 1,
    "likes": 0,
    "createdAt": "2024-01-01T00:00:00.000Z",
    "lastModified": None,
    "tags": ["base_model:finetune:org/base"],
    "gated": "auto",
    "private": False,
    "cardData": {"license": "mit"},  # fields not asked for are ignored
}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"downloads": True}, "`downloads` = True (bool)"),
        ({"likes": 1.0}, "`likes` = 1.0 (float)"),
        ({"downloads": "12"}, "`downloads` = '12' (str)"),
        ({"downloads": -1}, "`downloads` = -1 out of range"),
        ({"downloadsAllTime": 2**63}, f"`downloadsAllTime` = {2**63} out of range"),
        ({"tags": ["ok", 7]}, "a `tags` entry that is not a string"),
        ({"gated": 1}, "`gated` = 1 (int)"),
        ({"private": "no"}, "`private` = 'no' (str)"),
        ({"_id": ""}, "has no `_id`/`id`"),
        ({"id": None}, "has no `_id`/`id`"),
    ],
)
def test_a_page_check_names_the_item_and_field(change, named):
    """The fast check (msgspec) and the one that names the problem agree: every wrong item is
    refused with its position and field, and a well-formed page passes with its count."""
    body = orjson.dumps([GOOD_ITEM, GOOD_ITEM | change])
    with pytest.raises(MalformedPageError) as caught:
        _check_page(body, 4, "http://127.0.0.1:1/api/models?limit=2")
    assert str(caught.value).startswith("page 4 (http://127.0.0.1:1/api/models): item 1 ")
    assert named in str(caught.value)
    assert _check_page(orjson.dumps([GOOD_ITEM, GOOD_ITEM | {"author": None}]), 1, "u") == 2


@pytest.mark.parametrize(
    ("body", "named"),
    [(b'{"models": []}', "expected a JSON list"), (b'["org/model"]', "item 0 is a str")],
)
def test_a_page_that_is_not_a_list_of_objects_is_named(body, named):
    with pytest.raises(MalformedPageError, match=named):
        _check_page(body, 1, "http://127.0.0.1:1/api/models")


def test_the_snapshot_keeps_each_models_last_public_observation_sorted_by_id(tmp_path):
    """`write_snapshot` on pages listed out of order (several chunks, as the crawl parses
    them): one row per `_id`, its highest `_order`, private models dropped (also a model whose
    last observation is private, not one that turned public), sorted by `_id`; the same bytes
    as that frame written with the snapshot's writer settings."""
    import polars as pl

    from tasks.snapshot import ORDERED_SNAPSHOT_SCHEMA, write_snapshot

    def page(rows: list[tuple[str, int, int, bool]]) -> pl.DataFrame:
        return pl.DataFrame(
            [
                {"_id": oid, "id": f"org/{oid}", "author": "org", "downloads": downloads}
                | {"private": private, "tags": ["x"], "_order": order}
                for oid, order, downloads, private in rows
            ],
            schema=ORDERED_SNAPSHOT_SCHEMA,
        )

    listed = pl.concat(
        [
            page([("c", 7, 30, False), ("a", 1, 10, False), ("d", 2, 40, False)]),
            page([("a", 5, 11, False), ("b", 3, 20, True), ("e", 4, 50, True)]),
            page([("d", 6, 41, True), ("b", 8, 21, False), ("f", 0, 60, False)]),
        ],
        rechunk=False,
    )
    assert listed.n_chunks() == 3
    counts = write_snapshot(listed, tmp_path / "snapshot.parquet")
    assert counts == (9, 3, 2, 4)  # listed, duplicates, private, rows
    stored = pl.read_parquet(tmp_path / "snapshot.parquet")
    assert stored.select("_id", "downloads").rows() == [("a", 11), ("b", 21), ("c", 30), ("f", 60)]
    expected = page([("a", 5, 11, False), ("b", 8, 21, False), ("c", 7, 30, False)])
    expected = pl.concat([expected, page([("f", 0, 60, False)])]).drop("_order")
    expected.write_parquet(
        tmp_path / "expected.parquet",
        compression="zstd",
        compression_level=3,
        statistics=False,
        row_group_size=256_000,
    )
    assert (tmp_path / "snapshot.parquet").read_bytes() == (
        tmp_path / "expected.parquet"
    ).read_bytes()
