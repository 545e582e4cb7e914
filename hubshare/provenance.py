"""What produced a file: checksums, code version, library versions."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

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
