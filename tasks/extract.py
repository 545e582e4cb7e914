"""Extract: crawl `GET /api/models` page by page into files, then build the day's raw snapshot.

Every page is checked and written to disk (with the URL of the next one) before the crawl
advances, so a crawl that is killed and started again for the same date resumes from its last
stored page. The next page's request is already in flight while a page is checked, stored and
parsed into columns; the snapshot is built from those columns, and from the stored files for
pages an earlier, interrupted attempt fetched.
"""

from __future__ import annotations

import contextvars
import gzip
import io
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx2
import msgspec
import orjson
import polars as pl
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import (
    build_hf_headers,
    hf_raise_for_status,
    http_backoff,
    set_client_factory,
)
from huggingface_hub.utils._http import default_client_factory, hf_request_event_hook

from hubshare.errors import (
    CrawlBusyError,
    ExtractError,
    LeaseLostError,
    MalformedPageError,
    SnapshotError,
    TransientExtractError,
)
from hubshare.provenance import library_versions, package_version, public_endpoint, sha256_file
from hubshare.settings import Settings
from hubshare.storage import DataStore, hold
from schemas.frames import EXPAND_FIELDS, SNAPSHOT_SCHEMA

log = logging.getLogger(__name__)

#: How a page looks on the wire: timestamps as text, parsed once when the snapshot is built.
WIRE_SCHEMA = pl.Schema(
    {
        name: (pl.String if dtype == SNAPSHOT_SCHEMA["createdAt"] else dtype)
        for name, dtype in SNAPSHOT_SCHEMA.items()
    }
)
SNAPSHOT_FILE = "snapshot.parquet"
MANIFEST_FILE = "manifest.json"
STATE_FILE = "state.json"
LOCK_FILE = ".crawl.lock"


# ----------------------------------------------------------------------------------------------
# Where things live: keys in the data dir's store (hubshare.storage)


def day_key(snapshot_date: date) -> str:
    return f"raw/{snapshot_date.isoformat()}"


def snapshot_key(snapshot_date: date) -> str:
    return f"{day_key(snapshot_date)}/{SNAPSHOT_FILE}"


def manifest_key(snapshot_date: date) -> str:
    return f"{day_key(snapshot_date)}/{MANIFEST_FILE}"


def pages_key(snapshot_date: date) -> str:
    return f"{day_key(snapshot_date)}/pages"


def page_key(snapshot_date: date, page_no: int) -> str:
    return f"{pages_key(snapshot_date)}/page-{page_no:06d}.json.gz"


# ----------------------------------------------------------------------------------------------
# Crawl state


@dataclass
class CrawlState:
    """Progress of one date's crawl, persisted after every page."""

    endpoint: str
    first_url: str
    next_url: str | None
    pages: int = 0
    requests: int = 0
    retries: int = 0
    resumes: int = 0
    started_at: str = field(default_factory=lambda: _now().isoformat())
    finished_at: str | None = None

    @property
    def done(self) -> bool:
        return self.next_url is None

    def save(self, store: DataStore, key: str) -> None:
        store.put(key, orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2))

    @classmethod
    def load(cls, data: bytes) -> CrawlState:
        return cls(**orjson.loads(data))


def _now() -> datetime:
    return datetime.now(UTC)


def without_credentials(url: str) -> str:
    """`url` without a user:password part: what the crawl state on disk records."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def with_credentials(url: str, endpoint: str) -> str:
    """`url` with the user:password of `endpoint` when both name the same host (credentials live
    only in the settings, never on disk)."""
    secret, target = urlsplit(endpoint), urlsplit(url)
    if secret.username is None or target.hostname != secret.hostname or target.username:
        return url
    return urlunsplit(target._replace(netloc=f"{secret.netloc.rsplit('@', 1)[0]}@{target.netloc}"))


def first_page_url(endpoint: str, page_size: int) -> str:
    """`sort=createdAt`: the only sort key that does not move while we crawl."""
    params: list[tuple[str, str | int]] = [("limit", page_size), ("sort", "createdAt")]
    params += [("expand", name) for name in EXPAND_FIELDS]
    return f"{endpoint}/api/models?{urlencode(params)}"


# ----------------------------------------------------------------------------------------------
# HTTP through huggingface_hub's machinery


class _AttemptCounter:
    """Counts HTTP attempts (retries included) of the current thread's request:
    huggingface_hub's backoff does not report them."""

    def __init__(self) -> None:
        self._local = threading.local()

    def reset(self) -> None:
        self._local.attempts = 0

    @property
    def attempts(self) -> int:
        return int(getattr(self._local, "attempts", 0))

    def hook(self, request: httpx2.Request) -> None:
        self._local.attempts = self.attempts + 1


