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
import threading
import time
from pathlib import Path

import orjson
from bench_pipeline import DAY, synthetic_models

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent


#: Seconds a way may take before it is killed and the benchmark stops naming it (--timeout).
LIMIT: dict[str, float | None] = {"seconds": None}


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run a process to completion: (wall seconds, its peak RSS in GB, its stderr tail)."""
    started = time.perf_counter()
    killed = threading.Event()
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(  # noqa: S603 - our interpreter and our scripts
            command,
            env=os.environ | (env or {}),
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=PROJECT,
        )
        limit = LIMIT["seconds"]

        def kill() -> None:
            killed.set()
            process.kill()

        timer = threading.Timer(limit or 0, kill)
        if limit:
            timer.start()
        _, status, usage = os.wait4(process.pid, 0)
        timer.cancel()
        seconds = time.perf_counter() - started
        err.seek(0)
        tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
    if killed.is_set():
        raise SystemExit(f"{command[:4]} did not end within {limit} s: {' | '.join(tail)}")
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

#: What `timed` measured of one way: (wall seconds, peak RSS in GB, stderr tail).
Measured = tuple[float, float, str]


def one_size(n_models: int, ways: tuple[str, ...] = WAYS) -> dict[str, Measured]:
    """Each of `ways` run as a whole process against one generated day of `n_models`."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        models_file = folder / "models.jsonl.gz"
        with gzip.open(models_file, "wb", compresslevel=1) as out:
            for model in synthetic_models(n_models):
                out.write(orjson.dumps(model) + b"\n")
        hub, url = serve(models_file)
        without_api = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
        commands: dict[str, tuple[list[str], dict[str, str] | None]] = {
            "floor": ([sys.executable, str(HERE / "naive_way.py"), "floor", url], None),
            "naive": (
                [sys.executable, str(HERE / "naive_way.py"), "naive", url, str(folder / "n.db")],
                None,
            ),
            "hubshare": (
                [sys.executable, "-m", "hubshare", "run", "--date", str(DAY), "--backdate"],
                without_api
                | {
                    "HF_ENDPOINT": url,
                    "HUBSHARE_DATA_DIR": str(folder / "data"),
                    "HUBSHARE_PAGE_SIZE": "1000",
                    "HUBSHARE_MAX_UNKNOWN_SHARE": "1.0",
                },
            ),
        }
        try:
            return {way: timed(*commands[way]) for way in WAYS if way in ways}
        finally:
            hub.terminate()
            hub.wait()


def table_row(n_models: int, measured: dict[str, Measured]) -> str:
    """One markdown row: each way's time and peak RSS (`not run` if skipped) and the speed-up
    on everything but the network, (naive - floor) / (hubshare - floor), when all three ran."""
    cells = [
        f"{measured[way][0]:.1f} s, {measured[way][1]:.2f} GB" if way in measured else "not run"
        for way in WAYS
    ]
    if set(WAYS) <= set(measured):
        floor, naive, ours = (measured[way][0] for way in WAYS)
        cells.append(f"{(naive - floor) / max(ours - floor, 1e-9):.1f}×")
    else:
        cells.append("—")
    return f"| {n_models:,} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, nargs="+", default=[100_000])
    parser.add_argument(
        "--ways", nargs="+", choices=WAYS, default=list(WAYS), help="run only these (default: all)"
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds a way may take (default: no limit)"
    )
    args = parser.parse_args()
    LIMIT["seconds"] = args.timeout
    print(
        "| models | floor | naive | hubshare run | (naive − floor) / (hubshare − floor) |\n"
        "|---:|---:|---:|---:|---:|"
    )
    stages = []
    for n in args.models:
        measured = one_size(n, tuple(args.ways))
        print(table_row(n, measured), flush=True)
        if "hubshare" in measured:
            stages.append(f"hubshare at {n:,}: {measured['hubshare'][2]}")
    for line in stages:
        print(line)


if __name__ == "__main__":
    main()
