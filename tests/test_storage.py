"""The data dir's store, on a local folder and on a real S3-compatible server (moto's, on
loopback): conditional creation enforced by the store, reads, listings, errors that name the
location without secrets."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time

import boto3
import orjson
import polars as pl
import pytest

from hubshare import storage
from hubshare.errors import LeaseLostError, StorageError
from hubshare.provenance import public_endpoint, sha256_bytes
from hubshare.storage import DOWNLOADS, DataStore, Lease, hold
from tests.conftest import S3_KEY_ID, S3_SECRET


def test_only_the_first_writer_creates_a_key(store):
    key = "raw/2026-11-29/manifest.json"
    assert store.get(key) is None and not store.exists(key)
    assert store.create(key, b"first") is True
    assert store.create(key, b"second") is False  # refused by the store, not overwritten
    assert store.get(key) == b"first"
    store.put("raw/2026-11-29/pages/state.json", b"1")
    store.put("raw/2026-11-29/pages/state.json", b"2")  # a mutable file is replaced
    assert store.get("raw/2026-11-29/pages/state.json") == b"2"
    assert store.keys("raw/2026-11-29") == [
        "raw/2026-11-29/manifest.json",
        "raw/2026-11-29/pages/state.json",
    ]


def test_racing_writers_leave_exactly_one_object(store):
    """Eight writers create one key at the same instant: one wins, seven are told, and the
    object holds the winner's bytes."""
    barrier = threading.Barrier(8)
    won: list[int] = []

    def write(n: int) -> None:
        barrier.wait()
        if store.create("raw/2026-11-29/snapshot.parquet", f"writer {n}".encode()):
            won.append(n)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    assert store.get("raw/2026-11-29/snapshot.parquet") == f"writer {won[0]}".encode()


def test_a_missing_bucket_is_named_without_credentials(s3_bucket):
    store = DataStore.open(f"s3://{s3_bucket}-absent/data")
    with pytest.raises(StorageError) as caught:
        store.put("raw/x", b"1")
    message = str(caught.value)
    assert message.startswith(f"s3://{s3_bucket}-absent/data: cannot write raw/x (")
    assert S3_SECRET not in message and S3_KEY_ID not in message


def test_a_location_is_recorded_without_its_secrets():
    assert public_endpoint("s3://bucket/prefix") == "s3://bucket/prefix"
    assert public_endpoint("https://user:pw@host:9000/b/p?X-Amz-Signature=s") == (
        "https://host:9000/b/p"
    )
    assert public_endpoint("/srv/hubshare/data") == "/srv/hubshare/data"


def test_an_object_read_in_several_steps_is_downloaded_once_while_unchanged(s3_bucket):
    """A run reads its snapshot in several steps (hash check, attribution, shares, explain): on
    object storage they share one downloaded copy. An object changed in the bucket (a new ETag)
    is downloaded again, so a hash check sees the change."""
    DOWNLOADS.remove_all()
    store = DataStore.open(f"s3://{s3_bucket}/data")
    key = "raw/2026-11-29/snapshot.parquet"
    store.write_parquet(key, pl.DataFrame({"_id": ["a", "b"], "downloads": [1, 2]}))
    stored = store.get(key) or b""
    with store.local_file(key) as first:
        assert first is not None and first.name == "snapshot.parquet"
    assert store.sha256(key) == sha256_bytes(stored)
    assert store.read_parquet(key, columns=["_id"])["_id"].to_list() == ["a", "b"]
    with store.local_file(key) as again:
        assert again == first  # each download is a new folder: this is the same copy
    boto3.client("s3").put_object(Bucket=s3_bucket, Key=f"data/{key}", Body=b"altered")
    assert store.sha256(key) == sha256_bytes(b"altered")
    with store.local_file(key) as changed:
        assert changed is not None and changed.read_bytes() == b"altered"
    assert not first.exists()  # the stale copy is gone
    store.delete(key)
    assert store.sha256(key) is None
    with pytest.raises(FileNotFoundError, match=f"s3://{s3_bucket}/data/{key}"):
        store.read_parquet(key)


