"""What produced a file: checksums, code version, library versions."""

from __future__ import annotations

import hashlib
import os
import platform
import re
import subprocess
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from hubshare.resources import checkout_root

TRACKED_LIBRARIES = (
    "hubshare",
    "huggingface-hub",
    "polars",
    "prefect",
    "great-expectations",
    "sqlmodel",
    "sqlalchemy",
)


def public_endpoint(endpoint: str) -> str:
    """`endpoint` (a Hub, an object store) without a user:password part, query or fragment
    (a signed URL's secrets live there): safe to record and to name in errors."""
    parts = urlsplit(endpoint)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


#: Query parameters whose value is a credential: libpq's `password` and `sslpassword`, service
#: tokens, keys and signatures (`sslkey`, `sslcert`, `sslrootcert` are file paths: kept).
_SECRET_QUERY_KEY = re.compile(
    r"pass|pwd|secret|token|signature|credential|auth|^key$|[_-]key(_id)?$|^sig$|apikey",
    re.IGNORECASE,
)
MASK = "***"


def url_secrets(url: str) -> list[str]:
    """The credentials a URL carries: its password and the values of its secret query
    parameters (what `public_url` hides, and what no output may show)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # (an unparsable port) nothing can be told apart: no known secret
        return []
    found = [password, unquote(password)] if password else []
    found += [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if _is_secret(k, v)]
    found += [quote(v) for v in found]  # as the URL spells them, and decoded
    return found


def _is_secret(key: str, value: str) -> bool:
    return bool(value) and bool(_SECRET_QUERY_KEY.search(key))


def public_url(url: str) -> str:
    """`url` (a database URL, an endpoint) as errors, logs and records may show it: its password
    and the values of its credential-like query parameters (`?password=`, `?sslpassword=`,
    `?token=`, `?access_key=` ...) replaced with ***; every other part kept. The one masking
    function of everything that names a database URL."""
    try:
        parts = urlsplit(url)
        password, username = parts.password, parts.username
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc.rsplit("@", 1)[-1] if "@" in parts.netloc else parts.netloc
    if username is not None:
        netloc = f"{username}{':' + MASK if password is not None else ''}@{netloc}"
    query = urlencode(
        [
            (key, MASK if _is_secret(key, value) else value)
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*/",
    )
    if not parts.scheme:  # a plain path
        return url
    # Assembled by hand: urlunsplit turns `sqlite:////abs/path` into `sqlite://abs/path`.
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def mask_secrets(text: str, secrets: list[str]) -> str:
    """`text` with every one of `secrets` replaced by *** (a message from a library may quote a
    URL or option it was given)."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


@cache
def code_version() -> str:
    """`<package version>+g<commit>[.dirty]` from git when run from a checkout, else the
    package version (an installed package never asks git: a virtual environment inside some
    other repository would otherwise report that repository's commit).

    `HUBSHARE_CODE_VERSION` overrides it (for deployments built without a .git directory).
    """
    override = os.environ.get("HUBSHARE_CODE_VERSION")
    if override:
        return override
    base = package_version("hubshare")
    root = checkout_root()
    if root is None:
        return base
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],  # noqa: S607 - git from PATH on purpose
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return base
    return f"{base}+g{commit}{'.dirty' if dirty else ''}"


def library_versions() -> dict[str, str]:
    versions = {name: package_version(name) for name in TRACKED_LIBRARIES}
    versions["python"] = platform.python_version()
    return versions


def synthetic_object_id(model_id: str) -> str:
    """Return a deterministic stand-in for a Mongo ObjectId: the first 24 hex chars of sha1(id).

    Used when a model object carries no ``_id`` (the bundled sample has none upstream).
    """
    return hashlib.sha1(model_id.encode("utf-8"), usedforsecurity=False).hexdigest()[:24]
