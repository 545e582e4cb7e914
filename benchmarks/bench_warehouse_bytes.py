"""Bytes per model-day of the warehouse: one published run of the demo day (9,715 real models on
the fake Hub), then each table's size with its indexes, divided by the models.

    uv run python benchmarks/bench_warehouse_bytes.py [--postgres postgresql://…/empty_db]

SQLite sizes come from `dbstat`, PostgreSQL's from `pg_total_relation_size` (the database must
be empty: it becomes the run's warehouse).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import tempfile
from pathlib import Path

from hubshare.cli import DEMO_DATE, DEMO_SAMPLE
from hubshare.fakehub import FakeHub

PROJECT = Path(__file__).resolve().parent.parent


def publish_demo_day(warehouse_url: str, data_dir: Path, hub_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env |= {
        "HF_ENDPOINT": hub_url,
        "HF_TOKEN": "",
        "HUBSHARE_DATA_DIR": str(data_dir),
        "HUBSHARE_WAREHOUSE_URL": warehouse_url,
    }
    result = subprocess.run(  # noqa: S603 - our own command
        ["hubshare", "run", "--date", str(DEMO_DATE), "--backdate"],
        env=env,
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(result.stderr)


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
    return {str(name): int(size) for name, size in rows}


def report(backend: str, sizes: dict[str, int], models: int) -> None:
    print(f"\n{backend}: {sum(sizes.values()) / models:,.0f} bytes per model-day")
    print("| table (with its indexes) | bytes per model-day |\n|---|---:|")
    for name, size in sorted(sizes.items(), key=lambda item: -item[1]):
        if size / models >= 1:
            print(f"| {name} | {size / models:,.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="URL of an empty PostgreSQL database")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, FakeHub.from_file(DEMO_SAMPLE) as hub:
        models = len(hub.models)
        db = Path(tmp) / "warehouse.db"
        publish_demo_day(f"sqlite:///{db}", Path(tmp) / "sqlite", hub.url)
        report("SQLite", sqlite_sizes(db), models)
        if args.postgres:
            publish_demo_day(args.postgres, Path(tmp) / "postgres", hub.url)
            report("PostgreSQL", postgres_sizes(args.postgres), models)


if __name__ == "__main__":
    main()
