"""Extract: crawl `GET /api/models` page by page into files, then build the day's raw snapshot.

Every page is checked and written to disk (with the URL of the next one) before the crawl
advances, so a crawl that is killed and started again for the same date resumes from its last
stored page. The next page's request is already in flight while a page is checked, stored and
parsed into columns; the snapshot is built (`tasks.snapshot`) from those columns, and from the
stored files for pages an earlier, interrupted attempt fetched. Every request goes through the
one Hub client, `hubshare.hub`.

Every crawl ends: a next link already requested in this attempt, a page identical to an earlier
one, or more pages than HUBSHARE_MAX_CRAWL_MODELS fill at HUBSHARE_PAGE_SIZE stop it
(ExtractError, exit 4), with the pages stored so far kept for the next run to resume from.
"""

from __future__ import annotations

import contextvars
import gzip
import hashlib
import logging
import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from urllib.parse import urlencode

import orjson

from hubshare.errors import (
    CrawlBusyError,
    ExtractError,
    LeaseLostError,
    MalformedPageError,
    PageTooLargeError,
    SnapshotError,
    TransientExtractError,
)
from hubshare.hub import Fetched, HubClient, check_page, without_credentials
from hubshare.provenance import public_endpoint
from hubshare.settings import Settings
from hubshare.storage import DataStore, hold
from schemas.frames import EXPAND_FIELDS
from tasks.snapshot import (
    STORED_BY_EARLIER_RUN,
    ParsedPages,
    StoredSnapshot,
    build_snapshot,
    page_key,
    pages_key,
    parse_page,
    stored_snapshot,
)

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
LOCK_FILE = ".crawl.lock"


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


def first_page_url(endpoint: str, page_size: int) -> str:
    """`sort=createdAt`: the only sort key that does not move while we crawl."""
    params: list[tuple[str, str | int]] = [("limit", page_size), ("sort", "createdAt")]
    params += [("expand", name) for name in EXPAND_FIELDS]
    return f"{endpoint}/api/models?{urlencode(params)}"


#: Fast compression for stored pages: level 1 takes 1.9 ms for a 1,000-model page against 8 ms
#: at the default 9 (8 s per million models), for pages about a third larger.
PAGE_GZIP_LEVEL = 1

#: Called after each stored page with the crawl state and the page's model count.
PageCallback = Callable[["CrawlState", int], None]


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

    pages_before = state.pages
    page_limit = math.ceil(settings.max_crawl_models / settings.page_size)
    # What this attempt asked for and received: a listing that loops repeats one or the other
    # (a resumed attempt meets the loop again, so memory of one attempt is enough).
    requested = {state.next_url}
    received: dict[bytes, int] = {}
    # One request is in flight while the page before it is checked, stored and parsed: the
    # Hub's time and ours overlap. Still one request at a time, and the state advances only
    # once a page is stored, so a stop anywhere resumes at the first page not stored.
    ahead: _PageRequest | None = None
    with HubClient(settings) as hub:
        try:
            while state.next_url is not None:
                url = state.next_url
                if ahead is None:
                    ahead = _PageRequest(hub.get, url)
                page_no = state.pages + 1
                try:
                    fetched = ahead.result()
                except PageTooLargeError as err:
                    kept = _quarantine(err.head, page_no, store, snapshot_date)
                    raise PageTooLargeError(
                        f"page {page_no}: {err}; its first bytes are kept in {kept}, the next "
                        "run asks for the page again",
                        b"",
                    ) from None
                ahead = None
                body = fetched.response.content
                # A next page on another origin, or a loop, is refused here: the page that
                # names it is not stored, and nothing more is requested.
                next_url = hub.next_url(fetched.response)
                _refuse_loop(page_no, url, body, next_url, requested, received)
                if next_url:
                    ahead = _PageRequest(hub.get, next_url)
                count = _store_page(body, page_no, url, store, snapshot_date, parsed)
                state.pages = page_no
                state.requests += fetched.attempts
                state.retries += fetched.attempts - 1
                state.next_url = next_url
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
                if state.next_url is not None and page_no >= page_limit:
                    raise ExtractError(
                        f"the Hub's listing goes on past page {page_no}, more than "
                        f"HUBSHARE_MAX_CRAWL_MODELS={settings.max_crawl_models:,} models at "
                        f"HUBSHARE_PAGE_SIZE={settings.page_size}: stopped; the {page_no} pages "
                        "stored are kept, and a run with a larger HUBSHARE_MAX_CRAWL_MODELS "
                        "resumes after them"
                    )
        except TransientExtractError as err:
            err.pages_fetched = state.pages - pages_before
            raise
        except Exception:
            # The request in flight after a failure (a malformed page) is waited for, not
            # stored: our client closes once no request uses it. An interrupt (Ctrl-C) does
            # not wait.
            if ahead is not None:
                ahead.wait()
            raise
    return state