def _client_factory(settings: Settings, counter: _AttemptCounter) -> Callable[[], httpx2.Client]:
    # huggingface_hub's default client has no timeout at all: a stalled server would hang us.
    timeout = httpx2.Timeout(settings.http_read_timeout, connect=settings.http_connect_timeout)

    def make() -> httpx2.Client:
        return httpx2.Client(
            event_hooks={"request": [hf_request_event_hook, counter.hook]},
            follow_redirects=True,
            timeout=timeout,
        )

    return make


def _fetch_page(url: str, headers: dict[str, str], settings: Settings) -> httpx2.Response:
    """GET one page; 429 (RateLimit/Retry-After), 5xx, timeouts and dropped connections are
    retried by huggingface_hub's `http_backoff` with capped exponential backoff."""
    try:
        response = http_backoff(
            "GET",
            url,
            headers=headers,
            max_retries=settings.http_max_retries,
            base_wait_time=settings.http_base_wait,
            max_wait_time=settings.http_max_wait,
        )
        hf_raise_for_status(response)
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        reason = str(err).splitlines()[0]
        if status is not None and (status in (408, 429) or status >= 500):
            raise TransientExtractError(
                f"{public_endpoint(url)}: HTTP {status} after {settings.http_max_retries} retries "
                f"({reason})"
            ) from None
        raise ExtractError(
            f"{public_endpoint(url)}: the Hub refused the request: {reason}"
        ) from None
    except (httpx2.TransportError, httpx2.HTTPError) as err:
        raise TransientExtractError(
            f"{public_endpoint(url)}: {type(err).__name__}: {err or 'no response'} after "
            f"{settings.http_max_retries} retries (is HF_ENDPOINT reachable?)"
        ) from None
    return response


#: Fast compression for stored pages: level 1 takes 1.9 ms for a 1,000-model page against 8 ms
#: at the default 9 (8 s per million models), for pages about a third larger.
PAGE_GZIP_LEVEL = 1

#: What each requested field may be on the wire (None is always allowed: fields may be absent).
_WIRE_TYPES: dict[str, tuple[type, ...]] = {
    "_id": (str,),
    "id": (str,),
    "author": (str,),
    "downloads": (int,),
    "downloadsAllTime": (int,),
    "likes": (int,),
    "createdAt": (str,),
    "lastModified": (str,),
    "pipeline_tag": (str,),
    "library_name": (str,),
    "tags": (list,),
    "gated": (bool, str),
    "private": (bool,),
}


#: The same, as exact types (JSON gives no subclasses; a bool is not a count).
_EXACT_WIRE_TYPES: dict[str, frozenset[type]] = {
    name: frozenset(kinds) | {type(None)} for name, kinds in _WIRE_TYPES.items()
}


def wire_problem(item: object) -> str | None:
    """What is wrong with one model object against the wire schema, or None. The common case,
    a well-formed object, takes one exact-type lookup per field (20 ms per 1,000-model page with
    isinstance and its bool exception, 1,000 pages per million models)."""
    if (
        type(item) is dict
        and item.get("_id")
        and item.get("id")
        and all(type(item.get(name)) in kinds for name, kinds in _EXACT_WIRE_TYPES.items())
        and all(type(tag) is str for tag in item.get("tags") or ())
        and all(
            0 <= item[name] < 2**63
            for name in ("downloads", "downloadsAllTime", "likes")
            if item.get(name) is not None
        )
    ):
        return None
    return _describe_wire_problem(item)


