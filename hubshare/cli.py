"""`hubshare` command line. Data goes to stdout; logs and errors go to stderr."""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import re
import sys
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import polars as pl
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from hubshare.errors import (
    ArchiveImportError,
    ExtractError,
    GateFailedError,
    HubshareError,
    MappingError,
    ReproductionError,
    SnapshotError,
    StorageError,
    UnstorableDataError,
    UsageError,
    WarehouseError,
)
from hubshare.resources import reference_file
from hubshare.settings import get_settings

if TYPE_CHECKING:
    from hubshare.fakehub_scenarios import Account

app = typer.Typer(
    help="Daily share of Hugging Face Hub downloads by developer country.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
stdout = Console(soft_wrap=True)  # long lines (paths, hashes) stay whole for scripts
stderr = Console(stderr=True, soft_wrap=True)

#: `--debug`: logs on the console and tracebacks for unexpected errors.
DEBUG = {"on": False}


@app.callback()
def _options(
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            help="Show Prefect's and the libraries' logs on the console, and the traceback of "
            "an unexpected error.",
        ),
    ] = False,
) -> None:
    """Daily share of Hugging Face Hub downloads by developer country."""
    DEBUG["on"] = debug
    if "--help" not in sys.argv[1:]:
        get_settings()  # an invalid HUBSHARE_* setting is exit 2 before anything runs
    # A command's output is its result and, on failure, one `error:` line; the run's logs go to
    # the Prefect API (the UI), and to the console with --debug (`serve` always shows them).
    os.environ.setdefault(
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "DEBUG" if debug else "CRITICAL"
    )
    if not debug:
        from huggingface_hub.utils import logging as hf_logging

        from hubshare.progress import print_hub_waits

        # huggingface_hub prints its retry warnings with a handler of its own: drop it (they
        # still reach the run's logs in the UI through Prefect's handler), for one line per
        # backoff wait: a Hub that does not answer is never silent.
        library = hf_logging.get_logger()
        for handler in list(library.handlers):
            if type(handler) is logging.StreamHandler:
                library.removeHandler(handler)
        print_hub_waits(stderr)


def main() -> None:
    """The `hubshare` command, leaving without the interpreter's teardown (2-3 s once
    great_expectations, scipy and polars are loaded) after flushing what must be written."""
    code = 0
    try:
        _main()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else int(done.code is not None)
    _leave(code)


def _leave(code: int) -> None:
    from hubshare.temporary_server import send_pending_logs_and_events

    send_pending_logs_and_events()  # Prefect's own atexit hooks will not run
    storage = sys.modules.get("hubshare.storage")
    if storage is not None:  # nor does the removal of downloaded copies
        storage.DOWNLOADS.remove_all()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`| head`)
            stream.flush()
    os._exit(code)


def _main() -> None:
    """Every command's errors, handled here once: a HubshareError is its message on one line
    and its exit code (EXIT_CODES); a storage failure exits 7; an unexpected error is one line
    too (exit 1), its traceback with --debug; Ctrl-C exits 130."""
    from hubshare.temporary_server import start_early_for

    start_early_for(sys.argv[1:])  # (already done when started as `hubshare`)
    try:
        app()
    except SystemExit as done:
        if done.code == 130:  # Typer's answer to Ctrl-C
            _print_error("interrupted; a crawl resumes from its last stored page next time")
        raise
    except KeyboardInterrupt:  # outside a command (while starting up)
        _print_error("interrupted; a crawl resumes from its last stored page next time")
        sys.exit(130)
    except HubshareError as err:
        _print_error(str(err))
        sys.exit(_exit_code(err))
    except OSError as err:
        if DEBUG["on"] or isinstance(err, ConnectionError | TimeoutError):
            raise
        _print_error(_storage_problem(err))
        sys.exit(7)
    except Exception as err:
        if DEBUG["on"]:
            raise
        lost = _warehouse_problem(err)
        if lost is not None:
            _print_error(lost)
            sys.exit(_exit_code(WarehouseError(lost)))
        first = (str(err).splitlines() or [""])[0]
        _print_error(
            f"unexpected {type(err).__name__}: {first} (run again with --debug for the traceback)"
        )
        sys.exit(1)


def _warehouse_problem(err: Exception) -> str | None:
    """A database error that escaped the warehouse module (a connection killed or refused in
    the middle of a read, a permission the role lacks) as one line naming the warehouse; None
    for any other error. The one place that turns a driver's error into exit 6."""
    import sqlite3

    import psycopg
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    from hubshare.warehouse import first_line, redact

    if not isinstance(err, SQLAlchemyError | psycopg.Error | sqlite3.Error):
        return None
    driver = err.orig if isinstance(err, DBAPIError) and err.orig is not None else err
    try:
        where = redact(get_settings().resolved_warehouse_url)
    except Exception:  # noqa: BLE001 - the settings' own error is not this one's
        where = "(HUBSHARE_WAREHOUSE_URL)"
    if isinstance(driver, psycopg.errors.InsufficientPrivilege):
        return (
            f"warehouse {where}: {first_line(driver)}: this role may not read it (a reader made "
            "by `hubshare db grant-reader` reads only the BI views; `explain` and `reproduce` "
            "read the tables too: run them with the warehouse owner's HUBSHARE_WAREHOUSE_URL)"
        )
    what = "lost or refused the connection" if _is_disconnect(err) else "failed"
    return f"warehouse {where} {what}: {first_line(driver)} (nothing was changed by this read)"


def _is_disconnect(err: Exception) -> bool:
    import psycopg
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(err, DBAPIError) and err.connection_invalidated:
        return True
    driver = err.orig if isinstance(err, DBAPIError) and err.orig is not None else err
    return isinstance(err, OperationalError | InterfaceError) or isinstance(
        driver, psycopg.OperationalError | psycopg.InterfaceError
    )


