"""Where the data dir's files live: a local folder or object storage (`s3://`, `gs://`, `az://`,
`file://`, through obstore). Every read and write under the data dir goes through a `DataStore`,
by key (`raw/2026-11-29/manifest.json`).

Immutable files (a snapshot, its manifest) are created with a conditional put that the store
itself enforces: of two writers racing on one key, exactly one creates it and the other is told,
whatever process or machine each runs on (a hard link on a local disk, `If-None-Match: *` on S3).

A local folder is written with plain file operations (synced temporary file, then rename or
link), so a full disk is an `OSError` naming the file, as before. Object stores take credentials
and endpoints from the library's standard environment (for S3: `AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`, `AWS_REGION`…), never from hubshare's settings;
no message here carries them.

An object read in several steps of a run (a snapshot: its hash check, attribution, shares,
explain) is downloaded once per process into a local copy, reused while the store reports the
same ETag and size (`Downloads`).

One holder at a time (a date's crawl, a run's folder) is `hold`: an OS lock on a local disk, a
`Lease` on object storage. A lease that its holder loses (taken over, or unrenewed so long that it
may expire) stops that holder's writes under the leased folder (`LeaseLostError`), so two writers
never proceed there at once.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import fcntl
import hashlib
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import obstore
import orjson
import polars as pl
from obstore.exceptions import AlreadyExistsError, BaseError, PreconditionError
from obstore.store import ObjectStore, from_url

from hubshare.errors import LeaseLostError, StorageError
from hubshare.provenance import public_endpoint, sha256_file

if TYPE_CHECKING:
    from obstore import ObjectMeta  # a type in obstore's stubs only

log = logging.getLogger(__name__)

#: URL schemes read as object storage; anything else is a local path.
OBJECT_STORE_SCHEMES = ("s3", "s3a", "gs", "az", "abfs", "abfss", "file", "memory")


def is_object_store(location: str | Path) -> bool:
    return urlsplit(str(location)).scheme in OBJECT_STORE_SCHEMES


@dataclass(frozen=True)
class DataStore:
    """The files under one data dir, by key. `root` is the folder of a local data dir (None on
    object storage), `store` the object store otherwise."""

    location: str
    root: Path | None
    store: ObjectStore | None

    @classmethod
    def open(cls, location: str | Path) -> DataStore:
        """A store for `location`: a local folder (created on first write) or a store URL."""
        text = str(location)
        if not is_object_store(text):
            folder = Path(text).expanduser().absolute()
            return cls(str(folder), folder, None)
        try:
            return cls(_public(text).rstrip("/"), None, from_url(text))
        except (BaseError, OSError, ValueError) as err:
            raise StorageError(
                f"HUBSHARE_DATA_DIR {_public(text)}: cannot open ({_reason(err)})"
            ) from None

    @property
    def is_local(self) -> bool:
        return self.root is not None

    def where(self, key: str) -> str:
        """`key` as a person finds it: a file path, or the store URL (without secrets)."""
        return str(self.root / key) if self.root is not None else f"{self.location}/{key}"

    def path(self, key: str) -> Path:
        """The file of `key` in a local data dir (callers check `is_local`)."""
        assert self.root is not None  # noqa: S101 - a programming error, not an input
        return self.root / key

    # ------------------------------------------------------------------------------------------
    # Bytes

    def create(self, key: str, data: bytes) -> bool:
        """Write `key` only if it does not exist yet (the store checks, atomically). True if this
        call created it, False if it was already there (it is then left as it was)."""
        return self.write_file(key, lambda tmp: tmp.write_bytes(data), create=True)

    def put(self, key: str, data: bytes) -> None:
        """Write `key`, replacing it if present (files that change: crawl state, run files)."""
        if self.root is not None:
            self.write_file(key, lambda tmp: tmp.write_bytes(data))
            return
        self._refuse_if_lease_lost(key)
        try:
            obstore.put(self._remote, key, data)
        except (BaseError, OSError) as err:
            raise self._failed("write", key, err) from None

    def get(self, key: str) -> bytes | None:
        """The bytes of `key`, or None if it does not exist."""
        if self.root is not None:
            try:
                return (self.root / key).read_bytes()
            except FileNotFoundError:
                return None
        found = self._fetch(key)
        return None if found is None else found[0]

    def exists(self, key: str) -> bool:
        if self.root is not None:
            return (self.root / key).is_file()
        try:
            obstore.head(self._remote, key)
        except FileNotFoundError:
            return False
        except (BaseError, OSError) as err:
            raise self._failed("look up", key, err) from None
        return True

    def keys(self, prefix: str) -> list[str]:
        """Every key under the folder `prefix`, sorted (files only; none if it does not exist)."""
        prefix = prefix.rstrip("/")
        if self.root is not None:
            folder = self.root / prefix
            if not folder.is_dir():
                return []
            return sorted(
                str(path.relative_to(self.root)) for path in folder.rglob("*") if path.is_file()
            )
        try:
            found = obstore.list(self._remote, prefix=prefix + "/").collect()
        except (BaseError, OSError) as err:
            raise self._failed("list", prefix, err) from None
        return sorted(str(meta["path"]) for meta in found)

    def delete(self, key: str) -> None:
        if self.root is not None:
            (self.root / key).unlink(missing_ok=True)
            _prune_empty((self.root / key).parent, self.root)
            return
        self._refuse_if_lease_lost(key)
        try:
            obstore.delete(self._remote, key)
        except FileNotFoundError:
            return
        except (BaseError, OSError) as err:
            raise self._failed("delete", key, err) from None

    def delete_folder(self, prefix: str) -> None:
        """Remove every key under the folder `prefix`."""
        if self.root is not None:
            shutil.rmtree(self.root / prefix, ignore_errors=True)
            return
        self._refuse_if_lease_lost(prefix, folder=True)
        keys = self.keys(prefix)
        if keys:
            try:
                obstore.delete(self._remote, keys)
            except (BaseError, OSError) as err:
                raise self._failed("delete", prefix, err) from None

    # ------------------------------------------------------------------------------------------
    # Files

    def write_file(
        self, key: str, write: Callable[[Path], object], *, create: bool = False
    ) -> bool:
        """`write(tmp)` fills a temporary file that becomes `key` whole (a reader never sees half
        a file). With `create`, only if `key` does not exist yet: returns False, and leaves it as
        it was, when it does. For writers that want a path, like parquet's."""
        if self.root is not None:
            return _write_local(self.root, key, write, create=create)
        self._refuse_if_lease_lost(key)
        with tempfile.TemporaryDirectory(prefix="hubshare-") as scratch:
            tmp = Path(scratch) / Path(key).name
            write(tmp)
            try:
                # One request: S3's conditional put does not cover multipart uploads.
                obstore.put(
                    self._remote,
                    key,
                    tmp,
                    mode="create" if create else "overwrite",
                    use_multipart=False if create else None,
                )
            except AlreadyExistsError:
                return False
            except (BaseError, OSError) as err:
                raise self._failed("create" if create else "write", key, err) from None
        return True

    def write_parquet(self, key: str, frame: pl.DataFrame) -> None:
        self.write_file(key, frame.write_parquet)

    def read_parquet(self, key: str, columns: list[str] | None = None) -> pl.DataFrame:
        """Raises FileNotFoundError (naming the key's location) when it does not exist."""
        if self.root is not None:
            return pl.read_parquet(self.root / key, columns=columns)
        with DOWNLOADS.use(self, key) as copy:
            if copy is None:
                raise FileNotFoundError(2, "No such object", self.where(key))
            return pl.read_parquet(copy.path, columns=columns)

    def sha256(self, key: str) -> str | None:
        """The SHA-256 of `key`'s bytes, or None if it does not exist."""
        if self.root is not None:
            try:
                return sha256_file(self.root / key)
            except FileNotFoundError:
                return None
        with DOWNLOADS.use(self, key) as copy:
            return None if copy is None else copy.sha256

    @contextlib.contextmanager
    def local_file(self, key: str) -> Iterator[Path | None]:
        """`key` as a local file for readers that want a path (on object storage, this
        process's downloaded copy: read it, do not change it); None if it does not exist."""
        if self.root is not None:
            path = self.root / key
            yield path if path.is_file() else None
            return
        with DOWNLOADS.use(self, key) as copy:
            yield None if copy is None else copy.path

    def _fetch(self, key: str) -> tuple[bytes, ObjectMeta] | None:
        """`key`'s bytes on the object store and their metadata (ETag…), or None if absent."""
        try:
            found = obstore.get(self._remote, key)
            return bytes(found.bytes()), found.meta
        except FileNotFoundError:
            return None
        except (BaseError, OSError) as err:
            raise self._failed("read", key, err) from None

    def _refuse_if_lease_lost(self, key: str, *, folder: bool = False) -> None:
        """Raise LeaseLostError if `key` (with `folder`, anything under it) lies under the folder
        of a lease this context holds on this store (see `hold`) and that lease was lost."""
        for lease in _HELD_LEASES.get():
            if lease.store.location != self.location:
                continue
            if _is_under(key, lease.folder) or (folder and _is_under(lease.folder, key)):
                lease.check()

    @property
    def _remote(self) -> ObjectStore:
        assert self.store is not None  # noqa: S101 - only called on object stores
        return self.store

    def _failed(self, action: str, key: str, err: Exception) -> StorageError:
        return StorageError(f"{self.location}: cannot {action} {key} ({_reason(err)})")


