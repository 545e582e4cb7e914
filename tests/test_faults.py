"""Promises kept under bad input and faults (issue 9): each case asserts the exit code or the
error, and that nothing stored is lost, half-written or leaked."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from uuid import UUID

import pytest
from sqlalchemy import create_engine

from hubshare.fakehub import FakeHub, Fault
from hubshare.read_warehouse import list_runs
from tests.conftest import ready_prefect_home
from tests.test_cli import closed_port, invoke, last_line

DAY = date(2024, 1, 15)


def files_containing(folder: Path, needle: bytes) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_credentials_in_the_endpoint_are_never_written(env, hand_models, monkeypatch, capfd):
    from flows.daily import daily

    with FakeHub(hand_models) as hub:
        host = hub.url.split("://", 1)[1]
        monkeypatch.setenv("HF_ENDPOINT", f"http://crawler:s3cretpw@{host}")
        outcome = daily(run_date=DAY, backdate=True)
    assert outcome["status"] == "published"
    assert files_containing(env, b"s3cretpw") == []  # state.json, manifest, run files, warehouse
    out, err = capfd.readouterr()
    assert "s3cretpw" not in out + err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("shares", "--date", "2024-1-15"), "--date '2024-1-15' is not a date in the form"),
        (("shares", "--date", "2024-W03-1"), "--date '2024-W03-1' is not a date in the form"),
        (("shares", "--date", "2024-01-15x"), "--date '2024-01-15x' is not a date in the form"),
        (("runs", "--date", "1999-12-31"), "--date 1999-12-31 is before 2016-01-01"),
        (("shares", "--date", "2999-01-01"), "--date 2999-01-01 is in the future"),
        (("run", "--date", "2999-01-01", "--backdate"), "--date 2999-01-01 is in the future"),
        (("backfill", "--start", "2024-01-01", "--end", "2999-01-01"), "--end 2999-01-01 is in"),
        (
            ("shares", "--window", "2024-01-01..2999-01-01"),
            "--window 2999-01-01 is in the future",
        ),
        (("shares", "--window", "2024-01-01..24-01-08"), "--window '24-01-08' is not a date"),
        (("explain", "--from", "2024-01-01", "--to", "2024-13-01"), "--to '2024-13-01' is not"),
    ],
)
def test_dates_are_strict(env, args, message):
    result = invoke(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [last_line(result.stderr)]
    assert message in last_line(result.stderr)


def test_a_backfill_on_the_pool_needs_a_server_with_workers(env):
    """Without PREFECT_API_URL there is no work pool to fan out to (a temporary server has no
    workers): a usage error, before anything runs."""
    without_api = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    result = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "hubshare.cli", "backfill", "--start", "2024-01-01", "--end",
         "2024-01-02", "--on-pool"],
        env=without_api,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert last_line(result.stderr).startswith("error: --on-pool needs PREFECT_API_URL")


def test_versions_stay_unique_when_loads_of_a_date_race(warehouse_url):
    """Four loads of one date at the same instant: the database's unique (snapshot_date,
    version) makes each loser take the next version (SQLite had no lock and no constraint)."""
    from hubshare.warehouse import warehouse_engine
    from tasks.load import record_unfinished_run
    from tasks.migrate import upgrade_warehouse

    url = warehouse_url
    upgrade_warehouse(warehouse_engine(url))
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def load(n: int) -> None:
        try:
            barrier.wait()
            record_unfinished_run(
                warehouse_engine(url),
                run_id=f"run-{n}",
                snapshot_date=DAY,
                flow_run_id=None,
                started_at=datetime.now(UTC),
                status="failed",
                reason="race",
                parameters={},
            )
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=load, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    versions = sorted(list_runs(create_engine(url), DAY)["version"].to_list())
    assert versions == [1, 2, 3, 4]


def test_reproduce_takes_a_unique_prefix_of_a_run_id(env, tmp_path, monkeypatch):
    from hubshare.warehouse import warehouse_engine
    from tasks.load import record_unfinished_run

    url = f"sqlite:///{tmp_path / 'w.db'}"
    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", url)
    for run_id in ("abcdef01-0000", "abcdef02-0000"):
        record_unfinished_run(
            warehouse_engine(url),
            run_id=run_id,
            snapshot_date=DAY - timedelta(days=1),
            flow_run_id=None,
            started_at=datetime.now(UTC),
            status="failed",
            reason="fixture",
            parameters={},
        )
    ambiguous = invoke("reproduce", "abcdef0")
    assert ambiguous.returncode == 2
    assert last_line(ambiguous.stderr) == (
        "error: run id 'abcdef0' matches 2 runs (abcdef01, abcdef02): give more characters"
    )
    unknown = invoke("reproduce", "ffff")
    assert unknown.returncode == 2 and "no run id starts with 'ffff'" in unknown.stderr
    found = invoke("reproduce", "abcdef01")
    # The prefix resolved: the failed run has nothing to reproduce, and says so.
    assert "abcdef01-0000" in last_line(found.stderr)


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_a_page_with_a_wrong_type_is_quarantined_and_retried(env, hand_models, monkeypatch):
    """A page whose `downloads` is a string is not stored and the crawl does not advance: the
    run fails naming the page, item and field, and the next run asks for that page again."""
    from flows.daily import daily
    from hubshare.errors import MalformedPageError

    odd = [dict(m) for m in hand_models]
    odd[4]["downloads"] = "12"  # the 5th public-or-private model: page 2 of 3-model pages
    monkeypatch.setenv("HUBSHARE_EXTRACT_TASK_RETRIES", "0")
    port = closed_port()  # one endpoint for both runs, as the real Hub's is
    with FakeHub(odd, port=port) as hub, pytest.raises(MalformedPageError) as caught:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        daily(run_date=DAY, backdate=True)
    message = str(caught.value)
    assert "page 2" in message and "`downloads` = '12' (str)" in message
    pages = env / "raw" / DAY.isoformat() / "pages"
    assert sorted(p.name for p in pages.glob("page-*.json.gz")) == ["page-000001.json.gz"]
    assert (pages / "quarantine" / "page-000002.json.gz").exists()
    with FakeHub(hand_models, port=port) as hub:  # the Hub fixed its page: resume at page 2
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert daily(run_date=DAY, backdate=True)["status"] == "published"


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_a_stored_page_that_cannot_be_read_is_named(env, hand_models, monkeypatch):

    pages = env / "raw" / DAY.isoformat() / "pages"
    port = closed_port()
    # A crawl killed before its snapshot was built: page 2 then got truncated on disk.
    with FakeHub(hand_models, faults=[Fault(3, "malformed")], port=port) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HUBSHARE_EXTRACT_TASK_RETRIES", "0")
        assert invoke("run", "--date", str(DAY), "--backdate").returncode == 4
    page = pages / "page-000002.json.gz"
    page.write_bytes(page.read_bytes()[:20])
    with FakeHub(hand_models, port=port) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        result = invoke("run", "--date", str(DAY), "--backdate")
    assert result.returncode == 5
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {page}: stored page cannot be read")
    assert "restore it, or delete" in line


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_reproduce_proves_what_the_warehouse_holds(env, warehouse_url, hand_models, monkeypatch):
    """An edited share row or deleted facts are found: reproduce compares the stored rows with
    the recomputation, not only the inputs."""
    from sqlalchemy import text

    from flows.daily import daily

    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", warehouse_url)
    with FakeHub(hand_models) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        run_id = daily(run_date=DAY, backdate=True)["run_id"]
    assert invoke("reproduce", run_id[:8]).returncode == 0
    engine = create_engine(warehouse_url)
    edit = (
        "UPDATE country_share SET downloads = downloads + {n} WHERE run_id = :r "
        "AND definition = 'downloads_30d' AND cohort = 'all' AND attribution = 'uploader' "
        "AND bucket = 'CN'"
    )
    with engine.begin() as connection:
        connection.execute(text(edit.format(n=1)), {"r": run_id})
    edited = invoke("reproduce", run_id)
    assert edited.returncode == 5
    [line] = edited.stderr.strip().splitlines()
    assert f"the country_share rows stored for run {run_id} differ" in line
    assert "uploader/CN" in line
    with engine.begin() as connection:
        connection.execute(text(edit.format(n=-1)), {"r": run_id})
        connection.execute(
            text(
                "DELETE FROM model_day WHERE model_key IN "
                "(SELECT model_key FROM model_day ORDER BY model_key LIMIT 4)"
            )
        )
    deleted = invoke("reproduce", run_id)
    assert deleted.returncode == 5
    assert "the per-model facts stored" in deleted.stderr and "(5 stored, 9 recomputed)" in (
        deleted.stderr
    )


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_one_crawl_per_date_at_a_time_and_only_against_its_own_hub(env, hand_models, monkeypatch):
    import fcntl
    import os

    pages = env / "raw" / DAY.isoformat() / "pages"
    pages.mkdir(parents=True)
    monkeypatch.setenv("HUBSHARE_EXTRACT_TASK_RETRIES", "0")
    with FakeHub(hand_models) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        with (pages / ".crawl.lock").open("a+") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            held.write(f"pid {os.getpid()} since a moment ago")
            held.flush()
            busy = invoke("run", "--date", str(DAY), "--backdate")
        assert busy.returncode == 4
        [line] = busy.stderr.strip().splitlines()
        assert f"another crawl of {DAY} holds" in line and f"pid {os.getpid()}" in line
        assert not (pages / "state.json").exists()  # the second process touched nothing
        # Interrupted after page 1 (a malformed page 2), then resumed against another Hub.
        with FakeHub(hand_models, faults=[Fault(2, "malformed")]) as first:
            monkeypatch.setenv("HF_ENDPOINT", first.url)
            assert invoke("run", "--date", str(DAY), "--backdate").returncode == 4
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        other = invoke("run", "--date", str(DAY), "--backdate")
    assert other.returncode == 4
    assert "a crawl resumes only against its own Hub" in other.stderr


def start_run(
    extra_env: dict[str, str], base_env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """`hubshare run` for DAY in its own process group, as a terminal starts it."""
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "hubshare.cli", "run", "--date", str(DAY), "--backdate"],
        env=(dict(os.environ) if base_env is None else base_env) | extra_env,
        cwd=Path(__file__).parent.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for_page(child: subprocess.Popen[str], pages: Path, number: int) -> None:
    """Until the crawl state records page `number` (the page file is stored just before it: a
    stop in between leaves state.json one page behind, and the page is fetched again)."""
    deadline = time.monotonic() + 120
    state = pages / "state.json"
    while not (state.exists() and orjson_load(state)["pages"] == number):
        assert child.poll() is None, child.stderr.read() if child.stderr else ""
        assert time.monotonic() < deadline, f"the run never stored page {number}"
        time.sleep(0.05)


def wait_for_task_runs(flow_run_id: UUID, names: set[str]) -> None:
    """Until the Prefect API shows a task run of each name in `names` for the flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    only = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    deadline = time.monotonic() + 120
    with get_client(sync_client=True) as client:
        while not names <= {
            run.name.rsplit("-", 1)[0] for run in client.read_task_runs(flow_run_filter=only)
        }:
            assert time.monotonic() < deadline, f"Prefect never showed {names} of {flow_run_id}"
            time.sleep(0.05)


