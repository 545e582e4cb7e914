"""Runs whose process died without a word (SIGKILL, power loss, OOM killer) are settled by the
next run: recorded as crashed in the warehouse, marked crashed in Prefect, their folder removed.

A live run holds its run folder's `.running` lock and writes `started.json` only once it holds
it; a finished run (published, rejected or failed) writes `run.json`. So a folder with
`started.json`, without `run.json`, whose lock can be taken, belongs to a dead process. A run
that failed while the warehouse refused its row (locked, unreachable) leaves `unrecorded.json`
(its status and reason): the next run records it too, so every run that started has its row. On a
local disk the lock is an exclusive `flock` (the kernel drops it when the process dies, however
it dies); on object storage a lease the run renews while it lives (hubshare.storage.Lease), so a
dead run is settled once its lease has expired (`HUBSHARE_LEASE_SECONDS`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import orjson

from hubshare.errors import HubshareError, LeaseLostError
from hubshare.settings import Settings
from hubshare.storage import DataStore, hold
from hubshare.warehouse import warehouse_engine
from tasks.load import CRASHED, record_unfinished_run

LOCK_FILE = ".running"
STARTED_FILE = "started.json"
FINISHED_FILE = "run.json"
#: Written by a run's failure hook when the warehouse refused its `etl_run` row (locked,
#: unreachable): the next run records it from this file.
UNRECORDED_FILE = "unrecorded.json"
RUNS = "runs"

logger = logging.getLogger(__name__)


def run_folder(run_id: str) -> str:
    """The key prefix of a run's files (intermediate frames, start and end records)."""
    return f"{RUNS}/{run_id}"


@contextmanager
def running_in(
    store: DataStore, folder: str, started: dict[str, Any], lease_seconds: float
) -> Iterator[None]:
    """Hold the run folder's lock while the run lives, then let it go. On object storage a run
    whose lease was lost (settled as dead by another run) writes nothing more in its folder."""
    with hold(store, f"{folder}/{LOCK_FILE}", lease_seconds, wait=True):
        try:
            store.put(f"{folder}/{STARTED_FILE}", orjson.dumps(started, default=str))
        except OSError:
            store.delete_folder(folder)  # (a full disk) leave nothing to settle
            raise
        try:
            yield
        except BaseException as err:
            # Ended by an error: its failure hook records it, not the next run. A rejected run
            # has written its full record already. A folder whose lease was lost is another's.
            finished = f"{folder}/{FINISHED_FILE}"
            with suppress(LeaseLostError):
                if not store.exists(finished):
                    store.put(finished, orjson.dumps({"ended_by": type(err).__name__}))
            raise


@contextmanager
def _lock_if_free(store: DataStore, folder: str, lease_seconds: float) -> Iterator[bool]:
    with hold(store, f"{folder}/{LOCK_FILE}", lease_seconds, make_folder=False) as holder:
        yield holder is None


@dataclass(frozen=True)
class SettledRun:
    run_id: str
    snapshot_date: date
    started_at: datetime
    version: int | None
    status: str
    prefect_marked_crashed: bool
    unrecorded: bool = False  # failed while the warehouse refused its row (not killed)

    def describe(self) -> str:
        recorded = (
            f"recorded as version {self.version} {self.status}"
            if self.version
            else "not recorded (the warehouse refused)"
        )
        prefect = "; its Prefect run marked Crashed" if self.prefect_marked_crashed else ""
        folder = "its folder removed" if self.version else "its folder kept for the next run"
        kind = "unrecorded" if self.unrecorded else "abandoned"
        return (
            f"{kind} run {self.run_id} of {self.snapshot_date} (started "
            f"{self.started_at:%Y-%m-%d %H:%M:%S} UTC): {recorded}{prefect}; {folder}"
        )


def leave_unrecorded(
    store: DataStore, run_id: str, started: dict[str, Any], status: str, reason: str
) -> None:
    """What the next run needs to record a run whose row the warehouse refused (`started`: the
    keys of `started.json`)."""
    record = started | {"run_id": run_id, "status": status, "reason": reason}
    try:
        store.put(f"{run_folder(run_id)}/{UNRECORDED_FILE}", orjson.dumps(record, default=str))
    except OSError as err:  # (the data dir fails too) the run's own error is the one to show
        logger.error("Could not leave %s for run %s: %s", UNRECORDED_FILE, run_id, err)


