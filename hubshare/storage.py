"""Where the data dir's files live: a local folder or object storage (`s3://`, `gs://`, `az://`,
`file://`), through obstore. Immutable files (a snapshot, its manifest) are created with a
conditional put that the store itself enforces: of two writers racing on one key, exactly one
creates it and the other is told, whatever process or machine each runs on.

Credentials and endpoints come from the library's standard environment (for S3:
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`, `AWS_REGION`…), never from
hubshare's settings, and no message here carries them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import AlreadyExistsError, BaseError
from obstore.store import LocalStore, ObjectStore, from_url

from hubshare.errors import StorageError
from hubshare.provenance import public_endpoint

#: URL schemes read as object storage; anything else is a local path.
OBJECT_STORE_SCHEMES = ("s3", "s3a", "gs", "az", "abfs", "abfss", "file", "memory")


@dataclass(frozen=True)
class DataStore:
    """The files under one data dir, by key (`raw/2026-11-29/manifest.json`)."""

    location: str
    store: ObjectStore

    @classmethod
    def open(cls, location: str | Path) -> DataStore:
        """A store for `location`: a local folder (created if absent) or a store URL."""
        text = str(location)
        scheme = urlsplit(text).scheme
        try:
            if scheme in OBJECT_STORE_SCHEMES:
                return cls(_public(text), from_url(text))
            folder = Path(text).expanduser().resolve()
            return cls(str(folder), LocalStore(folder, mkdir=True))
        except (BaseError, OSError, ValueError) as err:
            raise StorageError(
                f"HUBSHARE_DATA_DIR {_public(text)}: cannot open ({_reason(err)})"
            ) from None

    def create(self, key: str, data: bytes) -> bool:
        """Write `key` only if it does not exist yet (the store checks, atomically). True if this
        call created it, False if it was already there (it is then left as it was)."""
        try:
            obstore.put(self.store, key, data, mode="create")
        except AlreadyExistsError:
            return False
        except (BaseError, OSError) as err:
            raise self._failed("create", key, err) from None
        return True

    def put(self, key: str, data: bytes) -> None:
        """Write `key`, replacing it if present (files that change: crawl state, run files)."""
        try:
            obstore.put(self.store, key, data)
        except (BaseError, OSError) as err:
            raise self._failed("write", key, err) from None

    def get(self, key: str) -> bytes | None:
        """The bytes of `key`, or None if it does not exist."""
        try:
            return bytes(obstore.get(self.store, key).bytes())
        except FileNotFoundError:
            return None
        except (BaseError, OSError) as err:
            raise self._failed("read", key, err) from None

    def exists(self, key: str) -> bool:
        try:
            obstore.head(self.store, key)
        except FileNotFoundError:
            return False
        except (BaseError, OSError) as err:
            raise self._failed("look up", key, err) from None
        return True

    def keys(self, prefix: str) -> list[str]:
        """Every key under `prefix`, sorted."""
        try:
            found = obstore.list(self.store, prefix=prefix).collect()
        except (BaseError, OSError) as err:
            raise self._failed("list", prefix, err) from None
        return sorted(str(meta["path"]) for meta in found)

    def _failed(self, action: str, key: str, err: Exception) -> StorageError:
        return StorageError(f"{self.location}: cannot {action} {key} ({_reason(err)})")


def _public(location: str) -> str:
    """A store URL without its secrets; a local path as it is."""
    return public_endpoint(location) if urlsplit(location).scheme else location


def _reason(err: Exception) -> str:
    """The first line of a store error: obstore appends a multi-line debug dump."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
