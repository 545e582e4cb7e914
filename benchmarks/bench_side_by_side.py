"""The same generated day, three ways, each a whole process against one loopback fake Hub:

- **floor**: a bare HTTP client following the page chain (the network's share of any run);
- **naive**: `HfApi.list_models` -> pandas -> sqlmodel ORM inserts into SQLite -> pandas group-by
  of downloads by the uploader's country (what a first script would do);
- **hubshare**: `hubshare run` as a user runs it (its own temporary Prefect server, a fresh
  data dir and SQLite warehouse).

    uv run python benchmarks/bench_side_by_side.py --models 100000 1000000
    uv run python benchmarks/bench_side_by_side.py --models 1000000 --ways floor hubshare

Prints wall time and peak RSS of each process and the speed-up on everything but the network,
(naive - floor) / (hubshare - floor), as a markdown table (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from bench_pipeline import DAY, synthetic_models

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run a process to completion: (wall seconds, its peak RSS in GB, its stderr tail)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(  # noqa: S603 - our interpreter and our scripts
            command,
            env=os.environ | (env or {}),
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=PROJECT,
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        err.seek(0)
        tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{command[:4]} failed: {' | '.join(tail)}")
    return seconds, usage.ru_maxrss / 1024**2, " | ".join(tail)


def serve(models_file: Path) -> tuple[subprocess.Popen[str], str]:
    hub = subprocess.Popen(  # noqa: S603 - our own module
        [sys.executable, "-m", "hubshare.fakehub", "--models", str(models_file), "--quiet"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=PROJECT,
    )
    assert hub.stdout is not None
    for line in hub.stdout:
        if line.startswith("Serving at "):
            return hub, line.split()[2]
    raise SystemExit("the fake Hub did not start")


WAYS = ("floor", "naive", "hubshare")


def one_size(n_models: int, ways: tuple[str, ...] = WAYS) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        models_file = folder / "models.jsonl.gz"
        with gzip.open(models_file, "wb", compresslevel=1) as out:
            for model in synthetic_models(n_models):
                out.write(orjson.dumps(model) + b"\n")
        hub, url = serve(models_file)
        try:
            skipped = (float("nan"), float("nan"), "")
            floor = (
                timed([sys.executable, str(HERE / "naive_way.py"), "floor", url])
                if "floor" in ways
                else skipped
            )
            naive = (
                timed(
                    [sys.executable, str(HERE / "naive_way.py"), "naive", url, str(folder / "n.db")]
                )
                if "naive" in ways
                else skipped
            )
            without_api = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
            ours = (
                skipped
                if "hubshare" not in ways
                else timed(
                    [sys.executable, "-m", "hubshare", "run", "--date", str(DAY), "--backdate"],
                    env=without_api
                    | {
                        "HF_ENDPOINT": url,
                        "HUBSHARE_DATA_DIR": str(folder / "data"),
                        "HUBSHARE_PAGE_SIZE": "1000",
                        "HUBSHARE_MAX_UNKNOWN_SHARE": "1.0",
                    },
                )
            )
        finally:
            hub.terminate()
            hub.wait()
    speedup = (naive[0] - floor[0]) / max(ours[0] - floor[0], 1e-9)
    return {
        "models": n_models,
        "floor_s": floor[0],
        "floor_gb": floor[1],
        "naive_s": naive[0],
        "naive_gb": naive[1],
        "hubshare_s": ours[0],
        "hubshare_gb": ours[1],
        "speedup_without_network": speedup,
        "hubshare_stages": ours[2],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, nargs="+", default=[100_000])
    parser.add_argument(
        "--ways", nargs="+", choices=WAYS, default=list(WAYS), help="run only these (default: all)"
    )
    args = parser.parse_args()
    print(
        "| models | floor | naive | hubshare run | (naive − floor) / (hubshare − floor) |\n"
        "|---:|---:|---:|---:|---:|"
    )
    results = []
    for n in args.models:
        r = one_size(n, tuple(args.ways))
        results.append(r)
        print(
            f"| {n:,} | {r['floor_s']:.1f} s, {r['floor_gb']:.2f} GB "
            f"| {r['naive_s']:.1f} s, {r['naive_gb']:.2f} GB "
            f"| {r['hubshare_s']:.1f} s, {r['hubshare_gb']:.2f} GB "
            f"| {r['speedup_without_network']:.1f}× |",
            flush=True,
        )
    for r in results:
        print(f"hubshare at {r['models']:,}: {r['hubshare_stages']}")


if __name__ == "__main__":
    main()