def _describe_wire_problem(item: object) -> str | None:
    if not isinstance(item, dict):
        return f"is a {type(item).__name__}, not an object"
    if not item.get("_id") or not item.get("id"):
        return "has no `_id`/`id`"
    for name, kinds in _WIRE_TYPES.items():
        value = item.get(name)
        if value is None:
            continue
        # bool is an int in Python: a count must not be true/false.
        wrong = not isinstance(value, kinds) or (kinds == (int,) and isinstance(value, bool))
        if wrong:
            return f"has `{name}` = {value!r:.40} ({type(value).__name__})"
        if name == "tags" and not all(isinstance(tag, str) for tag in value):
            return "has a `tags` entry that is not a string"
        if kinds == (int,) and not 0 <= value < 2**63:
            return f"has `{name}` = {value} out of range"
    return None


#: Ids are non-empty text, counts fit a signed 64-bit integer and are never negative.
_Id = Annotated[str, msgspec.Meta(min_length=1)]
_Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class _WireModel(msgspec.Struct, gc=False):
    """`_WIRE_TYPES` as a msgspec type: its decoder checks a well-formed page in C, several
    times faster than `wire_problem` on each parsed object (which still names what is wrong)."""

    oid: _Id = msgspec.field(name="_id")
    id: _Id
    author: str | None = None
    downloads: _Count | None = None
    downloadsAllTime: _Count | None = None  # noqa: N815 - the Hub's field name
    likes: _Count | None = None
    createdAt: str | None = None  # noqa: N815
    lastModified: str | None = None  # noqa: N815
    pipeline_tag: str | None = None
    library_name: str | None = None
    tags: list[str] | None = None
    gated: bool | str | None = None
    private: bool | None = None


_WIRE_PAGE = msgspec.json.Decoder(list[_WireModel])


def _check_page(body: bytes, page_no: int, url: str) -> int:
    """Check a page against the wire schema before it is stored and the crawl advances: a JSON
    list of model objects with `_id` and `id` and each requested field of its wire type."""
    try:
        return len(_WIRE_PAGE.decode(body))
    except (msgspec.ValidationError, msgspec.DecodeError):
        return _describe_page_problem(body, page_no, url)  # names what is wrong


def _describe_page_problem(body: bytes, page_no: int, url: str) -> int:
    where = f"page {page_no} ({public_endpoint(url)})"
    try:
        items = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise MalformedPageError(f"{where}: response is not valid JSON ({err})") from None
    if not isinstance(items, list):
        raise MalformedPageError(f"{where}: expected a JSON list, got {type(items).__name__}")
    for position, item in enumerate(items):
        problem = wire_problem(item)
        if problem is not None:
            raise MalformedPageError(f"{where}: item {position} {problem}")
    return len(items)


#: Called after each stored page with the crawl state and the page's model count.
PageCallback = Callable[["CrawlState", int], None]


#: Pages parsed while the crawl stored them, by page number: the snapshot build reads from disk
#: only the pages it does not find here (those of an earlier, interrupted attempt).
ParsedPages = dict[int, pl.DataFrame]


def crawl_pages(
    snapshot_date: date,
    settings: Settings,
    on_page: PageCallback | None = None,
    parsed: ParsedPages | None = None,
) -> CrawlState:
    """Fetch every listing page for `snapshot_date` into `raw/<date>/pages/`, resuming if asked
    again after an interruption. Returns the final crawl state. A transient failure reports how
    many pages this attempt stored (`TransientExtractError.pages_fetched`). With `parsed`, each
    stored page is also parsed into it (while the next page is on its way)."""
    store = settings.store
    with crawl_lock(store, snapshot_date, settings.lease_seconds):
        return _crawl_pages(snapshot_date, settings, store, on_page, parsed)


