"""The data dir's store, on a local folder and on a real S3-compatible server (moto's, on
loopback): conditional creation enforced by the store, reads, listings, errors that name the
location without secrets."""

from __future__ import annotations

import threading

import pytest

from hubshare.errors import StorageError
from hubshare.provenance import public_endpoint
from hubshare.storage import DataStore
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