def _storage_problem(err: OSError) -> str:
    """A disk full, read-only or forbidden: which file, what the system said, what to check.
    Writes are atomic (temporary file, then rename), so what was stored before is intact."""
    where = f"{err.filename}" if err.filename else "a file"
    what = err.strerror or str(err)
    return (
        f"cannot write or read {where}: {what} (check free space and permissions under "
        f"HUBSHARE_DATA_DIR={get_settings().data_dir}; what was stored before is unchanged, "
        "and a crawl resumes from its last stored page)"
    )


DEMO_SAMPLE = reference_file("data/samples/hub-2024-09-20.jsonl.gz")
DEMO_DATE = date(2024, 9, 20)
DEMO_YEAR_BEFORE = DEMO_DATE - timedelta(days=365)  # the start of its 365-day window


class Attribution(StrEnum):
    uploader = "uploader"
    origin = "origin"


class TableFormat(StrEnum):
    """`shares` and `mapping todo`: a table for people, or only data on stdout."""

    table = "table"
    json = "json"
    csv = "csv"


def _print_data(rows: pl.DataFrame, format_: TableFormat) -> bool:
    """`rows` as JSON or CSV on stdout (only data); False for the table format (the caller
    renders it)."""
    if format_ is TableFormat.json:
        sys.stdout.write(orjson.dumps(_jsonable(rows), option=orjson.OPT_INDENT_2).decode() + "\n")
    elif format_ is TableFormat.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(rows.columns)
        writer.writerows(row.values() for row in _jsonable(rows))
        sys.stdout.write(buffer.getvalue())
    else:
        return False
    return True


class Cohort(StrEnum):
    all = "all"
    first_year = "first_year"


def _window_days(value: str) -> int:
    if value in ("7d", "30d", "365d"):
        return int(value[:-1])
    raise _usage_error(f"--window {value!r}: expected 7d, 30d, 365d or YYYY-MM-DD..YYYY-MM-DD")


def _parse_span(value: str) -> tuple[date, date]:
    first, _, second = value.partition("..")
    start, end = _parse_date(first, "--window"), _parse_date(second, "--window")
    assert start is not None and end is not None
    if start >= end:
        raise _usage_error(f"--window {value!r}: the start must precede the end")
    return start, end


class RunsFormat(StrEnum):
    table = "table"
    json = "json"


#: No model was on the Hub before this: an earlier date is a typo.
EARLIEST_DATE = date(2016, 1, 1)
_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def _print_error(message: str) -> None:
    """One line on stderr, the message taken literally (no markup: `[uploader]` stays), with
    every secret of the settings masked (a library's message may quote what it was given)."""
    stderr.print(Text.assemble(("error:", "bold red"), " ", _masked(message)), highlight=False)


def _masked(message: str) -> str:
    from hubshare.provenance import mask_secrets, url_secrets

    try:
        settings = get_settings()
    except Exception:  # noqa: BLE001 - invalid settings: mask what the environment holds
        secrets = url_secrets(os.environ.get("HUBSHARE_WAREHOUSE_URL", ""))
    else:
        secrets = url_secrets(settings.warehouse_url or "")
        secrets += [s.get_secret_value() for s in (settings.hf_token,) if s is not None]
    return mask_secrets(message, secrets)


def _print_warning(message: str) -> None:
    """One line on stderr, like an error's, for a command that still succeeds."""
    stderr.print(Text.assemble(("warning:", "bold yellow"), " ", message), highlight=False)


def _usage_error(message: str) -> typer.Exit:
    _print_error(message)
    return typer.Exit(code=2)


def _parse_date(value: str | None, option: str = "--date") -> date | None:
    """Strictly YYYY-MM-DD, from 2016-01-01 to today (UTC); anything else is a one-line usage
    error (exit 2) naming the option."""
    if value is None:
        return None
    day = None
    if _ISO_DATE.match(value):
        try:
            day = date.fromisoformat(value)
        except ValueError:
            day = None
    if day is None:
        raise _usage_error(f"{option} {value!r} is not a date in the form YYYY-MM-DD")
    if day < EARLIEST_DATE:
        raise _usage_error(f"{option} {day} is before {EARLIEST_DATE}: no Hub data is that old")
    today = datetime.now(UTC).date()
    if day > today:
        raise _usage_error(f"{option} {day} is in the future (today is {today}, UTC)")
    return day


DateOption = Annotated[
    str | None,
    typer.Option("--date", help="Snapshot date, YYYY-MM-DD.", show_default=False),
]


#: Exit codes by what went wrong (README, "CLI contract").
EXIT_CODES: tuple[tuple[type[HubshareError], int], ...] = (
    (UsageError, 2),
    (GateFailedError, 3),
    (ExtractError, 4),
    (SnapshotError, 5),
    (ArchiveImportError, 5),
    (MappingError, 5),
    (ReproductionError, 5),
    (UnstorableDataError, 5),
    (WarehouseError, 6),
    (StorageError, 7),
)


def _exit_code(err: HubshareError) -> int:
    return next((code for kind, code in EXIT_CODES if isinstance(err, kind)), 1)


def _engine() -> Any:
    from hubshare.warehouse import warehouse_engine

    return warehouse_engine(get_settings().resolved_warehouse_url)


def _jsonable(frame: pl.DataFrame) -> list[dict[str, Any]]:
    def convert(value: Any) -> Any:
        return value.isoformat() if isinstance(value, date | datetime) else value

    return [{key: convert(value) for key, value in row.items()} for row in frame.to_dicts()]


