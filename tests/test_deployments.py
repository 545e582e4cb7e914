"""The documented deployments run: a local Prefect server, the `hubshare` process work pool, both
deployments from `deployments/prefect.yaml`, and a worker started from the repository root the
way docs/operations.md says; each deployment runs to Completed."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hubshare.fakehub import FakeHub
from hubshare.resources import IMPORT_ROOT as PROJECT_ROOT
from hubshare.storage import DataStore
from tests.conftest import HAND_MAPPING, run_hubshare
from tests.test_cli import closed_port

pytestmark = pytest.mark.flow
PREFECT = str(Path(sys.executable).parent / "prefect")
DAY = "2024-01-15"

#: docs/scale-out.md's commands, as the tests here run them ({…} filled in; `uv run` is this
#: environment's programs). The document shows no other command (checked below).
SCALE_OUT_COMMANDS = (
    "uv run prefect server start --host {host} --port {port}",
    "uv run prefect work-pool create hubshare --type process",
    "uv run prefect --no-prompt deploy --all --prefect-file deployments/prefect.yaml",
    "uv run prefect worker start --pool hubshare --name {name}",
    "uv run hubshare backfill --start {start} --end {end} --force --on-pool",
)
SERVER, POOL, DEPLOY, WORKER, POOL_BACKFILL = range(len(SCALE_OUT_COMMANDS))


#: Workers and `serve` look for scheduled runs every second instead of Prefect's 10 s: the same
#: runs, picked up sooner (how often they poll is no part of what the tests here check).
QUICK_POLLING = {"PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
#: How often the tests here look at the server for what they wait for.
POLL = 0.2
#: A hang guard for a server, `serve` or a port to come up, not a speed check: the suite runs in
#: parallel, and several Prefect servers starting at once on a busy 2-core machine took over 90 s.
START_TIMEOUT = 300


def scale_out(n: int, **values: str) -> list[str]:
    """Command `n` of SCALE_OUT_COMMANDS, filled in, without `uv run` and the program's name."""
    return shlex.split(SCALE_OUT_COMMANDS[n].format(**values))[3:]


