"""Read published figures and run history back from the warehouse (for the CLI and tests)."""

from __future__ import annotations

from datetime import date

import polars as pl
from sqlalchemy import Engine

from hubshare.errors import SnapshotError, UsageError, WarehouseError
from hubshare.warehouse import (
    RUN_COLUMNS,
    models_with_created_at,
    published_country_shares,
    published_dates_of,
    published_review_queue,
    published_snapshot_date,
    redacted,
    run_history,
    run_ids_starting_with,
)


def published_shares(
    engine: Engine,
    snapshot_date: date | None,
    attribution: str,
    definition: str = "downloads_30d",
    cohort: str = "all",
) -> pl.DataFrame:
    """The published bucket shares of a date (default: the latest published date) under one
    definition, largest first: snapshot_date, version, run_id, definition, cohort, attribution,
    country, downloads, share, share_low, share_high."""
    frame = published_country_shares(engine, snapshot_date, attribution, definition, cohort)
    if frame.is_empty():
        raise WarehouseError(
            _nothing_published(engine, snapshot_date, attribution, definition, cohort)
        )
    if cohort == "first_year" and frame["downloads"].sum() == 0:
        raise SnapshotError(_empty_first_year(engine, frame["snapshot_date"][0], definition))
    return frame


def _nothing_published(
    engine: Engine, snapshot_date: date | None, attribution: str, definition: str, cohort: str
) -> str:
    """Why a definition has no published shares for the request, and which dates it has."""
    latest = published_snapshot_date(engine, None) if snapshot_date is None else None
    day = snapshot_date or latest
    what = f"for {day}" + (" (the latest published date)" if latest else "") if day else "at all"
    extra = ""
    if definition != "downloads_30d":
        days = definition.removeprefix("window_").removesuffix("d")
        extra = (
            f" under {definition}/{cohort} (a {days}-day window needs the raw snapshot "
            f"{days} days before the date)"
        )
    dates = published_dates_of(engine, attribution, definition, cohort) if day else []
    if dates:
        listed = ", ".join(str(d) for d in dates[-5:])
        more = f" (and {len(dates) - 5} earlier)" if len(dates) > 5 else ""
        return (
            f"no published shares {what}{extra} in {redacted(engine)}; published {definition}/"
            f"{cohort} dates: {listed}{more}: pass --date {dates[-1]}"
        )
    return (
        f"no published shares {what}{extra} in {redacted(engine)}; "
        "run `hubshare run` (or `hubshare runs` to see what was rejected)"
    )


def _empty_first_year(engine: Engine, day: date, definition: str) -> str:
    """Why a published first_year cohort counts no downloads."""
    models, created = models_with_created_at(engine, day)
    if created == 0:
        return (
            f"no model of {day}'s snapshot has a createdAt ({models:,} models): the first_year "
            f"cohort ({definition}) needs each model's creation date; use --cohort all"
        )
    return (
        f"the first_year cohort of {day} ({definition}) counts no downloads: none of the "
        f"{created:,} models with a createdAt (of {models:,}) was downloaded within a year of "
        "its creation; use --cohort all"
    )


def list_runs(engine: Engine, snapshot_date: date | None) -> pl.DataFrame:
    frame = run_history(engine, snapshot_date)
    return (
        frame.select(pl.col(name) for name in RUN_COLUMNS).with_columns(
            pl.col("published").cast(pl.Boolean)
        )
        if not frame.is_empty()
        else frame
    )


def resolve_run_id(engine: Engine, prefix: str) -> str:
    """The run whose id starts with `prefix` (what `hubshare runs` shows is enough)."""
    if not prefix or any(c not in "0123456789abcdefABCDEF-" for c in prefix):
        raise UsageError(f"run id {prefix!r} is not a run id (hex digits and dashes)")
    found = run_ids_starting_with(engine, prefix.lower())
    if not found:
        raise UsageError(f"no run id starts with {prefix!r} (see `hubshare runs`)")
    if len(found) > 1:
        shown = ", ".join(run_id[:8] for run_id in found[:5])
        raise UsageError(
            f"run id {prefix!r} matches {len(found)} runs ({shown}): give more characters"
        )
    return str(found[0])


def review_queue_of(
    engine: Engine, snapshot_date: date | None, top: int | None
) -> tuple[date, pl.DataFrame]:
    """The date and review queue (its `top` rows) of the run published for a date (default: the
    latest published date); a WarehouseError when the warehouse holds no published run for it.
    A published run with nothing to review has an empty queue."""
    day = published_snapshot_date(engine, snapshot_date)
    if day is None:
        what = f"for {snapshot_date}" if snapshot_date else "at all"
        raise WarehouseError(
            f"no published run {what} in {redacted(engine)}; "
            "run `hubshare run` (or `hubshare runs` to see what was rejected)"
        )
    return day, published_review_queue(engine, day, top)