#: Unused downloaded copies are removed, least recently used first, beyond this many bytes: a
#: run's snapshots (its day, the day before, three window starts) fit, a year's backfill does not
#: pile up. Copies in use are never removed.
DOWNLOADS_KEPT_BYTES = 2 * 1024**3


@dataclass
class Download:
    """A local copy of an object, as it was when it had `e_tag`."""

    path: Path
    e_tag: str | None
    size: int
    sha256: str
    users: int = 0


class Downloads:
    """This process's local copies of objects, by (store, key). A copy is reused while the
    store reports the object with the same ETag and size (an overwritten object gets a new
    ETag), so a run downloads each snapshot once however many steps read it, and a changed
    object is downloaded again (its hash check then sees the change). The copies live in a
    temporary folder removed when the process ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._copies: OrderedDict[tuple[str, str], Download] = OrderedDict()
        self._folder: Path | None = None

    @contextlib.contextmanager
    def use(self, store: DataStore, key: str) -> Iterator[Download | None]:
        """The copy of `key` (downloaded if absent or stale), kept while in use; None if the
        object does not exist."""
        copy = self._acquire(store, key)
        try:
            yield copy
        finally:
            if copy is not None:
                self._release(store, key, copy)

    def remove_all(self) -> None:
        with self._lock:
            self._copies.clear()
            folder, self._folder = self._folder, None
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def _acquire(self, store: DataStore, key: str) -> Download | None:
        try:
            meta = obstore.head(store._remote, key)
        except FileNotFoundError:
            return None
        except (BaseError, OSError) as err:
            raise store._failed("look up", key, err) from None
        slot = (store.location, key)
        with self._lock:
            known = self._copies.get(slot)
            if known is not None and (known.e_tag, known.size) == (meta["e_tag"], meta["size"]):
                known.users += 1
                self._copies.move_to_end(slot)
                return known
        copy = self._download(store, key)
        if copy is None:
            return None
        stale = None
        with self._lock:
            copy.users += 1
            if copy.e_tag is not None:  # without an ETag a copy cannot be checked: not kept
                stale = self._copies.pop(slot, None)
                self._copies[slot] = copy
                if stale is not None and stale.users:
                    stale = None  # its last user removes it
        if stale is not None:
            shutil.rmtree(stale.path.parent, ignore_errors=True)
        return copy

    def _release(self, store: DataStore, key: str, copy: Download) -> None:
        with self._lock:
            copy.users -= 1
            current = self._copies.get((store.location, key)) is copy
            removed = [] if current or copy.users else [copy]
            kept = sum(known.size for known in self._copies.values())
            for slot, known in list(self._copies.items()):  # least recently used first
                if kept <= DOWNLOADS_KEPT_BYTES:
                    break
                if known.users == 0:
                    del self._copies[slot]
                    kept -= known.size
                    removed.append(known)
        for gone in removed:
            shutil.rmtree(gone.path.parent, ignore_errors=True)

    def _download(self, store: DataStore, key: str) -> Download | None:
        """Stream `key` into a new local copy (a folder of its own, the file keeping its name:
        readers like the mapping loader report it), hashing it on the way."""
        try:
            result = obstore.get(store._remote, key)
        except FileNotFoundError:
            return None
        except (BaseError, OSError) as err:
            raise store._failed("read", key, err) from None
        folder = Path(tempfile.mkdtemp(dir=self._scratch()))
        path = folder / Path(key).name
        digest = hashlib.sha256()
        try:
            with path.open("wb") as out:
                for chunk in result.stream():
                    out.write(chunk)
                    digest.update(chunk)
        except (BaseError, OSError) as err:
            shutil.rmtree(folder, ignore_errors=True)
            raise store._failed("read", key, err) from None
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        meta = result.meta
        return Download(path, meta["e_tag"], meta["size"], digest.hexdigest())

    def _scratch(self) -> Path:
        with self._lock:
            if self._folder is None:
                _remove_orphaned_downloads()
                self._folder = Path(tempfile.mkdtemp(prefix=f"{DOWNLOADS_PREFIX}{os.getpid()}-"))
            return self._folder


DOWNLOADS_PREFIX = "hubshare-downloads-"


def _remove_orphaned_downloads() -> None:
    """Remove the copies of processes that ended without cleaning up (killed, or stopped by a
    signal that skips exit handlers): their folder names carry their pid."""
    for folder in Path(tempfile.gettempdir()).glob(f"{DOWNLOADS_PREFIX}*-*"):
        pid = folder.name.removeprefix(DOWNLOADS_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


#: The process's downloaded copies (removed at exit; `hubshare`'s fast exit calls `remove_all`).
DOWNLOADS = Downloads()
atexit.register(DOWNLOADS.remove_all)


def _write_local(root: Path, key: str, write: Callable[[Path], object], *, create: bool) -> bool:
    """Synced temporary file beside the key's file, then renamed (or hard-linked, which refuses
    an existing target: the file system's own create-if-absent). A failed write leaves no
    folder behind that it created."""
    path = root / key
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return _write_beside(path, write, create=create)
    except OSError as err:
        _prune_empty(path.parent, root)
        if err.filename is None:  # a failed write (disk full) names no file by itself
            err.filename = str(path)
        raise
    except Exception as err:
        _prune_empty(path.parent, root)
        # A writer in Rust (polars' parquet) reports the system's error as text, "(os error 27)":
        # the system's error it is, on this file.
        found = _OS_ERROR.search(str(err))
        if found is None:
            raise
        code = int(found[1])
        raise OSError(code, os.strerror(code), str(path)) from err
    except BaseException:
        _prune_empty(path.parent, root)
        raise


_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def _prune_empty(folder: Path, root: Path) -> None:
    """Remove `folder` and its parents below `root` while they are empty."""
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def _write_beside(path: Path, write: Callable[[Path], object], *, create: bool) -> bool:
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        if not create:
            tmp.replace(path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------
# Locks and leases: one holder at a time

#: How many times a contender looks again when the lease changes hands while it looks.
LEASE_ATTEMPTS = 5

#: A holder stops writing once its lease went unrenewed for this part of its time: a write that
#: passed the check then has the rest (40 s of the default 120 s) to land before the lease may
#: expire and another contender take it over. Renewals come every third of the time.
LEASE_TRUSTED_PART = 2 / 3


@dataclass
class Lease:
    """An object that says who holds something until when, renewed by a daemon thread while the
    holder lives. A holder that dies stops renewing; once its lease has expired the next
    contender takes over. Every write is conditional, enforced by the store: a free lease is
    created only if absent, an expired one replaced only if unchanged since it was read (S3's
    `If-Match`), and a renewal only if still the holder's own write, so of two contenders
    exactly one holds it, and a holder whose lease was taken over stops renewing it.

    A holder that lost its lease (a renewal found it taken over, or none succeeded for
    `LEASE_TRUSTED_PART` of its time: a paused process, an unreachable store) has lost it for
    good: `check` raises `LeaseLostError` naming who holds it now."""

    store: DataStore
    key: str
    seconds: float
    holder: str = ""

    def __post_init__(self) -> None:
        self.holder = self.holder or f"{socket.gethostname()} pid {os.getpid()}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._e_tag: str | None = None  # of the lease object as this holder last wrote it
        self._written_at = time.monotonic()  # when the last write that landed was sent
        self._lost_to: str | None = None  # who took it over, once this holder lost it
        self._lost_how = ""  # why, when nobody took it over (yet)
        self._released = False

    @property
    def folder(self) -> str:
        """The folder the lease object lies in: what its holder writes alone."""
        return self.key.rsplit("/", 1)[0] if "/" in self.key else ""

    def _body(self) -> bytes:
        until = datetime.now(UTC) + timedelta(seconds=self.seconds)
        return orjson.dumps({"holder": self.holder, "until": until.isoformat()})

    def _write(self, mode: Any) -> str | None:
        """Put a fresh body with the conditional `mode`: its ETag, or None if refused."""
        sent = time.monotonic()
        try:
            e_tag = obstore.put(self.store._remote, self.key, self._body(), mode=mode)["e_tag"]
        except (AlreadyExistsError, PreconditionError):
            return None
        except (BaseError, OSError) as err:
            raise self.store._failed("write", self.key, err) from None
        self._written_at = sent
        return str(e_tag)

    def _read(self) -> tuple[str, datetime, str | None] | None:
        """(holder, valid until, ETag) of the lease now stored, or None."""
        found = self.store._fetch(self.key)
        if found is None:
            return None
        data, meta = found
        try:
            body = orjson.loads(data)
            until = datetime.fromisoformat(body["until"])
            until = until if until.tzinfo else until.replace(tzinfo=UTC)
            return str(body["holder"]), until, meta["e_tag"]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return "an unreadable lease", datetime.min.replace(tzinfo=UTC), meta["e_tag"]

    def acquire(self) -> str | None:
        """Take the lease and start renewing it: None once held, else who holds it now."""
        for _ in range(LEASE_ATTEMPTS):  # it can change hands while we look
            self._e_tag = self._write("create")
            if self._e_tag is None:
                found = self._read()
                if found is None:
                    continue  # released meanwhile
                holder, until, e_tag = found
                if until > datetime.now(UTC):
                    return f"{holder}, until {until:%H:%M:%S} UTC"
                # Expired (its holder died): take it over, unless another contender just did.
                self._e_tag = self._write({"e_tag": e_tag})
                if self._e_tag is None:
                    continue
            self._thread = threading.Thread(target=self._renew, name="hubshare-lease", daemon=True)
            self._thread.start()
            return None
        return "contenders that took it over while this one looked"

    def _renew(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                e_tag = self._write({"e_tag": self._e_tag})
                if e_tag is None:
                    found = self._read()
                    if found is None or found[0] != self.holder:
                        self._lost_to = "nobody" if found is None else found[0]
                        log.warning(
                            "%s: lease taken over by %s; this process no longer holds it",
                            self.store.where(self.key),
                            self._lost_to,
                        )
                        return
                    e_tag = found[2]  # our own renewal, whose answer was lost
                self._e_tag = e_tag
            except StorageError:
                continue  # the store is unreachable for now: try again at the next renewal

    def check(self) -> None:
        """Raise LeaseLostError unless this holder can still trust its lease: not taken over,
        and renewed recently enough that a write sent now lands before it may expire. A released
        lease stops nothing (a context copied while it was held may outlive it)."""
        if self._released:
            return
        unrenewed = time.monotonic() - self._written_at
        if self._lost_to is None and unrenewed > self.seconds * LEASE_TRUSTED_PART:
            try:
                found = self._read()
            except StorageError:
                found = None
            self._lost_to = "nobody" if found is None else found[0]
            if self._lost_to == self.holder:
                self._lost_to = "nobody yet"
                self._lost_how = (
                    f" (not renewed for {unrenewed:.1f} s of its {self.seconds:g} s, it may "
                    "expire before a write lands)"
                )
        if self._lost_to is not None:
            raise LeaseLostError(
                f"{self.store.where(self.key)}: this process's lease was lost to "
                f"{self._lost_to}{self._lost_how}; its writes under "
                f"{self.store.where(self.folder)} stop here",
                self._lost_to,
            )

    def release(self) -> None:
        self._released = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        found = self._read()
        if found is not None and found[0] == self.holder:  # never another holder's
            self.store.delete(self.key)


#: The leases held in this context (by `hold`): a write through any `DataStore` of the same
#: store under a lease's folder first checks that the lease is still held. A context, not the
#: process: another holder in the same process (a thread of its own) is not stopped by it.
_HELD_LEASES: contextvars.ContextVar[tuple[Lease, ...]] = contextvars.ContextVar(
    "hubshare_held_leases", default=()
)


def _is_under(key: str, folder: str) -> bool:
    return not folder or key == folder or key.startswith(folder + "/")


@contextlib.contextmanager
def hold(
    store: DataStore,
    key: str,
    lease_seconds: float,
    *,
    wait: bool = False,
    make_folder: bool = True,
) -> Iterator[str | None]:
    """Hold `key`'s lock for the `with` block: yields None once held, else who holds it (the
    block then runs without it). With `wait`, a local lock is waited for (on object storage the
    key is taken to be new: a holder there is not waited for). Without `make_folder`, a folder
    that is gone counts as held by another (it was just removed).

    On a local disk an exclusive `flock` on the key's file, released when its holder exits, even
    killed; the file says who holds it (`pid N since T`). On object storage a `Lease` renewed
    while the block runs, taken over once a dead holder's lease expires. Once this holder loses
    its lease, every later write in this context (this thread, and the tasks it starts with a
    copy of its context) through a `DataStore` of this store under the lease's folder raises
    `LeaseLostError` naming who took it over: a crawl's `raw/<date>/pages/`, a run's
    `runs/<run id>/`. Reads go on; writes elsewhere are not the lease's to stop."""
    if not store.is_local:
        lease = Lease(store, key, lease_seconds)
        holder = lease.acquire()
        if holder is not None and not wait:
            yield holder
            return
        held = holder is None
        if held:
            _HELD_LEASES.set((*_HELD_LEASES.get(), lease))
        try:
            yield None
        finally:
            if held:
                _HELD_LEASES.set(tuple(other for other in _HELD_LEASES.get() if other is not lease))
            lease.release()
        return
    path = store.path(key)
    if make_folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        handle = path.open("a+")
    except OSError:
        yield "another process (its folder is gone)"
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            yield handle.read().strip() or "another process"
            return
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {datetime.now(UTC).isoformat(timespec='seconds')}")
        handle.flush()
        try:
            yield None
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _public(location: str) -> str:
    """A store URL without its secrets; a local path as it is."""
    return public_endpoint(location) if urlsplit(location).scheme else location