def abandoned_run_folders(settings: Settings, current_run_id: str) -> list[str]:
    """Run folders (key prefixes) with a start record and no end record, or left unrecorded,
    other than ours."""
    files: dict[str, set[str]] = {}
    for key in settings.store.keys(RUNS):
        parts = key.split("/")
        if len(parts) == 3:  # runs/<run id>/<file>
            files.setdefault(parts[1], set()).add(parts[2])
    return sorted(
        run_folder(run_id)
        for run_id, names in files.items()
        if run_id != current_run_id
        and (UNRECORDED_FILE in names or (STARTED_FILE in names and FINISHED_FILE not in names))
    )


def settle_abandoned_runs(settings: Settings, current_run_id: str) -> list[SettledRun]:
    """Settle every abandoned run folder of this data dir (see the module's docstring)."""
    store = settings.store
    settled = []
    for folder in abandoned_run_folders(settings, current_run_id):
        with _lock_if_free(store, folder, settings.lease_seconds) as free:
            unrecorded = store.get(f"{folder}/{UNRECORDED_FILE}") if free else None
            started_file = unrecorded or (store.get(f"{folder}/{STARTED_FILE}") if free else None)
            if started_file is None:  # alive, or just settled
                continue
            try:
                started = orjson.loads(started_file)
            except orjson.JSONDecodeError as err:
                logger.warning(
                    "Removed run folder %s: its %s is unreadable (%s)",
                    store.where(folder),
                    UNRECORDED_FILE if unrecorded else STARTED_FILE,
                    err,
                )
            else:
                run = _settle(settings, folder, started, current_run_id)
                settled.append(run)
                if run.version is None:  # the warehouse refused again: the next run retries
                    continue
        store.delete_folder(folder)
    return settled


def _settle(
    settings: Settings, folder: str, started: dict[str, Any], current_run_id: str
) -> SettledRun:
    run_id = folder.rsplit("/", 1)[1]
    day = date.fromisoformat(started["snapshot_date"])
    started_at = datetime.fromisoformat(started["started_at"])
    now = f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"
    if "reason" in started:  # a failed run whose row the warehouse refused
        reason = f"{started['reason']} (recorded by run {current_run_id} at {now})"
    else:
        reason = (
            "abandoned: its process stopped without finishing (killed or lost); settled by run "
            f"{current_run_id} at {now}"
        )
    try:
        recorded = record_unfinished_run(
            warehouse_engine(settings.resolved_warehouse_url),
            run_id=run_id,
            snapshot_date=day,
            flow_run_id=started.get("flow_run_id"),
            started_at=started_at,
            status=started.get("status", CRASHED),
            reason=reason,
            parameters=started.get("parameters", {}),
        )
        version, status = recorded.version, recorded.status
    except HubshareError as err:
        logger.warning("Could not record abandoned run %s: %s", run_id, err)
        version, status = None, started.get("status", CRASHED)
    flow_run_id = started.get("flow_run_id")
    marked = _mark_crashed_in_prefect(UUID(flow_run_id), reason) if flow_run_id else False
    return SettledRun(run_id, day, started_at, version, status, marked, "reason" in started)


def _mark_crashed_in_prefect(flow_run_id: UUID, reason: str) -> bool:
    """Set the flow run and its unfinished task runs Crashed, if Prefect still shows them
    running; False if it does not (or this Prefect API never saw the run)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        try:
            flow_run = client.read_flow_run(flow_run_id)
        except ObjectNotFound:
            return False
        if flow_run.state is None or flow_run.state.is_final():
            return False
        for task_run in client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        ):
            if task_run.state is not None and not task_run.state.is_final():
                client.set_task_run_state(task_run.id, Crashed(message=reason), force=True)
        client.set_flow_run_state(flow_run_id, Crashed(message=reason), force=True)
    return True