def prefect(*args: str, env: dict[str, str], timeout: float = 120) -> str:
    result = subprocess.run(  # noqa: S603 - our own venv's prefect
        [PREFECT, *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
def server(tmp_path, prefect_home) -> Iterator[dict[str, str]]:
    """A Prefect server on loopback with its own home; the environment to talk to it."""
    port = closed_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "HUBSHARE_", "HF_"))
    } | {
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        **QUICK_POLLING,
    }
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(  # noqa: S603
        [PREFECT, *scale_out(SERVER, host="127.0.0.1", port=str(port))],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{env['PREFECT_API_URL']}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(POLL)
        else:
            pytest.fail(f"prefect server did not start: {(tmp_path / 'server.log').read_text()}")
        yield env
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def flow_runs(api: str, deployment: str) -> list[dict[str, Any]]:
    flow_name, name = deployment.split("/")
    response = httpx.post(
        f"{api}/deployments/filter",
        json={"deployments": {"name": {"any_": [name]}}},
        timeout=10,
    )
    [found] = [d for d in response.json() if d["name"] == name]
    runs = httpx.post(
        f"{api}/flow_runs/filter",
        json={"flow_runs": {"deployment_id": {"any_": [found["id"]]}}},
        timeout=10,
    ).json()
    return [run for run in runs if run["state_type"] != "SCHEDULED"]


def wait_for(api: str, deployment: str, seconds: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        runs = flow_runs(api, deployment)
        if runs and runs[0]["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return runs[0]
        time.sleep(POLL)
    pytest.fail(f"{deployment} did not finish within {seconds} s: {flow_runs(api, deployment)}")


def run_both_deployments(env: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Trigger the daily run of DAY, then a forced backfill of it, as the docs show; wait for
    each to finish."""
    api = env["PREFECT_API_URL"]
    prefect(
        "deployment", "run", "daily/hubshare-daily",
        "--param", f"run_date={DAY}", "--param", "backdate=true", env=env,
    )  # fmt: skip
    daily = wait_for(api, "daily/hubshare-daily")
    prefect(
        "deployment", "run", "backfill/hubshare-backfill",
        "--param", f"start={DAY}", "--param", f"end={DAY}", "--param", "force=true",
        env=env,
    )  # fmt: skip
    return daily, wait_for(api, "backfill/hubshare-backfill")


def test_both_deployments_run_on_a_process_worker(server, tmp_path, hand_models):
    env = server | {
        "HUBSHARE_DATA_DIR": str(tmp_path / "data"),
        "HUBSHARE_MAPPING": str(HAND_MAPPING),
        "HUBSHARE_PAGE_SIZE": "3",
    }
    prefect("work-pool", "create", "hubshare", "--type", "process", env=env)
    deployed = prefect(
        "--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml", env=env
    )
    assert "daily/hubshare-daily" in deployed and "backfill/hubshare-backfill" in deployed

    with FakeHub(hand_models) as hub:
        worker_log = (tmp_path / "worker.log").open("w")
        worker = subprocess.Popen(  # noqa: S603 - started from the repository root, as documented
            [PREFECT, "worker", "start", "--pool", "hubshare"],
            cwd=PROJECT_ROOT,
            env=env | {"HF_ENDPOINT": hub.url},
            stdout=worker_log,
            stderr=subprocess.STDOUT,
        )
        try:
            daily, backfill = run_both_deployments(env)
        finally:
            worker.terminate()
            worker.wait(timeout=60)
            worker_log.close()
    log = (tmp_path / "worker.log").read_text()
    assert daily["state_type"] == "COMPLETED", log
    assert daily["name"] == f"daily-{DAY}"
    assert backfill["state_type"] == "COMPLETED", log
    # The backfill published version 2 of the date from the stored snapshot.
    runs = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "hubshare.cli", "runs", "--date", DAY, "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=tmp_path,
    ).stdout
    assert '"version": 2' in runs and '"status": "published"' in runs


def test_hubshare_serve_runs_both_deployments_in_one_process(server, tmp_path, hand_models):
    env = server | {
        "HUBSHARE_DATA_DIR": str(tmp_path / "data"),
        "HUBSHARE_MAPPING": str(HAND_MAPPING),
        "HUBSHARE_PAGE_SIZE": "3",
    }
    api = env["PREFECT_API_URL"]
    with FakeHub(hand_models) as hub:
        serve_log = (tmp_path / "serve.log").open("w")
        serving = subprocess.Popen(  # noqa: S603 - the documented command, from anywhere
            [sys.executable, "-m", "hubshare.cli", "serve"],
            cwd=tmp_path,
            env=env | {"HF_ENDPOINT": hub.url},
            stdout=serve_log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                names = {
                    d["name"]
                    for d in httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json()
                }
                if {"hubshare-daily", "hubshare-backfill"} <= names:
                    break
                time.sleep(POLL)
            daily, backfill = run_both_deployments(env)
        finally:
            serving.terminate()
            serving.wait(timeout=60)
            serve_log.close()
    log = (tmp_path / "serve.log").read_text()
    assert (daily["state_type"], backfill["state_type"]) == ("COMPLETED", "COMPLETED"), log
    schedules = httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json()
    [served] = [d for d in schedules if d["name"] == "hubshare-daily"]
    assert [s["schedule"]["cron"] for s in served["schedules"]] == ["30 2 * * *"]


def test_flows_on_workers_get_the_same_allocator_setting_as_the_command():
    """Both deployments pass polars' allocator setting of `hubshare` to the flows they run."""
    import yaml

    from hubshare.__main__ import POLARS_ALLOCATOR

    spec = yaml.safe_load((PROJECT_ROOT / "deployments" / "prefect.yaml").read_text())
    for deployment in spec["deployments"]:
        env = deployment["work_pool"]["job_variables"]["env"]
        assert env == {"_RJEM_MALLOC_CONF": POLARS_ALLOCATOR}, deployment["name"]


def published_shares(env: dict[str, str]) -> dict[str, str]:
    """shares_sha256 of each date's published run in the warehouse `env` names."""
    import orjson

    runs = run_hubshare("runs", "--format", "json", env=env)
    assert runs.returncode == 0, runs.stderr
    return {
        r["snapshot_date"]: r["shares_sha256"] for r in orjson.loads(runs.stdout) if r["published"]
    }


def test_a_backfill_on_the_pool_fans_out_to_the_workers(
    server, tmp_path, hand_models, postgres_url, s3_bucket
):
    """`backfill --on-pool` runs each date as a run of the daily deployment, taken by two
    workers, into PostgreSQL with raw data on an S3 server: every date's published shares equal
    a local backfill's (local disk, SQLite)."""
    days = ["2024-01-13", "2024-01-14", "2024-01-15"]
    env = server | {
        "HUBSHARE_DATA_DIR": str(tmp_path / "data"),
        "HUBSHARE_MAPPING": str(HAND_MAPPING),
        "HUBSHARE_PAGE_SIZE": "3",
    }
    local = env | {"HUBSHARE_WAREHOUSE_URL": f"sqlite:///{tmp_path / 'local.db'}"}
    with FakeHub(hand_models) as hub:
        for day in days:  # the raw snapshots a backfill re-runs from
            run_cli("run", "--date", day, "--backdate", env=local | {"HF_ENDPOINT": hub.url})
    run_cli("backfill", "--start", days[0], "--end", days[-1], "--force", env=local)
    expected = published_shares(local)
    assert sorted(expected) == days

    # The workers' environment: the S3 endpoint and credentials the standard way (AWS_*).
    aws = {key: value for key, value in os.environ.items() if key.startswith("AWS_")}
    pooled = (
        env
        | aws
        | {
            "HUBSHARE_DATA_DIR": f"s3://{s3_bucket}/hubshare",
            "HUBSHARE_WAREHOUSE_URL": postgres_url,
            "HUBSHARE_BACKFILL_CONCURRENCY": "2",
        }
    )
    with FakeHub(hand_models) as hub:
        for day in days:  # the same raw snapshots, in the bucket
            run_cli("run", "--date", day, "--backdate", env=pooled | {"HF_ENDPOINT": hub.url})
    prefect(*scale_out(POOL), env=pooled)
    prefect(*scale_out(DEPLOY), env=pooled)
    logs = [(tmp_path / f"worker-{n}.log").open("w") for n in range(2)]
    workers = [
        subprocess.Popen(  # noqa: S603 - started from the repository root, as documented
            [PREFECT, *scale_out(WORKER, name=f"worker-{n}")],
            cwd=PROJECT_ROOT,
            env=pooled,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for n, log in enumerate(logs)
    ]
    try:
        shown = run_cli(*scale_out(POOL_BACKFILL, start=days[0], end=days[-1]), env=pooled)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=60)
        for log in logs:
            log.close()
    assert published_shares(pooled) == expected
    # The backfill on the pool shows its flow run in the UI and each date as it ends.
    assert f"Backfill flow run: {pooled['PREFECT_API_URL'].removesuffix('/api')}/runs/" in shown
    for day in days:
        assert re.search(rf"^{day}: published v\d+ \(run ", shown, re.MULTILINE), shown
    children = flow_runs(pooled["PREFECT_API_URL"], "daily/hubshare-daily")
    # Named by the daily flow's own template on the worker; linked to the backfill's tasks.
    assert sorted(run["name"] for run in children) == [f"daily-{day}" for day in days]
    assert all(run["state_type"] == "COMPLETED" for run in children)
    assert all(run["parent_task_run_id"] for run in children)  # linked to the backfill
    stored = DataStore.open(pooled["HUBSHARE_DATA_DIR"]).keys("raw")
    assert [key for key in stored if key.endswith("manifest.json")] == [
        f"raw/{day}/manifest.json" for day in days
    ]


def run_cli(*args: str, env: dict[str, str]) -> str:
    result = run_hubshare(*args, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stderr


def test_scale_out_shows_the_commands_these_tests_run():
    """Every command in docs/scale-out.md's shell blocks is one of SCALE_OUT_COMMANDS (which the
    tests above run), and each of those is shown."""
    doc = (PROJECT_ROOT / "docs" / "scale-out.md").read_text()
    shown = [
        line.strip()
        for block in re.findall(r"```bash\n(.*?)```", doc, flags=re.DOTALL)
        for line in block.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    patterns = [
        re.escape(template).replace(r"\{", "{").replace(r"\}", "}")
        for template in SCALE_OUT_COMMANDS
    ]
    patterns = [re.sub(r"\{\w+\}", r"\\S+", pattern) for pattern in patterns]
    matched = {n for line in shown for n, p in enumerate(patterns) if re.fullmatch(p, line)}
    assert all(any(re.fullmatch(p, line) for p in patterns) for line in shown), shown
    assert matched == set(range(len(SCALE_OUT_COMMANDS)))


def deployments_by_name(api: str) -> dict[str, dict[str, Any]]:
    found = httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json()
    return {d["name"]: d for d in found}


def test_serve_and_the_pool_deployments_leave_each_other_alone(server, tmp_path, hand_models):
    """`serve` stopped after `prefect deploy` took its names over leaves the pool deployments
    active; `serve` on a server holding them refuses (exit 2, naming them and the pool) and
    changes nothing; a worker then runs the daily deployment to Completed."""
    env = server | {
        "HUBSHARE_DATA_DIR": str(tmp_path / "data"),
        "HUBSHARE_MAPPING": str(HAND_MAPPING),
        "HUBSHARE_PAGE_SIZE": "3",
    }
    api = env["PREFECT_API_URL"]
    names = {"hubshare-daily", "hubshare-backfill"}
    serve_log = (tmp_path / "serve.log").open("w")
    serving = subprocess.Popen(  # noqa: S603 - the documented command
        [sys.executable, "-m", "hubshare.cli", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=serve_log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not names <= set(deployments_by_name(api)) and time.monotonic() < deadline:
            time.sleep(POLL)
        # The team deploys to the pool while `serve` still runs: the names become the pool's.
        prefect(*scale_out(POOL), env=env)
        prefect(*scale_out(DEPLOY), env=env)
    finally:
        serving.terminate()
        assert serving.wait(timeout=60) == 0
        serve_log.close()
    pooled = deployments_by_name(api)
    for name in names:  # Prefect's `serve` would have paused them on its way out
        assert pooled[name]["work_pool_name"] == "hubshare", pooled[name]
        assert pooled[name]["paused"] is False, (tmp_path / "serve.log").read_text()

    refused = run_hubshare("serve", env=env)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith("error: ")
    for expected in (
        "daily/hubshare-daily (work pool 'hubshare')",
        "backfill/hubshare-backfill (work pool 'hubshare')",
        "prefect worker start --pool hubshare",
    ):
        assert expected in line
    after = deployments_by_name(api)
    for name in names:
        assert after[name]["paused"] is False
        assert after[name]["pull_steps"] == pooled[name]["pull_steps"]
        assert after[name]["updated"] == pooled[name]["updated"]

    with FakeHub(hand_models) as hub:
        worker_log = (tmp_path / "worker.log").open("w")
        worker = subprocess.Popen(  # noqa: S603 - started from the repository root, as documented
            [PREFECT, *scale_out(WORKER, name="worker-0")],
            cwd=PROJECT_ROOT,
            env=env | {"HF_ENDPOINT": hub.url},
            stdout=worker_log,
            stderr=subprocess.STDOUT,
        )
        try:
            prefect(
                "deployment", "run", "daily/hubshare-daily",
                "--param", f"run_date={DAY}", "--param", "backdate=true", env=env,
            )  # fmt: skip
            daily = wait_for(api, "daily/hubshare-daily")
        finally:
            worker.terminate()
            worker.wait(timeout=60)
            worker_log.close()
    assert daily["state_type"] == "COMPLETED", (tmp_path / "worker.log").read_text()


def trial_lines() -> list[str]:
    """The shell lines of docs/operations.md's "Try the whole team set-up on one laptop"."""
    doc = (PROJECT_ROOT / "docs" / "operations.md").read_text()
    section = doc.split("## Try the whole team set-up on one laptop", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip()]


def wait_for_port(
    port: int, process: subprocess.Popen[bytes], seconds: float = START_TIMEOUT
) -> None:
    import socket

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited with {process.returncode}"
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(POLL)
    pytest.fail(f"nothing listens on port {port} after {seconds} s")


def trial_bucket_keys(env: dict[str, str]) -> list[str]:
    """The keys in the trial's bucket (the data dir's), read with the trial's AWS_* settings."""
    import boto3

    bucket = env["HUBSHARE_DATA_DIR"].removeprefix("s3://").split("/")[0]
    client = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    return [item["Key"] for item in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_the_one_laptop_trial_runs_as_documented(tmp_path, prefect_home):
    """Every line of the trial, in order, as the document shows it (its ports and SQLite file
    moved to free ones; `uv run P` is this environment's P): long-running lines in processes of
    their own; the daily deployment's run is Completed on the worker, into the S3 server, and
    `hubshare shares` prints it."""
    ports = {"4200": str(closed_port()), "8765": str(closed_port()), "9000": str(closed_port())}
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "HUBSHARE_", "HF_", "AWS_"))
    } | {"PREFECT_HOME": str(prefect_home), **QUICK_POLLING}
    background: list[tuple[subprocess.Popen[bytes], Any]] = []
    shares = ""
    try:
        for line in trial_lines():
            command, _, comment = line.partition("#")
            for documented, free in ports.items():
                command = command.replace(documented, free)
            command = command.replace("/tmp/hubshare-trial.db", str(tmp_path / "trial.db"))
            words = shlex.split(command)
            if words[0] == "export":
                env |= dict(word.split("=", 1) for word in words[1:])
                continue
            assert words[:2] == ["uv", "run"], line
            program = (
                sys.executable if words[2] == "python" else str(Path(PREFECT).parent / words[2])
            )
            argv = [program, *words[3:]]
            if "own terminal" in comment:
                log = (tmp_path / f"{words[2]}-{len(background)}.log").open("w")
                process = subprocess.Popen(  # noqa: S603 - the document's command
                    argv, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
                )
                background.append((process, log))
                port = next((w for w in words if w in ports.values()), None)
                if port is not None:
                    wait_for_port(int(port), process)
                continue
            result = subprocess.run(  # noqa: S603 - the document's command
                argv, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300,
                check=False,
            )  # fmt: skip
            assert result.returncode == 0, line + "\n" + result.stdout + result.stderr
            if words[2:5] == ["prefect", "deployment", "run"]:
                daily = wait_for(env["PREFECT_API_URL"], "daily/hubshare-daily", seconds=300)
                logs = "".join(p.read_text() for p in tmp_path.glob("*.log"))
                assert daily["state_type"] == "COMPLETED", logs
            if words[2] == "hubshare":
                shares = result.stdout
                stored = trial_bucket_keys(env)
                assert any(
                    k.startswith("data/raw/") and k.endswith("manifest.json") for k in stored
                )
    finally:
        for process, _ in reversed(background):
            process.terminate()
        for process, log in background:
            process.wait(timeout=60)
            log.close()
    assert "US" in shares and "CN" in shares, shares
    assert [line.split()[2] for line in trial_lines() if "own terminal" in line] == [
        "prefect", "python", "moto_server", "prefect",
    ]  # fmt: skip
