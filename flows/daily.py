"""The daily flow: Hub -> raw snapshot -> countries -> quality gate -> warehouse -> shares.

Tasks pass dates, paths and ids; every intermediate result is a file in the run's folder
(`<data dir>/runs/<run_id>/`), so a retried task reads what its predecessor wrote.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import orjson
import polars as pl
from prefect import flow, get_client, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.client.schemas.actions import ArtifactCreate
from prefect.client.schemas.objects import FlowRun, State, TaskRun
from prefect.runtime import flow_run
from prefect.tasks import Task
from prefect.utilities.urls import url_for

from hubshare.errors import (
    ExtractError,
    GateFailedError,
    HubshareError,
    MappingError,
    StorageError,
    TransientExtractError,
    WarehouseError,
)
from hubshare.progress import StageTimes
from hubshare.provenance import code_version, public_endpoint
from hubshare.settings import Settings, get_settings
from hubshare.storage import DataStore
from hubshare.warehouse import (
    first_seen_dates,
    previous_published_date,
    previous_row_count,
    warehouse_engine,
)
from schemas.run import RunInputs
from schemas.warehouse import FACT_TABLES
from tasks.account_types import AccountLookups, open_account_types, update_account_types
from tasks.alert import post_alert
from tasks.enrich import (
    FACT_SNAPSHOT_COLUMNS,
    LINEAGE_SNAPSHOT_COLUMNS,
    LineageReport,
    parse_lineage,
    store_attribution,
)
from tasks.explain import explain_markdown, explain_shares
from tasks.extract import CrawlState, extract_snapshot
from tasks.inputs import open_mapping, read_window_starts, resolve_run_inputs
from tasks.load import (
    CRASHED,
    FAILED,
    MODEL_FRAME_TABLES,
    LoadResult,
    RunRecord,
    load_run,
    record_unfinished_run,
)
from tasks.mapping import archive_mapping, contested_rows
from tasks.migrate import upgrade_warehouse
from tasks.quality import (
    ROW_DROP_SETTING,
    GateThresholds,
    QualityCheck,
    QualityReport,
    check_quality,
    storage_checks,
)
from tasks.render_shares import concentration_markdown, share_table_markdown
from tasks.report import (
    read_report_data,
    report_headline_markdown,
    report_series_rows,
    save_report,
)
from tasks.review_queue import (
    FACT_COLUMNS,
    ReviewSummary,
    alert_payload,
    artifact_rows,
    review_queue,
)
from tasks.settle import (
    FINISHED_FILE,
    leave_unrecorded,
    run_folder,
    running_in,
    settle_abandoned_runs,
)
from tasks.shares import (
    DEFINITION,
    SHARE_FACT_COLUMNS,
    SHARE_SNAPSHOT_COLUMNS,
    compute_all_shares,
    share_table_sha256,
)
from tasks.snapshot import SnapshotManifest, StoredSnapshot, read_snapshot

#: great_expectations keeps one current project per process: concurrent runs (backfills) gate
#: one at a time.
GATE_LOCK = threading.Lock()


def today_utc() -> date:
    return datetime.now(UTC).date()


@dataclass(frozen=True)
class RunFiles:
    """A run's intermediate frames, in its folder of the data dir's store."""

    store: DataStore
    folder: str

    def key(self, name: str) -> str:
        return f"{self.folder}/{name}"


def run_dir(settings: Settings, run_id: str) -> RunFiles:
    return RunFiles(settings.store, run_folder(run_id))


def _write(frame: pl.DataFrame, files: RunFiles, name: str) -> None:
    files.store.write_parquet(files.key(f"{name}.parquet"), frame)


def _read(files: RunFiles, name: str, columns: list[str] | None = None) -> pl.DataFrame:
    return files.store.read_parquet(files.key(f"{name}.parquet"), columns=columns)


def _scan(files: RunFiles, name: str, held: contextlib.ExitStack) -> pl.LazyFrame:
    """A scan of the run's stored frame `name`, its local file held open by `held`."""
    key = files.key(f"{name}.parquet")
    path = held.enter_context(files.store.local_file(key))
    if path is None:
        raise FileNotFoundError(2, "No such file", files.store.where(key))
    return pl.scan_parquet(path)