def _run_daily(run_date: date | None, backdate: bool) -> dict[str, Any]:
    from hubshare.temporary_server import prefect_api

    with prefect_api() as server:
        from flows.daily import PUBLISHED_IN_THIS_PROCESS, daily

        if server is not None:
            server.wait_until_healthy()
        published_before = len(PUBLISHED_IN_THIS_PROCESS)
        try:
            return daily(run_date=run_date, backdate=backdate)
        except Exception as err:
            if len(PUBLISHED_IN_THIS_PROCESS) == published_before:
                raise
            # Published, then failed (the Prefect API gone, a late artifact): the data is out,
            # so exit 0 and say so; exit 1 would make a retrying script publish again.
            published = PUBLISHED_IN_THIS_PROCESS[-1]
            first = (str(err).splitlines() or [""])[0]
            _print_warning(
                f"published v{published.version} of {published.snapshot_date} (run "
                f"{published.run_id}), but the run could not finish reporting to Prefect: "
                f"{type(err).__name__}: {first}"
            )
            return {
                "snapshot_date": published.snapshot_date,
                "version": published.version,
                "run_id": published.run_id,
                "shares_sha256": published.shares_sha256,
                "raw_sha256": published.raw_sha256,
            }


@app.command()
def run(
    date_: DateOption = None,
    backdate: Annotated[
        bool,
        typer.Option(
            "--backdate",
            help="Allow crawling now for a past --date that has no stored snapshot "
            "(the Hub keeps no history: the counters will be today's).",
        ),
    ] = False,
) -> None:
    """Run the daily flow. Exit 0 only if the run was published."""
    from hubshare.progress import crawl_progress, describe_stage_seconds

    run_date = _parse_date(date_)
    with crawl_progress(stderr):
        outcome = _run_daily(run_date, backdate)
    for line in outcome.get("settled", []):
        stderr.print(f"Settled an {line}", highlight=False, markup=False)
    stderr.print(
        f"Published {outcome['snapshot_date']} version {outcome['version']} "
        f"(run {outcome['run_id']}, shares sha256 {outcome['shares_sha256'][:12]})"
    )
    if "stage_seconds" not in outcome:  # published, but the run did not finish (a warning)
        return
    stderr.print(
        f"Raw snapshot: sha256 {outcome['raw_sha256'][:12]}, stored by {outcome['raw_stored_by']}",
        highlight=False,
    )
    stages = describe_stage_seconds(outcome["stage_seconds"], outcome.get("stage_peak_gb"))
    stderr.print(f"Stages: {stages}", highlight=False)


@app.command()
def shares(
    date_: DateOption = None,
    attribution: Annotated[Attribution, typer.Option(help="Which view.")] = Attribution.uploader,
    format_: Annotated[TableFormat, typer.Option("--format")] = TableFormat.table,
    window: Annotated[
        str | None,
        typer.Option(
            help="7d | 30d | 365d (stored with the run), or D1..D2 (computed now from the raw "
            "snapshots of D1 and D2). Default: the Hub's 30-day counter."
        ),
    ] = None,
    cohort: Annotated[
        Cohort | None,
        typer.Option(
            help="all, or first_year: only downloads within a year of each model's creation "
            "(default: all; with --study, first_year, except for one_year_rolling.parquet, "
            "whose counters stop at one year already)."
        ),
    ] = None,
    mapping: Annotated[
        str | None,
        typer.Option(
            help="With --window D1..D2: the mapping to attribute with, a file or a recorded "
            "mapping_sha256 (default: the current mapping)."
        ),
    ] = None,
    study: Annotated[
        Path | None,
        typer.Option(
            help="A study file imported with `hubshare import --study`: its headline window "
            "(Sep 2024 - Aug 2025 on the study's times) with the study's own mapping."
        ),
    ] = None,
) -> None:
    """The published shares of a date (default: the latest published date)."""
    from hubshare.read_warehouse import published_shares
    from hubshare.warehouse import PUBLISHED_COUNTRY_SHARE
    from tasks.render_shares import one_view_table

    day = _parse_date(date_)
    custom = _parse_span(window) if window and ".." in window else None
    if study is not None:
        if window is not None or date_ is not None or mapping is not None:
            raise _usage_error("--study takes its window and mapping from the import's record")
        from tasks.study import read_study_record

        record = read_study_record(study, get_settings().store)
        custom, mapping = record.headline, record.mapping_sha256
        # one_year_rolling.parquet counts only each model's first year already: prorating its
        # counters again by the first-year rule would count less than the study did.
        rolling = study.name.startswith("one_year_rolling")
        cohort = cohort or (Cohort.all if rolling else Cohort.first_year)
        stderr.print(
            f"The study's headline window {custom[0]}..{custom[1]} (its last times on or before "
            f"2024-09-01 and 2025-09-01), cohort {cohort.value}, with the mapping built from "
            f"its annotations (sha256 {mapping[:12]}).",
            highlight=False,
        )
    elif mapping is not None and custom is None:
        raise _usage_error(
            "--mapping needs --window D1..D2 (a stored run keeps the mapping it used)"
        )
    cohort = cohort or Cohort.all
    if custom is not None:
        from flows.recompute import window_shares_now

        frame = window_shares_now(custom[0], custom[1], cohort.value, attribution.value, mapping)
        stderr.print(
            f"Computed now from the raw snapshots of {custom[0]} and {custom[1]} "
            f"with {'the mapping ' + mapping if mapping else 'the current mapping'} (not stored).",
            highlight=False,
        )
    else:
        definition = "downloads_30d" if window is None else f"window_{_window_days(window)}d"
        frame = published_shares(_engine(), day, attribution.value, definition, cohort.value)
    rows = frame.select(PUBLISHED_COUNTRY_SHARE.columns.keys())  # the view's, in its order
    if not _print_data(rows, format_):
        stdout.print(one_view_table(rows, attribution.value))