def test_unused_copies_beyond_the_budget_are_removed_and_copies_in_use_kept(s3_bucket, monkeypatch):
    DOWNLOADS.remove_all()
    monkeypatch.setattr(storage, "DOWNLOADS_KEPT_BYTES", 2500)
    store = DataStore.open(f"s3://{s3_bucket}/data")
    for n in range(3):
        store.put(f"objects/{n}", bytes(1000))
    with store.local_file("objects/0") as held:
        with store.local_file("objects/1") as older:
            pass
        with store.local_file("objects/2") as newer:
            pass
        # 3000 bytes kept > 2500: the least recently used copy not in use goes
        assert held is not None and older is not None and newer is not None
        assert held.exists() and not older.exists() and newer.exists()
    assert held.exists()  # 2000 bytes: within the budget
    DOWNLOADS.remove_all()
    assert not held.exists()


def test_copies_left_by_a_process_that_was_killed_are_removed(s3_bucket, tmp_path, monkeypatch):
    """A process stopped by a signal leaves its copies behind; the next process that downloads
    removes them (the folder names its pid), not those of processes still running."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ended = subprocess.Popen(["true"])  # noqa: S607 - only its pid matters, once it is gone
    ended.wait()
    orphaned = tmp_path / f"hubshare-downloads-{ended.pid}-abc"
    running = tmp_path / f"hubshare-downloads-{os.getppid()}-abc"
    for folder in (orphaned, running):
        (folder / "copy").mkdir(parents=True)
        (folder / "copy" / "snapshot.parquet").write_bytes(b"left behind")
    DOWNLOADS.remove_all()
    store = DataStore.open(f"s3://{s3_bucket}/data")
    store.put("objects/0", b"0")
    with store.local_file("objects/0") as copy:
        assert copy is not None and copy.parent.parent.name.startswith(
            f"hubshare-downloads-{os.getpid()}-"
        )
    assert not orphaned.exists() and running.exists()
    DOWNLOADS.remove_all()


EXPIRED = orjson.dumps({"holder": "dead host pid 1", "until": "2024-01-14T00:00:00+00:00"})


def test_of_contenders_for_an_expired_lease_exactly_one_takes_it_over(s3_bucket):
    """The takeover is a write the store makes conditional on the expired lease being unchanged
    (`If-Match`): four contenders at one barrier, one holder; the others are told who."""
    store = DataStore.open(f"s3://{s3_bucket}/data")
    key = "raw/2024-01-14/pages/.crawl.lock"
    store.put(key, EXPIRED)
    barrier = threading.Barrier(4)
    leases = [Lease(store, key, 30, holder=f"contender {n}") for n in range(4)]
    told: dict[int, str | None] = {}

    def contend(n: int) -> None:
        barrier.wait()
        told[n] = leases[n].acquire()

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    [winner] = [n for n, holder in told.items() if holder is None]
    losers = [str(holder) for n, holder in told.items() if n != winner]
    assert all(holder.startswith(f"contender {winner}, until ") for holder in losers), told
    assert orjson.loads(store.get(key) or b"")["holder"] == f"contender {winner}"
    leases[winner].release()
    assert not store.exists(key)


def test_a_holder_whose_lease_was_taken_over_stops_renewing_it(s3_bucket, caplog):
    """A holder paused past its lease (its lease taken over meanwhile) must not renew over the
    new holder's lease, nor remove it on release."""
    store = DataStore.open(f"s3://{s3_bucket}/data")
    key = "runs/r1/.running"
    lease = Lease(store, key, 0.6, holder="slow holder")  # renews every 0.2 s
    assert lease.acquire() is None
    theirs = orjson.dumps({"holder": "new holder", "until": "2999-01-01T00:00:00+00:00"})
    with caplog.at_level("WARNING", logger="hubshare.storage"):
        store.put(key, theirs)  # taken over
        deadline = time.monotonic() + 10
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.05)
    assert [r.getMessage() for r in caplog.records] == [
        f"s3://{s3_bucket}/data/{key}: lease taken over by new holder; this process no longer "
        "holds it"
    ]
    time.sleep(0.5)  # two renewal periods: nothing written over theirs
    assert store.get(key) == theirs
    lease.release()
    assert store.get(key) == theirs


