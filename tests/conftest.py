"""Shared fixtures: isolated settings per test, the fake Hub, one Prefect harness per session,
new Prefect homes with a ready database, and a throw-away PostgreSQL database when the server on
127.0.0.1:5432 is there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import hubshare  # noqa: F401  (sets the offline/telemetry defaults before prefect is imported)

FIXTURES = Path(__file__).parent / "fixtures"
HAND_MODELS = FIXTURES / "hand_models.jsonl"
HAND_MAPPING = FIXTURES / "org_country.csv"
PG_ADMIN_URL = os.environ.get("HUBSHARE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


#: Test files by how long their slowest tests take (measured on the 2-core CI machine), longest
#: first (or whose tests, kept on one worker below, take longest together): the suite runs in
#: parallel (pytest-xdist, pyproject.toml), and a long test started last would leave the other
#: workers idle while it runs. Files not named here follow, as collected.
SLOWEST_FIRST = (
    "test_deployments.py",
    "test_long_tail.py",
    "test_benchmarks.py",
    "test_cli.py",
    "test_exit_contract.py",
    "test_object_store.py",
    "test_backfill.py",
    "test_hostile_hub.py",
    "test_operator_view.py",
    "test_hostile_warehouse.py",
    "test_account_types.py",
    "test_windows.py",
    "test_faults.py",
)
#: Files whose module-scoped fixtures are expensive (a published run, a built wheel): each runs
#: on one worker, so the fixture is made once, as in a serial run.
ONE_WORKER = (
    "test_cli.py",
    "test_exit_contract.py",
    "test_hostile_hub.py",
    "test_package.py",
    "test_quality.py",
    "test_fakehub.py",
)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: n for n, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files stay whole
    for item in items:
        if item.path.name in ONE_WORKER:
            item.add_marker(pytest.mark.xdist_group(item.path.stem))


def run_hubshare(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real `hubshare` command in its own process, with this process's environment (and the
    session's Prefect server, when the harness runs, so flows need no server of their own)."""
    from prefect.settings import PREFECT_API_URL

    api = PREFECT_API_URL.value()
    full_env = os.environ | ({"PREFECT_API_URL": str(api)} if api else {}) | (env or {})
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "hubshare.cli", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def read_models(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


@pytest.fixture
def hand_models() -> list[dict[str, Any]]:
    return read_models(HAND_MODELS)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data dir and SQLite warehouse; tiny HTTP waits; the hand-made mapping."""
    data_dir = tmp_path / "data"
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUBSHARE_WAREHOUSE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HUBSHARE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("HUBSHARE_MAPPING", str(HAND_MAPPING))
    monkeypatch.setenv("HUBSHARE_HTTP_BASE_WAIT", "0.01")
    monkeypatch.setenv("HUBSHARE_HTTP_MAX_WAIT", "0.05")
    monkeypatch.setenv("HUBSHARE_HTTP_MAX_RETRIES", "3")
    monkeypatch.setenv("HUBSHARE_HTTP_READ_TIMEOUT", "10")
    monkeypatch.setenv("HUBSHARE_PAGE_SIZE", "3")
    # Tests run on dates of their choosing against fixed fake data.
    monkeypatch.chdir(tmp_path)
    return data_dir


@pytest.fixture(scope="session")
def prefect_database(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A Prefect database with Prefect's migrations applied, made once per test session (by the
    first pytest-xdist worker to ask; the others wait for it). A Prefect server on a new home
    would apply them itself: about 4 CPU s each, for some 18 servers a run. Copied into each new
    home (`prefect_home`, `prefect_harness`); test_package's demo still starts on an empty one."""
    from filelock import FileLock

    # The directory every worker of this session shares (pytest-xdist's documented recipe).
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent
    database = shared / "prefect-database" / "prefect.db"
    with FileLock(shared / "prefect-database.lock"):
        if not database.exists():
            building = shared / "prefect-database.building"
            env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
            made = subprocess.run(  # noqa: S603 - the test venv's prefect
                [str(Path(sys.executable).parent / "prefect"), "server", "database", "upgrade",
                 "-y"],
                env=env | {"PREFECT_HOME": str(building)},
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )  # fmt: skip
            if made.returncode != 0:
                pytest.fail(f"prefect server database upgrade failed: {made.stderr[-2000:]}")
            building.rename(database.parent)
    return database


def ready_prefect_home(home: Path, prefect_database: Path) -> Path:
    """`home` as a PREFECT_HOME whose database is ready: what a server started on it serves is
    what it would serve on an empty home, without applying the migrations first."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(prefect_database, home / "prefect.db")
    return home


@pytest.fixture
def prefect_home(tmp_path: Path, prefect_database: Path) -> Path:
    """A new PREFECT_HOME whose database is ready (`ready_prefect_home`)."""
    return ready_prefect_home(tmp_path / "prefect-home", prefect_database)


@pytest.fixture(scope="session")
def prefect_harness(prefect_database: Path) -> Iterator[None]:
    import prefect.testing.utilities as harness
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    directory = tempfile.mkdtemp()
    shutil.copyfile(prefect_database, Path(directory) / "prefect-test.db")
    with pytest.MonkeyPatch.context() as patch:
        # The harness puts its database in a directory of its own making: this one holds it
        # ready (`prefect_database`). Checked below, so a change in Prefect is seen, not hidden.
        patch.setattr(harness, "mkdtemp", lambda: directory)
        # A hang guard: each parallel worker starts its own, maybe while others start servers.
        with harness.prefect_test_harness(server_startup_timeout=300):
            url = str(PREFECT_SERVER_DATABASE_CONNECTION_URL.value())
            assert url.endswith(f"{directory}/prefect-test.db"), url
            yield


def _pg_admin() -> Any:
    import psycopg

    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as err:
        if os.environ.get("HUBSHARE_REQUIRE_POSTGRES"):
            pytest.fail(
                f"HUBSHARE_REQUIRE_POSTGRES is set but {PG_ADMIN_URL} is unreachable: {err}"
            )
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty database on the local server, dropped afterwards."""
    admin = _pg_admin()
    name = f"hubshare_test_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(params=["sqlite", "postgres"])
def warehouse_url(request: pytest.FixtureRequest, env: Path) -> str:
    """Each warehouse test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{env / 'warehouse.db'}"
    return str(request.getfixturevalue("postgres_url"))


#: Credentials of the loopback S3 server: fake, and hunted for in files and logs by the tests.
S3_KEY_ID = "AKIAHUBSHARETESTKEY1"
S3_SECRET = "hubshare-test-secret-NEVER-written-0123"  # noqa: S105 - a fake secret to hunt for


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's standalone S3 server on a loopback port, for the session: its endpoint URL."""
    import socket
    import time

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    # moto with S3's atomic create-if-absent (tests/atomic_moto.py): plain moto let two
    # racing writers both create one key, once in a CI run of the snapshot race test.
    process = subprocess.Popen(  # noqa: S603 - the test venv's moto
        [sys.executable, "-m", "tests.atomic_moto", "-H", "127.0.0.1", "-p", str(port)],
        cwd=Path(__file__).parent.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(endpoint, timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail(f"moto's S3 server did not start on {endpoint}")
                time.sleep(0.2)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def s3_bucket(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new bucket on the loopback S3 server, with the standard AWS environment pointing at
    it: the bucket's name."""
    import boto3

    for name, value in {
        "AWS_ACCESS_KEY_ID": S3_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_server,
        "AWS_ALLOW_HTTP": "true",
    }.items():
        monkeypatch.setenv(name, value)
    bucket = f"hubshare-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A data dir's store on a local folder, then on the loopback S3 server."""
    from hubshare.storage import DataStore

    if request.param == "local":
        return DataStore.open(tmp_path / "data")
    bucket = request.getfixturevalue("s3_bucket")
    return DataStore.open(f"s3://{bucket}/hubshare/data")
