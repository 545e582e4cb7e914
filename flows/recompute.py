"""Recompute shares outside a scheduled run: ad-hoc windows, and `reproduce` of a stored run.

Plain functions (no Prefect run): they compose the same tasks as the daily flow, reading only
stored inputs (raw snapshots, archived mappings) and writing nothing to the warehouse.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl
from sqlalchemy import Engine

from hubshare.errors import HubshareError, SnapshotError
from hubshare.provenance import code_version, sha256_bytes
from hubshare.settings import Settings, get_settings
from hubshare.warehouse import run_row, stored_figures, warehouse_engine
from schemas.run import RunInputs
from tasks.account_types import account_types_key, empty_account_types, open_account_types
from tasks.enrich import attribute_models
from tasks.inputs import open_mapping, resolve_run_inputs
from tasks.load import storable_model_frames
from tasks.mapping import Mapping, contested_rows, load_mapping, mapping_key, mapping_version
from tasks.shares import (
    compute_all_shares,
    compute_shares,
    has_all_time_counter,
    share_ranges,
    share_table_sha256,
)
from tasks.snapshot import SnapshotManifest, read_snapshot, snapshot_key, stored_snapshot
from tasks.study import compare_annotations, read_study_record
from tasks.windows import Definition, model_metric


def _stored(day: date, settings: Settings) -> SnapshotManifest:
    manifest = stored_snapshot(day, settings)
    if manifest is None:
        raise SnapshotError(
            f"no raw snapshot stored for {day} in {settings.store.where('raw')} "
            "(crawl it that day, or `hubshare import` an archive)"
        )
    return manifest


def _window_tables(
    start: date, end: date, cohort: str, mapping_ref: str | None
) -> tuple[pl.DataFrame, pl.DataFrame, Mapping]:
    """(country shares with ranges, organisation shares, the mapping) over [start, end) from the
    two raw snapshots, attributed with the rows of the mapping valid on `end`. `mapping_ref` is
    a mapping file or a recorded mapping SHA-256 (tasks.mapping.mapping_version); None = the
    current mapping (HUBSHARE_MAPPING)."""
    settings = get_settings()
    end_manifest, start_manifest = _stored(end, settings), _stored(start, settings)
    # Read as a run of `end` whose one window starts on `start` would; nothing is gated.
    inputs = resolve_run_inputs(
        settings,
        end,
        end_manifest.sha256,
        previous_row_count=None,
        window_starts={start: start_manifest.sha256},
    )
    end_snapshot, start_snapshot = read_snapshot(end, settings), read_snapshot(start, settings)
    for day, snapshot in ((start, start_snapshot), (end, end_snapshot)):
        if not has_all_time_counter(snapshot):
            raise SnapshotError(
                f"the raw snapshot of {day} has no downloadsAllTime counter (an archive without "
                "it, or a crawl without expand=downloadsAllTime): a D1..D2 window needs it on "
                "both dates (the default 30-day counter, without --window, needs neither)"
            )
    if cohort == "first_year" and end_snapshot["createdAt"].null_count() == end_snapshot.height:
        raise SnapshotError(
            f"no model in the raw snapshot of {end} has a createdAt: the first_year cohort "
            "needs each model's creation date; use --cohort all"
        )
    if mapping_ref is None:
        mapping = open_mapping(inputs)
    else:
        with mapping_version(mapping_ref, settings.store) as (path, _):
            mapping = load_mapping(path)
    rows = mapping.on(end)
    fact, origin, _ = attribute_models(end_snapshot, rows, open_account_types(settings, inputs))
    definition = Definition.window(start, end, cohort)
    metric, _ = model_metric(definition, end_snapshot, start_snapshot)
    countries, orgs = compute_shares(fact, origin, metric, mapping=rows)
    tag = {"definition": "window", "cohort": cohort}
    countries = share_ranges(
        countries.with_columns(pl.lit(v).alias(k) for k, v in tag.items()),
        orgs.with_columns(pl.lit(v).alias(k) for k, v in tag.items()),
        contested_rows(rows),
    ).drop("definition", "cohort")
    return countries, orgs, mapping


def window_shares_now(
    start: date, end: date, cohort: str, attribution: str, mapping_ref: str | None = None
) -> pl.DataFrame:
    """Bucket shares over [start, end) from the two raw snapshots and a mapping (default: the
    current one; see `_window_tables`)."""
    countries, _, _ = _window_tables(start, end, cohort, mapping_ref)
    return (
        countries.filter(pl.col("attribution") == attribution)
        .rename({"bucket": "country"})
        .select(
            pl.lit(end).alias("snapshot_date"),
            pl.lit(None, pl.Int64).alias("version"),
            pl.lit(None, pl.String).alias("run_id"),
            pl.lit(f"window_{start}..{end}").alias("definition"),
            pl.lit(cohort).alias("cohort"),
            pl.all(),
        )
        .sort(["downloads", "country"], descending=[True, False])
    )


@dataclass(frozen=True)
class StudyComparison:
    start: date
    end: date
    cohort: str
    total_downloads: int
    our_mapping: str  # where our mapping was read
    our_sha256: str
    disagreements: pl.DataFrame  # tasks.study.compare_annotations


def compare_study(
    file: Path, mapping_ref: str | None, cohort: str = "first_year"
) -> StudyComparison:
    """Where the study's annotations (the mapping its import built) and our mapping (rows valid
    on the study's last time) disagree, weighed by the downloads of the study's headline window
    in the uploader view."""
    settings = get_settings()
    record = read_study_record(file, settings.store)
    start, end = record.headline
    _, orgs, _ = _window_tables(start, end, cohort, record.mapping_sha256)
    uploader = orgs.filter(pl.col("attribution") == "uploader")
    last_time = date.fromisoformat(record.times[-1])
    with mapping_version(mapping_ref or str(settings.mapping_path), settings.store) as (
        path,
        where,
    ):
        ours = load_mapping(path)
    return StudyComparison(
        start=start,
        end=end,
        cohort=cohort,
        total_downloads=int(uploader["downloads"].sum()),
        our_mapping=where,
        our_sha256=ours.sha256,
        disagreements=compare_annotations(uploader, ours.on(last_time)),
    )


@dataclass(frozen=True)
class Reproduction:
    run_id: str
    snapshot_date: date
    recorded_sha256: str
    recomputed_sha256: str | None
    problems: tuple[str, ...]  # each names the input that differs

    @property
    def ok(self) -> bool:
        return not self.problems and self.recomputed_sha256 == self.recorded_sha256


def reproduce_run(run_id: str, settings: Settings | None = None) -> Reproduction:
    """Recompute a stored run's share table from its recorded inputs: the raw snapshot (and the
    window start snapshots), the archived mapping, the definition. The inputs are checked
    against their recorded SHA-256 first; a differing one is named, not recomputed around."""
    settings = settings or get_settings()
    engine = warehouse_engine(settings.resolved_warehouse_url)
    row = run_row(engine, run_id)
    if row is None:
        raise HubshareError(f"run {run_id}: not in the warehouse (see `hubshare runs`)")
    if row["shares_sha256"] is None:
        raise HubshareError(
            f"run {run_id} {row['status']} before it computed a share table: nothing to reproduce"
        )
    inputs = RunInputs.from_run_row(row)
    day, recorded, run_code = inputs.snapshot_date, row["shares_sha256"], row["code_version"]
    problems: list[str] = []

    store = settings.store

    def check(key: str, expected: str, what: str) -> None:
        actual = store.sha256(key)
        if actual is None:
            problems.append(
                f"{what} {store.where(key)} is missing (recorded sha256 {expected[:12]}…)"
            )
        elif actual != expected:
            problems.append(
                f"{what} {store.where(key)} has sha256 {actual[:12]}…, the run recorded "
                f"{expected[:12]}…"
            )

    check(snapshot_key(day), inputs.raw_sha256, "raw snapshot")
    for start, sha in sorted(inputs.window_starts.items()):
        check(snapshot_key(start), sha, f"window start snapshot of {start}")
    check(mapping_key(inputs.mapping_sha256), inputs.mapping_sha256, "mapping")
    if inputs.account_types_sha256 is not None:
        sha = inputs.account_types_sha256
        check(account_types_key(sha), sha, "account types")
    if problems:
        return Reproduction(run_id, day, recorded, None, tuple(problems))

    snapshot = store.read_parquet(snapshot_key(day))
    starts = {
        start: store.read_parquet(snapshot_key(start), columns=["_id", "downloadsAllTime"])
        for start in sorted(inputs.window_starts)
    }
    with store.local_file(mapping_key(inputs.mapping_sha256)) as mapping_file:
        assert mapping_file is not None  # noqa: S101 - checked above
        rows = load_mapping(mapping_file).on(day)
    account_types = (
        empty_account_types()
        if inputs.account_types_sha256 is None
        else store.read_parquet(account_types_key(inputs.account_types_sha256))
    )
    fact, origin, _ = attribute_models(snapshot, rows, account_types)
    country_share, _, _, _ = compute_all_shares(
        day, snapshot, fact, origin, starts, contested_rows(rows)
    )
    recomputed = share_table_sha256(country_share)
    if recomputed != recorded:
        problems.append(
            f"share table sha256 {recomputed[:12]}… differs from the recorded {recorded[:12]}… "
            f"with identical inputs: the code changed (run: {run_code}, now: {code_version()})"
        )
    if row["status"] == "published":  # only a published run keeps its shares and facts
        # The warehouse holds the facts of the models it can store (the rest were excluded).
        stored_fact, _, _ = storable_model_frames(fact, origin)
        problems += stored_differences(engine, run_id, country_share, stored_fact)
    return Reproduction(run_id, day, recorded, recomputed, tuple(problems))


def _fact_checksum(frame: pl.DataFrame) -> tuple[int, str]:
    """(rows, SHA-256) of the per-model facts that decide the shares."""
    rows = frame.select("model_oid", "uploader", "uploader_bucket", "downloads_30d").sort(
        "model_oid"
    )
    text = "\n".join(",".join(map(str, row)) for row in rows.iter_rows())
    return rows.height, sha256_bytes(text.encode())


def stored_differences(
    engine: Engine, run_id: str, country_share: pl.DataFrame, fact: pl.DataFrame
) -> list[str]:
    """What the warehouse holds for the run, against the recomputation: its share rows (by the
    canonical table text) and its model facts (by a checksum)."""
    # model_day holds the facts of the run each date publishes now; a superseded run's facts
    # were not kept (they are what this recomputation rebuilt from the raw snapshot).
    figures = stored_figures(engine, run_id)
    problems = []
    stored = figures.country_share
    expected = country_share.select("definition", "cohort", "attribution", "bucket", "downloads")
    if stored.is_empty() or share_table_sha256(stored) != share_table_sha256(expected):
        differing = (
            expected.join(stored, on=["definition", "cohort", "attribution", "bucket"], how="full")
            .filter(pl.col("downloads").ne_missing(pl.col("downloads_right")))
            .select(pl.concat_str("attribution", "bucket", separator="/"))
            .to_series()
            .unique()
            .sort()
            .to_list()
        )
        problems.append(
            f"the country_share rows stored for run {run_id} differ from the recomputation "
            f"({stored.height} stored; differing: {', '.join(map(str, differing[:6])) or 'all'})"
        )
    stored_facts = figures.facts
    if figures.published and _fact_checksum(stored_facts) != _fact_checksum(fact):
        problems.append(
            f"the per-model facts stored for run {run_id} differ from the recomputation "
            f"({stored_facts.height:,} stored, {fact.height:,} recomputed)"
        )
    return problems