@contextmanager
def crawl_lock(store: DataStore, snapshot_date: date, lease_seconds: float) -> Iterator[None]:
    """One crawl of a date at a time per data dir: a second process is told who holds it. On a
    local disk an OS lock (released when its holder exits, even killed); on object storage a
    lease its holder renews while it lives (taken over once a dead holder's lease expires). A
    crawl whose lease was taken over stops at its next page, told by whom (`storage.hold`)."""
    key = f"{pages_key(snapshot_date)}/{LOCK_FILE}"
    with hold(store, key, lease_seconds) as holder:
        if holder is not None:
            raise CrawlBusyError(
                f"another crawl of {snapshot_date} holds {store.where(key)} ({holder}): wait "
                "for it to finish, or stop it; the next run resumes where it stopped"
            )
        try:
            yield
        except LeaseLostError as lost:
            raise CrawlBusyError(
                f"another crawl of {snapshot_date} took over {store.where(key)} ({lost.holder}) "
                "while this one ran: this one stopped before its next page; the other carries on"
            ) from None


def _crawl_pages(
    snapshot_date: date,
    settings: Settings,
    store: DataStore,
    on_page: PageCallback | None,
    parsed: ParsedPages | None,
) -> CrawlState:
    state_key = f"{pages_key(snapshot_date)}/{STATE_FILE}"
    endpoint = settings.hf_endpoint
    stored_state = store.get(state_key)
    if stored_state is not None:
        state = CrawlState.load(stored_state)
        if state.endpoint != public_endpoint(endpoint):
            raise ExtractError(
                f"{store.where(pages_key(snapshot_date))} holds a crawl of {snapshot_date} from "
                f"{state.endpoint}, not from "
                f"{public_endpoint(endpoint)}: a crawl resumes only against its own Hub (delete "
                "the folder to crawl this one instead)"
            )
        if state.done:
            return state
        state.resumes += 1
        log.info("Resuming the %s crawl at page %d", snapshot_date, state.pages + 1)
    else:
        url = without_credentials(first_page_url(endpoint, settings.page_size))
        state = CrawlState(endpoint=public_endpoint(endpoint), first_url=url, next_url=url)
    state.save(store, state_key)

    token = settings.hf_token.get_secret_value() if settings.hf_token else False
    headers = build_hf_headers(
        token=token, library_name="hubshare", library_version=package_version("hubshare")
    )
    counter = _AttemptCounter()
    set_client_factory(_client_factory(settings, counter))
    pages_before = state.pages

    def fetch(url: str) -> tuple[httpx2.Response, int]:
        counter.reset()
        return _fetch_page(with_credentials(url, endpoint), headers, settings), counter.attempts

    # One request is in flight while the page before it is checked, stored and parsed: the
    # Hub's time and ours overlap. Still one request at a time, and the state advances only
    # once a page is stored, so a stop anywhere resumes at the first page not stored.
    ahead: _PageRequest | None = None
    try:
        while state.next_url is not None:
            url = state.next_url
            if ahead is None:
                ahead = _PageRequest(fetch, url)
            response, attempts = ahead.result()
            ahead = None
            next_url = response.links.get("next", {}).get("url")
            if next_url:
                ahead = _PageRequest(fetch, without_credentials(next_url))
            page_no = state.pages + 1
            try:
                count = _check_page(response.content, page_no, url)
            except MalformedPageError as err:
                # Kept aside for inspection; the crawl does not advance, so the next run asks
                # for the same page again.
                quarantine = f"{pages_key(snapshot_date)}/quarantine/page-{page_no:06d}.json.gz"
                store.put(quarantine, gzip.compress(response.content, PAGE_GZIP_LEVEL, mtime=0))
                raise MalformedPageError(
                    f"{err}; kept in {store.where(quarantine)}, the next run asks for the page "
                    "again"
                ) from None
            stored_page = page_key(snapshot_date, page_no)
            store.put(stored_page, gzip.compress(response.content, PAGE_GZIP_LEVEL, mtime=0))
            if parsed is not None:
                parsed[page_no] = parse_page(response.content, page_no, store.where(stored_page))
            state.pages = page_no
            state.requests += attempts
            state.retries += attempts - 1
            state.next_url = without_credentials(next_url) if next_url else None
            if state.next_url is None:
                state.finished_at = _now().isoformat()
            state.save(store, state_key)
            log.info(
                "Page %d: %d models%s",
                page_no,
                count,
                "" if state.next_url else " (last page)",
                extra={"crawl_page": page_no, "crawl_models": count, "crawl_done": state.done},
            )
            if on_page is not None:
                on_page(state, count)
    except TransientExtractError as err:
        err.pages_fetched = state.pages - pages_before
        raise
    except Exception:
        # The request in flight after a failure (a malformed page) is waited for, not stored:
        # our client closes once no request uses it. An interrupt (Ctrl-C) does not wait.
        if ahead is not None:
            ahead.wait()
        raise
    finally:
        # Hand the process its default client back (this closes ours).
        set_client_factory(default_client_factory)
    return state


