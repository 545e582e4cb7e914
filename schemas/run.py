"""What a run reads (`RunInputs`): built once per run, handed to every task that needs it, and
recorded in the run's `etl_run` row so that `reproduce`, `explain` and a backfill read it back.

The row keeps the SHA-256 of the raw snapshot and of the mapping in their own columns and the
rest in `parameters` (JSON) under the keys runs have always written (`run_date`, `mapping`,
`window_inputs`, ...): warehouses written before this module read back unchanged.

A new input is one field here (with a default, so that older rows still read) plus the code that
produces it (`tasks.inputs.resolve_run_inputs`); mark it `DECIDES_SHARES` if a run with another
value computes other shares (a backfill then re-runs the dates where it differs).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Self

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import RowMapping

from hubshare.errors import WarehouseError


class _DecidesShares:
    """Marks an input whose value decides the share table (not only how the run went)."""

    def __repr__(self) -> str:
        return "DECIDES_SHARES"


DECIDES_SHARES = _DecidesShares()

#: Inputs stored in their own `etl_run` column rather than in `parameters`.
ROW_COLUMNS = ("raw_sha256", "mapping_sha256")

#: Inputs added after runs were first recorded, whose None means "as runs before them read":
#: left out of `parameters` and of the comparison while None, so a run without them writes and
#: compares exactly what an older run did.
ABSENT_WHEN_NONE = ("account_types_sha256",)


class RunInputs(BaseModel):
    """Everything one run of a date reads, named once: the raw snapshot, the mapping, the stored
    snapshots its windows start from (by SHA-256), and the settings that shape its result."""

    model_config = ConfigDict(frozen=True, validate_by_name=True, validate_by_alias=True)

    snapshot_date: Annotated[date, Field(alias="run_date")]
    #: A crawl of today labelled with another date on purpose.
    backdate: bool = False
    raw_sha256: Annotated[str, DECIDES_SHARES]
    mapping_path: Annotated[Path, Field(alias="mapping")]
    mapping_sha256: Annotated[str, DECIDES_SHARES]
    #: Start date -> SHA-256 of each stored snapshot a standard window starts from (rows written
    #: before windows existed have none).
    window_starts: Annotated[dict[date, str], DECIDES_SHARES, Field(alias="window_inputs")] = {}
    #: The Hub crawled, without credentials (hubshare.provenance.public_endpoint).
    endpoint: str
    page_size: int
    # The gate's thresholds: rows of the latest publication on or before the date (None if
    # none), the largest row drop and UNKNOWN share it accepts.
    max_row_drop: float
    max_unknown_share: float
    previous_row_count: int | None
    #: SHA-256 of the account types the run used (`accounts/<sha256>.parquet`, the registry's
    #: rows for the snapshot's namespaces); None: no type known (every run before issue 18).
    account_types_sha256: Annotated[str | None, DECIDES_SHARES] = None

    def to_parameters(self) -> dict[str, Any]:
        """The `parameters` JSON of the run's row (its SHA-256 columns excluded)."""
        absent = {name for name in ABSENT_WHEN_NONE if getattr(self, name) is None}
        return self.model_dump(mode="json", by_alias=True, exclude=set(ROW_COLUMNS) | absent)

    @classmethod
    def from_run_row(cls, row: Mapping[str, Any] | RowMapping) -> Self:
        """The inputs recorded in an `etl_run` row (a mapping with at least `snapshot_date`,
        `raw_sha256`, `mapping_sha256` and `parameters`; `run_id` names it in errors). Keys a
        newer run wrote and this code does not know are ignored."""
        parameters = row["parameters"]
        if isinstance(parameters, str | bytes):
            parameters = orjson.loads(parameters)
        values = dict(parameters) | {name: row[name] for name in ROW_COLUMNS}
        # The column, not its copy in `parameters`: SQLite gives text, PostgreSQL a date.
        values["run_date"] = row["snapshot_date"]
        try:
            return cls.model_validate(values)
        except ValidationError as err:
            run = row.get("run_id", "of " + str(row["snapshot_date"]))
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()[:3]
            )
            raise WarehouseError(
                f"run {run}: its recorded inputs do not read ({problems})"
            ) from None

    def deciding_shares(self) -> dict[str, Any]:
        """The inputs marked DECIDES_SHARES: two runs with equal ones compute the same shares
        (with the same code)."""
        return {
            name: getattr(self, name)
            for name, info in type(self).model_fields.items()
            if DECIDES_SHARES in info.metadata
            and not (name in ABSENT_WHEN_NONE and getattr(self, name) is None)
        }