def descendants(pid: int) -> list[int]:
    found = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        found += [int(child), *descendants(int(child))]
    return found


def wait_until_gone(pids: list[int], seconds: float = 30) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if Path(f"/proc/{pid}").exists() and not _zombie(pid)]
        if not alive:
            return []
        time.sleep(0.1)
    return alive


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return False


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_a_killed_run_is_settled_by_the_next_run(env, warehouse_url, hand_models, monkeypatch):
    """SIGKILL mid-crawl leaves a RUNNING flow run, a run folder and no run row: the next run
    records it as crashed, marks it Crashed in Prefect, removes its folder and resumes the
    crawl."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.objects import StateType
    from prefect.settings import PREFECT_API_URL

    from flows.daily import daily

    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", warehouse_url)
    pages = env / "raw" / DAY.isoformat() / "pages"
    port = closed_port()
    with FakeHub(hand_models, faults=[Fault(3, "slow", delay=60)], port=port) as hub:
        child = start_run({"HF_ENDPOINT": hub.url, "PREFECT_API_URL": str(PREFECT_API_URL.value())})
        wait_for_page(child, pages, 2)
        # Killed once Prefect shows its task runs: the server records them from the run's
        # events, asynchronously, and a busy one can lag the crawl by seconds.
        [running] = [folder.name for folder in (env / "runs").iterdir()]
        wait_for_task_runs(UUID(running), {"settle-abandoned-runs", "extract-snapshot"})
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    [killed] = [folder.name for folder in (env / "runs").iterdir()]
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(UUID(killed)).state_type == StateType.RUNNING
    assert list_runs(create_engine(warehouse_url), DAY).height == 0

    with FakeHub(hand_models, port=port) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        outcome = daily(run_date=DAY, backdate=True)
    [settled] = outcome["settled"]
    assert settled.startswith(f"abandoned run {killed} of {DAY}") and "version 1 crashed" in settled
    runs = list_runs(create_engine(warehouse_url), DAY)
    assert runs.select("version", "run_id", "status").rows() == [
        (1, killed, "crashed"),
        (2, outcome["run_id"], "published"),
    ]
    assert not (env / "runs" / killed).exists()
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(UUID(killed)).state_type == StateType.CRASHED
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(killed)]))
        )
    states = {run.name.rsplit("-", 1)[0]: run.state_type for run in task_runs}
    assert states == {
        "settle-abandoned-runs": StateType.COMPLETED,
        "extract-snapshot": StateType.CRASHED,
    }
    manifest = read_manifest(env, DAY)
    assert manifest["resumes"] == 1  # the crawl went on from page 2, not from the start


def read_manifest(data_dir: Path, day: date) -> dict[str, object]:
    import orjson

    path = data_dir / "raw" / day.isoformat() / "manifest.json"
    result: dict[str, object] = orjson.loads(path.read_bytes())
    return result


@pytest.fixture(scope="module")
def own_prefect_home(tmp_path_factory: pytest.TempPathFactory, prefect_database: Path) -> Path:
    """A Prefect home for commands that start their own temporary server, its database ready."""
    return ready_prefect_home(tmp_path_factory.mktemp("prefect-home"), prefect_database)


@pytest.mark.flow
@pytest.mark.parametrize("stop", ["sigkill", "ctrl-c"])
def test_no_temporary_server_outlives_its_command(env, hand_models, own_prefect_home, stop):
    """Without PREFECT_API_URL the command starts a temporary Prefect server. It stops with the
    command, however the command ends: a SIGKILL, or a Ctrl-C in the terminal (which reaches the
    whole process group: the command then exits 130 with one line, and its crawl resumes)."""
    pages = env / "raw" / DAY.isoformat() / "pages"
    without_api = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    with FakeHub(hand_models, faults=[Fault(3, "slow", delay=60)]) as hub:
        child = start_run(
            {"HF_ENDPOINT": hub.url, "PREFECT_HOME": str(own_prefect_home)}, without_api
        )
        wait_for_page(child, pages, 2)
        spawned = descendants(child.pid)
        assert spawned, "the command started no temporary server"
        if stop == "sigkill":
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
        else:
            os.killpg(child.pid, signal.SIGINT)
            # A hang guard, not a timing test: before, the command retried for minutes.
            _, err = child.communicate(timeout=60)
            assert child.returncode == 130
            # (a slow page may time out first: its backoff wait is a `Hub: …` line)
            lines = err.strip().splitlines()
            assert [line for line in lines if not line.startswith("Hub: ")] == [
                "error: interrupted; a crawl resumes from its last stored page next time"
            ]
    assert wait_until_gone(spawned) == []
    state = orjson_load(pages / "state.json")
    assert state["pages"] == 2 and state["finished_at"] is None  # resumable from page 3


def orjson_load(path: Path) -> dict[str, object]:
    import orjson

    result: dict[str, object] = orjson.loads(path.read_bytes())
    return result


def test_concurrent_first_schema_creation_is_safe(warehouse_url):
    """Several processes' first run on one fresh warehouse at once: every one gets the schema,
    none fails (PostgreSQL: an advisory lock; SQLite: a lock file beside the database)."""
    from hubshare.warehouse import head_revision, warehouse_engine
    from tasks.migrate import upgrade_warehouse

    barrier = threading.Barrier(4)
    outcomes: list[object] = []

    def upgrade() -> None:
        try:
            barrier.wait()
            outcomes.append(upgrade_warehouse(warehouse_engine(warehouse_url)))
        except BaseException as err:  # noqa: BLE001 - reported below
            outcomes.append(err)

    threads = [threading.Thread(target=upgrade) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == [head_revision()] * 4


def run_on_a_full_disk(limit: int, *args: str) -> subprocess.CompletedProcess[str]:
    """`hubshare ARGS` where no file can grow beyond `limit` bytes: writes fail as on a full
    disk (EFBIG instead of ENOSPC; no root or tiny filesystem needed)."""
    from prefect.settings import PREFECT_API_URL

    def cap() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "hubshare.cli", *args],
        env=os.environ | {"PREFECT_API_URL": str(PREFECT_API_URL.value())},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        preexec_fn=cap,  # noqa: PLW1509 - only sets a limit, before exec
    )


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_a_full_data_dir_is_one_line_and_the_crawl_resumes(
    env, warehouse_url, hand_models, monkeypatch
):
    from flows.daily import daily

    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", warehouse_url)
    with FakeHub(hand_models) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        full = run_on_a_full_disk(1, "run", "--date", str(DAY), "--backdate")
        assert full.returncode == 7, full.stderr
        [line] = full.stderr.strip().splitlines()
        assert line.startswith("error: cannot write or read ") and "File too large" in line
        assert f"HUBSHARE_DATA_DIR={env}" in line
        assert not list(env.rglob("*.tmp"))  # no half-written file left behind
        assert not (env / "raw" / DAY.isoformat() / "snapshot.parquet").exists()
        outcome = daily(run_date=DAY, backdate=True)
    assert outcome["status"] == "published"
    statuses = list_runs(create_engine(warehouse_url), DAY)["status"].to_list()
    # PostgreSQL has the failed run on record; the SQLite file could not grow to record it.
    on_record = ["published"] if warehouse_url.startswith("sqlite") else ["failed", "published"]
    assert statuses == on_record


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_a_full_sqlite_warehouse_is_one_line_and_keeps_what_it_held(env, hand_models, monkeypatch):
    from flows.daily import daily
    from tests.test_cli import dump

    db = env / "warehouse.db"
    with FakeHub(hand_models) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        daily(run_date=DAY, backdate=True)
        before = dump(db)
        # The snapshot is stored: a second run writes only small run files and the warehouse.
        full = run_on_a_full_disk(db.stat().st_size, "run", "--date", str(DAY))
    assert full.returncode == 6, full.stderr
    [line] = full.stderr.strip().splitlines()
    assert line.startswith(f"error: warehouse sqlite:///{db}")
    after = dump(db)
    new_runs = set(after.pop("etl_run")) - set(before.pop("etl_run"))
    # What was published stays; the failed run is on record when its row still fits.
    assert [row[3] for row in new_runs] in ([], ["failed"])
    assert after == before


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_a_data_dir_that_cannot_be_written_is_one_line(
    env, warehouse_url, hand_models, monkeypatch
):
    """HUBSHARE_DATA_DIR under a file (as good as read-only, for root too): exit 7 naming the
    path; the warehouse keeps only the failed run's row."""
    blocker = env.parent / "not-a-folder"
    blocker.write_text("a file")
    monkeypatch.setenv("HUBSHARE_DATA_DIR", str(blocker / "data"))
    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", warehouse_url)
    with FakeHub(hand_models) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        result = invoke("run", "--date", str(DAY), "--backdate")
    assert result.returncode == 7
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot write or read {blocker}/data")
    assert "Not a directory" in line
    assert blocker.read_text() == "a file"