class _PageRequest:
    """`fetch(url)` on a daemon thread (a Ctrl-C or the process's exit never waits for it)."""

    def __init__(self, fetch: Callable[[str], tuple[httpx2.Response, int]], url: str) -> None:
        self._fetch = fetch
        self._url = url
        # The caller's context (Prefect's run): huggingface_hub's "Rate limited" warnings, logged
        # on this thread, then reach the run's logs.
        self._context = contextvars.copy_context()
        self._outcome: tuple[httpx2.Response, int] | BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="hubshare-crawl", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._outcome = self._context.run(self._fetch, self._url)
        except BaseException as err:  # noqa: BLE001 - handed to the crawl, which raises it
            self._outcome = err

    def wait(self) -> None:
        self._thread.join()

    def result(self) -> tuple[httpx2.Response, int]:
        self._thread.join()
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        assert self._outcome is not None  # noqa: S101 - set by _run before it returns
        return self._outcome


# ----------------------------------------------------------------------------------------------
# Snapshot


@dataclass(frozen=True)
class SnapshotManifest:
    snapshot_date: str
    source: str
    endpoint: str
    crawl_started_at: str | None
    crawl_finished_at: str | None
    pages: int
    requests: int
    retries: int
    resumes: int
    rows_listed: int
    duplicates_dropped: int
    private_dropped: int
    row_count: int
    sha256: str
    schema: dict[str, str]
    library_versions: dict[str, str]
    #: SHA-256 of the archive file an imported snapshot was built from (None for a crawl).
    input_sha256: str | None = None

    @classmethod
    def load(cls, data: bytes) -> SnapshotManifest:
        return cls(**orjson.loads(data))

    def to_bytes(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)


#: Who stored the snapshot a run uses (`StoredSnapshot.stored_by`), as `hubshare run` says it.
STORED_BY_THIS_RUN = "this run"
STORED_BY_EARLIER_RUN = "an earlier run"
STORED_FIRST_BY_ANOTHER = "another run, first (this run's copy was not kept)"


@dataclass(frozen=True)
class StoredSnapshot:
    """A date's stored snapshot and who stored it: so that a run that used another's says so."""

    manifest: SnapshotManifest
    stored_by: str


def recorded_manifest(store: DataStore, snapshot_date: date) -> SnapshotManifest | None:
    """The manifest stored for `snapshot_date`, or None (not checked against its snapshot)."""
    data = store.get(manifest_key(snapshot_date))
    return None if data is None else SnapshotManifest.load(data)


