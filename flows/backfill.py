"""Backfill: re-run attribution -> gate -> load -> shares for a range of dates from their stored
raw snapshots (the past is never crawled again), one child flow run per date."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import islice
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.urls import url_for

from flows.daily import daily
from hubshare.errors import HubshareError, SnapshotError
from hubshare.progress import BACKFILL_DATE, BACKFILL_URL
from hubshare.provenance import code_version
from hubshare.read_warehouse import list_runs
from hubshare.settings import Settings, get_settings
from hubshare.warehouse import published_runs_between, warehouse_engine
from schemas.run import RunInputs
from tasks.inputs import resolve_run_inputs
from tasks.mapping import load_mapping
from tasks.migrate import upgrade_warehouse
from tasks.snapshot import recorded_manifest

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun


def dates_between(start: date, end: date) -> list[date]:
    """Every date from start to end, both included."""
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def current_inputs(settings: Settings, day: date) -> RunInputs | None:
    """What a run of `day` would read now, or None when the date has no raw snapshot (read
    from the manifests: hashing every snapshot of the range would cost more than re-running)."""
    manifest = recorded_manifest(settings.store, day)
    if manifest is None:
        return None
    # No gate runs on this comparison: it has no previous row count to read.
    return resolve_run_inputs(settings, day, manifest.sha256, previous_row_count=None, verify=False)


@dataclass(frozen=True)
class PublishedInputs:
    """What the published run of a date read, and the code that read it."""

    inputs: RunInputs
    code_version: str


def published_inputs(settings: Settings, start: date, end: date) -> dict[date, PublishedInputs]:
    """The inputs of the published run of each date in the range."""
    engine = warehouse_engine(settings.resolved_warehouse_url)
    upgrade_warehouse(engine)  # a backfill writes: the warehouse it reads first is this code's
    found = {}
    for row in published_runs_between(engine, start, end):
        inputs = RunInputs.from_run_row(row)
        found[inputs.snapshot_date] = PublishedInputs(inputs, row["code_version"])
    return found


def is_done(published: PublishedInputs | None, now: RunInputs, mapping_only: bool) -> bool:
    """A date is done when its published run read the same inputs (those that decide the
    shares); with mapping_only, a code change alone does not make it due (re-run only what a
    mapping change moved)."""
    if published is None:
        return False
    same_inputs = published.inputs.deciding_shares() == now.deciding_shares()
    return same_inputs and (mapping_only or published.code_version == code_version())


@task(name="rerun-date", task_run_name="rerun-{day}")
def rerun_date(day: date) -> dict[str, Any]:
    """One child flow run of the daily flow, named by its date; never crawls (the raw snapshot
    exists, and the daily flow reuses a stored snapshot)."""
    try:
        outcome = daily.with_options(flow_run_name=f"backfill-{day}")(run_date=day)
    except HubshareError as err:
        return {"snapshot_date": day.isoformat(), "status": "failed", "reason": str(err)}
    return {
        "snapshot_date": day.isoformat(),
        "status": outcome["status"],
        "version": outcome["version"],
        "run_id": outcome["run_id"],
    }


#: The deployment a backfill on the work pool fans out to (deployments/prefect.yaml).
DAILY_DEPLOYMENT = "daily/hubshare-daily"


@task(name="submit-date", task_run_name="submit-{day}")
def submit_date(day: date) -> dict[str, Any]:
    """One run of the daily deployment for `day`, taken by any worker of its pool, linked to
    this backfill in the UI; waits for it to end."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    try:
        # Called from a synchronous task: it returns the ended flow run, not a coroutine.
        child = cast(
            "FlowRun",
            run_deployment(
                DAILY_DEPLOYMENT,
                parameters={"run_date": day.isoformat()},
                timeout=None,
                # Prefect looks every 5 s by default: seconds lost per date in a backfill.
                poll_interval=1,
                as_subflow=True,
            ),
        )
    except ObjectNotFound:
        raise HubshareError(
            f"no deployment {DAILY_DEPLOYMENT} on this Prefect server: deploy it first "
            "(prefect deploy --all --prefect-file deployments/prefect.yaml)"
        ) from None
    state = child.state
    if state is None or not state.is_completed():
        name = state.name if state is not None else "no state"
        message = (state.message if state is not None else None) or ""
        return {
            "snapshot_date": day.isoformat(),
            "status": "failed",
            "reason": f"flow run {child.name}: {name} {message}".strip(),
        }
    version, run_id = _published_run(day)
    return {
        "snapshot_date": day.isoformat(),
        "status": "published",
        "version": version,
        "run_id": run_id,
    }


