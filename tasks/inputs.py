"""Resolve what a run reads (schemas.run.RunInputs) in one place, and open those inputs.

The daily flow, a backfill deciding which dates are due and ad-hoc windows all resolve here, so
an input is produced once: a run, and the comparison that decides whether to re-run it, cannot
read different things.
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from hubshare.errors import MappingError
from hubshare.provenance import public_endpoint, sha256_file
from hubshare.settings import Settings
from schemas.run import RunInputs
from tasks.account_types import freeze_account_types
from tasks.mapping import Mapping, load_mapping
from tasks.snapshot import read_snapshot, recorded_manifest, stored_snapshot
from tasks.windows import STANDARD_WINDOWS


def standard_window_starts(
    settings: Settings, day: date, *, verify: bool = True
) -> dict[date, str]:
    """SHA-256 of the stored snapshots that the standard windows ending on `day` start from.
    `verify` hashes each file against its manifest; without it only the manifests are read (a
    backfill compares every date of its range this way)."""
    found: dict[date, str] = {}
    for days in STANDARD_WINDOWS:
        start = day - timedelta(days=days)
        manifest = (
            stored_snapshot(start, settings) if verify else recorded_manifest(settings.store, start)
        )
        if manifest is not None:
            found[start] = manifest.sha256
    return found


def _mapping_sha256(settings: Settings) -> str:
    try:
        return sha256_file(settings.mapping_path)
    except OSError as err:
        raise MappingError(
            f"{settings.mapping_path}: cannot read the mapping file ({err})"
        ) from None


def resolve_run_inputs(
    settings: Settings,
    day: date,
    raw_sha256: str,
    *,
    previous_row_count: int | None,
    backdate: bool = False,
    window_starts: dict[date, str] | None = None,
    verify: bool = True,
) -> RunInputs:
    """What a run of `day` reads now, given its raw snapshot's SHA-256.

    `previous_row_count` is the gate's reference, read from the warehouse by the caller that
    gates (None where nothing is gated). `window_starts` defaults to the standard windows'
    stored snapshots (checked against their manifests if `verify`). The account types are the
    registry's rows for the snapshot's namespaces now, frozen (tasks.account_types)."""
    if window_starts is None:
        window_starts = standard_window_starts(settings, day, verify=verify)
    return RunInputs(
        snapshot_date=day,
        backdate=backdate,
        raw_sha256=raw_sha256,
        mapping_path=settings.mapping_path,
        mapping_sha256=_mapping_sha256(settings),
        window_starts=window_starts,
        endpoint=public_endpoint(settings.hf_endpoint),
        page_size=settings.page_size,
        max_row_drop=settings.max_row_drop,
        max_unknown_share=settings.max_unknown_share,
        previous_row_count=previous_row_count,
        account_types_sha256=freeze_account_types(settings, day),
    )


def open_mapping(inputs: RunInputs) -> Mapping:
    """The run's mapping, validated, and the very file its inputs recorded."""
    mapping = load_mapping(inputs.mapping_path)
    if mapping.sha256 != inputs.mapping_sha256:
        raise MappingError(
            f"{inputs.mapping_path}: changed during the run (sha256 {inputs.mapping_sha256[:12]}… "
            f"when the run started, {mapping.sha256[:12]}… now); run again"
        )
    return mapping


def read_window_starts(settings: Settings, inputs: RunInputs) -> dict[date, pl.DataFrame]:
    """The window start snapshots of the run, only the columns a window reads."""
    return {
        start: read_snapshot(start, settings, columns=["_id", "downloadsAllTime"])
        for start in inputs.window_starts
    }