def _refuse_loop(
    page_no: int,
    url: str,
    body: bytes,
    next_url: str | None,
    requested: set[str | None],
    received: dict[bytes, int],
) -> None:
    """Stop a listing that loops: page `page_no` links a page this attempt already asked for,
    or is byte for byte a page it already received (a cursor that changes while the pages do
    not). Records the page and its next link otherwise."""
    where = f"page {page_no} ({public_endpoint(url)})"
    resume = f"the {page_no - 1} pages before it are kept, the next run asks for it again"
    if next_url is not None and next_url in requested:
        raise ExtractError(
            f"{where} links its next page to {public_endpoint(next_url)}, already requested in "
            f"this crawl: the Hub's listing loops; stopped, {resume}"
        )
    digest = hashlib.sha256(body).digest()
    earlier = received.get(digest)
    if earlier is not None and next_url is not None:
        raise ExtractError(
            f"{where} is identical to page {earlier}: the Hub's listing loops; stopped, {resume}"
        )
    requested.add(next_url)
    received[digest] = page_no


def _quarantine(body: bytes, page_no: int, store: DataStore, snapshot_date: date) -> str:
    """Keep a refused page aside for inspection (never used): where it is."""
    key = f"{pages_key(snapshot_date)}/quarantine/page-{page_no:06d}.json.gz"
    store.put(key, gzip.compress(body, PAGE_GZIP_LEVEL, mtime=0))
    return store.where(key)


def _store_page(
    body: bytes,
    page_no: int,
    url: str,
    store: DataStore,
    snapshot_date: date,
    parsed: ParsedPages | None,
) -> int:
    """Check page `page_no` and store it (parsed into `parsed` too, if given); returns its model
    count. A malformed page is kept aside for inspection and not stored: the crawl does not
    advance, so the next run asks for the same page again."""
    try:
        count = check_page(body, page_no, url)
    except MalformedPageError as err:
        kept = _quarantine(body, page_no, store, snapshot_date)
        raise MalformedPageError(
            f"{err}; kept in {kept}, the next run asks for the page again"
        ) from None
    stored_page = page_key(snapshot_date, page_no)
    store.put(stored_page, gzip.compress(body, PAGE_GZIP_LEVEL, mtime=0))
    if parsed is not None:
        parsed[page_no] = parse_page(body, page_no, store.where(stored_page))
    return count


class _PageRequest:
    """`fetch(url)` on a daemon thread (a Ctrl-C or the process's exit never waits for it)."""

    def __init__(self, fetch: Callable[[str], Fetched], url: str) -> None:
        self._fetch = fetch
        self._url = url
        # The caller's context (Prefect's run): huggingface_hub's "Rate limited" warnings, logged
        # on this thread, then reach the run's logs.
        self._context = contextvars.copy_context()
        self._outcome: Fetched | BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="hubshare-crawl", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._outcome = self._context.run(self._fetch, self._url)
        except BaseException as err:  # noqa: BLE001 - handed to the crawl, which raises it
            self._outcome = err

    def wait(self) -> None:
        self._thread.join()

    def result(self) -> Fetched:
        self._thread.join()
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        assert self._outcome is not None  # noqa: S101 - set by _run before it returns
        return self._outcome


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
