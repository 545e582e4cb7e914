"""The command line's exit contract (issue 19): the README's exit table, `EXIT_CODES` and what
the commands do agree. Every documented exit code has a case below, run for real (the
`hubshare` command in a process of its own), that produces it with exactly one `error:` line."""

from __future__ import annotations

import os
import re
import resource
import signal
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import pytest

from hubshare.cli import EXIT_CODES
from hubshare.fakehub import FakeHub, Fault
from tests import test_cli
from tests.conftest import S3_KEY_ID, S3_SECRET
from tests.test_cli import DAY, closed_port
from tests.test_faults import start_run, wait_for_page

#: tests.test_cli's fixtures: a fake Hub, and a data dir with DAY published.
hub, published_once, published = test_cli.hub, test_cli.published_once, test_cli.published

README = Path(__file__).parents[1] / "README.md"
OPERATIONS = Path(__file__).parents[1] / "docs" / "operations.md"
#: Codes the CLI gives outside EXIT_CODES: success, an unexpected error, Ctrl-C.
CODES_BESIDES_ERRORS = {0, 1, 130}


def documented_exit_codes() -> dict[int, str]:
    """The README's exit table ("| exit | meaning |"): code -> meaning."""
    text = README.read_text(encoding="utf-8")
    table = text.split("| exit | meaning |", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| (\d+) \| (.+) \|$", table, flags=re.MULTILINE)
    return {int(code): meaning for code, meaning in rows}


def test_the_readme_table_lists_exactly_the_codes_the_cli_gives():
    assert set(documented_exit_codes()) == {code for _, code in EXIT_CODES} | CODES_BESIDES_ERRORS


def test_object_storage_failures_are_documented_as_exit_7():
    assert "object storage" in documented_exit_codes()[7]
    assert "settings" in documented_exit_codes()[2] or "HUBSHARE_" in documented_exit_codes()[2]
    assert "exit 7" in OPERATIONS.read_text(encoding="utf-8")


@dataclass(frozen=True)
class Case:
    """One command line, the environment it changes, and what it must end with."""

    args: tuple[str, ...]
    code: int
    #: Words of the one `error:` line (or of stderr, for exit 0).
    words: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    #: Files written in the working directory first (name -> bytes).
    files: dict[str, bytes] = field(default_factory=dict)
    #: Object storage: HUBSHARE_DATA_DIR on the loopback S3 server (bucket: "new" or a name).
    s3: str | None = None
    #: No file may grow beyond this many bytes (a full disk).
    file_size_limit: int | None = None


MODEL_A = b'{"_id": "a1", "id": "acme/one", "downloads": 3}\n'
#: 2^64: a JSON integer beyond 64 bits.
BEYOND_64_BITS = b'{"_id": "a1", "id": "acme/one", "downloads": 18446744073709551616}\n'
S3_IMPORT = ("import", "--date", "2024-01-10", "--file", "one.jsonl")

CASES: dict[str, Case] = {
    "mapping-check-passes": Case(("mapping", "check"), 0),
    "setting-not-an-integer": Case(
        ("runs",), 2, ("HUBSHARE_PAGE_SIZE", "valid integer"), env={"HUBSHARE_PAGE_SIZE": "abc"}
    ),
    "setting-out-of-range": Case(
        ("shares",),
        2,
        ("HUBSHARE_MAX_ROW_DROP", "less than or equal to 1"),
        env={"HUBSHARE_MAX_ROW_DROP": "2"},
    ),
    "setting-on-a-flow-command": Case(
        ("run", "--date", "2024-01-10"),
        2,
        ("HUBSHARE_LEASE_SECONDS", "greater than 0"),
        env={"HUBSHARE_LEASE_SECONDS": "0"},
    ),
    "report-over-the-warehouse": Case(
        ("report", "--out", "data/warehouse.db"), 2, ("data/warehouse.db", "not a hubshare report")
    ),
    "report-over-a-csv": Case(
        ("report", "--out", "notes.csv"),
        2,
        ("notes.csv", "not a hubshare report"),
        files={"notes.csv": b"a,b\n1,2\n"},
    ),
    "report-into-a-folder": Case(("report", "--out", "data"), 2, ("--out data", "directory")),
    "import-count-beyond-64-bits": Case(
        ("import", "--date", "2024-01-10", "--file", "huge.jsonl"),
        5,
        ("huge.jsonl: record 1", "`downloads` = 18446744073709551616 out of range"),
        files={"huge.jsonl": BEYOND_64_BITS},
    ),
    "mapping-check-missing": Case(("mapping", "check", "--mapping", "nope.csv"), 5, ("nope.csv",)),
    "shares-no-warehouse": Case(("shares", "--date", DAY), 6, ("no warehouse",)),
    "import-on-a-full-disk": Case(
        ("import", "--date", "2024-01-10", "--file", "one.jsonl"),
        7,
        ("cannot write or read", "/data/raw/2024-01-10/", "File too large"),
        files={"one.jsonl": MODEL_A},
        file_size_limit=1,
    ),
    "s3-missing-bucket": Case(
        S3_IMPORT,
        7,
        ("s3://hubshare-no-such-bucket/data", "bucket does not exist", "create it"),
        files={"one.jsonl": MODEL_A},
        s3="hubshare-no-such-bucket",
    ),
    "s3-endpoint-down": Case(
        S3_IMPORT,
        7,
        ("cannot reach http://127.0.0.1:", "AWS_ENDPOINT_URL"),
        files={"one.jsonl": MODEL_A},
        s3="new",
        env={"AWS_ENDPOINT_URL": "closed"},
    ),
    "s3-no-credentials": Case(
        S3_IMPORT,
        7,
        ("no credentials", "AWS_ACCESS_KEY_ID"),
        files={"one.jsonl": MODEL_A},
        s3="new",
        env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""},
    ),
    "s3-plain-http-not-allowed": Case(
        S3_IMPORT,
        7,
        ("is plain http", "AWS_ALLOW_HTTP=true"),
        files={"one.jsonl": MODEL_A},
        s3="new",
        env={"AWS_ALLOW_HTTP": ""},
    ),
}


