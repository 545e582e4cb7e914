"""Everything but the network, at Hub scale: stored pages -> snapshot -> enrich -> shares ->
quality gate -> SQLite load.

    uv run python benchmarks/bench_pipeline.py --models 3000000

Synthetic models, 1,000 per stored page as the crawl writes them; authors drawn from the real
mapping plus a long tail of individuals; a third declare a base (finetunes, quantized copies,
merges of two). Prints wall time and the process's peak RSS after each step.

The gate imports great_expectations only for an expectation its polars pre-check cannot prove
passed: on these clean frames, never.

Two costs of a run are priced apart, after the steps (lines in parentheses, not in the totals):
the validity-dated mapping (`load_mapping` and `Mapping.on(day)`, inside "attribute uploader"),
and account types (`tasks.account_types`) given for every namespace of the snapshot: the
snapshot's namespaces, the run's frozen registry read and its SHA-256 checked, and both
attributions again with the types, against the same attributions without them.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import random
import resource
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from hubshare.__main__ import POLARS_ALLOCATOR

# polars' allocator as `hubshare` sets it (read when polars loads, so before importing it).
os.environ.setdefault("_RJEM_MALLOC_CONF", POLARS_ALLOCATOR)

import orjson  # noqa: E402
import polars as pl  # noqa: E402

from hubshare.provenance import sha256_bytes
from hubshare.settings import DEFAULT_MAPPING, Settings
from hubshare.warehouse import warehouse_engine
from schemas.frames import ACCOUNT_TYPE_SCHEMA
from tasks.account_types import account_types_bytes, snapshot_namespaces
from tasks.enrich import (
    FACT_SNAPSHOT_COLUMNS,
    LINEAGE_SNAPSHOT_COLUMNS,
    NO_ACCOUNT_TYPES,
    attribute_origin,
    attribute_uploader,
    parse_lineage,
    store_attribution,
)
from tasks.extract import CrawlState
from tasks.load import MODEL_FRAME_TABLES, RunRecord, load_run
from tasks.mapping import contested_rows, load_mapping
from tasks.quality import GateThresholds, check_quality
from tasks.shares import (
    SHARE_FACT_COLUMNS,
    SHARE_SNAPSHOT_COLUMNS,
    compute_all_shares,
    share_table_sha256,
)
from tasks.snapshot import build_snapshot, pages_key, read_snapshot

DAY = date(2026, 11, 29)
#: The run frames a published load reads besides the per-model ones.
SHARE_TABLES = ("country_share", "org_share", "concentration")


def synthetic_models(n_models: int, seed: int = 7) -> Iterator[dict[str, object]]:
    """Hub model objects as the API returns them (every expanded field), reproducible by seed."""
    rng = random.Random(seed)
    orgs = pl.read_csv(DEFAULT_MAPPING)["org"].to_list()
    individuals = [f"user{i}" for i in range(max(n_models // 20, 1))]
    ids: list[str] = []
    for i in range(n_models):
        author = rng.choice(orgs) if rng.random() < 0.3 else rng.choice(individuals)
        model_id = f"{author}/model-{i}"
        tags = ["transformers", "safetensors"]
        if ids and rng.random() < 0.33:
            kind = rng.choice(("finetune", "quantized", "adapter", "merge"))
            recent = ids[-50_000:]
            bases = rng.sample(recent, min(2 if kind == "merge" else 1, len(recent)))
            tags += [f"base_model:{kind}:{base}" for base in bases]
        ids.append(model_id)
        yield {
            "_id": f"{i:024x}",
            "id": model_id,
            "author": author,
            "downloads": int(rng.paretovariate(1.2)) - 1,
            "downloadsAllTime": int(rng.paretovariate(1.1) * 10),
            "likes": rng.randrange(50),
            "createdAt": "2025-01-01T00:00:00.000Z",
            "lastModified": "2025-06-01T00:00:00.000Z",
            "pipeline_tag": "text-generation",
            "library_name": "transformers",
            "tags": tags,
            "gated": False,
            "private": False,
        }


def write_pages(data_dir: Path, n_models: int, seed: int = 7) -> CrawlState:
    pages = data_dir / pages_key(DAY)
    pages.mkdir(parents=True)
    page: list[dict[str, object]] = []
    page_no = 0
    for i, model in enumerate(synthetic_models(n_models, seed)):
        page.append(model)
        if len(page) == 1000 or i == n_models - 1:
            page_no += 1
            (pages / f"page-{page_no:06d}.json.gz").write_bytes(
                gzip.compress(orjson.dumps(page), compresslevel=1, mtime=0)
            )
            page = []
    now = datetime.now(UTC).isoformat()
    return CrawlState(
        endpoint="synthetic",
        first_url="",
        next_url=None,
        pages=page_no,
        requests=page_no,
        started_at=now,
        finished_at=now,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=300_000)
    args = parser.parse_args()
    steps: list[tuple[str, float, float]] = []
    clock = time.perf_counter()

    def step(name: str) -> float:
        nonlocal clock
        now = time.perf_counter()
        rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        steps.append((name, now - clock, rss_gb))
        print(f"{name:<28} {now - clock:7.2f} s   peak RSS {rss_gb:5.2f} GB", flush=True)
        clock = time.perf_counter()
        return steps[-1][1]

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(HUBSHARE_DATA_DIR=tmp)
        state = write_pages(Path(tmp), args.models)
        step(f"(setup: {args.models:,} models)")
        manifest = build_snapshot(DAY, settings, state).manifest
        step("build snapshot")
        # Each step from here reads what its task in flows/daily.py reads and writes what it
        # writes, through a run folder: what a run holds at once is one step's frames.
        run = Path(tmp) / "run"
        run.mkdir()

        def write(name: str, frame: pl.DataFrame) -> None:
            frame.write_parquet(run / f"{name}.parquet")
            if name == "model_fact":
                step("attribute uploader")  # written: the lineage walk starts without them

        def read(name: str, columns: tuple[str, ...] | None = None) -> pl.DataFrame:
            return pl.read_parquet(
                run / f"{name}.parquet", columns=list(columns) if columns else None
            )

        mapping = load_mapping(DEFAULT_MAPPING)
        rows = mapping.on(DAY)  # the rows valid on the snapshot's date, as a run reads them
        # enrich_task: the lineage from the ids and tags, the facts from the rest.
        lineage = parse_lineage(read_snapshot(DAY, settings, list(LINEAGE_SNAPSHOT_COLUMNS)))
        store_attribution(
            read_snapshot(DAY, settings, list(FACT_SNAPSHOT_COLUMNS)),
            rows,
            NO_ACCOUNT_TYPES,
            write,
            lineage,
        )
        del lineage
        write("contested", contested_rows(rows))
        step("attribute origin")
        # shares_task
        countries, orgs, concentration, _ = compute_all_shares(
            DAY,
            read_snapshot(DAY, settings, list(SHARE_SNAPSHOT_COLUMNS)),
            read("model_fact", SHARE_FACT_COLUMNS),
            read("model_origin"),
            {},
            read("contested"),
            mapping=rows,
        )
        for name, frame in (
            ("country_share", countries),
            ("org_share", orgs),
            ("concentration", concentration),
        ):
            write(name, frame)
        del orgs, concentration
        step("compute shares")
        # quality_task
        headline = countries.filter(
            (pl.col("definition") == "downloads_30d") & (pl.col("cohort") == "all")
        ).drop("definition", "cohort")
        fact, origin = read("model_fact"), read("model_origin")
        report = check_quality(fact, origin, headline, GateThresholds(None, 0.05, 1.0))
        total_downloads = int(fact["downloads_30d"].sum())
        del fact, origin
        write("quality", report.to_frame())
        step("quality gate")
        engine = warehouse_engine(settings.resolved_warehouse_url)
        for number, day in enumerate((DAY, DAY + timedelta(days=1))):
            record = RunRecord(
                run_id=f"bench-{number}",
                snapshot_date=day,
                flow_run_id=None,
                started_at=datetime.now(UTC),
                code_version="bench",
                definition="downloads_30d",
                raw_sha256=manifest.sha256,
                mapping_sha256=mapping.sha256,
                shares_sha256=share_table_sha256(countries),
                row_count=manifest.row_count,
                rows_listed=manifest.rows_listed,
                duplicates_dropped=0,
                private_dropped=0,
                total_downloads=total_downloads,
                parameters={},
                report={"manifest": asdict(manifest)},
            )
            # load_task: the per-model files scanned, the shares read.
            facts = {
                name: pl.scan_parquet(run / f"{name}.parquet")
                if name in MODEL_FRAME_TABLES
                else read(name)
                for name in ("model_fact", "model_origin", *SHARE_TABLES)
            }
            load_run(engine, record, facts, read("quality"), published=True, reason=None)
            del facts
            # The first load fills the model dimension; a following day reuses it and writes
            # model_day rows only (the steady state of a daily warehouse).
            step("load SQLite, first day" if number == 0 else "load SQLite, next day")
        peak_gb = max(rss for _, _, rss in steps)  # before the priced extras below
        snapshot = read_snapshot(DAY, settings, list(FACT_SNAPSHOT_COLUMNS))
        lineage = parse_lineage(read_snapshot(DAY, settings, list(LINEAGE_SNAPSHOT_COLUMNS)))
        step("(setup: the day read again for the lookups)")
        price_lookups(snapshot, lineage, DEFAULT_MAPPING, step)
    for label, skip in (("first day", "next day"), ("a following day", "first day")):
        total = sum(
            seconds for name, seconds, _ in steps if not name.startswith("(") and skip not in name
        )
        print(f"{'total, ' + label:<28} {total:7.2f} s   peak RSS {peak_gb:5.2f} GB")


def price_lookups(
    snapshot: pl.DataFrame,
    lineage: pl.DataFrame,
    mapping_path: Path,
    step: Callable[[str], float],
) -> None:
    """The run's lookups priced apart: the validity-dated mapping, then account types for every
    namespace (orgs of the mapping typed `org`, the others `user`) against none."""
    for _ in range(3):  # a small file: three times
        mapping = load_mapping(mapping_path)
        mapping.on(DAY)
    step("(mapping: 3 x load_mapping)")
    for _ in range(3):
        rows = mapping.on(DAY)
    step("(mapping: 3 x .on(day))")
    namespaces = snapshot_namespaces(snapshot)
    orgs = set(mapping.rows.get_column("org_lower").to_list())
    registry = namespaces.select(
        pl.col("namespace"),
        pl.when(pl.col("key").is_in(list(orgs)))
        .then(pl.lit("org"))
        .otherwise(pl.lit("user"))
        .alias("account_type"),
        pl.lit(None, pl.String).alias("fullname"),
        pl.lit(None, pl.Boolean).alias("verified"),
        pl.lit(datetime.now(UTC)).dt.replace_time_zone("UTC").alias("checked_at"),
    ).cast(ACCOUNT_TYPE_SCHEMA)
    frozen = account_types_bytes(registry.sort("namespace"))
    step(f"(setup: {registry.height:,} namespaces typed)")

    def attribute(typed: bool) -> float:
        started = time.perf_counter()
        account_types = NO_ACCOUNT_TYPES
        if typed:
            snapshot_namespaces(snapshot)  # what freezing and a lookup step read, each run
            sha256_bytes(frozen)  # the run's frozen registry, checked
            account_types = pl.read_parquet(io.BytesIO(frozen))
        fact = attribute_uploader(snapshot, rows, lineage, account_types)
        attribute_origin(snapshot, fact, rows, lineage, account_types)
        return time.perf_counter() - started

    # Alternating, the best of two each: the shared machine's noise is larger than the cost.
    times = [(attribute(False), attribute(True)) for _ in range(2)]
    without, typed = min(t[0] for t in times), min(t[1] for t in times)
    step("(account types, priced)")
    print(
        f"(account types for every namespace cost a run {typed - without:+.2f} s: namespaces, "
        f"frozen registry read and checked, both attributions {typed:.2f} s against "
        f"{without:.2f} s without, best of 2 each)",
        flush=True,
    )


if __name__ == "__main__":
    main()
