"""What one daily run downloads from object storage: GET requests and bytes per object.

A run on S3 (moto's server on loopback; SQLite warehouse) for a date whose raw snapshot and
those of the day before and of its window starts (7, 30 and 365 days back) were imported
beforehand: the run checks and reads them in several steps. The requests are counted from the
S3 server's own request log; the run's wall time is printed too.

    uv run python benchmarks/bench_object_store_reads.py --models 200000
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from datetime import date, timedelta
from pathlib import Path

from bench_fan_out import import_synthetic_days, run, s3_client, start_s3

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
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "HUBSHARE_"))}
        log = work / "s3.log"
        aws = start_s3(stack, base, log, "hubshare-bench")
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
        import_synthetic_days(STORED, args.models, work, env)
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
            key: s3_client(aws).head_object(Bucket="hubshare-bench", Key=key)["ContentLength"] / 1e6
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