def _is_transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry a crawl only for failures that may pass (network, 429/5xx beyond the HTTP retries)
    and only if the attempt stored pages: the retry resumes from the last stored page, while a
    Hub that never answered fails the run now (and alerts) rather than in ten minutes."""
    error = state.data
    return isinstance(error, TransientExtractError) and error.pages_fetched > 0


class CrawlProgress:
    """The crawl made visible in the Prefect UI: a progress artifact updated as pages arrive
    (the expected page count is estimated from the last publication) and a log line per page
    in the run's logs."""

    def __init__(self, run_date: date, settings: Settings) -> None:
        previous = previous_row_count(warehouse_engine(settings.resolved_warehouse_url), run_date)
        self.expected_pages = -(-previous // settings.page_size) if previous else None
        self.run_date = run_date
        self.models = 0
        self.updated_at = -math.inf
        self.artifact_id: UUID | None = None  # created with the first page: a stored snapshot
        self.logger = get_run_logger()  # needs no crawl, and no artifact

    def _artifact(self) -> UUID:
        if self.artifact_id is None:
            expected = (
                f"about {self.expected_pages:,} pages expected"
                if self.expected_pages
                else "no earlier publication to estimate its length"
            )
            created = create_progress_artifact(
                progress=0.0,
                key=f"crawl-{self.run_date}",
                description=f"Crawl of {self.run_date}: {expected}",
            )
            assert isinstance(created, UUID)
            self.artifact_id = created
        return self.artifact_id

    #: At most one artifact update per this many seconds (and always the last page's): one API
    #: round trip per page cost ~25 s per million models.
    UPDATE_EVERY = 2.0

    def __call__(self, state: CrawlState, models: int) -> None:
        self.models += models
        self.logger.info(
            "Page %d stored: %d models (%d requests, %d retries so far)%s",
            state.pages,
            models,
            state.requests,
            state.retries,
            " - last page" if state.done else "",
        )
        now = time.monotonic()
        if not state.done and now - self.updated_at < self.UPDATE_EVERY:
            return
        self.updated_at = now
        if state.done:
            progress = 100.0
        elif self.expected_pages:
            progress = min(99.0, 100.0 * state.pages / self.expected_pages)
        else:
            progress = 0.0
        update_progress_artifact(
            self._artifact(),
            progress=progress,
            description=f"{state.pages:,} pages, {self.models:,} models this attempt, "
            f"{state.retries} retries" + (" (done)" if state.done else ""),
        )


@task(name="extract-snapshot", retries=2, retry_delay_seconds=60, retry_condition_fn=_is_transient)
def extract_task(run_date: date, backdate: bool) -> StoredSnapshot:
    settings = get_settings()
    stored = extract_snapshot(
        run_date, settings, allow_backdated=backdate, on_page=CrawlProgress(run_date, settings)
    )
    manifest = stored.manifest
    get_run_logger().info(
        "Snapshot %s: %d public models from %d pages (%d retries, %d duplicates and %d private "
        "dropped), sha256 %s, stored by %s",
        run_date,
        manifest.row_count,
        manifest.pages,
        manifest.retries,
        manifest.duplicates_dropped,
        manifest.private_dropped,
        manifest.sha256[:12],
        stored.stored_by,
    )
    return stored


@task(name="look-up-account-types")
def accounts_task(run_date: date) -> AccountLookups:
    """Type the largest namespaces of the snapshot that have no reviewed row and no recent type,
    within HUBSHARE_NAMESPACE_LOOKUPS overview requests. Failed lookups leave namespaces untyped
    (asked again next run) and never fail the run."""
    lookups = update_account_types(get_settings(), run_date)
    get_run_logger().info("%s", lookups.describe())
    return lookups


def asks_the_hub(day: date, backdate: bool) -> bool:
    """Whether a run of `day` looks up account types: a run of today (or a crawl of today
    labelled `day`), not a backfill of past dates or an imported archive, which never talk to
    the Hub (a year of backfill would spend a year of lookup budgets)."""
    return backdate or day == today_utc()


@task(name="attribute-countries")
def enrich_task(run_id: str, inputs: RunInputs) -> LineageReport:
    settings = get_settings()
    mapping = open_mapping(inputs)
    archive_mapping(mapping, settings.store)  # so `hubshare mapping diff` can find it again
    account_types = open_account_types(settings, inputs)  # checked against its SHA-256
    rows = mapping.on(inputs.snapshot_date)  # a snapshot is attributed by the rows of its date
    # The lineage first, from the ids and tags alone; then the facts, from every column but
    # the tags: the day's largest column is never in memory with the facts.
    parsed = parse_lineage(
        read_snapshot(inputs.snapshot_date, settings, columns=list(LINEAGE_SNAPSHOT_COLUMNS))
    )
    folder = run_dir(settings, run_id)
    models: dict[str, int] = {}

    def store(name: str, frame: pl.DataFrame) -> None:
        # Written as soon as made: the facts are let go before the lineage walk.
        models[name] = frame.height
        _write(frame, folder, name)

    lineage = store_attribution(
        read_snapshot(inputs.snapshot_date, settings, columns=list(FACT_SNAPSHOT_COLUMNS)),
        rows,
        account_types,
        store,
        parsed,
    )
    del parsed
    _write(contested_rows(rows), folder, "contested")
    get_run_logger().info(
        "Attributed %d models with mapping %s (sha256 %s) and %d account types; %d declare a "
        "base, %d depth-capped, %d cycles",
        models["model_fact"],
        mapping.path.name,
        mapping.sha256[:12],
        account_types.height,
        lineage.models_with_base,
        lineage.depth_capped,
        lineage.cycles,
    )
    return lineage


@dataclass(frozen=True)
class ShareTotals:
    """What compute-shares hands on: the table's canonical hash, the headline total and what
    each window met (the run's report)."""

    shares_sha256: str
    total_downloads: int  # the headline's, uploader view
    windows: dict[str, Any]


@task(name="compute-shares")
def shares_task(run_id: str, inputs: RunInputs) -> ShareTotals:
    settings = get_settings()
    folder = run_dir(settings, run_id)
    starts = read_window_starts(settings, inputs)
    # Only the columns the shares read: a third of the day's bytes.
    snapshot = read_snapshot(inputs.snapshot_date, settings, columns=list(SHARE_SNAPSHOT_COLUMNS))
    country_share, org_share, concentration, windows = compute_all_shares(
        inputs.snapshot_date,
        snapshot,
        _read(folder, "model_fact", columns=list(SHARE_FACT_COLUMNS)),
        _read(folder, "model_origin"),
        starts,
        _read(folder, "contested"),
        mapping=open_mapping(inputs).on(inputs.snapshot_date),
    )
    _write(country_share, folder, "country_share")
    _write(org_share, folder, "org_share")
    _write(concentration, folder, "concentration")
    headline = headline_shares(country_share)
    if windows:
        get_run_logger().info(
            "Windows computed: %s",
            ", ".join(
                f"{name} from {info['start']} ({info['negative_differences']} negative differences "
                "counted as 0)"
                for name, info in windows.items()
            ),
        )
    return ShareTotals(
        shares_sha256=share_table_sha256(country_share),
        total_downloads=int(
            headline.filter(pl.col("attribution") == "uploader")["downloads"].sum()
        ),
        windows=windows,
    )


def headline_shares(country_share: pl.DataFrame) -> pl.DataFrame:
    return country_share.filter(
        (pl.col("definition") == DEFINITION) & (pl.col("cohort") == "all")
    ).drop("definition", "cohort")


def definition_sums(country_share: pl.DataFrame) -> tuple[QualityCheck, ...]:
    """Every (definition, cohort, view) table sums to 1 (or is empty of downloads)."""
    checks = []
    sums = (
        country_share.group_by("definition", "cohort", "attribution")
        .agg(pl.col("share").sum(), pl.col("downloads").sum().alias("total"))
        .sort("definition", "cohort", "attribution")
    )
    for definition, cohort, attribution, total_share, total in sums.iter_rows():
        ok = abs(total_share - 1) <= 1e-9 or total == 0
        checks.append(
            QualityCheck(
                suite=f"country_share[{definition}/{cohort}/{attribution}]",
                expectation="shares_sum_to_one",
                column="share",
                success=ok,
                observed=f"share sum {total_share:.12g}",
                expected="1 ± 1e-09 (or no downloads)",
            )
        )
    return tuple(checks)


@task(name="check-quality")
def quality_task(run_id: str, inputs: RunInputs) -> QualityReport:
    settings = get_settings()
    folder = run_dir(settings, run_id)
    run_date = inputs.snapshot_date
    thresholds = GateThresholds(
        previous_row_count=inputs.previous_row_count,
        max_row_drop=inputs.max_row_drop,
        max_unknown_share=inputs.max_unknown_share,
    )
    country_share = _read(folder, "country_share")
    model_fact, model_origin = _read(folder, "model_fact"), _read(folder, "model_origin")
    with GATE_LOCK:  # great_expectations keeps one current project per process
        gate = check_quality(model_fact, model_origin, headline_shares(country_share), thresholds)
    report = QualityReport(
        gate.checks + definition_sums(country_share) + storage_checks(model_fact, model_origin)
    )
    _write(report.to_frame(), folder, "quality")
    create_table_artifact(
        key=f"daily-quality-{run_date}",
        # Failed checks first: they are why a run was rejected.
        table=report.to_frame()
        .with_row_index("check_no", offset=1)
        .sort("success", "check_no")
        .with_columns(pl.col("success").cast(pl.String))
        .to_dicts(),
        description=f"Quality gate for {run_date} (run {run_id}): {report.summary()}",
    )
    return report


@task(name="review-queue")
def review_queue_task(run_id: str, inputs: RunInputs) -> ReviewSummary:
    """runs/<id>/review_queue.parquet and the `mapping-review-<date>` artifact: the namespaces
    without a reviewed country, largest first. Organisations without one above
    HUBSHARE_MAX_UNREVIEWED_SHARE is a warning here; the run still publishes."""
    settings = get_settings()
    folder = run_dir(settings, run_id)
    day = inputs.snapshot_date
    queue, summary = review_queue(
        _read(folder, "model_fact", columns=list(FACT_COLUMNS)),
        open_mapping(inputs).on(day),
        open_account_types(settings, inputs),
        first_seen_dates(warehouse_engine(settings.resolved_warehouse_url), day),
        day,
        settings.max_unreviewed_share,
    )
    _write(queue, folder, "review_queue")
    create_table_artifact(
        key=f"mapping-review-{day}",
        table=artifact_rows(queue),
        description=f"Review queue for {day} (run {run_id}): {summary.describe()}",
    )
    logger = get_run_logger()
    logger.info("Review queue: %s", summary.describe())
    if summary.warns:
        logger.warning("Review queue: %s", summary.warning())
    return summary


@task(name="load-warehouse", retries=2, retry_delay_seconds=10)
def load_task(record: RunRecord, published: bool, reason: str | None) -> LoadResult:
    settings = get_settings()
    folder = run_dir(settings, record.run_id)
    with contextlib.ExitStack() as files:
        facts: dict[str, pl.DataFrame | pl.LazyFrame] = {}
        for name in FACT_TABLES if published else ():
            # The per-model frames are scanned, not read: the load reads them a block at a time.
            facts[name] = (
                _scan(folder, name, files) if name in MODEL_FRAME_TABLES else _read(folder, name)
            )
        return load_run(
            warehouse_engine(settings.resolved_warehouse_url),
            record,
            facts,
            _read(folder, "quality"),
            published=published,
            reason=reason,
        )


@task(name="explain-change")
def explain_task(run_date: date) -> str | None:
    """The `daily-explain` artifact: why each share moved since the previous published date.
    Informative only: the run is already published, so a failure here is a warning."""
    settings = get_settings()
    engine = warehouse_engine(settings.resolved_warehouse_url)
    logger = get_run_logger()
    previous = previous_published_date(engine, run_date)
    if previous is None:
        logger.info("No earlier published date: nothing to explain")
        return None
    try:
        changes = explain_shares(previous, run_date, settings, engine)
    except HubshareError as err:
        logger.warning("Could not explain the change since %s: %s", previous, err)
        return None
    markdown = explain_markdown(changes, previous, run_date)
    keys = [f"daily-explain-{run_date}"] + (
        ["daily-explain"] if is_latest_published(settings, run_date) else []
    )
    for key in keys:
        create_markdown_artifact(
            key=key,
            markdown=markdown,
            description=f"Why the shares moved from {previous} to {run_date}",
        )
    return markdown


#: The report every published run refreshes, in the data dir (local or object storage).
REPORT_KEY = "reports/hubshare-report.html"


@task(name="write-report")
def report_task(run_date: date) -> str | None:
    """Refresh `<data dir>/reports/hubshare-report.html` (every published date) and publish what
    it shows to Prefect: the `daily-report-<date>` headline table and the
    `daily-report-series-<date>` chart data (a worker's file path opens nothing in the UI).
    Informative only: a failure here is a warning."""
    settings = get_settings()
    store = settings.store
    out = store.where(REPORT_KEY)
    try:
        engine = warehouse_engine(settings.resolved_warehouse_url)
        data = read_report_data(engine, None, None, store)
        store.write_file(REPORT_KEY, lambda tmp: save_report(data, tmp))
    except HubshareError as err:
        get_run_logger().warning("Could not write the report: %s", err)
        return None
    create_markdown_artifact(
        key=f"daily-report-{run_date}",
        markdown=report_headline_markdown(data, REPORT_KEY),
        description=f"Report refreshed by the run of {run_date}: the latest shares and their "
        "change over the published dates",
    )
    create_table_artifact(
        key=f"daily-report-series-{run_date}",
        table=report_series_rows(data),
        description=f"The report's charts as data, up to {run_date}: each charted bucket's "
        "share and range per view and date",
    )
    return str(out)


def is_latest_published(settings: Settings, day: date) -> bool:
    """Whether `day` is the latest published date (a backfill of an older date is not)."""
    engine = warehouse_engine(settings.resolved_warehouse_url)
    return previous_published_date(engine, date.max) == day


def _run_date_of(flow_run: FlowRun) -> date:
    value = flow_run.parameters.get("run_date")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return date.fromisoformat(value[:10])
    started = flow_run.start_time or datetime.now(UTC)
    return started.astimezone(UTC).date()


def _error(state: State[Any]) -> BaseException | None:
    """The exception that ended the run, when it can be read."""
    try:
        error = state.result(raise_on_failure=False)
    except Exception:  # noqa: BLE001 - a result that cannot be read still leaves the message
        return None
    return error if isinstance(error, BaseException) else None


def _reason(state: State[Any]) -> str:
    """The exception that ended the run, in one line (the state message otherwise)."""
    error = _error(state)
    text = str(error) if error is not None else (state.message or "")
    return (text.splitlines() or [state.name or "unknown"])[0]


def what_to_do(error: BaseException | None, day: date, crashed: bool) -> str:
    """What an operator does about a run that did not publish, by what ended it."""
    again = f"`hubshare run --date {day}`"
    if crashed:
        return (
            "The process ended mid-run (killed, out of memory, a worker lost). Run the date "
            f"again ({again}); the next run records this one as crashed if it could not."
        )
    if isinstance(error, GateFailedError):
        return (
            "Nothing was published: the failed checks are listed first in the "
            f"`daily-quality-{day}` artifact. Fix the cause (a mapping row, the Hub's data), "
            f"or if the data is right raise the setting the check names ({ROW_DROP_SETTING}, "
            f"HUBSHARE_MAX_UNKNOWN_SHARE) for one run: {again} gates the stored snapshot again."
        )
    if isinstance(error, TransientExtractError):
        return (
            "The Hub did not answer in time (network, HTTP 429 or 5xx beyond the retries). "
            f"Check that HF_ENDPOINT is reachable, then {again}: the crawl resumes from its "
            "last stored page."
        )
    if isinstance(error, ExtractError):
        return (
            "The Hub refused the crawl or sent what the crawl cannot store (the reason names "
            f"the URL). Check HF_TOKEN and HF_ENDPOINT, then {again}."
        )
    if isinstance(error, MappingError):
        return f"Fix the mapping file (`hubshare mapping check` names the row), then {again}."
    if isinstance(error, WarehouseError):
        return (
            "Check that HUBSHARE_WAREHOUSE_URL's database is up and writable, then "
            f"{again} (`hubshare runs` lists what was recorded)."
        )
    if isinstance(error, StorageError):
        return (
            "Check HUBSHARE_DATA_DIR (space, permissions, object storage credentials), then "
            f"{again}."
        )
    return f"Run the date again with `hubshare --debug run --date {day}` to see the traceback."


def failure_markdown(
    day: date, status: str, version: int | None, flow_run: FlowRun, reason: str, advice: str
) -> str:
    """The `daily-failure-<date>` artifact: why the run did not publish, and what to do."""
    what = f"version {version}" if version is not None else "not recorded in the warehouse yet"
    return (
        f"# Run of {day} {status}: nothing published\n\n"
        f"**Reason:** {reason}\n\n"
        f"**What to do:** {advice}\n\n"
        f"Run `{flow_run.id}` ({what}) · flow run `{flow_run.name}` · "
        "`hubshare runs --date "
        f"{day}` lists its runs\n"
    )


def record_and_announce(flow: Any, flow_run: FlowRun, state: State[Any]) -> None:
    """on_failure / on_crashed hook: every run that started gets its `etl_run` row (a rejected
    run has it already), and `HUBSHARE_ALERT_WEBHOOK_URL` gets a JSON summary."""
    settings = get_settings()
    day = _run_date_of(flow_run)
    status = CRASHED if state.is_crashed() else FAILED
    reason = _reason(state)
    url = url_for(flow_run)
    try:
        recorded = record_unfinished_run(
            warehouse_engine(settings.resolved_warehouse_url),
            run_id=str(flow_run.id),
            snapshot_date=day,
            flow_run_id=str(flow_run.id),
            started_at=flow_run.start_time or datetime.now(UTC),
            status=status,
            reason=reason,
            parameters={"run_date": day.isoformat()},
        )
        status, version = recorded.status, recorded.version
    except HubshareError as err:
        version = None
        logging.getLogger(__name__).error("Could not record the %s run: %s", status, err)
        # (a locked or unreachable warehouse) the next run records it from the run's folder.
        leave_unrecorded(
            settings.store,
            str(flow_run.id),
            {
                "snapshot_date": day.isoformat(),
                "flow_run_id": str(flow_run.id),
                "started_at": (flow_run.start_time or datetime.now(UTC)).isoformat(),
                "parameters": {"run_date": day.isoformat()},
            },
            status,
            reason,
        )
    advice = what_to_do(_error(state), day, crashed=state.is_crashed())
    try:
        # Through the client, naming the flow run: a crash hook runs outside the run's context.
        with get_client(sync_client=True) as client:
            client.create_artifact(
                ArtifactCreate(
                    key=f"daily-failure-{day}",
                    type="markdown",
                    data=failure_markdown(day, status, version, flow_run, reason, advice),
                    description=f"Why the run of {day} did not publish, and what to do",
                    flow_run_id=flow_run.id,
                )
            )
    except Exception as err:  # noqa: BLE001 - the Prefect API gone: the alert still goes out
        logging.getLogger(__name__).warning("Could not create the failure artifact: %s", err)
    if settings.alert_webhook_url is not None:
        post_alert(
            settings.alert_webhook_url.get_secret_value(),
            {
                "snapshot_date": day.isoformat(),
                "run_id": str(flow_run.id),
                "flow_run_id": str(flow_run.id),
                "flow_run_name": flow_run.name,
                "flow_run_url": url,
                "version": version,
                "status": status,
                "reason": reason,
                "what_to_do": advice,
            },
        )


@dataclass(frozen=True)
class Publication:
    """A version this process published (loaded into the warehouse, the date's pointer moved)."""

    snapshot_date: date
    version: int
    run_id: str
    shares_sha256: str
    raw_sha256: str


#: Every version published in this process, in order: a command whose run fails after its load
#: (the Prefect API gone, a late artifact) still says the version is published and exits 0, so a
#: retrying script does not make another version.
PUBLISHED_IN_THIS_PROCESS: list[Publication] = []


def daily_run_name() -> str:
    run_date = flow_run.parameters.get("run_date")
    return f"daily-{run_date or today_utc()}"


@flow(
    name="daily",
    flow_run_name=daily_run_name,
    on_failure=[record_and_announce],
    on_crashed=[record_and_announce],
)
def daily(run_date: date | None = None, backdate: bool = False) -> dict[str, Any]:
    """Run the pipeline for `run_date` (default: today, UTC). Publishes only if the quality gate
    passes; a second run of a date becomes its next version.

    Args:
        run_date: Snapshot date, YYYY-MM-DD; empty for today (UTC). A date without a stored raw
            snapshot is crawled only if it is today, unless `backdate`.
        backdate: Label today's crawl with another `run_date` on purpose (the Hub keeps no
            history: the counters will be today's).
    """
    settings = get_settings()
    day = run_date or today_utc()
    # The flow run's id, so that a failure hook records the same run; a fresh id outside Prefect.
    run_id = str(flow_run.id) if flow_run.id else str(uuid.uuid4())
    started_at = datetime.now(UTC)
    started = {
        "run_id": run_id,
        "snapshot_date": day.isoformat(),
        "flow_run_id": str(flow_run.id) if flow_run.id else None,
        "started_at": started_at.isoformat(),
        "parameters": {"run_date": day.isoformat(), "backdate": backdate},
    }
    with running_in(settings.store, run_folder(run_id), started, settings.lease_seconds):
        # Once, before anything reads it: the reads of the run never migrate.
        upgrade_warehouse(warehouse_engine(settings.resolved_warehouse_url))
        settled = settle_task(run_id)
        return _run(settings, day, backdate, run_id, started_at) | {"settled": settled}


@task(name="settle-abandoned-runs")
def settle_task(run_id: str) -> list[str]:
    """Runs of this data dir whose process died: recorded as crashed, marked crashed in Prefect,
    their folders removed (the module tasks.settle says how a dead run is told apart)."""
    settled = [run.describe() for run in settle_abandoned_runs(get_settings(), run_id)]
    for line in settled:
        get_run_logger().warning("Settled an %s", line)
    return settled


def _run(
    settings: Settings, day: date, backdate: bool, run_id: str, started_at: datetime
) -> dict[str, Any]:
    logger = get_run_logger()
    logger.info("Run %s for %s against %s", run_id, day, public_endpoint(settings.hf_endpoint))

    times = StageTimes()
    with times.stage("crawl"):
        stored = extract_task.with_options(
            retries=settings.extract_task_retries,
            retry_delay_seconds=settings.extract_task_retry_delay,
        )(day, backdate)
    with times.stage("accounts"):
        if asks_the_hub(day, backdate):
            accounts_task(day)
        else:
            logger.info(
                "Account types: a run of past date %s reads the registry as it is (no lookups)",
                day,
            )
    with times.stage("inputs"):
        inputs = resolve_run_inputs(
            settings,
            day,
            stored.manifest.sha256,
            backdate=backdate,
            previous_row_count=previous_row_count(
                warehouse_engine(settings.resolved_warehouse_url), day
            ),
        )
    with times.stage("attribute"):
        lineage = enrich_task(run_id, inputs)
    with times.stage("shares"):
        shares = shares_task(run_id, inputs)
    with times.stage("gate"):
        gate = quality_task(run_id, inputs)
    with times.stage("review"):
        review = review_queue_task(run_id, inputs)
    record = run_record(run_id, started_at, inputs, stored.manifest, lineage, shares)
    with times.stage("load"):
        loaded = load_task(record, gate.success, None if gate.success else gate.summary())
    if gate.success:
        PUBLISHED_IN_THIS_PROCESS.append(
            Publication(day, loaded.version, run_id, record.shares_sha256, record.raw_sha256)
        )
    folder = run_dir(settings, run_id)
    folder.store.put(
        folder.key(FINISHED_FILE),
        orjson.dumps(asdict(record) | asdict(loaded), option=orjson.OPT_INDENT_2, default=str),
    )
    publish_share_artifacts(settings, folder, record, loaded, gate.success)
    if not gate.success:
        logger.info("Stage times: %s", times.describe())
        raise GateFailedError(
            f"{day} run {run_id} (version {loaded.version}) was rejected by the quality gate and "
            f"nothing was published: {gate.summary()}"
        )
    logger.info("Published %s version %d (run %s)", day, loaded.version, run_id)
    if review.warns and settings.alert_webhook_url is not None:
        post_alert(
            settings.alert_webhook_url.get_secret_value(),
            alert_payload(review, day, run_id, record.flow_run_id),
        )
    with times.stage("explain"):
        explain_task(day)
    with times.stage("report"):
        report_task(day)
    logger.info("Stage times: %s", times.describe())
    logger.info(
        "Peak RSS at the end of each stage: %s",
        ", ".join(f"{name} {gb:.2f} GB" for name, gb in times.peak_gb.items()),
    )
    return asdict(loaded) | {
        "shares_sha256": record.shares_sha256,
        "raw_sha256": record.raw_sha256,
        "raw_stored_by": stored.stored_by,
        "stage_seconds": times.seconds,
        "stage_peak_gb": times.peak_gb,
    }


#: The crawl's facts kept in the run's report (the rest of its manifest is in the raw folder).
CRAWL_REPORT_FIELDS = (
    "source",
    "pages",
    "requests",
    "retries",
    "resumes",
    "crawl_started_at",
    "crawl_finished_at",
)


def run_record(
    run_id: str,
    started_at: datetime,
    inputs: RunInputs,
    manifest: SnapshotManifest,
    lineage: LineageReport,
    shares: ShareTotals,
) -> RunRecord:
    """The run's `etl_run` row: its inputs, the snapshot's counts and what the stages found."""
    return RunRecord(
        run_id=run_id,
        snapshot_date=inputs.snapshot_date,
        flow_run_id=str(flow_run.id) if flow_run.id else None,
        started_at=started_at,
        code_version=code_version(),
        definition=DEFINITION,
        raw_sha256=inputs.raw_sha256,
        mapping_sha256=inputs.mapping_sha256,
        shares_sha256=shares.shares_sha256,
        row_count=manifest.row_count,
        rows_listed=manifest.rows_listed,
        duplicates_dropped=manifest.duplicates_dropped,
        private_dropped=manifest.private_dropped,
        total_downloads=shares.total_downloads,
        parameters=inputs.to_parameters(),
        report={
            "windows": shares.windows,
            "lineage": asdict(lineage),
            "crawl": {name: getattr(manifest, name) for name in CRAWL_REPORT_FIELDS},
        },
    )


def publish_share_artifacts(
    settings: Settings, folder: RunFiles, record: RunRecord, loaded: LoadResult, published: bool
) -> None:
    """The `daily-shares-<date>` artifact of every run; `daily-shares` only for a published run
    of the latest date, so "latest" never shows a rejected table or an older backfilled date."""
    day = record.snapshot_date
    status = "published" if published else "REJECTED by the quality gate"
    markdown = (
        share_table_markdown(
            headline_shares(_read(folder, "country_share")),
            f"Download share by developer country, {day} (v{loaded.version}, {status})",
        )
        + concentration_markdown(_read(folder, "concentration"))
        + f"\n\nRun `{record.run_id}` · {record.row_count:,} public models · "
        f"{record.total_downloads:,} downloads (30 days) · raw `{record.raw_sha256[:12]}` · "
        f"mapping `{record.mapping_sha256[:12]}` · shares `{record.shares_sha256[:12]}`"
    )
    is_latest = is_latest_published(settings, day)
    keys = [f"daily-shares-{day}"] + (["daily-shares"] if published and is_latest else [])
    for key in keys:
        create_markdown_artifact(
            key=key, markdown=markdown, description=f"Shares for {day}, version {loaded.version}"
        )