#: The endpoint an obstore error names ("Error performing PUT http://host:port/…"): its scheme
#: and host only, since a path or query may carry a signed URL's secrets.
_ERROR_ENDPOINT = re.compile(r"\b(https?)://([^/\s]+)")
#: The instance-metadata address obstore asks for credentials when none are set.
_METADATA_HOST = "169.254.169.254"


def _reason(err: Exception) -> str:
    """What went wrong with the store and what to set, in one line. obstore's messages are a
    first line plus a multi-line debug dump, and name neither the cause nor the fix; a message
    naming the metadata service means no credentials were found."""
    text = str(err).strip()
    found = _ERROR_ENDPOINT.search(text)
    endpoint = f"{found[1]}://{found[2]}" if found else "the endpoint"
    if _METADATA_HOST in text:
        return (
            "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), "
            "or the GOOGLE_*/AZURE_* equivalents"
        )
    if "NoSuchBucket" in text:
        return f"the bucket does not exist at {endpoint}: create it or fix HUBSHARE_DATA_DIR"
    if "builder error" in text and endpoint.startswith("http://"):
        return f"{endpoint} is plain http: set AWS_ALLOW_HTTP=true to allow it"
    if "error sending request" in text or "Connection refused" in text:
        return f"cannot reach {endpoint}: check AWS_ENDPOINT_URL and that the server is up"
    if "403" in text or "AccessDenied" in text or "SignatureDoesNotMatch" in text:
        return f"{endpoint} refused the credentials: check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
    first = (text.splitlines() or [type(err).__name__])[0]
    return _ERROR_ENDPOINT.sub(lambda url: f"{url[1]}://{url[2]}/…", first)[:200]
