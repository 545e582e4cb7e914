"""Bytes per model-day of the warehouse: what a first day, each following day and a re-run cost.

    uv run python benchmarks/bench_warehouse_bytes.py [--postgres postgresql://…/empty_db]
        [--churn 0.02] [--models N]

On the demo's models (9,715 real models on the fake Hub), or N generated ones (the generator of
bench_pipeline.py), it publishes three runs with `hubshare run`, measuring every table with its
indexes after each:
1. the first day (the demo date): every model is new to the model dimension;
2. the next day, with every model's counters changed and `--churn` of them modified (a new
   lastModified, so a new dimension row) and as many again new on the Hub;
3. the next day again (version 2): identical per-model facts, so no model rows.
SQLite sizes come from `dbstat`, PostgreSQL's from `pg_total_relation_size` (the database must
be empty: it becomes the run's warehouse); model_day's monthly partitions count as model_day.
The runs share one temporary Prefect server, started here (sizes are measured, not times).

Only the per-model tables grow with the Hub; the others grow with the runs and the mapping (one
org_share row per organisation with a country, definition, cohort and view). The last line
projects a day at the Hub's size from the two: per-model bytes + per-run bytes / 3,000,000.
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench_pipeline import synthetic_models

from hubshare.cli import DEMO_DATE, DEMO_SAMPLE
from hubshare.fakehub import FakeHub, load_models
from hubshare.temporary_server import serving_several_commands

PROJECT = Path(__file__).resolve().parent.parent
NEXT_DAY = DEMO_DATE + timedelta(days=1)
PER_MODEL_TABLES = ("model_dim", "model_day", "model_origin")
HUB_SIZE = 3_000_000


def publish(warehouse_url: str, data_dir: Path, hub_url: str, day: object, api_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env |= {
        "PREFECT_API_URL": api_url,
        "HF_ENDPOINT": hub_url,
        "HF_TOKEN": "",
        "HUBSHARE_DATA_DIR": str(data_dir),
        "HUBSHARE_WAREHOUSE_URL": warehouse_url,
        # Generated namespaces are mostly individuals with no country: publish them anyway.
        "HUBSHARE_MAX_UNKNOWN_SHARE": "1",
    }
    result = subprocess.run(  # noqa: S603 - our own command
        ["hubshare", "run", "--date", str(day), "--backdate"],
        env=env,
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(result.stderr)


def next_day_models(models: list[dict[str, Any]], churn: float) -> list[dict[str, Any]]:
    """The demo's models a day later: every counter moved, `churn` of them modified, and as
    many new models."""
    step = max(1, round(1 / churn)) if churn > 0 else 0
    later: list[dict[str, Any]] = []
    for number, model in enumerate(models):
        moved = dict(model)
        moved["downloads"] = int(model.get("downloads") or 0) + number % 7 + 1
        if model.get("downloadsAllTime") is not None:
            moved["downloadsAllTime"] = int(model["downloadsAllTime"]) + number % 11 + 1
        if step and number % step == 0:
            moved["lastModified"] = f"{NEXT_DAY}T00:00:00.000Z"
            new = dict(model, id=f"{model['id']}-bench-next-day", downloads=number % 5)
            new.pop("_id", None)
            new["lastModified"] = f"{NEXT_DAY}T00:00:00.000Z"
            later.append(new)
        later.append(moved)
    return later


def sqlite_sizes(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute(
            "SELECT tbl_name, SUM(pgsize) FROM dbstat JOIN sqlite_schema USING (name) "
            "GROUP BY tbl_name"
        ).fetchall()
    return {str(name): int(size) for name, size in rows}


def postgres_sizes(url: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT relname, pg_total_relation_size(oid) FROM pg_class "
            "WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
        ).fetchall()
    sizes: dict[str, int] = {}
    for name, size in rows:
        table = re.sub(r"^model_day_\d{4}_\d{2}$", "model_day", str(name))
        sizes[table] = sizes.get(table, 0) + int(size)
    return sizes


def growth(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    return {name: size - before.get(name, 0) for name, size in after.items()}


def measure(
    backend: str,
    warehouse_url: str,
    sizes: Callable[[], dict[str, int]],
    data_dir: Path,
    hubs: tuple[FakeHub, FakeHub],
    api_url: str,
) -> None:
    first, later = hubs
    publish(warehouse_url, data_dir, first.url, DEMO_DATE, api_url)
    day1 = sizes()
    publish(warehouse_url, data_dir, later.url, NEXT_DAY, api_url)
    day2 = sizes()
    publish(warehouse_url, data_dir, later.url, NEXT_DAY, api_url)
    rerun = sizes()
    steps = {
        f"first day ({len(first.models):,} models)": (day1, len(first.models)),
        f"next day ({len(later.models):,} models)": (growth(day1, day2), len(later.models)),
        "re-run of the next day": (growth(day2, rerun), len(later.models)),
    }
    print(f"\n{backend}: bytes per model-day (each table with its indexes)")
    print("| table | " + " | ".join(steps) + " |")
    print("|---|" + "---:|" * len(steps))
    tables = sorted(day1, key=lambda name: -rerun.get(name, 0))
    for name in tables:
        cells = [size.get(name, 0) / models for size, models in steps.values()]
        if max(cells) >= 0.5:
            print(f"| {name} | " + " | ".join(f"{cell:,.1f}" for cell in cells) + " |")
    totals = [sum(size.values()) / models for size, models in steps.values()]
    print("| **total** | " + " | ".join(f"**{total:,.0f}**" for total in totals) + " |")
    following, models = steps[f"next day ({len(later.models):,} models)"]
    per_model = sum(following.get(name, 0) for name in PER_MODEL_TABLES) / models
    per_run = sum(size for name, size in following.items() if name not in PER_MODEL_TABLES)
    print(
        f"\n{backend} next day: {per_model:,.1f} bytes per model in {', '.join(PER_MODEL_TABLES)}"
        f" + {per_run / 1e6:,.2f} MB per run in the other tables; a {HUB_SIZE:,}-model day: "
        f"{per_model + per_run / HUB_SIZE:,.1f} bytes per model-day"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="URL of an empty PostgreSQL database")
    parser.add_argument(
        "--churn", type=float, default=0.02, help="share of models modified the next day"
    )
    parser.add_argument("--models", type=int, help="generated models instead of the demo's")
    args = parser.parse_args()
    models = (
        [dict(model) for model in synthetic_models(args.models)]
        if args.models
        else load_models(DEMO_SAMPLE)
    )
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeHub(models) as first,
        FakeHub(next_day_models(models, args.churn)) as later,
        serving_several_commands() as api_url,
    ):
        db = Path(tmp) / "warehouse.db"
        measure(
            "SQLite",
            f"sqlite:///{db}",
            lambda: sqlite_sizes(db),
            Path(tmp) / "sqlite",
            (first, later),
            api_url,
        )
        if args.postgres:
            url = args.postgres
            measure(
                "PostgreSQL",
                url,
                lambda: postgres_sizes(url),
                Path(tmp) / "pg",
                (first, later),
                api_url,
            )


if __name__ == "__main__":
    main()
