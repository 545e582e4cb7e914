"""What account-type lookups add to a daily run, against a fake Hub serving a long tail
(`hubshare.fakehub_scenarios.long_tail`, its head the reviewed mapping) in its own process:

    uv run python benchmarks/bench_lookups.py --models 200000

1. The extra wall time per 1,000 overview requests: the step after the crawl,
   `tasks.account_types.update_account_types`, timed in this process for each budget
   (`HUBSHARE_NAMESPACE_LOOKUPS`, default 0 1000 2000 5000), each from an empty registry after
   the same stored snapshot.
2. The crawl's own time unchanged: whole `hubshare run` processes (fresh data dir and SQLite
   warehouse each) with lookups off (budget 0) and on (the default 2000), alternating; their
   `crawl` and `accounts` stage seconds, from the run's own `Stages:` line. They share one
   temporary Prefect server, started here.

Prints both as markdown tables (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from hubshare.temporary_server import serving_several_commands

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
BUDGETS = (0, 1000, 2000, 5000)
STAGE = re.compile(r"\b(crawl|accounts) ([\d.]+) s")


def serve_long_tail(n_models: int, seed: int) -> tuple[subprocess.Popen[str], str]:
    """`python -m hubshare.fakehub --long-tail N` in its own process: (process, its URL)."""
    hub = subprocess.Popen(  # noqa: S603 - our own module
        [
            sys.executable, "-m", "hubshare.fakehub",
            "--long-tail", str(n_models), "--seed", str(seed), "--quiet",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=PROJECT,
    )  # fmt: skip
    assert hub.stdout is not None
    for line in hub.stdout:
        if line.startswith("Serving at "):
            return hub, line.split()[2]
    raise SystemExit("the fake Hub did not start")


def hubshare_run(url: str, data_dir: Path, budget: int, api_url: str) -> dict[str, float]:
    """One whole `hubshare run` of today: its crawl and accounts stage seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")} | {
        "PREFECT_API_URL": api_url,
        "HF_ENDPOINT": url,
        "HF_TOKEN": "",
        "HUBSHARE_DATA_DIR": str(data_dir),
        "HUBSHARE_WAREHOUSE_URL": f"sqlite:///{data_dir / 'warehouse.db'}",
        "HUBSHARE_PAGE_SIZE": "1000",
        "HUBSHARE_MAX_UNKNOWN_SHARE": "1.0",
        "HUBSHARE_NAMESPACE_LOOKUPS": str(budget),
    }
    result = subprocess.run(  # noqa: S603 - our interpreter and our package
        [sys.executable, "-m", "hubshare", "run"],
        env=env,
        capture_output=True,
        text=True,
        cwd=PROJECT,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"hubshare run failed: {result.stderr[-2000:]}")
    [stages] = [line for line in result.stderr.splitlines() if line.startswith("Stages:")]
    return {name: float(seconds) for name, seconds in STAGE.findall(stages)}


def time_lookups(url: str, data_dir: Path, budgets: list[int]) -> list[tuple[int, int, int, float]]:
    """`update_account_types` after the snapshot stored in `data_dir`, once per budget from an
    empty registry: (budget, requests, namespaces asked, seconds)."""
    os.environ |= {"HF_ENDPOINT": url, "HF_TOKEN": "", "HUBSHARE_DATA_DIR": str(data_dir)}
    from hubshare.settings import Settings
    from tasks.account_types import REGISTRY_KEY, update_account_types

    day = datetime.now(UTC).date()
    rows = []
    for budget in budgets:
        settings = Settings(HUBSHARE_NAMESPACE_LOOKUPS=budget)
        settings.store.delete(REGISTRY_KEY)
        started = time.perf_counter()
        lookups = update_account_types(settings, day)
        seconds = time.perf_counter() - started
        rows.append((budget, lookups.requests, lookups.looked_up, seconds))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS))
    parser.add_argument(
        "--runs", type=int, default=2, help="whole runs with lookups off, and as many on"
    )
    args = parser.parse_args()
    hub, url = serve_long_tail(args.models, args.seed)
    try:
        with tempfile.TemporaryDirectory() as tmp, serving_several_commands() as api_url:
            folder = Path(tmp)
            crawl_rows = []
            for index in range(args.runs):
                for budget in (0, 2000):
                    stages = hubshare_run(url, folder / f"run-{budget}-{index}", budget, api_url)
                    crawl_rows.append((budget, stages))
            rows = time_lookups(url, folder / "run-0-0", args.budgets)
    finally:
        hub.terminate()
        hub.wait()

    print(f"Long tail of {args.models:,} models (seed {args.seed}), fake Hub on 127.0.0.1\n")
    print(
        "| budget (requests) | requests made | namespaces typed or tried | seconds "
        "| extra seconds per 1,000 requests |\n|---:|---:|---:|---:|---:|"
    )
    base = next((seconds for budget, _, _, seconds in rows if budget == 0), 0.0)
    for budget, requests, asked, seconds in rows:
        per_thousand = f"{(seconds - base) / requests * 1000:.2f}" if requests else "—"
        print(f"| {budget:,} | {requests:,} | {asked:,} | {seconds:.2f} | {per_thousand} |")
    print(
        "\n| whole `hubshare run` | lookups | crawl stage | accounts stage |\n|---:|---|---:|---:|"
    )
    for number, (budget, stages) in enumerate(crawl_rows, start=1):
        print(
            f"| {number} | {'on (2,000)' if budget else 'off (0)'} | "
            f"{stages.get('crawl', 0.0):.2f} s | {stages.get('accounts', 0.0):.2f} s |"
        )
    for label, on in (("off", False), ("on", True)):
        crawls = [stages.get("crawl", 0.0) for budget, stages in crawl_rows if bool(budget) == on]
        print(f"crawl stage, lookups {label}: median {statistics.median(crawls):.2f} s")


if __name__ == "__main__":
    main()
