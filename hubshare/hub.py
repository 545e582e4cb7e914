"""The one client of the Hugging Face Hub's HTTP API, through huggingface_hub's machinery.

`HubClient` owns what every Hub request needs: one httpx2 session with our timeouts and
huggingface_hub's request hook, the headers (with the token), `http_backoff` (429 with
RateLimit/Retry-After, 5xx, timeouts and dropped connections, within the settings' retries and
waits), the errors a data engineer can act on, and the same-origin rule: a URL (a next page, a
redirect) on another scheme, host or port than HF_ENDPOINT is refused before any request is
sent there, so the token never leaves the Hub; and the size cap: a response body is read as a
stream and refused once it decompresses to more than HUBSHARE_MAX_PAGE_BYTES, so a gzip bomb
never inflates in memory. It also checks a listing page against the wire
schema (`check_page`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import httpx2
import msgspec
import orjson
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import (
    build_hf_headers,
    hf_raise_for_status,
    http_stream_backoff,
    set_client_factory,
)
from huggingface_hub.utils._http import default_client_factory, hf_request_event_hook

from hubshare.errors import (
    ExtractError,
    MalformedPageError,
    PageTooLargeError,
    TransientExtractError,
)
from hubshare.provenance import package_version, public_endpoint
from hubshare.settings import Settings
from schemas.frames import WIRE_MODEL, wire_problem

#: Redirects followed (each on HF_ENDPOINT's origin) before a request is given up.
MAX_REDIRECTS = 10

_DEFAULT_PORTS = {"http": 80, "https": 443}

#: Headers that describe the body as it came over the wire, not the decoded body a checked
#: response carries.
_WIRE_BODY_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of `url`, with the scheme's default port when none is given."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme, 0)


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


@dataclass(frozen=True)
class Fetched:
    """A Hub response and the HTTP attempts it took (retries and redirects included)."""

    response: httpx2.Response
    attempts: int


@dataclass(frozen=True)
class JsonReply:
    """A JSON GET's answer: its status and parsed body (None for 404, "not found")."""

    status: int
    body: Any
    attempts: int

    @property
    def found(self) -> bool:
        return self.status != 404


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


