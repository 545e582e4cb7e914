"""A backfill fanned out over Prefect workers: wall time with 1, 2… workers.

Everything of docs/scale-out.md's team set-up, on this machine: a Prefect server, the `hubshare`
process work pool with the repository's deployments, raw data on an S3 server (moto's, on
loopback) and a PostgreSQL warehouse (a new database on 127.0.0.1:5432). Each date's raw
snapshot is imported from synthetic models; then `hubshare backfill --force --on-pool` runs the
dates with each number of workers in turn, after the same backfill in one process without the
pool (`hubshare backfill --force`).

    uv run python benchmarks/bench_fan_out.py --dates 6 --models 20000 --workers 1 2
"""

from __future__ import annotations

import argparse
import gzip
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import orjson
import psycopg
from bench_pipeline import synthetic_models

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PG_ADMIN_URL = os.environ.get("HUBSHARE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
FIRST = date(2025, 6, 2)  # after the synthetic models' timestamps


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def process(command: list[str], env: dict[str, str], log: Path) -> Iterator[None]:
    with log.open("w") as out:
        child = subprocess.Popen(  # noqa: S603 - our venv's programs
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            yield
        finally:
            child.terminate()
            child.wait(timeout=60)


def wait_until_up(url: str, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.3)
    sys.exit(f"{url} did not come up: {log.read_text()[-2000:]}")


def run(command: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(  # noqa: S603 - our venv's programs
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600, check=False
    )
    if result.returncode != 0:
        sys.exit(
            f"{' '.join(command[:4])}… failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    return result.stdout + result.stderr


@contextmanager
def database() -> Iterator[str]:
    name = f"hubshare_fanout_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_s3(stack: ExitStack, base: dict[str, str], log: Path, bucket: str) -> dict[str, str]:
    """moto's S3 server on a loopback port, for as long as `stack`, with `bucket` created: the
    standard AWS environment that points at it."""
    aws = {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "AWS_ALLOW_HTTP": "true",
    }
    port = aws["AWS_ENDPOINT_URL"].rsplit(":", 1)[1]
    stack.enter_context(
        process([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", port], base, log)
    )
    wait_until_up(aws["AWS_ENDPOINT_URL"], log)
    s3_client(aws).create_bucket(Bucket=bucket)
    return aws


def s3_client(aws: dict[str, str]) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=aws["AWS_ENDPOINT_URL"],
        aws_access_key_id=aws["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=aws["AWS_SECRET_ACCESS_KEY"],
        region_name=aws["AWS_REGION"],
    )


def import_synthetic_days(days: list[date], n_models: int, work: Path, env: dict[str, str]) -> None:
    """Each date's snapshot: `hubshare import` of generated models (seeded by position)."""
    for n, day in enumerate(days):
        models = work / f"models-{day}.jsonl.gz"
        lines = b"\n".join(orjson.dumps(m) for m in synthetic_models(n_models, seed=n))
        models.write_bytes(gzip.compress(lines, compresslevel=1))
        hubshare_import = [sys.executable, "-m", "hubshare.cli", "import"]
        run([*hubshare_import, "--date", str(day), "--file", str(models)], env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dates", type=int, default=6)
    parser.add_argument("--models", type=int, default=20_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=10.0,
        help="How often a worker asks for runs (PREFECT_WORKER_QUERY_SECONDS; Prefect's default).",
    )
    args = parser.parse_args()
    days = [FIRST + timedelta(days=n) for n in range(args.dates)]

    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        work = Path(tmp)
        api_port = free_port()
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "HUBSHARE_"))}
        bucket = "hubshare-bench"
        aws = start_s3(stack, base, work / "s3.log", bucket)
        prefect_env = {
            "PREFECT_HOME": str(work / "prefect-home"),
            "PREFECT_API_URL": f"http://127.0.0.1:{api_port}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
        }
        stack.enter_context(
            process(
                [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1"]
                + ["--port", str(api_port)],
                base | prefect_env,
                work / "server.log",
            )
        )
        wait_until_up(f"{prefect_env['PREFECT_API_URL']}/health", work / "server.log")
        warehouse = stack.enter_context(database())
        env = (
            base
            | aws
            | prefect_env
            | {
                "HUBSHARE_DATA_DIR": f"s3://{bucket}/hubshare",
                "HUBSHARE_WAREHOUSE_URL": warehouse,
                "HUBSHARE_BACKFILL_CONCURRENCY": str(max(args.workers)),
                # Small synthetic days can be mostly UNKNOWN; the gate is not what is measured.
                "HUBSHARE_MAX_UNKNOWN_SHARE": "1",
            }
        )
        hubshare = [sys.executable, "-m", "hubshare.cli"]
        import_synthetic_days(days, args.models, work, env)
        prefect = str(BIN / "prefect")
        run([prefect, "work-pool", "create", "hubshare", "--type", "process"], env)
        run([prefect, "--no-prompt", "deploy", "--all", "--prefect-file",
             "deployments/prefect.yaml"], env)  # fmt: skip

        print("| workers | dates | models per date | backfill wall time |\n|---:|---:|---:|---:|")
        # The same backfill in its own process, without the pool, for comparison.
        started = time.perf_counter()
        run(
            [*hubshare, "backfill", "--start", str(days[0]), "--end", str(days[-1]), "--force"], env
        )
        wall = time.perf_counter() - started
        print(f"| none (in-process) | {len(days)} | {args.models:,} | {wall:.1f} s |", flush=True)
        for n_workers in args.workers:
            with ExitStack() as workers:
                for n in range(n_workers):
                    workers.enter_context(
                        process(
                            [prefect, "worker", "start", "--pool", "hubshare"]
                            + ["--name", f"worker-{n}"],
                            env | {"PREFECT_WORKER_QUERY_SECONDS": str(args.poll_seconds)},
                            work / f"worker-{n_workers}-{n}.log",
                        )
                    )
                started = time.perf_counter()
                out = run(
                    [*hubshare, "backfill", "--start", str(days[0]), "--end", str(days[-1])]
                    + ["--force", "--on-pool"],
                    env,
                )
                wall = time.perf_counter() - started
            if f"{len(days)} date(s) re-run" not in out:
                sys.exit(f"the backfill did not re-run every date:\n{out[-2000:]}")
            print(f"| {n_workers} | {len(days)} | {args.models:,} | {wall:.1f} s |", flush=True)


if __name__ == "__main__":
    main()