@app.command()
def runs(
    date_: DateOption = None,
    format_: Annotated[RunsFormat, typer.Option("--format")] = RunsFormat.table,
) -> None:
    """Every run (published or rejected), oldest first."""
    from hubshare.read_warehouse import list_runs

    frame = list_runs(_engine(), _parse_date(date_))
    if format_ is RunsFormat.json:
        frame = frame.with_columns(_in_utc(frame, name) for name in ("started_at", "finished_at"))
        sys.stdout.write(orjson.dumps(_jsonable(frame), option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    table = Table(title="hubshare runs (--format json for full ids, checksums and reasons)")
    for column in ("date", "v", "status", "run", "started (UTC)", "took", "models"):
        table.add_column(column, no_wrap=True)
    table.add_column("shares sha256", no_wrap=True)
    table.add_column("reason", no_wrap=True, overflow="ellipsis")
    for row in frame.iter_rows(named=True):
        table.add_row(
            str(row["snapshot_date"]),
            str(row["version"]),
            row["status"] + (" *" if row["published"] else ""),
            row["run_id"][:8],
            _utc(row["started_at"]),
            _duration(row["started_at"], row["finished_at"]),
            "—" if row["row_count"] is None else f"{row['row_count']:,}",
            (row["shares_sha256"] or "—")[:12],
            _one_line(row["status_reason"] or "", 80),
        )
    # A script or a pipe gets the whole row; a terminal, what fits its width.
    (stdout if stdout.is_terminal else Console(width=200, soft_wrap=True)).print(table)
    stderr.print("* = the published run of its date")


def _in_utc(frame: pl.DataFrame, name: str) -> pl.Expr:
    """A time column in UTC with its zone, so JSON says `+00:00` (SQLite drops the zone)."""
    dtype = frame.schema[name]
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
        return pl.col(name).dt.replace_time_zone("UTC")
    if isinstance(dtype, pl.Datetime):
        return pl.col(name).dt.convert_time_zone("UTC")
    return pl.col(name)


def _as_utc(moment: datetime) -> datetime:
    # SQLite hands back the warehouse's UTC times without their zone.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _utc(moment: datetime | None) -> str:
    """`2026-12-05 04:12:03Z`: a time in UTC, its zone marked."""
    return "—" if moment is None else _as_utc(moment).strftime("%Y-%m-%d %H:%M:%SZ")


def _duration(started: datetime | None, finished: datetime | None) -> str:
    """`3.2 s`, `4 min 05 s`, `1 h 02 min`; — for a run without an end."""
    if started is None or finished is None:
        return "—"
    seconds = max((_as_utc(finished) - _as_utc(started)).total_seconds(), 0.0)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _one_line(text: str, width: int) -> str:
    """The first line of `text`, cut to `width` characters (… marks a cut)."""
    lines = text.strip().splitlines()
    first = lines[0] if lines else ""
    if len(first) > width or len(lines) > 1:
        return first[: width - 1].rstrip() + "…"
    return first


@app.command("import")
def import_(
    date_: Annotated[
        str | None, typer.Option("--date", help="Snapshot date, YYYY-MM-DD (with --file).")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            help="JSON Lines of Hub model objects, an upstream CSV "
            "layout, or a hub-stats models.parquet."
        ),
    ] = None,
    study: Annotated[
        Path | None,
        typer.Option(
            help="A study parquet (all_downloads_with_annotations.parquet or "
            "one_year_rolling.parquet): one snapshot per time, and its mapping."
        ),
    ] = None,
) -> None:
    """Turn a dump of the model list into that date's raw snapshot (once: snapshots are
    immutable); or, with --study, the study's file into one snapshot per time and a mapping."""
    if study is not None:
        if date_ is not None or file is not None:
            raise _usage_error("--study takes no --date or --file: its times are the dates")
        _import_study(study)
        return
    if date_ is None or file is None:
        raise _usage_error("give --date and --file (an archive), or --study FILE")
    from tasks.import_archive import import_snapshot

    day = _parse_date(date_)
    assert day is not None
    manifest = import_snapshot(day, file, get_settings())
    stderr.print(
        f"Imported {file} as the {day} snapshot ({manifest.source}): "
        f"{manifest.row_count:,} public models, sha256 {manifest.sha256}",
        highlight=False,
    )


def _import_study(study: Path) -> None:
    from tasks.study import import_study

    settings = get_settings()
    done = import_study(study, settings)
    record = done.record
    stderr.print(
        f"Imported {study} ({record.source}): {len(record.times)} snapshots "
        f"({record.times[0]} .. {record.times[-1]}), {record.models:,} models in "
        f"{record.rows:,} rows; downloads (30-day) null: the study has only the all-time counter",
        highlight=False,
    )
    stderr.print(
        f"Study mapping: {record.authors:,} authors, sha256 {record.mapping_sha256}, in "
        f"{settings.store.where(done.mapping_key)}; {record.annotation_disagreements:,} authors "
        "with differing annotations took their latest time's; "
        f"{record.retyped:,} International/Online companies typed community",
        highlight=False,
    )
    window = (
        f"{record.headline_start}..{record.headline_end}"
        if record.headline_start
        else "none (the times do not reach Sep 2024 - Aug 2025)"
    )
    stderr.print(
        f"Headline window {window}; record {settings.store.where(done.record_key)}. "
        f"Next: hubshare shares --study {study}",
        highlight=False,
    )


@app.command()
def backfill(
    start: Annotated[str, typer.Option(help="First date, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option(help="Last date (included), YYYY-MM-DD.")],
    force: Annotated[
        bool, typer.Option(help="Re-run dates already done with the same inputs.")
    ] = False,
    mapping_only: Annotated[
        bool,
        typer.Option(
            "--mapping-only",
            help="Re-run only dates whose published run used another mapping "
            "(or other raw inputs); a code change alone is not enough.",
        ),
    ] = False,
    on_pool: Annotated[
        bool,
        typer.Option(
            "--on-pool",
            help="Run each date as a run of the daily deployment on its work pool (any worker, "
            "any machine; needs PREFECT_API_URL), HUBSHARE_BACKFILL_CONCURRENCY at a time.",
        ),
    ] = False,
) -> None:
    """Re-run every date of a range from its stored raw snapshot (never re-crawling the past).
    Exit 0 only if every date run was published."""
    from hubshare.temporary_server import prefect_api

    first, last = _parse_date(start, "--start"), _parse_date(end, "--end")
    assert first is not None and last is not None
    if last < first:
        raise _usage_error(f"--end {last} precedes --start {first}")
    with prefect_api() as server:
        if on_pool and server is not None:  # no API in the environment or the profile
            raise _usage_error(
                "--on-pool needs PREFECT_API_URL (environment or Prefect profile): the "
                "server whose work pool has the workers (a temporary server has none)"
            )
        from flows.backfill import backfill_with_limit
        from hubshare.progress import backfill_lines

        if server is not None:
            server.wait_until_healthy()
        # A line per date as it ends; the URL only of a server that outlives this command.
        with backfill_lines(stderr, show_url=server is None):
            summary = backfill_with_limit(first, last, force, mapping_only, on_pool)
    stderr.print(
        f"{len(summary['runs'])} date(s) re-run, {len(summary['skipped'])} already done "
        f"with the same inputs, {len(summary['missing'])} without a raw snapshot"
        + (f" ({', '.join(summary['missing'])})" if summary["missing"] else ""),
        highlight=False,
    )
    if summary["failed"]:
        raise HubshareError(f"{summary['failed']} date(s) were not published")


@app.command()
def reproduce(
    run_id: Annotated[
        str, typer.Argument(help="A run_id from `hubshare runs`, or any unique prefix of one.")
    ],
) -> None:
    """Recompute a stored run from its recorded inputs; exit 0 only if its share table's
    SHA-256 matches."""
    from flows.recompute import reproduce_run
    from hubshare.read_warehouse import resolve_run_id

    run_id = resolve_run_id(_engine(), run_id)
    result = reproduce_run(run_id)
    if result.ok:
        stdout.print(
            f"reproduced: run {run_id} ({result.snapshot_date}) share table sha256 "
            f"{result.recomputed_sha256}",
            highlight=False,
        )
        return
    raise ReproductionError(f"run {run_id} was not reproduced: {'; '.join(result.problems)}")


class ExplainFormat(StrEnum):
    table = "table"
    json = "json"


@app.command()
def explain(
    from_: Annotated[str, typer.Option("--from", help="First published date, YYYY-MM-DD.")],
    to: Annotated[str, typer.Option("--to", help="Second published date, YYYY-MM-DD.")],
    attribution: Annotated[
        Attribution | None, typer.Option(help="One view (default: both).")
    ] = None,
    country: Annotated[
        str | None, typer.Option(help="One bucket: an alpha-2 code, INTL or UNKNOWN.")
    ] = None,
    format_: Annotated[ExplainFormat, typer.Option("--format")] = ExplainFormat.table,
    top: Annotated[
        int,
        typer.Option(min=1, help="Parts shown per bucket at most; the rest summed in one line."),
    ] = 5,
    threshold: Annotated[
        float,
        typer.Option(
            min=0.0, help="Parts shown move their bucket by at least this many percentage points."
        ),
    ] = 0.01,
    all_: Annotated[
        bool, typer.Option("--all", help="Every part of every bucket (JSON always has them).")
    ] = False,
) -> None:
    """Why did each bucket's share move between two published runs? Parts (organisations, new
    models, the population total, mapping changes) that add up exactly to the change; by
    default each bucket's largest parts, the rest summed."""
    from schemas.quality import known_buckets
    from tasks.explain import (
        SHOWN_DECIMALS,
        change_as_json,
        explain_shares,
        moves_visibly,
        rounded_parts,
        summarise,
    )

    start, end = _parse_date(from_, "--from"), _parse_date(to, "--to")
    assert start is not None and end is not None
    if country is not None and country not in known_buckets():
        stderr.print(
            f"error: --country {country!r} is not an alpha-2 code, INTL or UNKNOWN",
            highlight=False,
            markup=False,
        )
        raise typer.Exit(code=2)
    changes = explain_shares(start, end, get_settings(), _engine())
    changes = [
        c
        for c in changes
        if (attribution is None or c.attribution == attribution.value)
        and (country is None or c.country == country)
    ]
    if format_ is ExplainFormat.json:
        payload = [change_as_json(change) for change in changes]
        sys.stdout.write(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    from fractions import Fraction

    threshold_pp = Fraction(str(threshold))
    # Plain lines, one per bucket and one per part: nothing wraps or is cut short, so the
    # summary's length is its parts' count.
    for view in dict.fromkeys(c.attribution for c in changes):
        in_view = [c for c in changes if c.attribution == view]
        shown = [c for c in in_view if all_ or moves_visibly(c, threshold_pp)]
        limits = "every part" if all_ else f"parts of at least {threshold:g} pp, at most {top}"
        lines = [f"Why the {view} view's shares moved, {start} → {end} ({limits}):"]
        for change in shown:
            summary = change if all_ else summarise(change, top, threshold_pp)
            share_from, share_to, delta, parts = rounded_parts(summary, SHOWN_DECIMALS)
            lines.append(
                f"{change.country:<8} {share_from:>7.2%} → {share_to:>7.2%}  {delta * 100:+.4f} pp"
            )
            lines += [
                f"    {value * 100:>+9.4f}  {part.kind:<16}  {part.label}"
                for part, value in zip(summary.parts, parts, strict=True)
            ]
        if len(shown) < len(in_view):
            quiet = len(in_view) - len(shown)
            lines.append(
                f"… {quiet} other {'bucket' if quiet == 1 else 'buckets'} moved less than "
                f"{threshold:g} pp, each part too (--all lists them)"
            )
        stdout.print("\n".join(lines), markup=False, highlight=False)


@app.command("serve")
def serve_() -> None:
    """Run both deployments (daily schedule and backfills) in this process, for one machine
    without a work pool; needs a Prefect server (PREFECT_API_URL). Stop with Ctrl-C."""
    if not DEBUG["on"]:  # a server process: its logs are its output
        os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "INFO"
    from flows.serve import serve_deployments

    serve_deployments()


@app.command()
def report(
    out: Annotated[Path, typer.Option(help="Where to write the HTML file.")] = Path(
        "hubshare-report.html"
    ),
    from_: Annotated[
        str | None, typer.Option("--from", help="First date, YYYY-MM-DD (default: all).")
    ] = None,
    to: Annotated[str | None, typer.Option("--to", help="Last date, YYYY-MM-DD.")] = None,
) -> None:
    """One self-contained HTML report: shares over time in both views with their range, the
    latest table, coverage and the provenance of every published run. Works offline."""
    from tasks.report import refuse_unless_new_or_report, write_report

    start, end = _parse_date(from_, "--from"), _parse_date(to, "--to")
    refuse_unless_new_or_report(out)  # never the warehouse, a folder or someone's file
    written = write_report(_engine(), out, start, end, store=get_settings().store)
    stderr.print(f"Wrote {written}", highlight=False, markup=False)


db_app = typer.Typer(help="Manage the warehouse schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create the warehouse, or upgrade it in place to this release's schema (alembic), and
    replace the BI views whose definition changed. `hubshare run` does this itself."""
    from hubshare.warehouse import redacted
    from tasks.migrate import upgrade_warehouse

    revision = upgrade_warehouse(_engine())
    stderr.print(
        f"warehouse {redacted(_engine())} is at revision {revision}",
        highlight=False,
        markup=False,
    )


@db_app.command("grant-reader")
def db_grant_reader(
    role: Annotated[str, typer.Argument(help="PostgreSQL role to create or update.")],
) -> None:
    """Create or update a PostgreSQL role that can read the BI views (and nothing else), for a
    BI tool; its grants survive upgrades. Set its password with ALTER ROLE as usual."""
    from tasks.migrate import grant_reader

    objects = grant_reader(_engine(), role)
    stderr.print(f"role {role} may read: {', '.join(objects)}", highlight=False, markup=False)


mapping_app = typer.Typer(
    help="Check and compare the org-to-country mapping.", no_args_is_help=True
)
app.add_typer(mapping_app, name="mapping")


@mapping_app.command("check")
def mapping_check(
    snapshot: Annotated[
        list[Path] | None,
        typer.Option(
            "--snapshot",
            help="Snapshot file or folder (run parquet, upstream CSV, JSON/JSONL, "
            "trending payloads); repeat to pool several. Each model counts once (its latest "
            "observation).",
        ),
    ] = None,
    mapping: Annotated[
        Path | None,
        typer.Option(help="Mapping file (default: HUBSHARE_MAPPING, else data/org_country.csv)."),
    ] = None,
    min_coverage: Annotated[
        float | None,
        typer.Option(help="Exit 1 if less than this share of downloads is classified."),
    ] = None,
    max_unsupported: Annotated[
        float,
        typer.Option(
            help="Exit 1 if rows whose source is not evidence of their country (own Hub page "
            "or ATOM/Epoch only) carry more than this share of the snapshot's downloads."
        ),
    ] = 0.005,
    top: Annotated[int, typer.Option(help="How many rows each list shows.")] = 15,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Evidence, cross-checks and coverage use the rows valid on this date, "
            "YYYY-MM-DD (default: today, UTC; give a snapshot's capture date to measure it as "
            "its run would). Validity is checked on every row.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Validate the mapping file, list rows without evidence of their country and where ATOM
    or Epoch disagree; with --snapshot, measure the downloads and models it classifies."""
    from tasks.mapping import (
        cross_check,
        load_mapping,
        mapping_coverage,
        read_crosscheck,
        read_observations,
        unsupported_downloads,
        unsupported_rows,
        validate_mapping,
    )

    path = mapping or get_settings().mapping_path
    problems = validate_mapping(path)
    if problems:
        for problem in problems:
            stderr.print(f"{path}: {problem}", highlight=False, soft_wrap=True, markup=False)
        raise MappingError(f"{path}: {len(problems)} problem(s), first on {problems[0]}")
    day = _parse_date(as_of, "--as-of") or datetime.now(UTC).date()
    loaded = load_mapping(path)
    rows = loaded.on(day)
    unsupported = unsupported_rows(rows)
    disagreements = cross_check(rows, *read_crosscheck())
    report = mapping_coverage(rows, read_observations(snapshot), top=top) if snapshot else None
    stdout.print(
        f"{path}: {loaded.rows['org_lower'].n_unique()} namespaces, valid (sha256 "
        f"{loaded.sha256}); {rows.height} of its {loaded.rows.height} rows hold on {day}",
        highlight=False,
    )
    kinds = unsupported["evidence"].value_counts().rows()
    stdout.print(
        f"{unsupported.height} rows with a country cite no evidence of it ("
        + ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in sorted(kinds))
        + ")"
        + ("" if report else ": " + ", ".join(unsupported["org"].head(top)))
        + ("" if report or unsupported.height <= top else ", …"),
        highlight=False,
    )
    _print_rows(
        f"Cross-checks that disagree with the mapping ({disagreements.height}; reported, "
        "not enforced)",
        disagreements,
    )
    if report is None:
        return
    stdout.print(
        f"classified: {report.share:.2%} of {report.total_downloads:,} downloads, "
        f"{report.model_share:.2%} of {report.models:,} models "
        f"({report.classified_uploaders:,} of {report.uploaders:,} uploaders; each model once, "
        f"its latest of {report.observations:,} observations) in "
        f"{', '.join(map(str, snapshot or []))}",
        highlight=False,
    )
    _print_rows(
        "Top unmapped uploaders (absent from the file, or UNKNOWN)",
        report.top_unmapped.with_columns(pl.col("share").map_elements(_pct, pl.String)),
    )
    weighed = unsupported_downloads(report, rows)
    unsupported_share = float(weighed["share"].sum())
    stdout.print(
        f"rows without evidence of their country carry {unsupported_share:.3%} of downloads "
        f"(--max-unsupported {max_unsupported:.3%})",
        highlight=False,
    )
    _print_rows(
        "Largest rows without evidence of their country",
        weighed.head(top).with_columns(pl.col("share").map_elements(_pct, pl.String)),
    )
    if min_coverage is not None and report.share < min_coverage:
        raise MappingError(
            f"coverage {report.share:.2%} is below --min-coverage {min_coverage:.2%}"
        )
    if unsupported_share > max_unsupported:
        raise MappingError(
            f"rows without evidence of their country carry {unsupported_share:.3%} of "
            f"downloads, above --max-unsupported {max_unsupported:.3%}: cite a page that "
            f"states the country for {', '.join(weighed['org'].head(5))}"
        )


def _pct(value: float) -> str:
    return f"{value:.3%}"


def _print_rows(title: str, frame: pl.DataFrame) -> None:
    """A frame as a table on stdout (nothing when it is empty)."""
    if frame.is_empty():
        return
    table = Table(title=title, title_justify="left")
    for name, dtype in frame.schema.items():
        table.add_column(name, justify="right" if dtype.is_numeric() else "left")
    for row in frame.iter_rows():
        table.add_row(*(f"{v:,}" if isinstance(v, int) else str(v) for v in row))
    stdout.print(table, markup=False)


@mapping_app.command("todo")
def mapping_todo(
    date_: DateOption = None,
    top: Annotated[int, typer.Option(min=1, help="How many namespaces to list.")] = 20,
    format_: Annotated[TableFormat, typer.Option("--format")] = TableFormat.table,
) -> None:
    """The review queue of a published run (default: the latest published date): namespaces
    without a reviewed row in the mapping, or mapped UNKNOWN, largest downloads first."""
    from hubshare.read_warehouse import review_queue_of
    from tasks.render_shares import review_queue_table

    day, rows = review_queue_of(_engine(), _parse_date(date_), top)
    if not _print_data(rows, format_):
        version = int(rows["version"][0]) if rows.height else 0
        stdout.print(review_queue_table(rows, day, version))


@mapping_app.command("diff")
def mapping_diff(
    old: Annotated[str, typer.Argument(help="Mapping file, or a recorded mapping_sha256.")],
    new: Annotated[str, typer.Argument(help="Mapping file, or a recorded mapping_sha256.")],
) -> None:
    """The rows that changed between two mappings (files or versions recorded by runs)."""
    from tasks.mapping import diff_mappings, mapping_version, read_rows

    store = get_settings().store
    with (
        mapping_version(old, store) as (old_file, old_path),
        mapping_version(new, store) as (new_file, new_path),
    ):
        changes = diff_mappings(read_rows(old_file), read_rows(new_file))
    for change in changes:
        sys.stdout.write(f"{change}\n")
    counts = {
        kind: sum(c.kind == kind for c in changes) for kind in ("added", "removed", "changed")
    }
    stderr.print(
        f"{old_path} -> {new_path}: {counts['added']} added, {counts['removed']} "
        f"removed, {counts['changed']} changed",
        highlight=False,
    )


@mapping_app.command("compare")
def mapping_compare(
    study: Annotated[
        Path, typer.Option(help="A study file imported with `hubshare import --study`.")
    ],
    mapping: Annotated[
        str | None,
        typer.Option(
            help="Our mapping: a file or a recorded mapping_sha256 (default: HUBSHARE_MAPPING, "
            "else data/org_country.csv)."
        ),
    ] = None,
    top: Annotated[int | None, typer.Option(min=1, help="Show only the N largest.")] = None,
    format_: Annotated[TableFormat, typer.Option("--format")] = TableFormat.table,
) -> None:
    """Every author whose country in the study's annotations differs from our mapping (its rows
    valid on the study's last time; `absent` = no row), by the downloads of the study's
    headline window (uploader view, first-year cohort), largest first, with the share points
    each disagreement moves from our bucket to the study's."""
    from flows.recompute import compare_study

    compared = compare_study(study, mapping)
    rows = compared.disagreements
    shown = rows.head(top) if top else rows
    moved, total = int(rows["downloads"].sum()), compared.total_downloads
    summary = (
        f"total: {rows.height:,} authors disagree, moving {moved:,} of the {total:,} downloads "
        f"({moved / total * 100 if total else 0.0:.4f} share points) of the window "
        f"{compared.start}..{compared.end} ({compared.cohort}); our mapping "
        f"{compared.our_mapping} (sha256 {compared.our_sha256[:12]})"
    )
    if _print_data(shown, format_):
        stderr.print(summary, highlight=False, markup=False)
        return
    _print_rows(
        "Where the study's annotation and our mapping disagree",
        shown.with_columns(
            pl.col("share_moved").map_elements(lambda v: f"{v * 100:.4f} pp", pl.String)
        ),
    )
    stdout.print(summary, highlight=False, markup=False)


@app.command()
def demo(
    data_dir: Annotated[
        Path, typer.Option(help="Where the demo keeps its data and warehouse.")
    ] = Path("var/demo"),
    long_tail: Annotated[
        int,
        typer.Option(
            "--long-tail",
            min=0,
            help="Also serve this many SYNTHETIC models under unreviewed user accounts, "
            "organisations and vanished namespaces (0: the real sample alone).",
        ),
    ] = 0,
    synthetic_history: Annotated[
        bool,
        typer.Option(
            "--synthetic-history",
            help="Give the sample's models SYNTHETIC creation dates and all-time counters (the "
            "sample has neither) and serve their state a year earlier too, so the first-year "
            "cohort and the 365-day window (the study's view) can be shown.",
        ),
    ] = False,
) -> None:
    """Offline demo: run the daily flow against a real 2024-09-20 sample on a local fake Hub
    (with --long-tail N, beside a synthetic long tail of N models and their accounts)."""
    from hubshare.fakehub import FakeHub, load_models
    from hubshare.progress import describe_stage_seconds

    models = load_models(DEMO_SAMPLE)
    year_before: list[dict[str, Any]] = []
    if synthetic_history:
        from hubshare.fakehub_scenarios import with_synthetic_history

        models, year_before = with_synthetic_history(
            models, DEMO_DATE, DEMO_YEAR_BEFORE, DEMO_LONG_TAIL_SEED
        )
        stderr.print(
            f"History: SYNTHETIC createdAt and downloadsAllTime (not Hub data; seed "
            f"{DEMO_LONG_TAIL_SEED}): each model created up to 3 years before its lastModified and "
            f"downloaded evenly since at its real 30-day rate; {len(year_before):,} of them "
            f"served as on {DEMO_YEAR_BEFORE} too",
            highlight=False,
        )
    accounts: list[Account] = []
    if long_tail:
        tail_models, accounts, described = _demo_long_tail(long_tail, models)
        models += tail_models
        stderr.print(described, highlight=False)
    os.environ["HF_TOKEN"] = ""  # never send a real token to the demo server
    os.environ["HUBSHARE_DATA_DIR"] = str(data_dir)
    os.environ["HUBSHARE_WAREHOUSE_URL"] = f"sqlite:///{(data_dir / 'warehouse.db').resolve()}"
    if year_before:  # the 365-day window's start: a raw snapshot of the year-earlier state
        from tasks.extract import extract_snapshot

        with FakeHub(year_before) as hub:
            os.environ["HF_ENDPOINT"] = hub.url
            extract_snapshot(DEMO_YEAR_BEFORE, get_settings(), allow_backdated=True)
    with FakeHub(models, accounts=accounts) as hub:
        os.environ["HF_ENDPOINT"] = hub.url
        stderr.print(f"Fake Hub serving {DEMO_SAMPLE.name} at {hub.url}")
        outcome = _run_daily(DEMO_DATE, backdate=True)
    _print_both_views(DEMO_DATE)
    if synthetic_history:
        stderr.print(
            f"The study's view (SYNTHETIC history): hubshare shares --window 365d --cohort "
            f"first_year (with HUBSHARE_DATA_DIR={data_dir})",
            highlight=False,
        )
    if "stage_seconds" in outcome:  # absent when the run published but did not finish
        stages = describe_stage_seconds(outcome["stage_seconds"], outcome.get("stage_peak_gb"))
        stderr.print(f"Stages: {stages}", highlight=False)
    stderr.print(
        f"More: hubshare shares --date {DEMO_DATE} --attribution origin --format json "
        f"(with HUBSHARE_DATA_DIR={data_dir})"
    )


#: The seed of the demo's synthetic long tail (the same tail every time).
DEMO_LONG_TAIL_SEED = 20240920
#: The synthetic tail's downloads are scaled to this fraction of all the demo's downloads, so
#: the real sample's head still carries most of them (the study's INTL bucket is 23.8 %).
DEMO_LONG_TAIL_FRACTION = 0.25


def _demo_long_tail(
    n_models: int, sample: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[Account], str]:
    """`n_models` synthetic models (no reviewed namespace, none named like a sample namespace,
    ignoring case), their accounts, and the line that says they are synthetic."""
    from hubshare.fakehub_scenarios import long_tail

    sample_namespaces = {str(model["id"]).split("/", 1)[0] for model in sample}
    tail = long_tail(
        n_models,
        seed=DEMO_LONG_TAIL_SEED,
        mapping_namespaces=[],
        reserved_namespaces=sample_namespaces,
    )
    sample_downloads = sum(int(model.get("downloads") or 0) for model in sample)
    tail_downloads = sum(int(model["downloads"]) for model in tail.models)
    scale = (
        sample_downloads * DEMO_LONG_TAIL_FRACTION / (1 - DEMO_LONG_TAIL_FRACTION) / tail_downloads
    )
    models = [
        model
        | {
            "downloads": int(model["downloads"] * scale),
            "downloadsAllTime": int(model["downloadsAllTime"] * scale),
        }
        for model in tail.models
    ]
    described = (
        f"Long tail: {n_models:,} SYNTHETIC models (not Hub data; seed {DEMO_LONG_TAIL_SEED}) "
        f"under {len(tail.users):,} unreviewed user accounts, {len(tail.orgs):,} organisations "
        f"and {len(tail.vanished):,} vanished namespaces, scaled to about "
        f"{DEMO_LONG_TAIL_FRACTION:.0%} of all downloads, served beside the real sample"
    )
    return models, list(tail.accounts), described


def _print_both_views(day: date) -> None:
    from hubshare.read_warehouse import published_shares
    from tasks.render_shares import both_views_table

    engine = _engine()
    views = {view: published_shares(engine, day, view.value) for view in Attribution}
    stdout.print(both_views_table(views[Attribution.uploader], views[Attribution.origin], day))


if __name__ == "__main__":
    main()