def describe_snapshot(
    snapshot_date: date,
    sha256: str,
    counts: tuple[int, int, int, int],
    source: str,
    endpoint: str,
    crawl: CrawlState | None = None,
    input_sha256: str | None = None,
) -> SnapshotManifest:
    """The manifest of a snapshot file just written (its SHA-256 and `write_snapshot`'s
    `counts`)."""
    rows_listed, duplicates, private, rows = counts
    return SnapshotManifest(
        snapshot_date=snapshot_date.isoformat(),
        source=source,
        endpoint=endpoint,
        crawl_started_at=crawl.started_at if crawl else None,
        crawl_finished_at=crawl.finished_at if crawl else None,
        pages=crawl.pages if crawl else 0,
        requests=crawl.requests if crawl else 0,
        retries=crawl.retries if crawl else 0,
        resumes=crawl.resumes if crawl else 0,
        rows_listed=rows_listed,
        duplicates_dropped=duplicates,
        private_dropped=private,
        row_count=rows,
        sha256=sha256,
        schema={name: str(dtype) for name, dtype in SNAPSHOT_SCHEMA.items()},
        library_versions=library_versions(),
        input_sha256=input_sha256,
    )


def _read_stored(store: DataStore, key: str) -> bytes:
    try:
        return gzip.decompress(store.get(key) or b"")
    except (OSError, EOFError, ValueError) as err:
        raise _unreadable_page(store.where(key), err) from None


def parse_page(body: bytes, page_no: int, where: str) -> pl.DataFrame:
    """Page `page_no` (its JSON `body`, stored at `where`) as snapshot rows with `_order`, the
    position of each row in the crawl: what the snapshot build concatenates."""
    try:
        wire = pl.read_json(io.BytesIO(body), schema=WIRE_SCHEMA)
    except (ValueError, pl.exceptions.PolarsError) as err:
        raise _unreadable_page(where, err) from None
    # Pages are numbered from 1 and hold far fewer than a million models.
    order = pl.int_range(pl.len(), dtype=pl.Int64) + (page_no - 1) * 1_000_000
    return normalised_with_order(wire.with_columns(order.alias("_order")))


def _unreadable_page(where: str, err: Exception) -> SnapshotError:
    return SnapshotError(
        f"{where}: stored page cannot be read ({type(err).__name__}: "
        f"{(str(err).splitlines() or [''])[0]:.120}); restore it, or delete "
        f"{where.rsplit('/', 1)[0]} to crawl the date again (possible only on that date)"
    )