def test_a_holder_that_lost_its_lease_writes_nothing_more_under_its_folder(s3_bucket):
    """Once a renewal finds the lease taken over, every write of the holder's context under the
    leased folder is refused, naming the new holder; its reads, its writes elsewhere and the
    new holder's writes (another thread) go on."""
    store = DataStore.open(f"s3://{s3_bucket}/data")
    key = "runs/r1/.running"
    theirs = orjson.dumps({"holder": "new holder", "until": "2999-01-01T00:00:00+00:00"})
    frame = pl.DataFrame({"a": [1]})
    with hold(store, key, 0.6) as holder:  # renewed every 0.2 s
        assert holder is None
        store.put("runs/r1/mine.json", b"before")  # held: written
        store.put(key, theirs)  # taken over
        deadline = time.monotonic() + 10
        with pytest.raises(LeaseLostError) as lost:
            while time.monotonic() < deadline:
                store.put("runs/r1/probe.json", b"")  # written until a renewal finds out
                time.sleep(0.05)
        assert lost.value.holder == "new holder"
        assert str(lost.value) == (
            f"s3://{s3_bucket}/data/{key}: this process's lease was lost to new holder; its "
            f"writes under s3://{s3_bucket}/data/runs/r1 stop here"
        )
        for write in (
            lambda: store.put("runs/r1/mine.json", b"after"),
            lambda: store.create("runs/r1/new.json", b"after"),
            lambda: store.write_parquet("runs/r1/frame.parquet", frame),
            lambda: store.write_file("runs/r1/file.bin", lambda tmp: tmp.write_bytes(b"x")),
            lambda: store.delete("runs/r1/mine.json"),
            lambda: store.delete_folder("runs/r1"),
            lambda: store.delete_folder("runs"),  # holds the leased folder
            lambda: DataStore.open(f"s3://{s3_bucket}/data").put("runs/r1/other.json", b""),
        ):
            with pytest.raises(LeaseLostError, match="lost to new holder"):
                write()
        assert store.get("runs/r1/mine.json") == b"before"  # reads go on
        store.put("runs/r2/elsewhere.json", b"1")  # not the lease's folder
        other_thread = threading.Thread(target=store.put, args=("runs/r1/theirs.json", b"2"))
        other_thread.start()  # the new holder's context: not stopped
        other_thread.join()
        assert store.get("runs/r1/theirs.json") == b"2"
    assert store.get(key) == theirs  # neither renewed over nor removed
    assert store.keys("runs/r1") == [
        key,
        "runs/r1/mine.json",
        "runs/r1/probe.json",
        "runs/r1/theirs.json",
    ]
    store.put("runs/r1/mine.json", b"no lease held here any more")


def test_a_local_lock_is_not_a_lease(tmp_path):
    """On a local disk the OS lock says who holds it, and writes under it are never refused."""
    store = DataStore.open(tmp_path / "data")
    key = "runs/r1/.running"
    with hold(store, key, 0.01) as holder:
        assert holder is None
        assert (store.get(key) or b"").startswith(f"pid {os.getpid()} since ".encode())
        time.sleep(0.05)  # far past the lease time: no lease here
        store.put("runs/r1/mine.json", b"1")
        subprocess_holder = subprocess.run(  # noqa: S603 - this interpreter
            [
                sys.executable,
                "-c",
                "import sys; from hubshare.storage import DataStore, hold\n"
                "with hold(DataStore.open(sys.argv[1]), sys.argv[2], 1) as holder:\n"
                "    print(holder)",
                str(tmp_path / "data"),
                key,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert subprocess_holder.stdout.startswith(f"pid {os.getpid()} since ")
    assert store.get("runs/r1/mine.json") == b"1"
