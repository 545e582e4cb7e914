"""The pipeline with its data dir on object storage: moto's S3 server on loopback, reached by the
same code path as production (obstore and polars with the standard AWS environment). The daily
flow, a backfill, `reproduce`, `explain` and racing writers; no credential in any object, file,
log or artifact."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from datetime import date
from pathlib import Path
from typing import Any

import boto3
import orjson
import polars as pl
import pytest

from hubshare.fakehub import FakeHub
from hubshare.settings import Settings
from hubshare.storage import DataStore
from tasks.snapshot import (
    ORDERED_SNAPSHOT_SCHEMA,
    STORED_BY_EARLIER_RUN,
    STORED_BY_THIS_RUN,
    STORED_FIRST_BY_ANOTHER,
    SnapshotManifest,
    StoredSnapshot,
    describe_snapshot,
    manifest_key,
    snapshot_key,
    store_snapshot,
)
from tests.conftest import S3_KEY_ID, S3_SECRET, run_hubshare

DAYS = [date(2024, 1, 14), date(2024, 1, 15)]


def bucket_objects(bucket: str) -> dict[str, bytes]:
    s3 = boto3.client("s3")
    keys = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for item in page.get("Contents", [])
    ]
    return {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


def cli(*args: str) -> str:
    result = run_hubshare(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def publish_days(hand_models: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Crawl and publish every day of DAYS, then a forced backfill of them; each date's latest
    published run (from `hubshare runs`)."""
    from flows.backfill import backfill
    from flows.daily import daily

    with FakeHub(hand_models) as hub:
        for day in DAYS:
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("HF_ENDPOINT", hub.url)
                assert daily(run_date=day, backdate=True)["status"] == "published"
    summary = backfill(start=DAYS[0], end=DAYS[-1], force=True)
    assert [r["snapshot_date"] for r in summary["runs"]] == [str(day) for day in DAYS]
    listed = run_hubshare("runs", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    runs = orjson.loads(listed.stdout)
    return {r["snapshot_date"]: r for r in runs if r["published"]}


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_the_pipeline_runs_on_s3_as_on_a_local_disk(
    env, s3_bucket, hand_models, monkeypatch, tmp_path, capfd
):
    """Daily runs, a backfill, `reproduce` and `explain` with HUBSHARE_DATA_DIR on S3 publish
    what the same steps publish with a local data dir; every file lives in the bucket."""
    local = publish_days(hand_models)

    data = f"s3://{s3_bucket}/hubshare"
    monkeypatch.setenv("HUBSHARE_DATA_DIR", data)
    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", f"sqlite:///{tmp_path / 's3-warehouse.db'}")
    before = {p for p in tmp_path.rglob("*") if p.is_file()}
    on_s3 = publish_days(hand_models)
    assert {day: r["shares_sha256"] for day, r in on_s3.items()} == {
        day: r["shares_sha256"] for day, r in local.items()
    }
    assert {day: r["raw_sha256"] for day, r in on_s3.items()} == {
        day: r["raw_sha256"] for day, r in local.items()
    }

    objects = bucket_objects(s3_bucket)
    day = DAYS[-1].isoformat()
    for key in (
        f"raw/{day}/snapshot.parquet",
        f"raw/{day}/manifest.json",
        f"raw/{day}/pages/state.json",
        f"raw/{day}/pages/page-000001.json.gz",
        f"mappings/{on_s3[day]['mapping_sha256']}.csv",
        f"runs/{on_s3[day]['run_id']}/run.json",
        f"runs/{on_s3[day]['run_id']}/country_share.parquet",
        "reports/hubshare-report.html",
    ):
        assert f"hubshare/{key}" in objects, key
    assert not any(key.endswith((".crawl.lock", ".running")) for key in objects)  # released
    # Nothing of the data dir was written locally: only the SQLite warehouse is new.
    after = {p for p in tmp_path.rglob("*") if p.is_file()} - before
    assert {p.name for p in after if not p.name.startswith("s3-warehouse.db")} == set()

    assert "reproduced: run" in cli("reproduce", on_s3[day]["run_id"])
    assert "uploader" in cli("explain", "--from", str(DAYS[0]), "--to", day)
    # The stored snapshot altered in the bucket: reproduce names it by its URL.
    boto3.client("s3").put_object(
        Bucket=s3_bucket, Key=f"hubshare/raw/{day}/snapshot.parquet", Body=b"altered"
    )
    altered = run_hubshare("reproduce", on_s3[day]["run_id"])
    assert altered.returncode != 0
    assert f"raw snapshot {data}/raw/{day}/snapshot.parquet has sha256" in altered.stderr

    # No credential of the store anywhere: objects, local files, output, Prefect logs/artifacts.
    out, err = capfd.readouterr()
    texts = [out, err, altered.stdout, altered.stderr, *prefect_logs_and_artifacts()]
    blobs = [*bucket_objects(s3_bucket).values(), *(p.read_bytes() for p in files(tmp_path))]
    for secret in (S3_SECRET, S3_KEY_ID):
        assert not [text for text in texts if secret in text]
        assert not [blob for blob in blobs if secret.encode() in blob]


def files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def prefect_logs_and_artifacts() -> list[str]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        logs = [log.message for log in client.read_logs()]
        artifacts = [str(artifact.data) for artifact in client.read_artifacts()]
    assert logs and artifacts
    return logs + artifacts


# ----------------------------------------------------------------------------------------------
# Races on one date


def test_writers_racing_on_a_date_leave_one_snapshot_and_manifest(store, caplog):
    """Four workers build the same date's snapshot at once, each from its own crawl (different
    rows): exactly one snapshot and one manifest are stored, they match, and every other worker
    reports it used the first's."""
    day = DAYS[0]
    barrier = threading.Barrier(4)
    results: dict[int, StoredSnapshot] = {}

    def build(n: int) -> None:
        row = {"_id": f"{n:024x}", "id": f"org{n}/model", "downloads": n, "private": False}
        frame = pl.DataFrame([row | {"_order": 0}], schema=ORDERED_SNAPSHOT_SCHEMA)
        barrier.wait()
        results[n] = store_snapshot(
            frame,
            store,
            day,
            lambda counts, sha: describe_snapshot(day, sha, counts, f"crawl {n}", "hub"),
        )

    threads = [threading.Thread(target=build, args=(n,)) for n in range(4)]
    with caplog.at_level("WARNING", logger="tasks.snapshot"):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert store.keys(f"raw/{day}") == [manifest_key(day), snapshot_key(day)]
    stored = SnapshotManifest.load(store.get(manifest_key(day)) or b"")
    assert stored.sha256 == store.sha256(snapshot_key(day))
    # every worker goes on with the stored one, and knows whether it stored it
    assert [r.manifest for r in results.values()] == [stored] * 4
    assert sorted(r.stored_by for r in results.values()) == sorted(
        [STORED_BY_THIS_RUN] + [STORED_FIRST_BY_ANOTHER] * 3
    )
    used = [r.getMessage() for r in caplog.records if "stored the" in r.getMessage()]
    assert len(used) == 3
    assert all("this run uses it" in line for line in used)


@pytest.mark.flow
def test_two_runs_of_one_date_on_s3_leave_one_snapshot(env, s3_bucket, hand_models, monkeypatch):
    """Two `hubshare run`s of one date start together against one bucket: one crawls and
    publishes; the other is refused while the crawl is held (or uses the stored snapshot), and
    the bucket holds one snapshot and one manifest."""
    monkeypatch.setenv("HUBSHARE_DATA_DIR", f"s3://{s3_bucket}/hubshare")
    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", f"sqlite:///{env.parent / 'race.db'}")
    day = str(DAYS[0])
    with FakeHub(hand_models) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        children = [
            subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "hubshare.cli", "run", "--date", day, "--backdate"],
                env=dict(os.environ),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outcomes = [(child.wait(timeout=300), *child.communicate()) for child in children]
    codes = sorted(code for code, _, _ in outcomes)
    assert codes[0] == 0, outcomes
    objects = bucket_objects(s3_bucket)
    keys = [k for k in objects if k.split("/")[-2] not in ("pages",)]
    assert sorted(k for k in keys if f"raw/{day}/" in k) == [
        f"hubshare/raw/{day}/manifest.json",
        f"hubshare/raw/{day}/snapshot.parquet",
    ]
    # One run stored the snapshot and says so; the other was refused while the crawl was held,
    # or says whose snapshot it used (an earlier run's, if it started after the first's ended).
    sha12 = hashlib.sha256(objects[f"hubshare/raw/{day}/snapshot.parquet"]).hexdigest()[:12]
    stored_it = f"Raw snapshot: sha256 {sha12}, stored by {STORED_BY_THIS_RUN}\n"
    winners = [err for _, _, err in outcomes if stored_it in err]
    losers = [err for _, _, err in outcomes if stored_it not in err]
    assert len(winners) == 1, outcomes
    loser = losers[0]
    assert (
        f"another crawl of {day} holds s3://{s3_bucket}/hubshare/raw/{day}/pages/.crawl.lock"
        in loser
        or f"stored by {STORED_BY_EARLIER_RUN}\n" in loser
        or f"stored by {STORED_FIRST_BY_ANOTHER}\n" in loser
    ), outcomes


def test_a_dead_crawls_lease_expires_and_the_next_crawl_takes_over(s3_bucket):
    from hubshare.errors import CrawlBusyError
    from tasks.extract import crawl_lock

    store = DataStore.open(f"s3://{s3_bucket}/hubshare")
    day = DAYS[0]
    with (
        crawl_lock(store, day, lease_seconds=30),
        pytest.raises(CrawlBusyError, match=r"another crawl of 2024-01-14 holds s3://"),
        crawl_lock(store, day, lease_seconds=30),
    ):
        pass
    # A holder killed without releasing: its lease says until when.
    store.put(
        "raw/2024-01-14/pages/.crawl.lock",
        orjson.dumps({"holder": "dead host pid 1", "until": "2024-01-14T00:00:00+00:00"}),
    )
    with crawl_lock(store, day, lease_seconds=30):
        assert b"dead host" not in (store.get("raw/2024-01-14/pages/.crawl.lock") or b"")
    assert not store.exists("raw/2024-01-14/pages/.crawl.lock")


def test_object_storage_needs_a_warehouse_url(monkeypatch):
    monkeypatch.setenv("HUBSHARE_DATA_DIR", "s3://some-bucket/hubshare")
    monkeypatch.delenv("HUBSHARE_WAREHOUSE_URL", raising=False)
    from hubshare.errors import UsageError

    with pytest.raises(UsageError, match="set HUBSHARE_WAREHOUSE_URL too"):
        _ = Settings().resolved_warehouse_url


def test_a_run_whose_lease_expired_is_settled_and_a_live_one_is_not(env, s3_bucket, monkeypatch):
    """On object storage a run folder's lease stands for the OS lock: a run whose lease expired
    (its process died) is recorded as crashed and its folder removed; a renewed one is left."""
    from tasks.settle import settle_abandoned_runs

    monkeypatch.setenv("HUBSHARE_DATA_DIR", f"s3://{s3_bucket}/hubshare")
    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", f"sqlite:///{env.parent / 'settle.db'}")
    settings = Settings()
    store = settings.store
    for run_id, until in (("dead-run", "2024-01-14T00:00:00+00:00"), ("live-run", "2999-01-01")):
        started = {
            "run_id": run_id,
            "snapshot_date": str(DAYS[0]),
            "flow_run_id": None,
            "started_at": "2024-01-14T02:30:00+00:00",
            "parameters": {"run_date": str(DAYS[0]), "backdate": False},
        }
        store.put(f"runs/{run_id}/started.json", orjson.dumps(started))
        store.put(f"runs/{run_id}/.running", orjson.dumps({"holder": "h", "until": until}))
    [settled] = settle_abandoned_runs(settings, current_run_id="this-run")
    assert (settled.run_id, settled.status, settled.version) == ("dead-run", "crashed", 1)
    assert store.keys("runs") == ["runs/live-run/.running", "runs/live-run/started.json"]


#: A crawl in a process of its own: exit 4 and the error's kind and message when it fails.
CRAWL_ONE_DAY = """
import sys
from datetime import date
from hubshare.errors import HubshareError
from hubshare.settings import Settings
from tasks.extract import crawl_pages
try:
    crawl_pages(date.fromisoformat(sys.argv[1]), Settings())
except HubshareError as err:
    sys.exit(f"{type(err).__name__}: {err}")
"""


def test_a_crawl_whose_lease_was_taken_over_stops_before_its_next_page(
    env, s3_bucket, hand_models, monkeypatch
):
    """A crawl paused past its lease (SIGSTOP: a frozen VM, a stalled process) is taken over by
    another holder through the lease's compare-and-swap; resumed, it stores no page more and
    fails naming the new holder, whose lease stays as written."""
    import signal
    import time

    from hubshare.errors import CrawlBusyError
    from hubshare.fakehub import Fault
    from hubshare.storage import Lease

    day = DAYS[0]
    pages = f"raw/{day}/pages"
    monkeypatch.setenv("HUBSHARE_DATA_DIR", f"s3://{s3_bucket}/hubshare")
    monkeypatch.setenv("HUBSHARE_PAGE_SIZE", "1")
    monkeypatch.setenv("HUBSHARE_LEASE_SECONDS", "1.5")  # renewed every 0.5 s
    store = DataStore.open(f"s3://{s3_bucket}/hubshare")
    slow = [Fault(n, "slow", delay=0.3) for n in range(1, 40)]
    with FakeHub(hand_models, faults=slow) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        crawl = subprocess.Popen(  # noqa: S603 - this interpreter
            [sys.executable, "-c", CRAWL_ONE_DAY, str(day)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while not store.exists(f"{pages}/page-000002.json.gz"):
                assert crawl.poll() is None and time.monotonic() < deadline, crawl.stderr
                time.sleep(0.05)
            crawl.send_signal(signal.SIGSTOP)
            time.sleep(2.5)  # its lease expires unrenewed (and writes in flight land)
            new = Lease(store, f"{pages}/.crawl.lock", 30, holder="new holder")
            assert new.acquire() is None  # taken over: the expired lease, compare-and-swap
            stored = {key: store.get(key) for key in store.keys(pages)}
            crawl.send_signal(signal.SIGCONT)
            _, stderr = crawl.communicate(timeout=60)
        finally:
            if crawl.poll() is None:
                crawl.kill()
                crawl.wait()
    assert crawl.returncode == 1, stderr
    assert stderr.strip().splitlines()[-1] == (
        f"{CrawlBusyError.__name__}: another crawl of {day} took over "
        f"s3://{s3_bucket}/hubshare/{pages}/.crawl.lock (new holder) while this one ran: this "
        "one stopped before its next page; the other carries on"
    )
    assert {key: store.get(key) for key in store.keys(pages)} == stored  # nothing stored since
    assert not orjson.loads(stored[f"{pages}/state.json"] or b"")["finished_at"]
    assert orjson.loads(store.get(f"{pages}/.crawl.lock") or b"")["holder"] == "new holder"
    new.release()  # only a holder's own lease is removed: it was still the new holder's
    assert not store.exists(f"{pages}/.crawl.lock")


def test_a_run_whose_lease_was_taken_over_writes_nothing_more_in_its_folder(s3_bucket):
    """A run whose lease another run took over (settling it as dead) is stopped at its next
    write in its folder, and leaves the folder to the other: no end record written over it."""
    import time

    from hubshare.errors import LeaseLostError
    from tasks.settle import running_in

    store = DataStore.open(f"s3://{s3_bucket}/hubshare")
    theirs = orjson.dumps({"holder": "settling run", "until": "2999-01-01T00:00:00+00:00"})
    deadline = time.monotonic() + 10
    with (  # noqa: PT012 - written until a renewal finds out
        pytest.raises(LeaseLostError, match="lease was lost to settling run"),
        running_in(store, "runs/r1", {"run_id": "r1"}, lease_seconds=0.6),
    ):
        store.put("runs/r1/.running", theirs)  # taken over
        while time.monotonic() < deadline:
            store.put("runs/r1/frame.parquet", b"")
            time.sleep(0.05)
    assert store.get("runs/r1/.running") == theirs
    assert not store.exists("runs/r1/run.json")
    assert store.exists("runs/r1/started.json")
