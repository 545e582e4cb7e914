"""Read published figures and run history back from the warehouse (for the CLI and tests)."""

from __future__ import annotations

from datetime import date

import polars as pl
from sqlalchemy import Engine, text

from hubshare.errors import UsageError, WarehouseError
from tasks.migrate import require_current


def _query(engine: Engine, sql: str, params: dict[str, object]) -> pl.DataFrame:
    require_current(engine)
    with engine.connect() as connection:
        result = connection.execute(text(sql), params)
        columns = list(result.keys())
        rows = result.fetchall()
    frame = pl.DataFrame([tuple(row) for row in rows], schema=columns, orient="row")
    # SQLite hands dates back as text; PostgreSQL as dates. Give callers one type.
    if "snapshot_date" in frame.columns and frame.schema["snapshot_date"] == pl.String:
        frame = frame.with_columns(pl.col("snapshot_date").str.to_date())
    return frame


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
    where = (
        "snapshot_date = :day"
        if snapshot_date
        else "snapshot_date = (SELECT MAX(snapshot_date) FROM published_country_share)"
    )
    frame = _query(
        engine,
        f"""
        SELECT snapshot_date, version, run_id, definition, cohort, attribution, country,
               downloads, share, share_low, share_high
        FROM published_country_share
        WHERE attribution = :attribution AND definition = :definition AND cohort = :cohort
          AND {where}
        ORDER BY downloads DESC, country""",  # noqa: S608 - `where` is one of two literals
        {
            "attribution": attribution,
            "day": snapshot_date,
            "definition": definition,
            "cohort": cohort,
        },
    )
    if frame.is_empty():
        what = f"for {snapshot_date}" if snapshot_date else "at all"
        extra = ""
        if definition != "downloads_30d":
            days = definition.removeprefix("window_").removesuffix("d")
            extra = (
                f" under {definition}/{cohort} (a {days}-day window needs the raw snapshot "
                f"{days} days before the date)"
            )
        raise WarehouseError(
            f"no published shares {what}{extra} in {engine.url.render_as_string()}; "
            "run `hubshare run` (or `hubshare runs` to see what was rejected)"
        )
    return frame


RUN_COLUMNS = (
    "run_id",
    "snapshot_date",
    "version",
    "status",
    "published",
    "raw_sha256",
    "mapping_sha256",
    "shares_sha256",
    "code_version",
    "row_count",
    "total_downloads",
    "quality_failures",
    "status_reason",
    "flow_run_id",
    "started_at",
    "finished_at",
)


def list_runs(engine: Engine, snapshot_date: date | None) -> pl.DataFrame:
    where = "WHERE snapshot_date = :day" if snapshot_date else ""
    frame = _query(
        engine,
        f"""
        SELECT {", ".join(RUN_COLUMNS)} FROM run_history
        {where}
        ORDER BY snapshot_date, version""",  # noqa: S608 - fixed fragments only
        {"day": snapshot_date},
    )
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
    require_current(engine)
    with engine.connect() as connection:
        found = [
            row[0]
            for row in connection.execute(
                text("SELECT run_id FROM run_history WHERE run_id LIKE :p ORDER BY run_id"),
                {"p": prefix.lower() + "%"},
            )
        ]
    if not found:
        raise UsageError(f"no run id starts with {prefix!r} (see `hubshare runs`)")
    if len(found) > 1:
        shown = ", ".join(run_id[:8] for run_id in found[:5])
        raise UsageError(
            f"run id {prefix!r} matches {len(found)} runs ({shown}): give more characters"
        )
    return str(found[0])