def _published_run(day: date) -> tuple[int, str]:
    """The published (version, run_id) of `day`: what a completed daily run left."""
    runs = list_runs(warehouse_engine(get_settings().resolved_warehouse_url), day)
    published = runs.row(by_predicate=pl.col("published"), named=True)
    return int(published["version"]), str(published["run_id"])


@flow(name="backfill", flow_run_name="backfill-{start}..{end}")
def backfill(
    start: date,
    end: date,
    force: bool = False,
    mapping_only: bool = False,
    on_pool: bool = False,
) -> dict[str, Any]:
    """Re-run every date in [start, end] that has a stored raw snapshot, unless its published
    run already read the same inputs (`force` re-runs anyway). Safe to interrupt: each date is
    one transaction, and a second backfill skips what the first finished.

    Args:
        start: First date, YYYY-MM-DD.
        end: Last date (included), YYYY-MM-DD.
        force: Re-run dates already done with the same inputs.
        mapping_only: Re-run only dates whose published run used another mapping (or other raw
            inputs); a code change alone is not enough.
        on_pool: Run each date as a run of the daily deployment on its work pool (any worker,
            any machine) instead of in this process.
    """
    if end < start:
        raise HubshareError(f"backfill {start}..{end}: the end precedes the start")
    settings = get_settings()
    logger = get_run_logger()
    load_mapping(settings.mapping_path)  # a bad mapping fails before any date runs
    published = published_inputs(settings, start, end)
    due, skipped, missing = [], [], []
    for day in dates_between(start, end):
        now = current_inputs(settings, day)
        if now is None:
            missing.append(day.isoformat())
        elif not force and is_done(published.get(day), now, mapping_only):
            skipped.append(day.isoformat())
        else:
            due.append(day)
    if not due and not skipped:
        raise SnapshotError(
            f"backfill {start}..{end}: none of its {len(missing)} date(s) has a raw snapshot "
            f"under {settings.store.where('raw')}: nothing to re-run (the past is never crawled; "
            "check the dates and HUBSHARE_DATA_DIR)"
        )
    if missing:
        logger.warning(
            "No raw snapshot for %d date(s), not re-run: %s", len(missing), ", ".join(missing)
        )
    logger.info(
        "Backfill %s..%s: %d due, %d already done with the same inputs",
        start,
        end,
        len(due),
        len(skipped),
    )
    # At most HUBSHARE_BACKFILL_CONCURRENCY dates at once on PostgreSQL, one on SQLite (a
    # single writer), however the flow was started (CLI, deployment, `hubshare serve`); the
    # next date starts as soon as one ends, not when a whole batch has.
    run_one = submit_date if on_pool else rerun_date
    progress = BackfillProgress(start, end, len(due))
    for done in skipped:
        progress.ended({"snapshot_date": done, "status": "skipped", "reason": SAME_INPUTS})
    waiting = iter(due)
    running = {run_one.submit(day) for day in islice(waiting, concurrency(settings))}
    results = []
    while running:
        ended: PrefectFuture[dict[str, Any]] = next(as_completed(list(running)))
        running.remove(ended)
        results.append(ended.result())
        progress.ended(results[-1])
        following = next(waiting, None)
        if following is not None:
            running.add(run_one.submit(following))
    results.sort(key=lambda result: str(result["snapshot_date"]))
    failed = [r for r in results if r["status"] != "published"]
    progress.summarize(missing)
    return {"runs": results, "skipped": skipped, "missing": missing, "failed": len(failed)}


