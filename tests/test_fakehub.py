"""Tests of the fake Hugging Face Hub (hubshare.fakehub), driven through the real client.

huggingface_hub 2.4 talks httpx2, which mocking libraries cannot intercept, so every test runs
a real HTTP server on 127.0.0.1 and uses ``HfApi`` or ``http_backoff`` + ``get_session``.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")  # before huggingface_hub is imported

import httpx2
import orjson
import pytest
from huggingface_hub import HfApi, constants
from huggingface_hub.errors import BadRequestError, HfHubHTTPError, RepositoryNotFoundError
from huggingface_hub.utils import (
    get_session,
    hf_raise_for_status,
    http_backoff,
    parse_ratelimit_headers,
)

if TYPE_CHECKING:
    from huggingface_hub.hf_api import ExpandModelProperty_T

from hubshare.fakehub import (
    DEFAULT_LIST_KEYS,
    Account,
    FakeHub,
    Fault,
    load_models,
    synthetic_object_id,
)
from hubshare.fakehub_scenarios import (
    LongTail,
    load_accounts,
    long_tail,
    namespaces_from_mapping,
    write_accounts,
    write_models,
)

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "samples" / "hub-2024-09-20.jsonl.gz"
BUILDER = REPO / "data" / "samples" / "build_hub_2024_09_20.py"
UPSTREAM_CSV = Path(
    "/work/shared/data/upstream/enochlev__CS573_Documentation_Quality/hf_models.csv"
)
PLACEHOLDER = "2022-03-02T23:29:04.000Z"
TOKEN = "hf_test_token_value"
Model = dict[str, Any]
Params = list[tuple[str, str]]
ETL_EXPAND: list[ExpandModelProperty_T] = ["author", "downloads", "createdAt", "private", "tags"]


def oid(n: int) -> str:
    return f"6500000000000000000000{n:02x}"


def fixture_models() -> list[Model]:
    """Small hand-made Hub: placeholder-createdAt ties, a null key, a private and a gated model,
    base_model tags with a mixed-case parent id, a fractional trendingScore."""
    return [
        {
            "_id": oid(1),
            "id": "acme/alpha",
            "author": "acme",
            "createdAt": "2024-05-01T10:00:00.000Z",
            "downloads": 500,
            "likes": 10,
            "tags": ["transformers", "text-generation"],
            "pipeline_tag": "text-generation",
            "library_name": "transformers",
            "private": False,
            "lastModified": "2024-06-01T00:00:00.000Z",
            "sha": "abc",
            "downloadsAllTime": 5000,
        },
        {
            "_id": oid(11),
            "id": "acme/Beta-GGUF",
            "author": "acme",
            "createdAt": "2024-06-01T00:00:00.000Z",
            "downloads": 900,
            "likes": 3,
            "tags": ["gguf", "base_model:ACME/Alpha", "base_model:quantized:ACME/Alpha"],
            "private": False,
        },
        {
            "_id": oid(5),
            "id": "google-bert/bert-base-uncased",
            "author": "google-bert",
            "createdAt": PLACEHOLDER,
            "downloads": 10000,
            "likes": 400,
            "tags": ["transformers", "bert"],
            "private": False,
        },
        {
            "_id": oid(3),
            "id": "openai-community/gpt2",
            "author": "openai-community",
            "createdAt": PLACEHOLDER,
            "downloads": 8000,
            "likes": 300,
            "tags": ["transformers"],
            "private": False,
        },
        {
            "_id": oid(4),
            "id": "FacebookAI/roberta-base",
            "author": "FacebookAI",
            "createdAt": PLACEHOLDER,
            "downloads": 8000,
            "likes": 200,
            "tags": ["transformers"],
            "private": False,
        },
        {
            "_id": oid(2),
            "id": "solo/no-created",
            "author": "solo",
            "downloads": 50,
            "tags": [],
            "private": False,
        },
        {
            "_id": oid(7),
            "id": "solo/old-merge",
            "author": "solo",
            "createdAt": "2023-01-01T00:00:00Z",
            "tags": ["base_model:merge:acme/alpha", "base_model:merge:openai-community/gpt2"],
            "private": False,
        },
        {
            "_id": oid(6),
            "id": "eu-lab/region-model",
            "author": "eu-lab",
            "createdAt": "2023-06-15T12:00:00.000Z",
            "downloads": 700,
            "tags": ["region:eu"],
            "gated": "manual",
            "private": False,
        },
        {
            "_id": oid(8),
            "id": "acme/adapter-x",
            "author": "acme",
            "createdAt": "2024-05-01T10:00:00.000Z",
            "downloads": 20,
            "tags": ["base_model:adapter:acme/alpha"],
            "private": False,
        },
        {
            "_id": oid(9),
            "id": "acme/secret",
            "author": "acme",
            "createdAt": "2025-01-01T00:00:00.000Z",
            "downloads": 99999,
            "tags": [],
            "private": True,
        },
        {
            "_id": oid(10),
            "id": "tiny/t1",
            "author": "tiny",
            "createdAt": "2024-01-01T00:00:00.000Z",
            "downloads": 1,
            "trendingScore": 0.2,
            "tags": ["gguf"],
            "private": False,
        },
    ]


# Expected orders, written out by hand: key descending, ties by _id ascending, null last.
BY_CREATED = [
    "acme/Beta-GGUF",  # 2024-06-01
    "acme/alpha",  # 2024-05-01T10, _id ...01
    "acme/adapter-x",  # 2024-05-01T10, _id ...08
    "tiny/t1",
    "eu-lab/region-model",
    "solo/old-merge",  # 2023-01-01 written without milliseconds
    "openai-community/gpt2",  # placeholder, _id ...03
    "FacebookAI/roberta-base",  # placeholder, _id ...04
    "google-bert/bert-base-uncased",  # placeholder, _id ...05
    "solo/no-created",  # no createdAt
]
BY_DOWNLOADS = [
    "google-bert/bert-base-uncased",
    "openai-community/gpt2",  # 8000, _id ...03
    "FacebookAI/roberta-base",  # 8000, _id ...04
    "acme/Beta-GGUF",
    "eu-lab/region-model",
    "acme/alpha",
    "solo/no-created",
    "acme/adapter-x",
    "tiny/t1",
    "solo/old-merge",  # no downloads
]


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever imported huggingface_hub first, make sure it neither phones home nor refuses
    # to talk to the fake Hub.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub(fixture_models(), token=TOKEN) as running:
        yield running


def get(
    url: str,
    params: Params | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> httpx2.Response:
    """GET through huggingface_hub's retry loop, with tiny waits between attempts."""
    response: httpx2.Response = http_backoff(
        "GET",
        url,
        params=params,
        headers=headers,
        timeout=timeout,
        base_wait_time=0.01,
        max_wait_time=0.02,
    )
    return response


