"""A local fake of the Hugging Face Hub model API, for tests and demos.

Serves ``GET /api/models`` (the listing that hubshare crawls) and ``GET /api/models/{id}`` from an
in-memory list of Hub model objects, on ``127.0.0.1`` only, in a background thread. It emulates
what the real Hub does (see ``docs/hub-api.md`` sections 1.1-1.4, 2.3 and 3.1):

* ``limit`` (capped at ``page_cap``, or rejected with 400 when ``reject_over_cap``), ``sort``
  (``createdAt``, ``downloads``, ``lastModified``, ``likes``, ``trendingScore``; default
  ``trendingScore``; always descending; ``direction`` is accepted and ignored), ``search``,
  ``author``, ``filter`` (repeatable, ANDed over ``tags``), ``pipeline_tag``, ``gated``,
  ``expand`` / ``expand[]`` (repeatable), ``full``, ``config``, ``cardData`` and ``cursor``.
  Other parameters (``apps``, ``inference``, ...) are accepted and ignored.
* Ordering is descending by the sort key with ties broken by ``_id`` ascending; a missing or
  null key sorts after every non-null value.
* The cursor is keyset, like the real one: URL-safe base64 of
  ``{"$or":[{"<sort>":v,"_id":{"$gt":"<_id>"}},{"<sort>":{"$lt":v}}]}``. It survives models being
  added or removed between pages (and, like the real Hub, a model whose key moves across the
  cursor is skipped or met twice).
* ``Link: <absolute url>; rel="next"`` carries every original parameter plus the cursor (and
  ``sort=trendingScore`` when no sort was given, as the real Hub does). It is absent on the last
  page.
* Every response has ``Content-Type: application/json``, ``X-Request-Id``, ``RateLimit`` and
  ``RateLimit-Policy`` headers (fixed window; 429 once the quota is spent if ``enforce_quota``).
* Private models are visible only with ``Authorization: Bearer <token>``; a bearer token that
  does not match ``token`` gets 401 "Invalid credentials in Authorization header".
* ``GET /api/organizations/{name}/overview`` and ``GET /api/users/{name}/overview`` (section 5)
  answer from the ``accounts`` given (:class:`Account`): 200 with the overview of an organisation,
  resp. of a user (``type: "user"``), else 404 with a JSON ``{"error": ...}`` body. Names match
  case-insensitively and the answer carries the canonical spelling; ``numModels`` counts the
  namespace's public models. A namespace with models and no account ("vanished") is 404 on both.
  They share the listing's rate-limit window and are recorded like every request.
* Faults (:class:`Fault`) are injected on listing requests by their sequence number, counting
  every HTTP request (retries included), and on overview requests by their sequence number or
  their namespace. Besides a failing Hub (429, 5xx, dropped connections, slow or malformed
  pages) they play a hostile one: a next link to another host (``foreign_next``), a listing
  that loops (``cyclic_next``, ``cursor_churn``) and a gzip bomb (``gzip_bomb``).

Deliberate simplifications: without ``limit`` the listing pages at ``page_cap`` items (the real
Hub paginates when no limit is sent; ``HfApi.list_models(limit=None)`` relies on it); ``filter``
matches tags exactly (case-sensitive); ``search`` only matches the id; an overview never says
``isFollowing`` and lists no papers, spaces or datasets; the organisation members and followers
endpoints and the ``hub-stats`` parquet file are not served.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import copy
import dataclasses
import gzip
import hmac
import math
import re
import signal
import socket
import struct
import sys
import threading
import time
import traceback
import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Final, Literal, Self, TypeVar, get_args
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import orjson

from hubshare.fakehub_scenarios import (
    Account,
    load_accounts,
    long_tail,
    namespaces_from_mapping,
    write_accounts,
    write_models,
)
from hubshare.provenance import synthetic_object_id
from hubshare.resources import reference_file

__all__ = [
    "Account",
    "DEFAULT_LIST_KEYS",
    "EXPAND_DETAIL_ONLY",
    "EXPAND_LISTING",
    "FULL_EXTRA_KEYS",
    "SORT_KEYS",
    "FakeHub",
    "Fault",
    "FaultKind",
    "FaultTarget",
    "RecordedRequest",
    "gzip_bomb",
    "load_accounts",
    "load_models",
    "main",
    "synthetic_object_id",
]

T = TypeVar("T")
Model = dict[str, Any]

FaultKind = Literal[
    "429",
    "500",
    "502",
    "503",
    "504",
    "drop",
    "slow",
    "malformed",
    "repeat_previous",
    "foreign_next",
    "cyclic_next",
    "cursor_churn",
    "gzip_bomb",
]
#: Listing-only kinds: they shape a listing page.
_PAGE_FAULTS: Final[frozenset[str]] = frozenset(
    {"repeat_previous", "foreign_next", "cyclic_next", "cursor_churn", "gzip_bomb"}
)
_FAULT_KINDS: Final[frozenset[str]] = frozenset(get_args(FaultKind))
FaultTarget = Literal["listing", "overview"]
_FAULT_TARGETS: Final[frozenset[str]] = frozenset(get_args(FaultTarget))
# /api/organizations/{name}/overview and /api/users/{name}/overview
_OVERVIEW_PATH: Final[re.Pattern[str]] = re.compile(
    r"^/api/(organizations|users)/([^/]+)/overview/?$"
)

SORT_KEYS: Final[tuple[str, ...]] = (
    "createdAt",
    "downloads",
    "lastModified",
    "likes",
    "trendingScore",
)
_NUMERIC_SORTS: Final[frozenset[str]] = frozenset({"downloads", "likes", "trendingScore"})
DEFAULT_SORT: Final[str] = "trendingScore"

# huggingface_hub 2.4.0 ExpandModelProperty_T (hf_api.py:159-191).
_EXPAND_ALL: Final[frozenset[str]] = frozenset(
    {
        "author",
        "baseModels",
        "cardData",
        "childrenModelCount",
        "config",
        "createdAt",
        "disabled",
        "downloads",
        "downloadsAllTime",
        "evalResults",
        "gated",
        "gguf",
        "inference",
        "inferenceProviderMapping",
        "lastModified",
        "library_name",
        "likes",
        "mask_token",
        "model-index",
        "pipeline_tag",
        "private",
        "resourceGroup",
        "safetensors",
        "sha",
        "siblings",
        "spaces",
        "tags",
        "transformersInfo",
        "trendingScore",
        "usedStorage",
        "widgetData",
    }
)
#: Expand values only accepted by ``GET /api/models/{id}`` (rejected with 400 in listings).
EXPAND_DETAIL_ONLY: Final[frozenset[str]] = frozenset(
    {"baseModels", "childrenModelCount", "usedStorage"}
)
#: Expand values accepted by the listing.
EXPAND_LISTING: Final[frozenset[str]] = _EXPAND_ALL - EXPAND_DETAIL_ONLY
#: Keys of a listing item without ``expand`` (``modelId`` is the legacy alias of ``id``).
DEFAULT_LIST_KEYS: Final[tuple[str, ...]] = (
    "_id",
    "id",
    "likes",
    "trendingScore",
    "private",
    "downloads",
    "tags",
    "pipeline_tag",
    "library_name",
    "createdAt",
    "modelId",
)
#: Keys that ``full=true`` adds to a listing item.
FULL_EXTRA_KEYS: Final[tuple[str, ...]] = (
    "author",
    "sha",
    "lastModified",
    "gated",
    "disabled",
    "siblings",
)
_BASE_MODEL_RELATIONS: Final[tuple[str, ...]] = ("adapter", "merge", "quantized", "finetune")
_RATE_LIMITED_MESSAGE: Final[str] = (
    "You have been rate-limited because you exceeded your 'api' quota of requests. "
    "Retry later or log in with a token to get a higher limit."
)
_INVALID_CREDENTIALS: Final[str] = "Invalid credentials in Authorization header"
_JSON: Final[str] = "application/json"


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault served on a listing request or on overview requests.

    ``on="listing"`` (the default): ``request`` is the 1-based sequence number of
    ``/api/models`` listing requests received by the server, counting every HTTP request
    (retries too).

    ``on="overview"``: ``request`` is the 1-based sequence number of overview requests
    (organisation and user overviews counted together), e.g. ``Fault(3, "503", on="overview")``.
    With ``namespace`` (any case) it applies only to that namespace's overview requests:
    ``request`` then counts those, and ``request=None`` means every one of them, e.g.
    ``Fault(None, "500", on="overview", namespace="acme")``. A namespace fault wins over a
    sequence-number fault on the same request. Kinds:

    * ``"429"``: status 429, ``RateLimit: "api";r=0;t=<reset>`` and, unless ``retry_after`` is
      None, ``Retry-After: <retry_after>``.
    * ``"500"``, ``"502"``, ``"503"``, ``"504"``: that status with a JSON error body.
    * ``"drop"``: the connection is closed without a single response byte.
    * ``"slow"``: wait ``delay`` seconds, then answer normally.
    * ``"malformed"``: status 200, normal headers (Link included), body not valid JSON.
    * ``"repeat_previous"``: the normal page with the last item of the previously served page
      prepended (a no-op when no page was served before). Listing only.
    * ``"foreign_next"``: the normal page, its ``Link: rel="next"`` pointing at ``target`` (e.g.
      ``"http://127.0.0.1:9"``, another origin) with the same path and query. Listing only.
    * ``"cyclic_next"``: the normal page linking its next page to itself (this request's own
      URL): a listing that never ends. Listing only.
    * ``"cursor_churn"``: the normal page linking its next page to its own URL plus a
      ``churn=<request number>`` parameter (ignored by the fake): each link is new while the page
      it serves is the same one. Listing only.
    * ``"gzip_bomb"``: status 200, ``Content-Encoding: gzip``, a valid gzip body of about
      ``size``/1000 bytes that inflates to ``size`` spaces (``size`` a whole number of MiB; built
      in about 1 s per GiB, cached). Listing only.
    """

    request: int | None
    kind: FaultKind
    retry_after: int | None = None
    reset: int = 0
    delay: float = 0.0
    on: FaultTarget = "listing"
    namespace: str | None = None
    target: str | None = None
    size: int = 3 * 2**30

    def __post_init__(self) -> None:
        if self.kind not in _FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {_FAULT_KINDS}")
        if self.on not in _FAULT_TARGETS:
            raise ValueError(f"Fault.on must be one of {sorted(_FAULT_TARGETS)}, got {self.on!r}")
        if self.on == "listing" and (self.request is None or self.namespace is not None):
            raise ValueError("a listing fault needs a request number and no namespace")
        if self.on == "overview" and self.request is None and not self.namespace:
            raise ValueError("an overview fault needs a request number or a namespace")
        if self.on == "overview" and self.kind in _PAGE_FAULTS:
            raise ValueError(f"{self.kind} is a listing fault")
        if (self.kind == "foreign_next") != (self.target is not None):
            raise ValueError("Fault.target is the foreign_next fault's origin, and only its")
        if self.size < 2**20 or self.size % 2**20:
            raise ValueError("Fault.size is a whole number of MiB")
        if self.request is not None and self.request < 1:
            raise ValueError("Fault.request is 1-based")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("Fault.retry_after must be >= 0")
        if self.reset < 0 or self.delay < 0:
            raise ValueError("Fault.reset and Fault.delay must be >= 0")


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One HTTP request as the fake Hub saw it. The token itself is never stored."""

    method: str
    path: str
    query: list[tuple[str, str]]
    status: int | None  # None when dropped (or while the answer is still being computed)
    had_auth: bool  # an ``Authorization: Bearer ...`` header was sent
    list_seq: int | None  # sequence number among /api/models listing requests, else None
    fault: str | None  # kind of the fault served, if any
    request_id: str
    at: float = field(default=0.0)  # time.monotonic() when received
    overview_seq: int | None = None  # sequence number among overview requests, else None
    namespace: str | None = None  # the name an overview request asked for, as sent


@dataclass(slots=True)
class _Response:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)


class _HttpError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_code: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code
        self.headers = list(headers)


@dataclass(frozen=True, slots=True)
class _ListQuery:
    pairs: list[tuple[str, str]]
    limit: int
    sort: str
    sort_given: bool
    search: str | None
    author: str | None
    filters: list[str]
    pipeline_tag: str | None
    gated: bool | None
    expand: list[str] | None
    full: bool
    config: bool
    card_data: bool
    cursor: tuple[tuple[int, float], str] | None


_Rank = tuple[int, float]


def _rank(sort: str, value: Any) -> _Rank:
    """Comparable form of a sort value: non-null values rank above null/missing/unparsable."""
    if sort in _NUMERIC_SORTS:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return (1, value)
        return (0, 0)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return (0, 0)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return (1, parsed.timestamp())
    return (0, 0)


def _is_after(rank: _Rank, oid: str, cursor: tuple[_Rank, str]) -> bool:
    """True when an item (rank, _id) comes strictly after the cursor in (desc rank, asc _id)."""
    cur_rank, cur_oid = cursor
    return rank < cur_rank or (rank == cur_rank and oid > cur_oid)


def _encode_cursor(sort: str, value: Any, oid: str) -> str:
    clauses: list[dict[str, Any]] = [{sort: value, "_id": {"$gt": oid}}]
    if value is not None:
        clauses.append({sort: {"$lt": value}})
    raw = orjson.dumps({"$or": clauses})
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_cursor(sort: str, cursor: str) -> tuple[_Rank, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        obj = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        clause = obj["$or"][0]
        value = clause[sort]
        oid = clause["_id"]["$gt"]
    except (binascii.Error, ValueError, KeyError, IndexError, TypeError) as exc:
        raise _HttpError(400, f"Invalid cursor for sort={sort}") from exc
    if not isinstance(oid, str):
        raise _HttpError(400, "Invalid cursor")
    return _rank(sort, value), oid


def _truthy(value: str) -> bool:
    return value.strip().lower() not in {"", "false", "0", "no"}


def _bearer(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def _error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def _namespace(model: Mapping[str, Any]) -> str:
    author = model.get("author")
    if isinstance(author, str) and author:
        return author
    model_id = str(model["id"])
    return model_id.split("/", 1)[0] if "/" in model_id else ""


def _is_gated(model: Mapping[str, Any]) -> bool:
    gated = model.get("gated")
    return gated not in (None, False, "false", "False")


def _parse_base_model_tags(tags: Any) -> list[tuple[str, str]]:
    """``base_model:<relation>:<id>`` tags as (relation, parent id) pairs, in tag order."""
    found: list[tuple[str, str]] = []
    if not isinstance(tags, list):
        return found
    for tag in tags:
        if not isinstance(tag, str) or not tag.startswith("base_model:"):
            continue
        rest = tag[len("base_model:") :]
        relation, sep, parent = rest.partition(":")
        if sep and relation in _BASE_MODEL_RELATIONS and parent:
            found.append((relation, parent))
    return found


def load_models(path: str | Path) -> list[Model]:
    """Read model objects from ``.jsonl``, ``.jsonl.gz``, ``.json`` or ``.json.gz``.

    A file whose content starts with ``[`` is read as one JSON list, anything else as JSON Lines.
    """
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    text = raw.lstrip()
    if text.startswith(b"["):
        data = orjson.loads(text)
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of model objects")
        items: list[Any] = data
    else:
        items = [orjson.loads(line) for line in text.splitlines() if line.strip()]
    models: list[Model] = []
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise ValueError(f"{path}: item {number} is not a JSON object")
        models.append(item)
    return models


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, port: int, hub: FakeHub) -> None:
        self.hub = hub
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, socket.socket):
            with self._open_lock:
                self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        if isinstance(request, socket.socket):
            with self._open_lock:
                self._open.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return  # the client went away (timeouts, dropped keep-alive): not a server bug
        if self.hub.verbose:
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "hubshare-fakehub/1"
    sys_version = ""
    # Headers and body leave in separate writes: with Nagle's algorithm on, each small response
    # on a kept-alive connection waits ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self.server.hub._handle(self)

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.hub.verbose:
            super().log_message(format, *args)


class FakeHub:
    """A fake Hugging Face Hub serving ``models`` on ``http://127.0.0.1:<port>``.

    Use as a context manager (or call :meth:`start` / :meth:`stop`). ``models`` are deep-copied;
    each needs a string ``id``; a missing ``_id`` is filled with :func:`synthetic_object_id`.
    ``accounts`` (a list, or a mapping whose values are used) answer the overview endpoints.
    """

    def __init__(
        self,
        models: Iterable[Mapping[str, Any]],
        *,
        faults: Iterable[Fault] = (),
        accounts: Iterable[Account] | Mapping[str, Account] = (),
        token: str | None = None,
        page_cap: int = 1000,
        reject_over_cap: bool = False,
        quota: int = 1000,
        window: int = 300,
        enforce_quota: bool = False,
        port: int = 0,
        verbose: bool = False,
    ) -> None:
        if page_cap < 1:
            raise ValueError("page_cap must be >= 1")
        if quota < 0 or window < 1:
            raise ValueError("quota must be >= 0 and window >= 1")
        self.page_cap = page_cap
        self.reject_over_cap = reject_over_cap
        self.quota = quota
        self.window = window
        self.enforce_quota = enforce_quota
        self.verbose = verbose
        self._token = token
        self._port = port
        self._lock = threading.RLock()
        self._models: list[Model] = [copy.deepcopy(dict(m)) for m in models]
        self._by_lower_id: dict[str, Model] = {}
        self._by_oid: dict[str, Model] = {}
        self._redirects: dict[str, str] = {}  # old lower-case id -> _id (renamed models)
        self._order_cache: dict[str, list[tuple[_Rank, str, Model]]] = {}
        self._model_counts: dict[str, int] = {}  # lower-case namespace -> public models
        self._reindex()
        self._accounts: dict[str, Account] = {}
        self.set_accounts(accounts)
        self._faults: dict[int, Fault] = {}
        self._overview_faults: dict[int, Fault] = {}
        self._namespace_faults: dict[tuple[str, int | None], Fault] = {}
        self.set_faults(faults)
        self._requests: list[RecordedRequest] = []
        self._generation = 0
        self._list_seq = 0
        self._overview_seq = 0
        self._overview_by_namespace: dict[str, int] = {}
        self._window_start: float | None = None
        self._window_used = 0
        self._last_served_item: Model | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- construction helpers
    @classmethod
    def from_file(cls, path: str | Path, **options: Any) -> FakeHub:
        """Build a fake Hub from a file of model objects (see :func:`load_models`); `options`
        are the constructor's keywords."""
        return cls(load_models(path), **options)

    # ---------------------------------------------------------------------------- lifecycle
    def start(self) -> Self:
        """Bind 127.0.0.1 (port chosen by the OS unless given) and serve in a daemon thread."""
        if self._server is not None:
            raise RuntimeError("FakeHub already started")
        server = _Server(self._port, self)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fakehub-{server.server_address[1]}",
            daemon=True,
        )
        self._server = server
        self._thread = thread
        thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close open (keep-alive) connections. Safe to call twice."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.close_open_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeHub is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (use as ``endpoint`` / ``HF_ENDPOINT``)."""
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ state and controls
    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the requests received so far, in arrival order.

        ``status`` is None for a dropped connection, and also while a request is still being
        answered (e.g. a ``slow`` fault whose client already gave up).
        """
        with self._lock:
            return list(self._requests)

    @property
    def list_request_count(self) -> int:
        """Number of ``/api/models`` listing requests received since the last reset."""
        with self._lock:
            return self._list_seq

    @property
    def overview_request_count(self) -> int:
        """Number of overview requests (organisation and user) received since the last reset."""
        with self._lock:
            return self._overview_seq

    def overview_requests(self, namespace: str | None = None) -> list[RecordedRequest]:
        """The overview requests received so far, all or those for ``namespace`` (any case)."""
        wanted = None if namespace is None else namespace.lower()
        with self._lock:
            return [
                r
                for r in self._requests
                if r.overview_seq is not None
                and (wanted is None or (r.namespace or "").lower() == wanted)
            ]

    @property
    def accounts(self) -> list[Account]:
        """The accounts served by the overview endpoints."""
        with self._lock:
            return list(self._accounts.values())

    def set_accounts(self, accounts: Iterable[Account] | Mapping[str, Account]) -> None:
        """Replace the accounts (e.g. between runs: a namespace appears, vanishes or changes
        kind). Two accounts whose names differ only in case are rejected, as on the Hub."""
        values = accounts.values() if isinstance(accounts, Mapping) else accounts
        by_lower: dict[str, Account] = {}
        for account in values:
            if not isinstance(account, Account):
                raise TypeError(f"expected an Account, got {account!r:.100}")
            key = account.name.lower()
            if key in by_lower:
                raise ValueError(f"two accounts named {account.name!r} (names ignore case)")
            by_lower[key] = account
        with self._lock:
            self._accounts = by_lower

    @property
    def models(self) -> list[Model]:
        """A deep copy of the current model objects (private ones included)."""
        with self._lock:
            return copy.deepcopy(self._models)

    def set_faults(self, faults: Iterable[Fault]) -> None:
        """Replace the configured faults (one per listing request number, per overview request
        number, and per namespace and request number or ``None``)."""
        by_request: dict[int, Fault] = {}
        by_overview: dict[int, Fault] = {}
        by_namespace: dict[tuple[str, int | None], Fault] = {}
        for fault in faults:
            if fault.namespace:  # Fault allows a namespace on overview faults only
                key = (fault.namespace.lower(), fault.request)
                if key in by_namespace:
                    raise ValueError(f"two overview faults for namespace request {key}")
                by_namespace[key] = fault
                continue
            number = fault.request
            if number is None:
                raise ValueError(f"{fault} has neither a request number nor a namespace")
            by_number = by_request if fault.on == "listing" else by_overview
            if number in by_number:
                raise ValueError(f"two faults for {fault.on} request {number}")
            by_number[number] = fault
        with self._lock:
            self._faults = by_request
            self._overview_faults = by_overview
            self._namespace_faults = by_namespace

    def reset_counters(self) -> None:
        """Start a new run: listing and overview sequence numbers restart at 1 (so configured
        faults fire again), the request log is cleared, the rate-limit window restarts and the
        "previous page" of ``repeat_previous`` is forgotten."""
        with self._lock:
            self._requests.clear()
            self._generation += 1
            self._list_seq = 0
            self._overview_seq = 0
            self._overview_by_namespace = {}
            self._window_start = None
            self._window_used = 0
            self._last_served_item = None

    def mutate(self, fn: Callable[[list[Model]], T]) -> T:
        """Call ``fn`` with the internal list of model dicts, under the server lock.

        ``fn`` may edit it in place (delete, append, rename ``id``, change counters, make
        private...). Renames (same ``_id``, new ``id``) make the old id redirect (307) on
        ``GET /api/models/{old id}``. Returns what ``fn`` returns.
        """
        with self._lock:
            before = {str(m.get("_id")): str(m.get("id", "")).lower() for m in self._models}
            result = fn(self._models)
            self._reindex(before)
            return result

    def _reindex(self, before: Mapping[str, str] | None = None) -> None:
        by_lower: dict[str, Model] = {}
        by_oid: dict[str, Model] = {}
        model_counts: dict[str, int] = {}
        for model in self._models:
            if not isinstance(model, dict) or not isinstance(model.get("id"), str):
                raise ValueError(f"every model needs a string 'id': {model!r:.200}")
            if not isinstance(model.get("_id"), str):
                model["_id"] = synthetic_object_id(model["id"])
            oid: str = model["_id"]
            if oid in by_oid:
                raise ValueError(f"duplicate _id {oid!r}")
            by_oid[oid] = model
            by_lower.setdefault(model["id"].lower(), model)
            if model.get("private") is not True:
                namespace = _namespace(model).lower()
                model_counts[namespace] = model_counts.get(namespace, 0) + 1
        if before is not None:
            for oid, old_lower in before.items():
                moved = by_oid.get(oid)
                if moved is not None and old_lower and moved["id"].lower() != old_lower:
                    self._redirects[old_lower] = oid
        self._redirects = {k: v for k, v in self._redirects.items() if v in by_oid}
        self._by_lower_id = by_lower
        self._by_oid = by_oid
        self._model_counts = model_counts
        self._order_cache = {}

    def _ordered(self, sort: str) -> list[tuple[_Rank, str, Model]]:
        cached = self._order_cache.get(sort)
        if cached is None:
            rows = [(_rank(sort, m.get(sort)), str(m["_id"]), m) for m in self._models]
            rows.sort(key=lambda row: row[1])
            rows.sort(key=lambda row: row[0], reverse=True)  # stable: _id ascending within ties
            cached = rows
            self._order_cache[sort] = cached
        return cached

    # ------------------------------------------------------------------- request handling
    def _consume_quota(self) -> tuple[int, int, bool]:
        now = time.monotonic()
        if self._window_start is None or now - self._window_start >= self.window:
            self._window_start = now
            self._window_used = 0
        self._window_used += 1
        remaining = max(self.quota - self._window_used, 0)
        elapsed = now - self._window_start
        reset = min(self.window, max(0, math.ceil(self.window - elapsed)))
        return remaining, reset, self._window_used > self.quota

    def _auth(self, header: str | None) -> tuple[bool, bool]:
        """(had_auth, authorised) for an Authorization header."""
        token = _bearer(header)
        if token is None:
            return header is not None, False
        if self._token is None:
            return True, True
        return True, hmac.compare_digest(token.encode(), self._token.encode())

    def _handle(self, handler: _Handler) -> None:
        received = time.monotonic()
        request_id = uuid.uuid4().hex
        split = urlsplit(handler.path)
        path = unquote(split.path)
        query = parse_qsl(split.query, keep_blank_values=True)
        auth_header = handler.headers.get("Authorization")
        had_auth, authorised = self._auth(auth_header)
        bad_token = _bearer(auth_header) is not None and not authorised
        is_list = path.rstrip("/") == "/api/models"
        overview = _OVERVIEW_PATH.match(path)
        with self._lock:
            remaining, reset, over_quota = self._consume_quota()
            seq: int | None = None
            overview_seq: int | None = None
            namespace: str | None = None
            fault: Fault | None = None
            if is_list:
                self._list_seq += 1
                seq = self._list_seq
                fault = self._faults.get(seq)
            elif overview is not None:
                namespace = overview.group(2)
                self._overview_seq += 1
                overview_seq = self._overview_seq
                key = namespace.lower()
                nth = self._overview_by_namespace.get(key, 0) + 1
                self._overview_by_namespace[key] = nth
                fault = (
                    self._namespace_faults.get((key, nth))
                    or self._namespace_faults.get((key, None))
                    or self._overview_faults.get(overview_seq)
                )
            record = RecordedRequest(
                method=handler.command,
                path=path,
                query=query,
                status=None,
                had_auth=had_auth,
                list_seq=seq,
                fault=None if fault is None else fault.kind,
                request_id=request_id,
                at=received,
                overview_seq=overview_seq,
                namespace=namespace,
            )
            generation = self._generation
            slot = len(self._requests)
            self._requests.append(record)  # arrival order; the status is filled in below

        rate_headers = [
            ("RateLimit", f'"api";r={remaining};t={reset}'),
            ("RateLimit-Policy", f'"fixed window";"api";q={self.quota};w={self.window}'),
        ]
        response: _Response | None
        if fault is not None and fault.kind == "drop":
            response = None
        elif fault is not None and fault.kind == "429":
            response = _Response(429, _error_body(_RATE_LIMITED_MESSAGE))
            rate_headers[0] = ("RateLimit", f'"api";r=0;t={fault.reset}')
            if fault.retry_after is not None:
                response.headers.append(("Retry-After", str(fault.retry_after)))
        elif fault is not None and fault.kind in {"500", "502", "503", "504"}:
            status = int(fault.kind)
            response = _Response(status, _error_body(f"Injected HTTP {status} (fake Hub fault)"))
        elif self.enforce_quota and over_quota:
            response = _Response(429, _error_body(_RATE_LIMITED_MESSAGE))
            response.headers.append(("Retry-After", str(reset)))
        elif bad_token:
            response = _Response(401, _error_body(_INVALID_CREDENTIALS))
            response.headers.append(("X-Error-Message", _INVALID_CREDENTIALS))
        else:
            if fault is not None and fault.kind == "slow":
                time.sleep(fault.delay)
            try:
                response = self._route(path, query, authorised, fault)
            except _HttpError as err:
                response = _Response(err.status, _error_body(err.message), err.headers)
                if err.error_code is not None:
                    response.headers.append(("X-Error-Code", err.error_code))
                    response.headers.append(("X-Error-Message", err.message))
            except Exception as exc:  # a bug in the fake: answer 500, keep serving
                if self.verbose:
                    traceback.print_exc()
                response = _Response(500, _error_body(f"fake Hub internal error: {exc!r}"))

        if response is not None:
            with self._lock:
                if generation == self._generation:  # not cleared by reset_counters meanwhile
                    self._requests[slot] = dataclasses.replace(record, status=response.status)

        if response is None:
            handler.close_connection = True  # no byte is written: the client sees a dropped socket
            return
        handler.send_response(response.status)
        handler.send_header("Content-Type", _JSON)
        handler.send_header("Content-Length", str(len(response.body)))
        for name, value in rate_headers:
            handler.send_header(name, value)
        handler.send_header("X-Request-Id", request_id)
        for name, value in response.headers:
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(response.body)

    def _route(
        self,
        path: str,
        query: list[tuple[str, str]],
        authorised: bool,
        fault: Fault | None,
    ) -> _Response:
        if path.rstrip("/") == "/api/models":
            return self._list(query, authorised, fault)
        overview = _OVERVIEW_PATH.match(path)
        if overview is not None:
            response = self._overview(overview.group(1), overview.group(2))
            if fault is not None and fault.kind == "malformed":
                response.body = response.body[: max(1, len(response.body) // 2)]
            return response
        if path.startswith("/api/models/"):
            parts = [p for p in path[len("/api/models/") :].split("/") if p]
            if len(parts) >= 3 and parts[-2] == "revision" and len(parts) in (3, 4):
                parts = parts[:-2]  # /api/models/{id}/revision/{rev}: revisions are not modelled
            if 1 <= len(parts) <= 2:
                return self._detail("/".join(parts), query, authorised)
        raise _HttpError(404, f"Not Found: {path}")

    # ---------------------------------------------------------------------------- listing
    def _parse_list_query(self, pairs: list[tuple[str, str]]) -> _ListQuery:
        values: dict[str, list[str]] = {}
        for key, value in pairs:
            values.setdefault(key, []).append(value)

        def last(key: str) -> str | None:
            got = values.get(key)
            return got[-1] if got else None

        limit = self.page_cap
        raw_limit = last("limit")
        if raw_limit is not None:
            try:
                limit = int(raw_limit)
            except ValueError as exc:
                raise _HttpError(400, f'"limit" must be an integer, got {raw_limit!r}') from exc
            if limit < 1:
                raise _HttpError(400, '"limit" must be a positive integer')
            if limit > self.page_cap:
                if self.reject_over_cap:
                    raise _HttpError(400, f'"limit" must be less than or equal to {self.page_cap}')
                limit = self.page_cap

        sort = last("sort")
        sort_given = sort is not None
        if sort is None or sort == "":
            sort = DEFAULT_SORT
        if sort not in SORT_KEYS:
            raise _HttpError(400, f'"sort" must be one of {", ".join(SORT_KEYS)}; got {sort!r}')

        expand_values = values.get("expand", []) + values.get("expand[]", [])
        expand: list[str] | None = None
        if expand_values:
            expand = []
            for value in expand_values:
                if value in EXPAND_DETAIL_ONLY:
                    raise _HttpError(400, f'"expand" value {value!r} is not allowed in listings')
                if value not in EXPAND_LISTING:
                    raise _HttpError(
                        400,
                        f'"expand" must be one of {", ".join(sorted(EXPAND_LISTING))}; '
                        f"got {value!r}",
                    )
                if value not in expand:
                    expand.append(value)

        full = any(_truthy(v) for v in values.get("full", []))
        config = any(_truthy(v) for v in values.get("config", []))
        card_data = any(_truthy(v) for v in values.get("cardData", []))
        if expand is not None and (full or config or card_data):
            raise _HttpError(400, '"expand" cannot be combined with "full", "config" or "cardData"')

        gated_raw = last("gated")
        gated = None if gated_raw is None else _truthy(gated_raw)
        cursor_raw = last("cursor")
        cursor = None if cursor_raw in (None, "") else _decode_cursor(sort, str(cursor_raw))
        return _ListQuery(
            pairs=pairs,
            limit=limit,
            sort=sort,
            sort_given=sort_given,
            search=last("search") or None,
            author=last("author") or None,
            filters=[f for f in values.get("filter", []) if f],
            pipeline_tag=last("pipeline_tag") or None,
            gated=gated,
            expand=expand,
            full=full,
            config=config,
            card_data=card_data,
            cursor=cursor,
        )

    @staticmethod
    def _matches(model: Model, q: _ListQuery, authorised: bool) -> bool:
        if model.get("private") is True and not authorised:
            return False
        if q.search is not None and q.search.lower() not in str(model["id"]).lower():
            return False
        if q.author is not None and _namespace(model).lower() != q.author.lower():
            return False
        if q.filters:
            tags = model.get("tags")
            if not isinstance(tags, list) or any(f not in tags for f in q.filters):
                return False
        if q.pipeline_tag is not None and model.get("pipeline_tag") != q.pipeline_tag:
            return False
        return q.gated is None or _is_gated(model) == q.gated

    @staticmethod
    def _render_list_item(model: Model, q: _ListQuery) -> Model:
        if q.expand is not None:
            item: Model = {"_id": model["_id"], "id": model["id"]}
            for key in q.expand:
                item[key] = model.get(key)
            return item
        keys = list(DEFAULT_LIST_KEYS)
        if q.full:
            keys.extend(FULL_EXTRA_KEYS)
        if q.config:
            keys.append("config")
        if q.card_data:
            keys.append("cardData")
        item = {}
        for key in keys:
            if key == "modelId":
                item[key] = model["id"]
            elif key in model:
                item[key] = model[key]
        return item

    def _next_link(self, q: _ListQuery, cursor: str) -> str:
        pairs = [(k, v) for k, v in q.pairs if k != "cursor"]
        if not q.sort_given:
            pairs.append(("sort", q.sort))
        pairs.append(("cursor", cursor))
        return f'<{self.url}/api/models?{urlencode(pairs)}>; rel="next"'

    def _list(
        self, pairs: list[tuple[str, str]], authorised: bool, fault: Fault | None
    ) -> _Response:
        q = self._parse_list_query(pairs)
        with self._lock:
            ordered = self._ordered(q.sort)
            start = 0
            if q.cursor is not None:
                lo, hi = 0, len(ordered)
                while lo < hi:  # first position strictly after the cursor
                    mid = (lo + hi) // 2
                    if _is_after(ordered[mid][0], ordered[mid][1], q.cursor):
                        hi = mid
                    else:
                        lo = mid + 1
                start = lo
            page: list[Model] = []
            has_more = False
            for _rank_value, _oid, model in ordered[start:]:
                if not self._matches(model, q, authorised):
                    continue
                if len(page) == q.limit:
                    has_more = True
                    break
                page.append(model)
            items = [self._render_list_item(m, q) for m in page]
            link = None
            if has_more:
                last_model = page[-1]
                link = self._next_link(
                    q, _encode_cursor(q.sort, last_model.get(q.sort), str(last_model["_id"]))
                )
            kind = None if fault is None else fault.kind
            if kind == "repeat_previous" and self._last_served_item is not None:
                items.insert(0, self._last_served_item)
            if kind != "malformed" and page:
                self._last_served_item = items[-1]
            body = orjson.dumps(items)
        if kind == "malformed":
            body = body[: max(1, len(body) // 2)]  # truncated JSON: never parses
        this_page = f"{self.url}/api/models?{urlencode(pairs)}"
        if kind == "foreign_next" and fault is not None and fault.target is not None:
            link = f'<{fault.target}/api/models?{urlencode(pairs)}>; rel="next"'
        elif kind == "cyclic_next":
            link = f'<{this_page}>; rel="next"'
        elif kind == "cursor_churn" and fault is not None:
            link = f'<{this_page}&churn={fault.request}>; rel="next"'
        response = _Response(200, body)
        if kind == "gzip_bomb" and fault is not None:
            response = _Response(200, gzip_bomb(fault.size), [("Content-Encoding", "gzip")])
        if link is not None:
            response.headers.append(("Link", link))
        return response

    # --------------------------------------------------------------------------- overviews
    def _overview(self, endpoint: str, name: str) -> _Response:
        with self._lock:
            account = self._accounts.get(name.lower())
            if endpoint == "organizations":
                if account is None or account.kind != "org":
                    raise _HttpError(404, "Organization not found")
                return _Response(200, orjson.dumps(self._organization_json(account)))
            if account is None or account.kind != "user":
                raise _HttpError(404, "User not found")
            orgs = [
                self._organization_json(org, short=True)
                for org in (self._accounts.get(o.lower()) for o in account.orgs)
                if org is not None and org.kind == "org"
            ]
            user = {
                "avatarUrl": _avatar_url(account.name),
                "fullname": account.fullname or account.name,
                "user": account.name,
                "details": account.details,
                "isFollowing": False,
                "isPro": account.plan == "pro",
                "numModels": self._model_counts.get(account.name.lower(), 0),
                "numDatasets": 0,
                "numSpaces": 0,
                "numDiscussions": 0,
                "numPapers": 0,
                "numUpvotes": 0,
                "numLikes": 0,
                "numFollowing": 0,
                "numFollowers": account.num_followers,
                "type": "user",
                "orgs": orgs,
            }
            return _Response(200, orjson.dumps(user))

    def _organization_json(self, account: Account, *, short: bool = False) -> dict[str, Any]:
        """An organisation's overview; ``short``: the form nested in a user's ``orgs``."""
        obj: dict[str, Any] = {
            "avatarUrl": _avatar_url(account.name),
            "name": account.name,
            "fullname": account.fullname or account.name,
        }
        if short:
            return obj
        obj.update(
            details=account.details,
            isVerified=account.verified,
            isFollowing=False,
            numUsers=account.num_users,
            numModels=self._model_counts.get(account.name.lower(), 0),
            numSpaces=0,
            numDatasets=0,
            numFollowers=account.num_followers,
            numPapers=0,
            plan=account.plan,
        )
        return obj

    # ----------------------------------------------------------------------------- detail
    def _detail(self, repo_id: str, pairs: list[tuple[str, str]], authorised: bool) -> _Response:
        not_found = _HttpError(
            404,
            "Repository Not Found for url: /api/models/" + repo_id,
            error_code="RepoNotFound",
        )
        expand_values = [v for k, v in pairs if k in ("expand", "expand[]")]
        for value in expand_values:
            if value not in _EXPAND_ALL:
                raise _HttpError(400, f'"expand" must be one of {", ".join(sorted(_EXPAND_ALL))}')
        with self._lock:
            model = self._by_lower_id.get(repo_id.lower())
            if model is None:
                oid = self._redirects.get(repo_id.lower())
                target = None if oid is None else self._by_oid.get(oid)
                if target is None or (target.get("private") is True and not authorised):
                    raise not_found
                location = f"{self.url}/api/models/{quote(str(target['id']))}"
                if pairs:
                    location += "?" + urlencode(pairs)
                return _Response(
                    307,
                    orjson.dumps({"error": "Repository moved", "url": location}),
                    [("Location", location)],
                )
            if model.get("private") is True and not authorised:
                raise not_found
            if not expand_values:
                item: Model = {**copy.deepcopy(model), "modelId": model["id"]}
                return _Response(200, orjson.dumps(item))
            item = {"_id": model["_id"], "id": model["id"]}
            for key in dict.fromkeys(expand_values):
                if key == "baseModels":
                    base = self._base_models(model)
                    if base is not None:
                        item[key] = base
                elif key == "childrenModelCount" and key not in model:
                    item[key] = self._children_count(model, authorised)
                else:
                    item[key] = copy.deepcopy(model.get(key))
            return _Response(200, orjson.dumps(item))

    def _base_models(self, model: Model) -> Any:
        if "baseModels" in model:
            return copy.deepcopy(model["baseModels"])
        parents = _parse_base_model_tags(model.get("tags"))
        if not parents:
            return None
        relation = parents[0][0]
        models: list[dict[str, str]] = []
        for rel, parent in parents:
            if rel != relation:
                continue
            known = self._by_lower_id.get(parent.lower())
            if known is not None:
                models.append({"_id": str(known["_id"]), "id": str(known["id"])})
            else:
                models.append({"id": parent})  # parent not in this fake Hub: no _id to give
        return {"relation": relation, "models": models}

    def _children_count(self, model: Model, authorised: bool) -> dict[str, int]:
        counts = dict.fromkeys(_BASE_MODEL_RELATIONS, 0)
        target = str(model["id"]).lower()
        for other in self._models:
            if other.get("private") is True and not authorised:
                continue
            relations = {
                rel for rel, p in _parse_base_model_tags(other.get("tags")) if p.lower() == target
            }
            for rel in relations:
                counts[rel] += 1
        return counts


@lru_cache(maxsize=2)
def gzip_bomb(size: int) -> bytes:
    """A valid gzip body inflating to `size` spaces (a whole number of MiB), about a thousand
    times smaller. Deflate's full flush makes every MiB compress to the same block, so the
    block is compressed once and repeated; only the CRC reads all `size` bytes."""
    mib = b" " * 2**20
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = compressor.compress(mib) + compressor.flush(zlib.Z_FULL_FLUSH)
    count = size // 2**20
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(mib, crc)
    end = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS).flush(zlib.Z_FINISH)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # gzip, deflate, no name, mtime 0
    return header + block * count + end + struct.pack("<II", crc, size & 0xFFFFFFFF)


def _avatar_url(name: str) -> str:
    # The Hub's default avatars are relative paths; nothing fetches them here.
    return f"/avatars/{synthetic_object_id(name.lower())}.svg"


def _default_sample() -> Path:
    return reference_file("data/samples/hub-2024-09-20.jsonl.gz")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hubshare.fakehub [--models FILE] [--accounts FILE] [--port N] ...``, or
    ``python -m hubshare.fakehub --long-tail 20000 [--seed N] [--mapping CSV] [--write-dir D]``.
    """
    parser = argparse.ArgumentParser(
        prog="python -m hubshare.fakehub",
        description="Serve a fake Hugging Face Hub model API on 127.0.0.1 until Ctrl-C.",
    )
    parser.add_argument(
        "--models",
        type=Path,
        default=None,
        help="model objects: .jsonl, .jsonl.gz or .json list (default: the bundled sample)",
    )
    parser.add_argument(
        "--accounts",
        type=Path,
        default=None,
        help="accounts for the overview endpoints: JSON Lines of hubshare Account objects",
    )
    parser.add_argument(
        "--long-tail",
        type=int,
        default=None,
        metavar="N",
        help="serve a generated long-tail Hub of N models (and its accounts) instead",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of --long-tail (default 0)")
    parser.add_argument(
        "--mapping",
        type=Path,
        default=None,
        help="mapping CSV whose namespaces head --long-tail (default data/org_country.csv)",
    )
    parser.add_argument(
        "--write-dir",
        type=Path,
        default=None,
        help="with --long-tail: write long-tail-models.jsonl.gz and long-tail-accounts.jsonl "
        "here and exit instead of serving",
    )
    parser.add_argument("--port", type=int, default=0, help="port (default: chosen by the OS)")
    parser.add_argument("--page-cap", type=int, default=1000, help="maximum page size")
    parser.add_argument(
        "--reject-over-cap", action="store_true", help="answer 400 to limit > page cap"
    )
    parser.add_argument("--token", default=None, help="token that unlocks private models")
    parser.add_argument("--quota", type=int, default=1000, help="requests per rate-limit window")
    parser.add_argument("--window", type=int, default=300, help="rate-limit window, seconds")
    parser.add_argument(
        "--enforce-quota", action="store_true", help="answer 429 once the quota is spent"
    )
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args(argv)

    models: list[Model]
    accounts: list[Account] = []
    if args.long_tail is not None:
        if args.models is not None or args.accounts is not None:
            parser.error("--long-tail replaces --models and --accounts")
        mapping = args.mapping or reference_file("data/org_country.csv")
        scenario = long_tail(
            args.long_tail, seed=args.seed, mapping_namespaces=namespaces_from_mapping(mapping)
        )
        if args.write_dir is not None:
            models_path = write_models(
                scenario.models, args.write_dir / "long-tail-models.jsonl.gz"
            )
            accounts_path = write_accounts(
                scenario.accounts, args.write_dir / "long-tail-accounts.jsonl"
            )
            print(f"Wrote {len(scenario.models)} models to {models_path}", flush=True)
            print(f"Wrote {len(scenario.accounts)} accounts to {accounts_path}", flush=True)
            return 0
        models, accounts = scenario.models, scenario.accounts
        source = f"a long tail (seed {args.seed}, head from {mapping})"
    else:
        if args.write_dir is not None:
            parser.error("--write-dir needs --long-tail")
        models_file = args.models or _default_sample()
        models = load_models(models_file)
        if args.accounts is not None:
            accounts = load_accounts(args.accounts)
        source = str(models_file)

    hub = FakeHub(
        models,
        accounts=accounts,
        token=args.token,
        page_cap=args.page_cap,
        reject_over_cap=args.reject_over_cap,
        quota=args.quota,
        window=args.window,
        enforce_quota=args.enforce_quota,
        port=args.port,
        verbose=not args.quiet,
    )
    with hub:
        print(
            f"Fake Hugging Face Hub: {len(models)} models and {len(accounts)} accounts "
            f"from {source}",
            flush=True,
        )
        print(f"Serving at {hub.url}  (export HF_ENDPOINT={hub.url})", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        stop = threading.Event()

        def _on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, _on_signal)  # also when started with SIGINT ignored (nohup, &)
        while not stop.wait(0.5):
            pass
        print("Stopping.", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