#: Why a date is skipped (the `reason` of its summary row).
SAME_INPUTS = "already done with the same inputs"


class BackfillProgress:
    """The backfill made visible: its flow run's URL and a line per date as it ends in the
    logs (the CLI prints those records, hubshare.progress), a progress artifact over the due
    dates, and a summary table artifact with the "n published / m failed / k skipped" line."""

    def __init__(self, start: date, end: date, due: int) -> None:
        self.logger = get_run_logger()
        self.span = f"{start}..{end}"
        self.due = due
        self.done = 0
        self.rows: list[dict[str, str]] = []
        url = url_for("flow-run", obj_id=flow_run.id) if flow_run.id else None
        if url is not None:
            self.logger.info("Backfill flow run: %s", url, extra={BACKFILL_URL: url})
        created = create_progress_artifact(
            progress=0.0 if due else 100.0,
            description=f"Backfill {self.span}: 0 of {due} due date(s) ended",
        )
        assert isinstance(created, UUID)
        self.artifact_id = created

    def ended(self, result: dict[str, Any]) -> None:
        """One date ended (or was skipped): its line, and the progress of the due dates."""
        day, status = str(result["snapshot_date"]), str(result["status"])
        if "version" in result:
            detail = f"v{result['version']} (run {result['run_id']})"
        else:
            detail = str(result.get("reason", ""))
        self.rows.append(
            {
                "date": day,
                "outcome": status,
                "version": str(result.get("version", "")),
                "run_id": str(result.get("run_id", "")),
                "reason": str(result.get("reason", "")),
            }
        )
        level = logging.WARNING if status not in ("published", "skipped") else logging.INFO
        self.logger.log(level, "%s: %s %s", day, status, detail, extra={BACKFILL_DATE: day})
        if status == "skipped":
            return
        self.done += 1
        update_progress_artifact(
            self.artifact_id,
            progress=100.0 * self.done / self.due,
            description=f"Backfill {self.span}: {self.done} of {self.due} due date(s) ended",
        )

    def summarize(self, missing: list[str]) -> None:
        counts = Counter(row["outcome"] for row in self.rows)
        published, skipped = counts["published"], counts["skipped"]
        failed = sum(counts.values()) - published - skipped
        line = f"{published} published / {failed} failed / {skipped} skipped"
        rows = sorted(self.rows, key=lambda row: row["date"])
        rows += [
            {"date": day, "outcome": "missing", "version": "", "run_id": "", "reason": NO_RAW}
            for day in missing
        ]
        create_table_artifact(
            key="backfill-summary",
            table=rows,
            description=f"Backfill {self.span}: {line}"
            + (f", {len(missing)} without a raw snapshot" if missing else ""),
        )
        self.logger.info("Backfill %s: %s", self.span, line)


#: Why a date without a raw snapshot is not re-run (the past is never crawled).
NO_RAW = "no raw snapshot"


def concurrency(settings: Settings) -> int:
    """Dates run at once: HUBSHARE_BACKFILL_CONCURRENCY on PostgreSQL, one on SQLite."""
    if settings.resolved_warehouse_url.startswith("sqlite"):
        return 1
    return max(settings.backfill_concurrency, 1)


def backfill_with_limit(
    start: date, end: date, force: bool, mapping_only: bool, on_pool: bool = False
) -> dict[str, Any]:
    """The backfill flow with a thread pool sized to its concurrency."""
    runner: Any = ThreadPoolTaskRunner(max_workers=concurrency(get_settings()))
    return backfill.with_options(task_runner=runner)(
        start=start, end=end, force=force, mapping_only=mapping_only, on_pool=on_pool
    )