def next_url(response: httpx2.Response) -> str | None:
    url: str | None = response.links.get("next", {}).get("url")
    return url


def crawl(
    hub: FakeHub,
    params: Params,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[list[list[Model]], list[httpx2.Response]]:
    """Follow Link headers from /api/models with http_backoff; returns (pages, responses)."""
    responses = [get(f"{hub.url}/api/models", params, headers, timeout)]
    while True:
        hf_raise_for_status(responses[-1])
        nxt = next_url(responses[-1])
        if nxt is None:
            break
        responses.append(get(nxt, headers=headers, timeout=timeout))
    return [r.json() for r in responses], responses


def crawl_from(response: httpx2.Response) -> list[Model]:
    """The items of the pages after ``response``."""
    items: list[Model] = []
    while (nxt := next_url(response)) is not None:
        response = get(nxt)
        hf_raise_for_status(response)
        items.extend(response.json())
    return items


def ids_of(pages: list[list[Model]]) -> list[str]:
    return [item["id"] for page in pages for item in page]


PAGED: Params = [("limit", "3"), ("sort", "createdAt")] + [("expand", e) for e in ETL_EXPAND]


# --------------------------------------------------------------------------- listing & paging
def test_hfapi_list_models_pages_through_everything() -> None:
    with FakeHub(fixture_models(), page_cap=3) as small:
        api = HfApi(endpoint=small.url, token=False)
        models = list(api.list_models(sort="created_at", limit=None, expand=ETL_EXPAND))
        assert [m.id for m in models] == BY_CREATED
        assert models[0].author == "acme"
        assert models[0].downloads == 900
        # no limit sent: pages of page_cap, followed through Link by the client itself
        assert small.list_request_count == 4
        assert all(("limit", "3") not in r.query for r in small.requests)


def test_paged_crawl_order_page_sizes_and_uniqueness(hub: FakeHub) -> None:
    pages, _ = crawl(hub, PAGED)
    assert [len(p) for p in pages] == [3, 3, 3, 1]
    assert ids_of(pages) == BY_CREATED
    assert len(set(ids_of(pages))) == len(BY_CREATED)

    pages, _ = crawl(hub, [("limit", "4"), ("sort", "downloads")])
    assert [len(p) for p in pages] == [4, 4, 2]
    assert ids_of(pages) == BY_DOWNLOADS


def test_default_sort_is_trending_score_and_null_sorts_last(hub: FakeHub) -> None:
    pages, responses = crawl(hub, [("limit", "2")])
    ids = ids_of(pages)
    assert ids[0] == "tiny/t1"  # the only model with a trendingScore (0.2)
    others = [m for m in fixture_models() if not m["private"] and m["id"] != "tiny/t1"]
    assert ids[1:] == [m["id"] for m in sorted(others, key=lambda m: m["_id"])]
    # like the real Hub, the Link names the default sort
    assert ("sort", "trendingScore") in parse_qsl(urlsplit(responses[0].links["next"]["url"]).query)


def test_link_is_absolute_carries_all_params_and_is_absent_on_last_page(hub: FakeHub) -> None:
    params = [
        ("limit", "3"),
        ("sort", "createdAt"),
        ("direction", "-1"),
        ("expand", "author"),
        ("expand", "downloads"),
        ("expand[]", "tags"),
        ("search", "a"),
    ]
    pages, responses = crawl(hub, params)
    assert len(responses) >= 2
    for response in responses[:-1]:
        link = response.headers["link"]
        assert link.startswith(f"<{hub.url}/api/models?") and link.endswith('>; rel="next"')
        query = parse_qsl(urlsplit(response.links["next"]["url"]).query, keep_blank_values=True)
        assert [p for p in query if p[0] != "cursor"] == params
        assert sum(1 for k, _ in query if k == "cursor") == 1
    assert "link" not in responses[-1].headers
    assert all("a" in i.lower() for i in ids_of(pages))


def test_keyset_cursor_survives_deletes_and_inserts_between_pages(hub: FakeHub) -> None:
    first = get(f"{hub.url}/api/models", PAGED)
    page1 = [m["id"] for m in first.json()]
    assert page1 == BY_CREATED[:3]

    def edit(models: list[Model]) -> None:
        models[:] = [m for m in models if m["id"] not in ("acme/alpha", "eu-lab/region-model")]
        models.append({"_id": oid(99), "id": "new/newest", "createdAt": "2026-01-01T00:00:00.000Z"})

    hub.mutate(edit)
    rest = [m["id"] for m in crawl_from(first)]
    # an offset would now skip tiny/t1; the keyset cursor resumes right after acme/adapter-x
    expected = [i for i in BY_CREATED[3:] if i != "eu-lab/region-model"]
    assert rest == expected


def test_key_moving_across_cursor_is_skipped_or_repeated_like_the_real_hub(hub: FakeHub) -> None:
    params = [("limit", "3"), ("sort", "downloads")]
    first = get(f"{hub.url}/api/models", params)
    assert [m["id"] for m in first.json()] == BY_DOWNLOADS[:3]

    def edit(models: list[Model]) -> None:
        for m in models:
            if m["id"] == "acme/alpha":  # not yet seen, jumps above the cursor: skipped
                m["downloads"] = 50_000
            if m["id"] == "google-bert/bert-base-uncased":  # already seen, drops: met again
                m["downloads"] = 2

    hub.mutate(edit)
    seen = [m["id"] for m in first.json()] + [m["id"] for m in crawl_from(first)]
    assert "acme/alpha" not in seen
    assert Counter(seen)["google-bert/bert-base-uncased"] == 2


def test_page_size_capped_silently_or_rejected() -> None:
    with FakeHub(fixture_models(), page_cap=4) as capped:
        pages, _ = crawl(capped, [("limit", "5000"), ("sort", "createdAt")])
        assert [len(p) for p in pages] == [4, 4, 2]
    with FakeHub(fixture_models(), page_cap=4, reject_over_cap=True) as strict:
        response = get_session().get(f"{strict.url}/api/models", params={"limit": 5})
        assert response.status_code == 400
        assert "error" in response.json()
        assert get_session().get(f"{strict.url}/api/models", params={"limit": 4}).status_code == 200


def test_search_author_filter_pipeline_tag_and_gated(hub: FakeHub) -> None:
    def listing(params: Params) -> list[str]:
        return ids_of(crawl(hub, [("sort", "createdAt"), *params])[0])

    assert listing([("search", "BERT")]) == [
        "FacebookAI/roberta-base",
        "google-bert/bert-base-uncased",
    ]
    assert listing([("author", "ACME")]) == ["acme/Beta-GGUF", "acme/alpha", "acme/adapter-x"]
    assert listing([("filter", "gguf")]) == ["acme/Beta-GGUF", "tiny/t1"]
    assert listing([("filter", "gguf"), ("filter", "base_model:quantized:ACME/Alpha")]) == [
        "acme/Beta-GGUF"
    ]
    assert listing([("pipeline_tag", "text-generation")]) == ["acme/alpha"]
    assert listing([("gated", "true")]) == ["eu-lab/region-model"]
    api = HfApi(endpoint=hub.url, token=False)
    assert [m.id for m in api.list_models(author="solo", sort="created_at")] == [
        "solo/old-merge",
        "solo/no-created",
    ]


# --------------------------------------------------------------------------------- key sets
def test_expand_returns_only_id_and_requested_keys(hub: FakeHub) -> None:
    params = [("sort", "createdAt"), ("expand", "author"), ("expand[]", "downloadsAllTime")]
    pages, _ = crawl(hub, params)
    items = {i["id"]: i for i in pages[0]}
    for item in items.values():
        assert set(item) == {"_id", "id", "author", "downloadsAllTime"}
    assert items["acme/alpha"]["downloadsAllTime"] == 5000
    assert items["tiny/t1"]["downloadsAllTime"] is None  # requested but absent: null


def test_default_and_full_key_sets(hub: FakeHub) -> None:
    plain, _ = crawl(hub, [("sort", "createdAt")])
    alpha = next(i for i in plain[0] if i["id"] == "acme/alpha")
    assert set(alpha) <= set(DEFAULT_LIST_KEYS)
    assert alpha["modelId"] == "acme/alpha" and alpha["_id"] == oid(1)
    assert "author" not in alpha and "downloadsAllTime" not in alpha and "sha" not in alpha

    full, _ = crawl(hub, [("sort", "createdAt"), ("full", "true")])
    alpha = next(i for i in full[0] if i["id"] == "acme/alpha")
    assert alpha["author"] == "acme" and alpha["sha"] == "abc"
    assert alpha["lastModified"] == "2024-06-01T00:00:00.000Z"
    assert "downloadsAllTime" not in alpha


@pytest.mark.parametrize("bad", ["bogus", "baseModels", "childrenModelCount", "usedStorage"])
def test_listing_rejects_unknown_and_detail_only_expand(hub: FakeHub, bad: str) -> None:
    response = get(f"{hub.url}/api/models", [("expand", "author"), ("expand", bad)])
    assert response.status_code == 400
    assert bad in response.json()["error"]
    with pytest.raises(BadRequestError):
        hf_raise_for_status(response)


def test_hfapi_list_models_raises_bad_request_on_basemodels(hub: FakeHub) -> None:
    api = HfApi(endpoint=hub.url, token=False)
    with pytest.raises(BadRequestError):
        list(api.list_models(expand=["baseModels"]))
    with pytest.raises(HfHubHTTPError) as info:
        list(api.list_models(expand=["notAThing"]))  # type: ignore[list-item]
    assert info.value.response.status_code == 400


@pytest.mark.parametrize(
    "params",
    [
        [("expand", "author"), ("full", "true")],
        [("expand", "author"), ("config", "true")],
        [("expand", "author"), ("cardData", "true")],
        [("sort", "name")],
        [("limit", "ten")],
        [("sort", "likes"), ("cursor", "not-a-cursor")],
    ],
)
def test_other_bad_requests_are_400(hub: FakeHub, params: list[tuple[str, str]]) -> None:
    response = get(f"{hub.url}/api/models", params)
    assert response.status_code == 400
    assert isinstance(response.json()["error"], str)


# ------------------------------------------------------------------------------- headers
def test_headers_on_every_response() -> None:
    with FakeHub(fixture_models(), quota=3) as limited:
        urls = [
            f"{limited.url}/api/models?limit=2",
            f"{limited.url}/api/models/acme/alpha",
            f"{limited.url}/api/models/nobody/nothing",
            f"{limited.url}/api/models?expand=bogus",
            f"{limited.url}/api/models?limit=2",
        ]
        responses = [get_session().get(u) for u in urls]
    assert [r.status_code for r in responses] == [200, 200, 404, 400, 200]  # quota not enforced
    remaining = []
    for r in responses:
        assert r.headers["content-type"] == "application/json"
        info = parse_ratelimit_headers(r.headers)
        assert info is not None and info.resource_type == "api"
        assert (info.limit, info.window_seconds) == (3, 300)
        assert 0 < info.reset_in_seconds <= 300
        remaining.append(info.remaining)
    assert remaining == [2, 1, 0, 0, 0]  # decrements, never negative
    assert len({r.headers["x-request-id"] for r in responses}) == len(responses)


def test_enforced_quota_answers_429() -> None:
    with FakeHub(fixture_models(), quota=2, enforce_quota=True) as limited:
        statuses = [get_session().get(f"{limited.url}/api/models").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


# -------------------------------------------------------------------------------- faults
@pytest.mark.parametrize(
    "fault",
    [
        Fault(request=2, kind="429", retry_after=0),
        Fault(request=2, kind="500"),
        Fault(request=2, kind="502"),
        Fault(request=2, kind="503"),
        Fault(request=2, kind="504"),
        Fault(request=2, kind="drop"),
    ],
    ids=lambda f: f.kind,
)
def test_faults_are_retried_and_the_crawl_completes_identically(fault: Fault) -> None:
    with FakeHub(fixture_models()) as clean:
        expected, _ = crawl(clean, PAGED)
    with FakeHub(fixture_models(), faults=[fault]) as faulty:
        pages, _ = crawl(faulty, PAGED)
        log = faulty.requests
    assert pages == expected
    assert [r.list_seq for r in log] == [1, 2, 3, 4, 5]
    assert log[1].fault == fault.kind
    assert log[1].status == (None if fault.kind == "drop" else int(fault.kind))
    assert log[2].query == log[1].query  # the retry asked for the same page
    assert [r.status for r in log if r is not log[1]] == [200, 200, 200, 200]


def test_429_headers_and_body() -> None:
    faults = [
        Fault(request=1, kind="429", retry_after=0),
        Fault(request=2, kind="429", reset=7),
    ]
    with FakeHub(fixture_models(), faults=faults) as limited:
        first = get_session().get(f"{limited.url}/api/models")
        second = get_session().get(f"{limited.url}/api/models")
        third = get_session().get(f"{limited.url}/api/models")
    assert first.status_code == 429
    assert first.headers["retry-after"] == "0"
    info = parse_ratelimit_headers(first.headers)
    assert info is not None and (info.remaining, info.reset_in_seconds) == (0, 0)
    assert "rate-limited" in first.json()["error"]
    assert second.status_code == 429 and "retry-after" not in second.headers
    info = parse_ratelimit_headers(second.headers)
    assert info is not None and info.reset_in_seconds == 7
    assert third.status_code == 200  # a fault fires once


def test_slow_fault_delays_and_a_client_timeout_is_retried() -> None:
    with FakeHub(fixture_models(), faults=[Fault(request=1, kind="slow", delay=0.3)]) as slow:
        started = time.monotonic()
        response = get_session().get(f"{slow.url}/api/models", timeout=5)
        assert response.status_code == 200 and time.monotonic() - started >= 0.3

    with FakeHub(fixture_models(), faults=[Fault(request=1, kind="slow", delay=2)]) as slow:
        pages, _ = crawl(slow, PAGED, timeout=0.5)
        assert ids_of(pages) == BY_CREATED
        assert slow.requests[0].fault == "slow"


def test_malformed_page_is_200_with_unparsable_body() -> None:
    with FakeHub(fixture_models(), faults=[Fault(request=1, kind="malformed")]) as bad:
        url = f"{bad.url}/api/models?limit=3&sort=createdAt"
        broken = get(url)
        again = get(url)
    assert broken.status_code == 200
    assert broken.headers["content-type"] == "application/json"
    assert "next" in broken.links
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(broken.content)
    assert [m["id"] for m in again.json()] == BY_CREATED[:3]


def test_repeat_previous_duplicates_exactly_one_model() -> None:
    with FakeHub(fixture_models(), faults=[Fault(request=3, kind="repeat_previous")]) as rep:
        pages, _ = crawl(rep, PAGED)
    ids = ids_of(pages)
    assert len(ids) == len(BY_CREATED) + 1
    assert [i for i, n in Counter(ids).items() if n > 1] == [pages[1][-1]["id"]]
    assert pages[2][0] == pages[1][-1]
    assert set(ids) == set(BY_CREATED)


def test_fault_validation_and_reset_counters(hub: FakeHub) -> None:
    with pytest.raises(ValueError, match="kind"):
        Fault(request=1, kind="418")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Fault(request=0, kind="500")
    with pytest.raises(ValueError):
        hub.set_faults([Fault(request=1, kind="500"), Fault(request=1, kind="503")])

    hub.set_faults([Fault(request=1, kind="503")])
    for _ in range(2):
        hub.reset_counters()
        pages, _ = crawl(hub, PAGED)
        assert ids_of(pages) == BY_CREATED
        assert [r.status for r in hub.requests] == [503, 200, 200, 200, 200]


# ------------------------------------------------------------------------- private models
def test_private_models_need_the_token(hub: FakeHub) -> None:
    anonymous = ids_of(crawl(hub, PAGED)[0])
    assert "acme/secret" not in anonymous

    authed = ids_of(crawl(hub, PAGED, headers={"Authorization": f"Bearer {TOKEN}"})[0])
    assert authed == ["acme/secret", *BY_CREATED]

    api_models = HfApi(endpoint=hub.url, token=TOKEN).list_models(
        sort="created_at", expand=["private"]
    )
    assert [(m.id, m.private) for m in api_models][0] == ("acme/secret", True)

    with pytest.raises(HfHubHTTPError) as info:
        list(HfApi(endpoint=hub.url, token="hf_wrong").list_models())
    assert info.value.response.status_code == 401

    assert [r.had_auth for r in hub.requests][:4] == [False] * 4
    assert hub.requests[-1].had_auth is True
    assert TOKEN not in repr(hub.requests)


def test_any_bearer_token_unlocks_private_models_when_no_token_is_configured() -> None:
    with FakeHub(fixture_models()) as open_hub:
        api = HfApi(endpoint=open_hub.url, token="hf_anything")
        assert "acme/secret" in [m.id for m in api.list_models()]
        assert "acme/secret" not in [
            m.id for m in HfApi(endpoint=open_hub.url, token=False).list_models()
        ]


# ---------------------------------------------------------------------------- model lookup
def test_model_lookup_is_case_insensitive_and_404s_with_error_code(hub: FakeHub) -> None:
    api = HfApi(endpoint=hub.url, token=False)
    info = api.model_info("GOOGLE-BERT/Bert-Base-Uncased")
    assert info.id == "google-bert/bert-base-uncased"
    assert info.downloads == 10000

    missing = get_session().get(f"{hub.url}/api/models/nobody/nothing")
    assert missing.status_code == 404
    assert missing.headers["x-error-code"] == "RepoNotFound"
    assert "error" in missing.json()
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("nobody/nothing")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("acme/secret")  # private, no token
    assert HfApi(endpoint=hub.url, token=TOKEN).model_info("ACME/SECRET").id == "acme/secret"


def test_model_lookup_expand_base_models_and_children(hub: FakeHub) -> None:
    beta = (
        get_session()
        .get(f"{hub.url}/api/models/acme/beta-gguf", params=[("expand[]", "baseModels")])
        .json()
    )
    assert beta == {
        "_id": oid(11),
        "id": "acme/Beta-GGUF",
        "baseModels": {"relation": "quantized", "models": [{"_id": oid(1), "id": "acme/alpha"}]},
    }
    merge = HfApi(endpoint=hub.url, token=False).model_info("solo/old-merge", expand=["baseModels"])
    base: Any = merge.base_models  # typed list[str] by the client, but a dict on the wire
    assert base["relation"] == "merge"
    assert [m["id"] for m in base["models"]] == ["acme/alpha", "openai-community/gpt2"]
    plain = get_session().get(f"{hub.url}/api/models/tiny/t1", params={"expand": "baseModels"})
    assert plain.json() == {"_id": oid(10), "id": "tiny/t1"}  # not derivable: omitted

    children = (
        get_session()
        .get(f"{hub.url}/api/models/acme/alpha", params={"expand": "childrenModelCount"})
        .json()["childrenModelCount"]
    )
    assert children == {"adapter": 1, "merge": 1, "quantized": 1, "finetune": 0}


def test_renamed_model_redirects(hub: FakeHub) -> None:
    def rename(models: list[Model]) -> None:
        next(m for m in models if m["id"] == "acme/alpha")["id"] = "acme/alpha-v2"

    hub.mutate(rename)
    raw = get_session().get(f"{hub.url}/api/models/acme/alpha", follow_redirects=False)
    assert raw.status_code == 307
    assert raw.headers["location"] == f"{hub.url}/api/models/acme/alpha-v2"
    info = HfApi(endpoint=hub.url, token=False).model_info("ACME/alpha")
    assert (info.id, info.downloads) == ("acme/alpha-v2", 500)
    assert "acme/alpha-v2" in ids_of(crawl(hub, PAGED)[0])


# ------------------------------------------------------------------------- files and CLI
def test_from_file_reads_jsonl_gzip_and_json(tmp_path: Path) -> None:
    models = fixture_models()
    lines = b"\n".join(orjson.dumps(m) for m in models) + b"\n"
    (tmp_path / "m.jsonl").write_bytes(lines)
    (tmp_path / "m.jsonl.gz").write_bytes(gzip.compress(lines))
    (tmp_path / "m.json").write_bytes(orjson.dumps(models))
    for name in ("m.jsonl", "m.jsonl.gz", "m.json"):
        assert load_models(tmp_path / name) == models
        with FakeHub.from_file(tmp_path / name) as from_file:
            assert ids_of(crawl(from_file, PAGED)[0]) == BY_CREATED


def test_missing_object_id_is_synthesised() -> None:
    with FakeHub([{"id": "a/b"}]) as tiny:
        assert get_session().get(f"{tiny.url}/api/models").json() == [
            {"_id": synthetic_object_id("a/b"), "id": "a/b", "modelId": "a/b"}
        ]
    with pytest.raises(ValueError, match="duplicate"):
        FakeHub([{"_id": "x", "id": "a/b"}, {"_id": "x", "id": "a/c"}])


@contextmanager
def served_by_cli(*args: str) -> Iterator[str | None]:
    """`python -m hubshare.fakehub ARGS` in its own process: its URL from the "Serving at" line
    (None if it never printed one); on exit SIGTERM, which must stop it cleanly (exit 0)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hubshare.fakehub", *args],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        url = None
        for _ in range(5):
            line = proc.stdout.readline()
            if line.startswith("Serving at "):
                url = line.split()[2]
                break
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0  # SIGTERM stops it cleanly


def test_cli_serves_until_stopped(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(m) for m in fixture_models()))
    with served_by_cli("--models", str(path), "--page-cap", "4", "--quiet") as url:
        assert url is not None and url.startswith("http://127.0.0.1:")
        response = get_session().get(f"{url}/api/models", timeout=5)
        assert len(response.json()) == 4 and "next" in response.links


# --------------------------------------------------------------------------- bundled sample
def test_bundled_sample_loads_and_crawls_in_ten_pages() -> None:
    models = load_models(SAMPLE)
    assert len(models) == 9_715
    assert sum(m["downloads"] for m in models) == 1_368_390_199
    oids = [m["_id"] for m in models]
    assert len(set(oids)) == 9_715 and oids == sorted(oids)
    assert all(m["_id"] == synthetic_object_id(m["id"]) for m in models)
    assert all(m["lastModified"].endswith(".000Z") for m in models)
    assert not any(
        {"createdAt", "likes", "downloadsAllTime", "library_name"} & set(m) for m in models
    )
    assert sum(1 for m in models if "pipeline_tag" not in m) == 1_151

    expand = ["author", "downloads", "downloadsAllTime", "createdAt", "tags", "private"]
    with FakeHub.from_file(SAMPLE) as sample:
        params = [("limit", "1000"), ("sort", "downloads")] + [("expand", e) for e in expand]
        pages, _ = crawl(sample, params)
    assert [len(p) for p in pages] == [1000] * 9 + [715]
    items = [i for p in pages for i in p]
    assert len({i["_id"] for i in items}) == 9_715
    downloads = [i["downloads"] for i in items]
    assert downloads == sorted(downloads, reverse=True)
    assert items[0]["id"] == "MIT/ast-finetuned-audioset-10-10-0.4593"
    assert items[0]["createdAt"] is None and items[0]["downloadsAllTime"] is None


@pytest.mark.skipif(not UPSTREAM_CSV.exists(), reason="upstream CSV not available here")
def test_bundled_sample_rebuilds_byte_for_byte() -> None:
    spec = importlib.util.spec_from_file_location("build_hub_2024_09_20", BUILDER)
    assert spec is not None and spec.loader is not None
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    data, _ = builder.build(UPSTREAM_CSV)
    assert data == SAMPLE.read_bytes()


# ------------------------------------------------------------------- account overviews
def overview_hub(**options: Any) -> FakeHub:
    """The fixture Hub with accounts: acme an organisation, solo a user in acme, tiny vanished
    (it has a model, no account)."""
    accounts = [
        Account(
            name="Acme",
            kind="org",
            fullname="Acme Research",
            verified=True,
            plan="enterprise",
            num_users=12,
            num_followers=340,
        ),
        Account(name="solo", kind="user", fullname="Solo Dev", plan="pro", orgs=("acme",)),
    ]
    return FakeHub(fixture_models(), accounts=accounts, **options)


def public_model_count(namespace: str) -> int:
    return sum(
        1
        for m in fixture_models()
        if m["id"].split("/")[0].lower() == namespace.lower() and not m["private"]
    )


def test_organization_overview_through_hfapi_and_plain_http() -> None:
    with overview_hub() as hub:
        org = HfApi(endpoint=hub.url).get_organization_overview("ACME")
        plain = get_session().get(f"{hub.url}/api/organizations/acme/overview")
    assert (org.name, org.fullname, org.is_verified, org.plan) == (
        "Acme",
        "Acme Research",
        True,
        "enterprise",
    )
    assert (org.num_users, org.num_followers) == (12, 340)
    assert org.num_models == public_model_count("acme") > 0
    assert plain.status_code == 200
    assert set(plain.json()) == {
        "avatarUrl",
        "name",
        "fullname",
        "details",
        "isVerified",
        "isFollowing",
        "numUsers",
        "numModels",
        "numSpaces",
        "numDatasets",
        "numFollowers",
        "numPapers",
        "plan",
    }
    assert plain.json()["name"] == "Acme"  # the canonical spelling, whatever was asked
    assert "country" not in plain.text  # the Hub has none


def test_user_overview_has_type_user_and_its_orgs() -> None:
    with overview_hub() as hub:
        api = HfApi(endpoint=hub.url)
        user = api.get_user_overview("SOLO")
        plain = get_session().get(f"{hub.url}/api/users/Solo/overview")
        with pytest.raises(HfHubHTTPError) as as_org:
            api.get_organization_overview("solo")  # a user is not an organisation
        with pytest.raises(HfHubHTTPError) as as_user:
            api.get_user_overview("acme")  # nor an organisation a user
    assert (user.username, user.fullname, user.user_type, user.is_pro) == (
        "solo",
        "Solo Dev",
        "user",
        True,
    )
    assert user.num_models == public_model_count("solo")
    assert [o.name for o in user.orgs] == ["Acme"]
    assert plain.status_code == 200 and plain.json()["type"] == "user"
    assert plain.json()["user"] == "solo"
    assert as_org.value.response.status_code == 404
    assert as_user.value.response.status_code == 404


def test_vanished_and_unknown_namespaces_are_404_on_both_overviews() -> None:
    with overview_hub() as hub:
        api = HfApi(endpoint=hub.url)
        assert any(m["id"].startswith("tiny/") for m in hub.models)  # tiny has models
        for name in ("tiny", "TINY", "nobody-at-all"):
            for lookup in (api.get_organization_overview, api.get_user_overview):
                with pytest.raises(HfHubHTTPError) as raised:
                    lookup(name)
                assert raised.value.response.status_code == 404
        org = get_session().get(f"{hub.url}/api/organizations/tiny/overview")
        user = get_session().get(f"{hub.url}/api/users/tiny/overview")
    assert (org.status_code, user.status_code) == (404, 404)
    assert org.headers["content-type"] == "application/json"
    assert org.json() == {"error": "Organization not found"}
    assert user.json() == {"error": "User not found"}


def test_overviews_share_the_listing_quota_and_are_recorded_per_namespace() -> None:
    with overview_hub(quota=5) as hub:
        urls = [
            f"{hub.url}/api/models?limit=2",
            f"{hub.url}/api/organizations/acme/overview",
            f"{hub.url}/api/users/acme/overview",
            f"{hub.url}/api/users/Solo/overview",
            f"{hub.url}/api/models?limit=2",
            f"{hub.url}/api/organizations/ACME/overview",
        ]
        responses = [get_session().get(u) for u in urls]
        assert hub.overview_request_count == 4
        assert len(hub.overview_requests("acme")) == 3
        assert [r.namespace for r in hub.overview_requests("solo")] == ["Solo"]
        assert [r.overview_seq for r in hub.requests] == [None, 1, 2, 3, None, 4]
        assert [r.list_seq for r in hub.requests] == [1, None, None, None, 2, None]
        hub.reset_counters()
        assert hub.overview_request_count == 0 and hub.overview_requests() == []
    assert [r.status_code for r in responses] == [200, 200, 404, 200, 200, 200]
    remaining = []
    for r in responses:
        info = parse_ratelimit_headers(r.headers)
        assert info is not None and (info.resource_type, info.limit) == ("api", 5)
        remaining.append(info.remaining)
    assert remaining == [4, 3, 2, 1, 0, 0]  # one bucket for listing and overviews

    with overview_hub(quota=2, enforce_quota=True) as limited:
        statuses = [
            get_session().get(f"{limited.url}/api/models").status_code,
            get_session().get(f"{limited.url}/api/organizations/acme/overview").status_code,
            get_session().get(f"{limited.url}/api/users/solo/overview").status_code,
        ]
    assert statuses == [200, 200, 429]


def test_overview_faults_by_sequence_number_and_by_namespace() -> None:
    faults = [
        Fault(request=2, kind="429", on="overview", reset=7, retry_after=3),
        Fault(request=None, kind="503", on="overview", namespace="SOLO"),
        Fault(request=2, kind="500"),  # a listing fault: overview numbers do not move it
    ]
    with overview_hub(faults=faults) as hub:
        api = HfApi(endpoint=hub.url)
        assert api.get_organization_overview("acme").name == "Acme"  # overview 1
        with pytest.raises(HfHubHTTPError) as limited:
            api.get_organization_overview("acme")  # overview 2: 429, not retried by the client
        for _ in range(2):  # every overview request for solo
            with pytest.raises(HfHubHTTPError) as unavailable:
                api.get_user_overview("solo")
            assert unavailable.value.response.status_code == 503
        assert api.get_organization_overview("acme").name == "Acme"  # a fault fires once
        listing = [get_session().get(f"{hub.url}/api/models").status_code for _ in range(2)]
        log = hub.overview_requests()
    response = limited.value.response
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    info = parse_ratelimit_headers(response.headers)
    assert info is not None and (info.remaining, info.reset_in_seconds) == (0, 7)
    assert "rate-limited" in response.json()["error"]
    assert [(r.namespace, r.status, r.fault) for r in log] == [
        ("acme", 200, None),
        ("acme", 429, "429"),
        ("solo", 503, "503"),
        ("solo", 503, "503"),
        ("acme", 200, None),
    ]
    assert listing == [200, 500]


def test_overview_fault_for_the_nth_request_of_a_namespace_and_other_kinds() -> None:
    faults = [
        Fault(request=2, kind="500", on="overview", namespace="acme"),
        Fault(request=1, kind="malformed", on="overview"),
        Fault(request=2, kind="slow", on="overview", delay=0.3),
    ]
    with overview_hub(faults=faults) as hub:
        url = f"{hub.url}/api/organizations/acme/overview"
        malformed = get_session().get(url)  # overview 1, acme 1
        started = time.monotonic()
        slow = get_session().get(f"{hub.url}/api/users/solo/overview")  # overview 2
        waited = time.monotonic() - started
        second_acme = get_session().get(url)  # acme 2
        third_acme = get_session().get(url)
        hub.set_faults([Fault(request=1, kind="drop", on="overview")])
        hub.reset_counters()
        with pytest.raises(httpx2.TransportError):
            get_session().get(url)
        assert hub.requests[0].status is None and hub.requests[0].fault == "drop"
    assert malformed.status_code == 200
    with pytest.raises(ValueError):
        orjson.loads(malformed.content)
    assert slow.status_code == 200 and waited >= 0.3
    assert (second_acme.status_code, third_acme.status_code) == (500, 200)


def test_overview_fault_and_account_validation() -> None:
    with pytest.raises(ValueError, match="listing"):
        Fault(request=None, kind="500")
    with pytest.raises(ValueError, match="listing"):
        Fault(request=1, kind="500", namespace="acme")
    with pytest.raises(ValueError, match="overview"):
        Fault(request=None, kind="500", on="overview")
    with pytest.raises(ValueError, match="repeat_previous"):
        Fault(request=1, kind="repeat_previous", on="overview")
    with pytest.raises(ValueError, match="on"):
        Fault(request=1, kind="500", on="detail")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        FakeHub(
            [],
            faults=[
                Fault(request=None, kind="500", on="overview", namespace="acme"),
                Fault(request=None, kind="503", on="overview", namespace="ACME"),
            ],
        )
    with pytest.raises(ValueError, match="case"):
        FakeHub([], accounts=[Account("acme", "org"), Account("ACME", "user")])
    with pytest.raises(ValueError):
        Account("acme", "org", orgs=("other",))
    with pytest.raises(ValueError):
        Account("a/b", "user")
    with pytest.raises(ValueError):
        Account("acme", "team")  # type: ignore[arg-type]
    hub = FakeHub([], accounts={"x": Account("Acme", "org")})  # a mapping: its values
    assert [a.name for a in hub.accounts] == ["Acme"]


# -------------------------------------------------------------------- long-tail scenario
FIXTURE_MAPPING = REPO / "tests" / "fixtures" / "org_country.csv"


@pytest.fixture(scope="module")
def tail() -> LongTail:
    return long_tail(20_000, seed=7, mapping_namespaces=namespaces_from_mapping(FIXTURE_MAPPING))


def test_long_tail_has_the_promised_population(tail: LongTail) -> None:
    mapping = namespaces_from_mapping(FIXTURE_MAPPING)
    models, accounts = tail.models, tail.accounts
    assert len(models) == 20_000
    assert len({m["id"].lower() for m in models}) == len({m["_id"] for m in models}) == 20_000
    for model in models[:50] + models[-50:]:
        assert set(model) >= {
            "_id",
            "id",
            "author",
            "downloads",
            "downloadsAllTime",
            "likes",
            "createdAt",
            "lastModified",
            "tags",
            "pipeline_tag",
            "library_name",
            "gated",
            "private",
        }
        assert model["id"].split("/")[0] == model["author"]
    kinds = {a.name.lower(): a.kind for a in accounts}
    reviewed = {name.lower() for name in mapping}
    authors = {m["author"].lower() for m in models}
    assert set(tail.reviewed) == set(mapping) and reviewed <= authors
    unreviewed_users = {n for n in authors - reviewed if kinds.get(n) == "user"}
    unreviewed_orgs = {n for n in authors - reviewed if kinds.get(n) == "org"}
    vanished = authors - set(kinds)
    assert len(unreviewed_users) >= 3000 and len(unreviewed_orgs) >= 3000
    assert unreviewed_users == {n.lower() for n in tail.users}
    assert unreviewed_orgs == {n.lower() for n in tail.orgs}
    assert vanished == {n.lower() for n in tail.vanished} and len(vanished) >= 10
    assert set(kinds) <= authors  # every account has models
    assert any(n != n.lower() for n in tail.users + tail.orgs)  # mixed-case canonical names
    assert all(m["private"] is False for m in models)

    tags = [t for m in models for t in m["tags"]]
    reviewed_ids = {m["id"] for m in models if m["author"].lower() in reviewed}
    quantized = [t.split(":", 2)[2] for t in tags if t.startswith("base_model:quantized:")]
    assert quantized and set(quantized) <= reviewed_ids
    assert any(t.startswith("base_model:finetune:") for t in tags)

    totals = tail.downloads_by_namespace()
    assert sum(totals.values()) == sum(m["downloads"] for m in models)
    ranked = sorted((n for n in totals if n.lower() not in reviewed), key=lambda n: -totals[n])
    top = [totals[n] for n in ranked[:100]]
    assert all(a > b for a, b in zip(top, top[1:], strict=False))  # clearly ranked
    assert top[0] > 100 * totals[ranked[len(ranked) // 2]]  # heavy-tailed


def test_long_tail_is_deterministic_for_a_seed(tail: LongTail, tmp_path: Path) -> None:
    again = long_tail(20_000, seed=7, mapping_namespaces=namespaces_from_mapping(FIXTURE_MAPPING))
    assert again == tail
    other = long_tail(20_000, seed=8, mapping_namespaces=namespaces_from_mapping(FIXTURE_MAPPING))
    assert other.models != tail.models
    first = write_models(tail.models, tmp_path / "a.jsonl.gz").read_bytes()
    second = write_models(again.models, tmp_path / "b.jsonl.gz").read_bytes()
    assert first == second


def test_long_tail_files_round_trip_and_serve(tmp_path: Path) -> None:
    small = long_tail(2_000, seed=1, mapping_namespaces=namespaces_from_mapping(FIXTURE_MAPPING))
    models_path = write_models(small.models, tmp_path / "models.jsonl.gz")
    accounts_path = write_accounts(small.accounts, tmp_path / "accounts.jsonl")
    assert load_models(models_path) == small.models
    assert load_accounts(accounts_path) == small.accounts
    with FakeHub.from_file(models_path, accounts=load_accounts(accounts_path)) as hub:
        api = HfApi(endpoint=hub.url)
        assert len(list(api.list_models(expand=ETL_EXPAND))) == 2_000
        assert api.get_user_overview(small.users[0]).user_type == "user"
        assert api.get_organization_overview(small.orgs[0]).name == small.orgs[0]
        with pytest.raises(HfHubHTTPError):
            api.get_organization_overview(small.vanished[0])


def test_cli_writes_and_serves_a_long_tail(tmp_path: Path) -> None:
    written = subprocess.run(
        [
            sys.executable,
            "-m",
            "hubshare.fakehub",
            "--long-tail",
            "2000",
            "--seed",
            "1",
            "--mapping",
            str(FIXTURE_MAPPING),
            "--write-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    assert "2000 models" in written.stdout
    expected = long_tail(2_000, seed=1, mapping_namespaces=namespaces_from_mapping(FIXTURE_MAPPING))
    models_path = tmp_path / "long-tail-models.jsonl.gz"
    accounts_path = tmp_path / "long-tail-accounts.jsonl"
    assert load_models(models_path) == expected.models
    assert load_accounts(accounts_path) == expected.accounts
    with served_by_cli(
        "--models", str(models_path), "--accounts", str(accounts_path), "--quiet"
    ) as url:
        assert url is not None
        user = get_session().get(f"{url}/api/users/{expected.users[0]}/overview", timeout=5)
        assert user.status_code == 200 and user.json()["type"] == "user"


def test_long_tail_never_names_a_reserved_namespace_ignoring_case() -> None:
    first = long_tail(2000, seed=3)
    reserved = [name.upper() for name in (*first.users[:50], *first.orgs[:50], *first.vanished)]
    again = long_tail(2000, seed=3, reserved_namespaces=reserved)
    names = {str(m["author"]).lower() for m in again.models}
    assert names.isdisjoint(name.lower() for name in reserved)
    assert len(again.models) == 2000 and len(again.users) == len(first.users)
    # Nothing reserved: the same tail as before, to the byte.
    assert long_tail(2000, seed=3, reserved_namespaces=()).models == first.models
