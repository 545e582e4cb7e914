"""What one daily run downloads from object storage: GET requests and bytes per object.

A run on S3 (moto's server on loopback; SQLite warehouse) for a date whose raw snapshot and
those of the day before and of its window starts (7, 30 and 365 days back) were imported
beforehand: the run checks and reads them in several steps. The requests are counted from the
S3 server's own request log; the run's wall time is printed too.

    uv run python benchmarks/bench_object_store_reads.py --models 200000
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from datetime import date, timedelta
from pathlib import Path

import boto3
import orjson
from bench_fan_out import BIN, free_port, process, run, wait_until_up
from bench_pipeline import synthetic_models

DAY = date(2026, 6, 30)  # after the synthetic models' timestamps
#: The run's own date, the date before (its explanation) and its window starts.
STORED = [DAY - timedelta(days=n) for n in (365, 30, 7, 1, 0)]
REQUEST = re.compile(r'"(GET|HEAD|PUT) /[^/ ]+/(\S+?)(?:\?\S*)? HTTP')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        work = Path(tmp)
        port = free_port()
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "HUBSHARE_"))}
        aws = {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench-secret",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ALLOW_HTTP": "true",
        }
        log = work / "s3.log"
        stack.enter_context(
            process([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], base, log)
        )
        wait_until_up(aws["AWS_ENDPOINT_URL"], log)
        s3 = boto3.client(
            "s3",
            endpoint_url=aws["AWS_ENDPOINT_URL"],
            aws_access_key_id="bench",
            aws_secret_access_key="bench-secret",  # noqa: S106 - moto's, on loopback
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket="hubshare-bench")
        env = (
            base
            | aws
            | {
                "HUBSHARE_DATA_DIR": "s3://hubshare-bench/hubshare",
                "HUBSHARE_WAREHOUSE_URL": f"sqlite:///{work / 'warehouse.db'}",
                "HUBSHARE_MAX_UNKNOWN_SHARE": "1",  # synthetic days: the gate is not measured
                "PREFECT_HOME": str(work / "prefect-home"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "DO_NOT_TRACK": "1",
            }
        )
        hubshare = [sys.executable, "-m", "hubshare.cli"]
        for n, day in enumerate(STORED):
            models = work / f"models-{day}.jsonl.gz"
            lines = b"\n".join(orjson.dumps(m) for m in synthetic_models(args.models, seed=n))
            models.write_bytes(gzip.compress(lines, compresslevel=1))
            run([*hubshare, "import", "--date", str(day), "--file", str(models)], env)
        run([*hubshare, "run", "--date", str(DAY - timedelta(days=1))], env)

        offset = log.stat().st_size
        started = time.perf_counter()
        run([*hubshare, "run", "--date", str(DAY)], env)
        wall = time.perf_counter() - started
        requests = Counter(
            (match[1], match[2])
            for match in REQUEST.finditer(log.read_bytes()[offset:].decode(errors="replace"))
        )
        snapshots = {f"hubshare/raw/{day}/snapshot.parquet": day for day in STORED}
        size = {
            key: s3.head_object(Bucket="hubshare-bench", Key=key)["ContentLength"] / 1e6
            for key in snapshots
        }

    print(f"One daily run on S3, {args.models:,} models a day: {wall:.1f} s\n")
    print("| object | MB | GETs | HEADs | MB downloaded |\n|---|---:|---:|---:|---:|")
    for key, day in snapshots.items():
        gets = requests["GET", key]
        print(
            f"| snapshot of {day} | {size[key]:.1f} | {gets} | {requests['HEAD', key]} "
            f"| {gets * size[key]:.1f} |"
        )
    others = sum(n for (verb, key), n in requests.items() if verb == "GET" and key not in size)
    total = sum(requests["GET", key] * size[key] for key in snapshots)
    print(f"| every other object (manifests, mappings, run files…) | | {others} | | |")
    print(f"| **snapshots, all** | | | | **{total:.1f}** |")


if __name__ == "__main__":
    main()
