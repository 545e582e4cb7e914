"""The benchmark commands of benchmarks/README.md run (at a tiny size: speed is measured by
running them, never asserted here)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


def bench(script: str, *args: str, prefect_home: Path) -> str:
    """Run a benchmark as its README shows (no Prefect server: `hubshare run` starts its own,
    with its database in `prefect_home`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    result = subprocess.run(  # noqa: S603 - our interpreter and our scripts
        [sys.executable, str(BENCHMARKS / script), *args],
        env=env | {"PREFECT_HOME": str(prefect_home)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_the_stage_benchmark_runs(tmp_path):
    out = bench("bench_pipeline.py", "--models", "3000", prefect_home=tmp_path)
    for step in (
        "build snapshot",
        "attribute origin",
        "quality gate",
        "load SQLite, next day",
        "total, a following day",
    ):
        assert step in out


@pytest.mark.flow
def test_the_side_by_side_benchmark_runs(prefect_home):
    # A way that hangs is killed and named (with its stderr's last lines), not waited for.
    out = bench(
        "bench_side_by_side.py", "--models", "2000", "--timeout", "240", prefect_home=prefect_home
    )
    [row] = [line for line in out.splitlines() if line.startswith("| 2,000 |")]
    assert row.count(" GB") == 3  # floor, naive, hubshare: each measured as a whole process
    assert "hubshare at 2,000: Published 2026-11-29 version 1" in out
    # The run's stage line names where its memory peaked.
    assert re.search(r"\(total [\d.]+ s; peak RSS [\d.]+ GB, in [a-z]+\)", out), out


def test_the_side_by_side_benchmark_runs_chosen_ways_only(tmp_path):
    """`--ways` (the quicker command of benchmarks/README.md, here the floor alone)."""
    out = bench(
        "bench_side_by_side.py", "--models", "2000", "--ways", "floor", prefect_home=tmp_path
    )
    [row] = [line for line in out.splitlines() if line.startswith("| 2,000 |")]
    assert row.count(" GB") == 1 and row.count("not run") == 2 and row.endswith("| — |")
    assert "hubshare at" not in out


@pytest.mark.flow
def test_the_warehouse_size_benchmark_runs(prefect_home, postgres_url):
    out = bench("bench_warehouse_bytes.py", "--postgres", postgres_url, prefect_home=prefect_home)
    for backend in ("SQLite", "PostgreSQL"):
        assert f"\n{backend}: bytes per model-day" in out
    # Each backend's row of model_day: the first and next day store facts, the identical
    # re-run stores none.
    rows = [line.split("|")[2:5] for line in out.splitlines() if line.startswith("| model_day |")]
    assert len(rows) == 2
    for first, following, rerun in rows:
        assert float(first) > 0 and float(following) > 0 and float(rerun) == 0


@pytest.mark.flow
def test_the_warehouse_size_benchmark_runs_on_generated_models(prefect_home):
    out = bench("bench_warehouse_bytes.py", "--models", "2000", prefect_home=prefect_home)
    assert "first day (2,000 models)" in out and "next day (2,040 models)" in out
    assert "\nSQLite next day: " in out and "3,000,000-model day" in out


@pytest.mark.flow
def test_the_fan_out_benchmark_runs(tmp_path):
    """docs/scale-out.md's measurement (two dates, tiny): a server, moto's S3, PostgreSQL, the
    pool; one row per number of workers."""
    out = bench(
        "bench_fan_out.py",
        "--dates", "2", "--models", "300", "--workers", "1", "2", "--poll-seconds", "2",
        prefect_home=tmp_path,
    )  # fmt: skip
    rows = [
        line for line in out.splitlines() if re.match(r"\| \d \| 2 \| 300 \| [\d.]+ s \|", line)
    ]
    assert [row.split("|")[1].strip() for row in rows] == ["1", "2"], out
    assert re.search(r"\| none \(in-process\) \| 2 \| 300 \| [\d.]+ s \|", out), out


@pytest.mark.flow
def test_the_object_store_reads_benchmark_runs(tmp_path):
    """One daily run on S3 (moto's): each snapshot it reads, in however many steps, is
    downloaded once (the requests counted from the S3 server's log)."""
    out = bench("bench_object_store_reads.py", "--models", "2000", prefect_home=tmp_path)
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| snapshot of ")]
    assert len(rows) == 5, out  # the run's day, the day before, three window starts
    assert [int(row[3]) for row in rows] == [1] * 5, out
    assert re.search(r"One daily run on S3, 2,000 models a day: [\d.]+ s", out), out


@pytest.mark.flow
def test_the_lookups_benchmark_runs(prefect_home):
    """benchmarks/README.md's lookup cost (tiny): a row per budget, the requests it made, and
    whole runs with lookups off and on, each with its crawl and accounts stage seconds."""
    out = bench(
        "bench_lookups.py", "--models", "3000", "--budgets", "0", "200", "--runs", "1",
        prefect_home=prefect_home,
    )  # fmt: skip
    assert re.search(r"^\| 0 \| 0 \| 0 \| [\d.]+ \| — \|$", out, re.MULTILINE), out
    [row] = [line.split("|") for line in out.splitlines() if line.startswith("| 200 |")]
    assert int(row[2]) == 200 and 0 < int(row[3].replace(",", "")) <= 200, out
    assert float(row[5]) > 0, out
    runs = re.findall(r"^\| \d \| (off \(0\)|on \(2,000\)) \| [\d.]+ s \| [\d.]+ s \|$", out, re.M)
    assert runs == ["off (0)", "on (2,000)"], out
    assert re.search(r"crawl stage, lookups off: median [\d.]+ s\n.*lookups on: median", out)