def run_case(case: Case) -> subprocess.CompletedProcess[str]:
    def cap() -> None:
        if case.file_size_limit is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (case.file_size_limit,) * 2)

    # An empty value in the case unsets the variable.
    full_env = {
        name: value
        for name, value in (os.environ | case.env).items()
        if value or name not in case.env
    }
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "hubshare.cli", *case.args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        preexec_fn=cap,  # noqa: PLW1509 - only sets a limit, before exec
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_case_exits_with_its_documented_code(name, env, request, monkeypatch):
    case = CASES[name]
    (env / "warehouse.db").parent.mkdir(parents=True, exist_ok=True)
    if name.startswith("report-"):  # a warehouse file to protect
        with sqlite3.connect(env / "warehouse.db") as connection:
            connection.execute("CREATE TABLE kept (x INTEGER)")
    for file_name, content in case.files.items():
        Path(file_name).write_bytes(content)
    environment = dict(case.env)
    if case.s3 is not None:
        bucket = request.getfixturevalue("s3_bucket") if case.s3 == "new" else case.s3
        request.getfixturevalue("s3_bucket")  # the AWS_* environment of the loopback server
        monkeypatch.setenv("HUBSHARE_DATA_DIR", f"s3://{bucket}/data")
        if environment.get("AWS_ENDPOINT_URL") == "closed":
            environment["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{closed_port()}"
    before = (env / "warehouse.db").read_bytes() if (env / "warehouse.db").exists() else None
    result = run_case(replace(case, env=environment))
    assert result.returncode == case.code, result.stderr
    lines = result.stderr.strip().splitlines()
    if case.code != 0:
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in case.words:
        assert word in result.stderr, result.stderr
    for secret in (S3_SECRET, S3_KEY_ID, "169.254.169.254"):
        assert secret not in result.stderr
    if before is not None:
        assert (env / "warehouse.db").read_bytes() == before  # never replaced


#: 2^63-1 twice: each count fits 64 bits, their sum does not.
TWO_MAXIMAL_COUNTS = (
    b'{"_id": "a1", "id": "acme/one", "downloads": 9223372036854775807}\n'
    b'{"_id": "a2", "id": "acme/two", "downloads": 9223372036854775807}\n'
)

#: Cases on a data dir with DAY published (tests.test_cli's fixture) and the session's Prefect
#: API: the steps before the case, the case, and its environment.
FLOW_CASES: dict[str, tuple[list[tuple[str, ...]], Case]] = {
    "run-rejected-by-the-gate": (
        [],
        Case(("run", "--date", DAY), 3, ("quality gate",), env={"HUBSHARE_MAX_UNKNOWN_SHARE": "0"}),
    ),
    "backfill-with-a-date-not-published": (
        [],
        Case(
            ("backfill", "--start", DAY, "--end", DAY, "--force"),
            1,
            ("1 date(s) were not published",),
            env={"HUBSHARE_MAX_UNKNOWN_SHARE": "0"},
        ),
    ),
    "run-hub-unreachable": (
        [],
        Case(
            ("run", "--date", "2024-01-16", "--backdate"),
            4,
            ("HF_ENDPOINT",),
            env={"HF_ENDPOINT": "closed", "HUBSHARE_EXTRACT_TASK_RETRIES": "0"},
        ),
    ),
    "run-downloads-summing-beyond-64-bits": (
        [("import", "--date", "2024-01-11", "--file", "maximal.jsonl")],
        Case(
            ("run", "--date", "2024-01-11"),
            5,
            ("the downloads sum to 18446744073709551614", "model a1 of acme"),
            files={"maximal.jsonl": TWO_MAXIMAL_COUNTS},
        ),
    ),
    "report-over-an-earlier-report": (
        [("report", "--out", "earlier.html")],
        Case(("report", "--out", "earlier.html"), 0, ("Wrote earlier.html",)),
    ),
    "report-over-the-published-warehouse": (
        [],
        Case(("report", "--out", "data/warehouse.db"), 2, ("not a hubshare report",)),
    ),
}


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("name", sorted(FLOW_CASES))
def test_each_flow_case_exits_with_its_documented_code(name, published, monkeypatch):
    from prefect.settings import PREFECT_API_URL

    steps, case = FLOW_CASES[name]
    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", f"sqlite:///{published}")
    for file_name, content in case.files.items():
        Path(file_name).write_bytes(content)
    for step in steps:
        done = run_case(Case(step, 0))
        assert done.returncode == 0, done.stderr
    environment = dict(case.env)
    if environment.get("HF_ENDPOINT") == "closed":
        environment["HF_ENDPOINT"] = f"http://127.0.0.1:{closed_port()}"
        monkeypatch.setenv("HUBSHARE_HTTP_MAX_RETRIES", "0")
    warehouse_before = published.read_bytes()
    result = run_case(replace(case, env=environment))
    assert result.returncode == case.code, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == (case.code != 0), result.stderr
    for word in case.words:
        assert word in result.stderr, result.stderr
    if name == "report-over-the-published-warehouse":
        assert published.read_bytes() == warehouse_before


#: `hubshare` with a hook after the load that kills the command's own temporary Prefect server
#: (a real stop: the process is gone), then goes on as the flow would.
PREFECT_DIES_AFTER_THE_LOAD = """
import sys

import flows.daily
import hubshare.temporary_server as temporary

started = []
start = temporary.start_temporary_server


def start_and_keep(*args, **kwargs):
    started.append(start(*args, **kwargs))
    return started[-1]


publish_artifacts = flows.daily.publish_share_artifacts


def kill_prefect_then_publish_artifacts(*args, **kwargs):
    for server in started:
        server.process.kill()
        server.process.wait()
    return publish_artifacts(*args, **kwargs)


temporary.start_temporary_server = start_and_keep
flows.daily.publish_share_artifacts = kill_prefect_then_publish_artifacts
sys.argv = ["hubshare", *sys.argv[1:]]
from hubshare.cli import main

main()
"""


@pytest.mark.flow
def test_published_then_prefect_gone_exits_0_with_a_warning(env, hub, prefect_home):
    """The version is in the warehouse when the Prefect API dies: exit 0 and one warning line,
    so that a retrying script does not publish another version."""
    without_api = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    result = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", PREFECT_DIES_AFTER_THE_LOAD, "run", "--date", DAY, "--backdate"],
        env=without_api
        | {
            "PREFECT_HOME": str(prefect_home),
            # Fail fast against the dead API (the outcome is the same after minutes of retries).
            "PREFECT_CLIENT_MAX_RETRIES": "0",
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert not [line for line in lines if line.startswith("error:")], result.stderr
    [warning] = [line for line in lines if line.startswith("warning:")]
    assert warning.startswith(f"warning: published v1 of {DAY} (run "), warning
    assert "could not finish reporting to Prefect" in warning
    assert f"Published {DAY} version 1" in result.stderr
    from sqlalchemy import create_engine

    from hubshare.read_warehouse import list_runs

    runs = list_runs(create_engine(f"sqlite:///{env / 'warehouse.db'}"), date.fromisoformat(DAY))
    assert runs["status"].to_list() == ["published"]


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_ctrl_c_exits_130(env, hand_models):
    from prefect.settings import PREFECT_API_URL

    pages = env / "raw" / DAY / "pages"
    with FakeHub(hand_models, faults=[Fault(3, "slow", delay=60)]) as slow_hub:
        child = start_run(
            {"HF_ENDPOINT": slow_hub.url, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
        )
        wait_for_page(child, pages, 2)
        os.killpg(child.pid, signal.SIGINT)
        _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    # (a slow page may time out first: its backoff wait is a `Hub: …` line)
    assert [line for line in err.strip().splitlines() if not line.startswith("Hub: ")] == [
        "error: interrupted; a crawl resumes from its last stored page next time"
    ]


#: Each documented code's tests above, by name.
CODE_TESTS = {
    0: "test_published_then_prefect_gone_exits_0_with_a_warning",
    130: "test_ctrl_c_exits_130",
}


def test_every_documented_code_has_a_case():
    covered = (
        {case.code for case in CASES.values()}
        | {case.code for _, case in FLOW_CASES.values()}
        | set(CODE_TESTS)
    )
    assert set(documented_exit_codes()) <= covered
    assert set(CODE_TESTS.values()) <= {name for name in globals() if name.startswith("test_")}