def normalise_models(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Wire frame -> snapshot frame: parse timestamps, fill `author` from the id's namespace."""

    def ts(name: str) -> pl.Expr:
        return pl.col(name).str.to_datetime(time_zone="UTC", time_unit="us", strict=False)

    return frame.with_columns(
        ts("createdAt"),
        ts("lastModified"),
        pl.coalesce("author", pl.col("id").str.split("/").list.first()).alias("author"),
        pl.col("tags").fill_null(pl.lit([], dtype=pl.List(pl.String))),
        pl.col("private").fill_null(False),
    )


def finalise_snapshot(
    listed: pl.LazyFrame | pl.DataFrame,
    store: DataStore,
    snapshot_date: date,
    describe: Callable[[tuple[int, int, int, int], str], SnapshotManifest],
) -> StoredSnapshot:
    """Deduplicate (one row per `_id`, the later observation wins), drop private models, sort by
    `_id` and store the snapshot and its manifest (`describe(counts, sha256)`); see
    `store_snapshot`. `listed` is wire rows carrying `_order` (observation order)."""
    # Eager on purpose: a lazy plan over thousands of page frames costs far more than the data.
    frame = listed.collect() if isinstance(listed, pl.LazyFrame) else listed
    return store_snapshot(normalised_with_order(frame), store, snapshot_date, describe)


#: A normalised model row and its observation order: what `write_snapshot` takes.
ORDERED_SNAPSHOT_SCHEMA = pl.Schema({**dict(SNAPSHOT_SCHEMA), "_order": pl.Int64()})


def normalised_with_order(wire: pl.DataFrame) -> pl.DataFrame:
    """Wire rows with `_order` -> snapshot columns and `_order` (timestamps parsed: a third of
    the wire frame's bytes)."""
    columns = [*SNAPSHOT_SCHEMA.names(), "_order"]
    return normalise_models(wire.lazy()).select(columns).cast(ORDERED_SNAPSHOT_SCHEMA).collect()


def write_snapshot(models: pl.DataFrame, path: Path) -> tuple[int, int, int, int]:
    """`models` (`ORDERED_SNAPSHOT_SCHEMA`) -> the snapshot file at `path`, sorted by `_id`, one
    row per `_id` (its last observation), public models only. Returns (listed, duplicates,
    private, rows). One sort does both the order and the deduplication, and copies are made only
    when rows are dropped: the frame is held about twice, not five times."""
    n_listed = models.height
    ordered = models.sort("_id", "_order")
    last = ordered.select(
        (pl.col("_id") != pl.col("_id").shift(-1)).fill_null(value=True)
    ).to_series()
    n_unique = int(last.sum())
    deduped = ordered if n_unique == n_listed else ordered.filter(last)
    del ordered
    n_private = int(deduped["private"].sum())
    snapshot = (deduped.filter(~pl.col("private")) if n_private else deduped).drop("_order")
    del deduped
    # Fixed writer settings so the same rows always give the same bytes (and SHA-256).
    snapshot.write_parquet(
        path, compression="zstd", compression_level=3, statistics=False, row_group_size=256_000
    )
    return n_listed, n_listed - n_unique, n_private, snapshot.height


#: How long a run that lost the race for a date's snapshot waits for the winner's manifest.
MANIFEST_WAIT_SECONDS = 30.0


def store_snapshot(
    models: pl.DataFrame,
    store: DataStore,
    snapshot_date: date,
    describe: Callable[[tuple[int, int, int, int], str], SnapshotManifest],
) -> StoredSnapshot:
    """Store the day's snapshot (see `write_snapshot`), then its manifest, each only if absent:
    the store refuses the second of two writers, whatever machine each runs on. The manifest
    comes last, so a manifest always has its snapshot. A writer that finds the snapshot already
    created uses the first writer's snapshot and manifest, and says so."""
    written: dict[str, Any] = {}

    def write(tmp: Path) -> None:
        written["counts"] = write_snapshot(models, tmp)
        written["sha256"] = sha256_file(tmp)

    created = store.write_file(snapshot_key(snapshot_date), write, create=True)
    manifest = describe(written["counts"], written["sha256"])
    if created:
        try:
            if store.create(manifest_key(snapshot_date), manifest.to_bytes()):
                return StoredSnapshot(manifest, STORED_BY_THIS_RUN)
        except BaseException:
            store.delete(snapshot_key(snapshot_date))  # ours: half a date is no date
            raise
    return StoredSnapshot(_first_writers(store, snapshot_date, manifest), STORED_FIRST_BY_ANOTHER)


def _first_writers(
    store: DataStore, snapshot_date: date, ours: SnapshotManifest
) -> SnapshotManifest:
    """Another writer created the day's snapshot first: its manifest, once it is there."""
    deadline = time.monotonic() + MANIFEST_WAIT_SECONDS
    theirs = recorded_manifest(store, snapshot_date)
    while theirs is None and time.monotonic() < deadline:
        time.sleep(0.2)
        theirs = recorded_manifest(store, snapshot_date)
    if theirs is None:
        # Its writer stopped between the two files. Same bytes as ours: complete it with ours.
        if store.sha256(snapshot_key(snapshot_date)) == ours.sha256:
            if store.create(manifest_key(snapshot_date), ours.to_bytes()):
                return ours
            theirs = recorded_manifest(store, snapshot_date)
        if theirs is None:
            raise SnapshotError(
                f"{store.where(snapshot_key(snapshot_date))} was created by another writer "
                f"that left no manifest within {MANIFEST_WAIT_SECONDS:.0f} s, and it differs "
                "from this run's: check what else writes this date; delete the snapshot on "
                "purpose to build it again"
            )
    log.warning(
        "Another run stored the %s snapshot first (%d models, sha256 %s%s); this run uses it",
        snapshot_date,
        theirs.row_count,
        theirs.sha256[:12],
        "" if theirs.sha256 == ours.sha256 else f", this run's would have been {ours.sha256[:12]}",
    )
    return theirs


def build_snapshot(
    snapshot_date: date, settings: Settings, state: CrawlState, parsed: ParsedPages | None = None
) -> StoredSnapshot:
    """Turn the stored pages of a finished crawl into the immutable snapshot and its manifest
    (taking from `parsed` the pages the crawl parsed as it stored them)."""
    store = settings.store
    pages = pages_key(snapshot_date)
    page_keys = [
        key
        for key in store.keys(pages)
        if key.rsplit("/", 1)[0] == pages and key.rsplit("/", 1)[1].startswith("page-")
    ]
    if len(page_keys) != state.pages:
        raise SnapshotError(
            f"{store.where(pages)}: {len(page_keys)} page files but the crawl state "
            f"records {state.pages}; delete the folder to crawl again"
        )
    # Pages are parsed and normalised one at a time into compact columns (the JSON text is
    # never all in memory), tagged with their crawl order for "the later observation wins".
    parsed = parsed if parsed is not None else {}
    parts = []
    for page_no, key in enumerate(page_keys, start=1):
        if page_no in parsed:
            parts.append(parsed.pop(page_no))
        else:
            parts.append(parse_page(_read_stored(store, key), page_no, store.where(key)))
    models = (
        pl.concat(parts, rechunk=False) if parts else pl.DataFrame(schema=ORDERED_SNAPSHOT_SCHEMA)
    )
    del parts
    return store_snapshot(
        models,
        store,
        snapshot_date,
        lambda counts, sha: describe_snapshot(
            snapshot_date, sha, counts, "crawl", state.endpoint, state
        ),
    )


def stored_snapshot(snapshot_date: date, settings: Settings) -> SnapshotManifest | None:
    """The day's snapshot if one was built, after checking the file still has its recorded hash."""
    store = settings.store
    manifest = recorded_manifest(store, snapshot_date)
    if manifest is None:
        return None
    where = store.where(snapshot_key(snapshot_date))
    actual = store.sha256(snapshot_key(snapshot_date))
    if actual is None:
        raise SnapshotError(
            f"{where}: missing, but {store.where(manifest_key(snapshot_date))} records it"
        )
    if actual != manifest.sha256:
        raise SnapshotError(
            f"{where}: SHA-256 {actual[:12]}… differs from the manifest's "
            f"{manifest.sha256[:12]}…; the raw snapshot was altered"
        )
    return manifest


def extract_snapshot(
    snapshot_date: date,
    settings: Settings,
    *,
    allow_backdated: bool = False,
    on_page: PageCallback | None = None,
) -> StoredSnapshot:
    """The raw snapshot of `snapshot_date`: the stored one if it exists (snapshots are immutable),
    otherwise crawl the Hub now (resuming an interrupted crawl) and build it."""
    existing = stored_snapshot(snapshot_date, settings)
    if existing is not None:
        log.info(
            "Using the stored %s snapshot (%d models, sha256 %s)",
            snapshot_date,
            existing.row_count,
            existing.sha256[:12],
        )
        return StoredSnapshot(existing, STORED_BY_EARLIER_RUN)
    today = _now().date()
    if snapshot_date != today and not allow_backdated:
        raise SnapshotError(
            f"no raw snapshot stored for {snapshot_date}, and the Hub keeps no history: a crawl "
            f"now would record {today}'s counters. Run without --date (today, UTC), or pass "
            f"--backdate to label today's crawl as {snapshot_date} on purpose"
        )
    parsed: ParsedPages = {}
    state = crawl_pages(snapshot_date, settings, on_page, parsed)
    return build_snapshot(snapshot_date, settings, state, parsed)


def read_snapshot(
    snapshot_date: date, settings: Settings, columns: list[str] | None = None
) -> pl.DataFrame:
    store = settings.store
    key = snapshot_key(snapshot_date)
    try:
        return store.read_parquet(key, columns=columns)
    except (OSError, pl.exceptions.PolarsError) as err:
        raise SnapshotError(f"{store.where(key)}: cannot read the raw snapshot ({err})") from None