class HubClient:
    """Requests to HF_ENDPOINT, used as a context manager:

        with HubClient(settings) as hub:
            fetched = hub.get(url)
            reply = hub.get_json("/api/users/someone/overview")

    `http_backoff` sends through huggingface_hub's process-wide session, so the client installs
    its session factory on entry and hands the default back on exit (closing its session): one
    client at a time per process.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._endpoint = settings.hf_endpoint
        token = settings.hf_token.get_secret_value() if settings.hf_token else False
        self._headers = build_hf_headers(
            token=token, library_name="hubshare", library_version=package_version("hubshare")
        )
        self._counter = _AttemptCounter()

    @property
    def endpoint(self) -> str:
        """HF_ENDPOINT as safe to record and name (without credentials)."""
        return public_endpoint(self._endpoint)

    def __enter__(self) -> Self:
        set_client_factory(self._new_session)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Hand the process its default client back (this closes ours).
        set_client_factory(default_client_factory)

    def _new_session(self) -> httpx2.Client:
        # huggingface_hub's default client has no timeout at all: a stalled server would hang
        # us. Redirects are followed by `_send`, which checks each target's origin first.
        timeout = httpx2.Timeout(
            self._settings.http_read_timeout, connect=self._settings.http_connect_timeout
        )
        return httpx2.Client(
            event_hooks={"request": [hf_request_event_hook, self._counter.hook]},
            follow_redirects=False,
            timeout=timeout,
        )

    def url(self, path: str, params: list[tuple[str, str | int]] | None = None) -> str:
        """The URL of `path` (e.g. "/api/models") on HF_ENDPOINT, without credentials."""
        query = f"?{urlencode(params)}" if params else ""
        return without_credentials(f"{self._endpoint.rstrip('/')}{path}{query}")

    def next_url(self, response: httpx2.Response) -> str | None:
        """The `Link: rel="next"` URL of a listing page (without credentials), or None at the
        last page. A next page on another origin than HF_ENDPOINT is refused (ExtractError)."""
        next_url = response.links.get("next", {}).get("url")
        if not next_url:
            return None
        next_url = urljoin(str(response.url), next_url)
        self._refuse_foreign(next_url, f"{public_endpoint(str(response.url))} links its next page")
        return without_credentials(next_url)

    def get(self, url: str) -> Fetched:
        """GET `url` (on HF_ENDPOINT) with retries; any status but 2xx is an error."""
        self._counter.reset()
        response = self._send(url, accept_not_found=False)
        return Fetched(response, self._counter.attempts)

    def get_json(self, path: str, params: list[tuple[str, str | int]] | None = None) -> JsonReply:
        """GET `path` on HF_ENDPOINT as JSON, with retries. 404 is an answer (`found` False),
        not an error; other refusals raise ExtractError, exhausted retries
        TransientExtractError."""
        url = self.url(path, params)
        self._counter.reset()
        response = self._send(url, accept_not_found=True)
        attempts = self._counter.attempts
        if response.status_code == 404:
            return JsonReply(404, None, attempts)
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError as err:
            raise ExtractError(
                f"{public_endpoint(url)}: response is not valid JSON ({err})"
            ) from None
        return JsonReply(response.status_code, body, attempts)

    def _refuse_foreign(self, url: str, what: str) -> None:
        """The same-origin rule: the token (and the crawl) stay on HF_ENDPOINT."""
        if origin(url) == origin(self._endpoint):
            return
        scheme, host, port = origin(url)
        raise ExtractError(
            f"{what} on another origin, {scheme}://{host}:{port} (HF_ENDPOINT is "
            f"{self.endpoint}): refused, nothing is sent to a host other than HF_ENDPOINT"
        )

    def _send(self, url: str, *, accept_not_found: bool) -> httpx2.Response:
        """GET `url`, following redirects that stay on HF_ENDPOINT's origin."""
        self._refuse_foreign(url, f"a request to {public_endpoint(url)} is")
        for _ in range(MAX_REDIRECTS + 1):
            response = self._backoff(with_credentials(url, self._endpoint))
            if not response.has_redirect_location:
                if not (accept_not_found and response.status_code == 404):
                    self._raise_for_status(response, url)
                return response
            target = urljoin(url, response.headers["Location"])
            self._refuse_foreign(
                target, f"{public_endpoint(url)} redirects (HTTP {response.status_code})"
            )
            url = target
        raise ExtractError(f"{public_endpoint(url)}: more than {MAX_REDIRECTS} redirects")

    def _backoff(self, url: str) -> httpx2.Response:
        """One GET; 429 (RateLimit/Retry-After), 5xx, timeouts and dropped connections are
        retried by huggingface_hub's `http_stream_backoff` with capped exponential backoff. The
        body is read as a stream, within the size cap (`_read_capped`)."""
        settings = self._settings
        try:
            with http_stream_backoff(
                "GET",
                url,
                headers=self._headers,
                follow_redirects=False,
                max_retries=settings.http_max_retries,
                base_wait_time=settings.http_base_wait,
                max_wait_time=settings.http_max_wait,
            ) as streamed:
                return self._read_capped(streamed, url)
        except HfHubHTTPError as err:
            raise self._hub_refused(err, url) from None
        except (httpx2.TransportError, httpx2.HTTPError) as err:
            raise TransientExtractError(
                f"{public_endpoint(url)}: {type(err).__name__}: {err or 'no response'} after "
                f"{settings.http_max_retries} retries (is HF_ENDPOINT reachable?)"
            ) from None

    def _read_capped(self, streamed: httpx2.Response, url: str) -> httpx2.Response:
        """`streamed` read into a response that holds its decoded body, counting decoded bytes
        as they arrive: past HUBSHARE_MAX_PAGE_BYTES the read stops (PageTooLargeError with the
        first bytes), so a small compressed body that inflates to gigabytes is never held. A
        decoded chunk is at most one network read inflated (about 64 MB for deflate's 1:1032)."""
        limit = self._settings.max_page_bytes
        body = bytearray()
        for chunk in streamed.iter_bytes():
            body += chunk
            if len(body) > limit:
                encoding = streamed.headers.get("Content-Encoding", "identity")
                del body[limit:]  # in place: no second copy of the cap's worth
                raise PageTooLargeError(
                    f"{public_endpoint(url)}: the response body ({encoding}) decompresses to "
                    f"more than {limit:,} bytes (HUBSHARE_MAX_PAGE_BYTES): refused unread",
                    bytes(body),
                )
        headers = [
            (name, value)
            for name, value in streamed.headers.multi_items()
            if name.lower() not in _WIRE_BODY_HEADERS
        ]
        return httpx2.Response(
            streamed.status_code, headers=headers, content=bytes(body), request=streamed.request
        )

    def _raise_for_status(self, response: httpx2.Response, url: str) -> None:
        try:
            hf_raise_for_status(response)
        except HfHubHTTPError as err:
            raise self._hub_refused(err, url) from None

    def _hub_refused(self, err: HfHubHTTPError, url: str) -> ExtractError:
        status = err.response.status_code if err.response is not None else None
        reason = str(err).splitlines()[0]
        if status is not None and (status in (408, 429) or status >= 500):
            return TransientExtractError(
                f"{public_endpoint(url)}: HTTP {status} after "
                f"{self._settings.http_max_retries} retries ({reason})"
            )
        return ExtractError(f"{public_endpoint(url)}: the Hub refused the request: {reason}")


# ----------------------------------------------------------------------------------------------
# The page check

_WIRE_PAGE = msgspec.json.Decoder(list[WIRE_MODEL])  # type: ignore[valid-type]


def check_page(body: bytes, page_no: int, url: str) -> int:
    """Check a page against the wire schema before it is stored and the crawl advances: a JSON
    list of model objects with `_id` and `id` and each requested field of its wire type.
    Returns its model count."""
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
