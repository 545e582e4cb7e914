"""The data-quality gate: validate one run's frames against the reviewed GX suites.

`check_quality` runs the JSON suites of `schemas/expectations/` (see `schemas.quality`) through
great_expectations 1.x on pandas copies of the polars frames' columns, in one ephemeral GX context
per call, and returns a `QualityReport` (one `QualityCheck` per expectation and validated frame).
Nothing is raised for failing data: the caller decides what a failed gate means.

great_expectations is imported inside the functions that need it (it costs seconds to import),
with `GX_ANALYTICS_ENABLED=False` set first unless the environment already says otherwise.

Validated frames:

- `model_fact` once, suite `model_fact`;
- `model_origin` once, suite `model_origin`;
- `country_share` once on the whole frame for the expectations marked `meta.scope = "all_views"`
  (reported as suite `country_share`: both views present), then once per attribution view present
  in the frame for the others (reported as `country_share[uploader]`, `country_share[origin]`).
  A missing view is reported by the `country_share` check; its per-view checks are not run.

Every expectation of the suites is first checked in polars on the frames in memory
(`_precheck`): one proven to pass is reported passed, with the value GX would observe, without GX.
The others go to GX, which then says how they fail, with its own counts and examples. Only the
columns the GX-bound expectations name are converted to pandas. A clean run neither imports GX
(seconds of CPU and ~150 MB) nor copies a column.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

from schemas.frames import ATTRIBUTIONS
from schemas.quality import known_buckets, load_suite

if TYPE_CHECKING:
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.data_context.data_context.ephemeral_data_context import (
        EphemeralDataContext,
    )

#: Columns of `QualityReport.to_frame()` (a Prefect table artifact, a warehouse table).
QUALITY_REPORT_SCHEMA = pl.Schema(
    {
        "suite": pl.String,
        "expectation": pl.String,
        "column": pl.String,
        "success": pl.Boolean,
        "observed": pl.String,
        "expected": pl.String,
    }
)

#: GX result format: counts plus a few example values, never the full unexpected lists.
RESULT_FORMAT: dict[str, Any] = {"result_format": "BASIC", "partial_unexpected_count": 5}

_SCOPE_ALL_VIEWS = "all_views"
_INDEX_KEY = "hubshare_index"  # added to each expectation's meta to map results back to the suite
_MAX_EXAMPLES = 3
_COLUMN_KEYS = frozenset({"column", "column_A", "column_B"})


@dataclass(frozen=True)
class GateThresholds:
    """Run-dependent bounds of the gate."""

    previous_row_count: int | None  # rows of the previous published snapshot, None if none
    max_row_drop: float  # e.g. 0.05: fail if rows < previous_row_count * (1 - max_row_drop)
    max_unknown_share: float  # e.g. 0.5: fail if the UNKNOWN share of a view exceeds it

    def __post_init__(self) -> None:
        if self.previous_row_count is not None and self.previous_row_count < 0:
            raise ValueError(f"previous_row_count must be >= 0, got {self.previous_row_count}")
        if not 0.0 <= self.max_row_drop <= 1.0:
            raise ValueError(f"max_row_drop must be within [0, 1], got {self.max_row_drop}")
        if not 0.0 <= self.max_unknown_share <= 1.0:
            raise ValueError(
                f"max_unknown_share must be within [0, 1], got {self.max_unknown_share}"
            )

    @property
    def min_row_count(self) -> int:
        """Row-count floor: ceil(previous_row_count * (1 - max_row_drop)), 0 without a previous."""
        if self.previous_row_count is None:
            return 0
        # Rounding first keeps float noise (1000 * 0.95 = 950.0000000000001) from adding a row.
        return math.ceil(round(self.previous_row_count * (1.0 - self.max_row_drop), 6))


@dataclass(frozen=True)
class QualityCheck:
    """Outcome of one expectation on one validated frame."""

    suite: str  # "model_fact" | "model_origin" | "country_share" | "country_share[<view>]"
    expectation: str  # GX expectation type, e.g. "expect_column_values_to_be_unique"
    column: str | None
    success: bool
    observed: str  # short human text of the observed value (e.g. "3 nulls", "UNKNOWN share 0.61")
    expected: str  # short human text of the bound (e.g. "<= 0.5")

    def describe(self) -> str:
        """One phrase, e.g. "country_share[origin] UNKNOWN share 0.61, expected <= 0.5"."""
        subject = self.column if self.column is not None else "table"
        if self.column is not None and self.column in self.observed.split():
            return f"{self.suite} {self.observed}, expected {self.expected}"
        return f"{self.suite} {subject}: {self.observed}, expected {self.expected}"


@dataclass(frozen=True)
class QualityReport:
    """All checks of one gate run, in suite order."""

    checks: tuple[QualityCheck, ...]

    @property
    def success(self) -> bool:
        return all(check.success for check in self.checks)

    def failures(self) -> tuple[QualityCheck, ...]:
        return tuple(check for check in self.checks if not check.success)

    def summary(self) -> str:
        """One line: "all 17 checks passed" or "2 of 17 checks failed: <check>; <check>"."""
        failed = self.failures()
        if not failed:
            return f"all {len(self.checks)} checks passed"
        details = "; ".join(check.describe() for check in failed)
        drops = [c for c in failed if c.expectation == ROW_COUNT and "% fewer" in c.observed]
        if drops:
            details += f" ({accept_row_drop(drops[0])})"
        return f"{len(failed)} of {len(self.checks)} checks failed: {details}"

    def to_frame(self) -> pl.DataFrame:
        """One row per check, columns of `QUALITY_REPORT_SCHEMA`."""
        return pl.DataFrame(
            [
                (c.suite, c.expectation, c.column, c.success, c.observed, c.expected)
                for c in self.checks
            ],
            schema=QUALITY_REPORT_SCHEMA,
            orient="row",
        )


def check_quality(
    model_fact: pl.DataFrame,
    model_origin: pl.DataFrame,
    country_share: pl.DataFrame,
    thresholds: GateThresholds,
    *,
    precheck: bool = True,
) -> QualityReport:
    """Validate one run's frames with the `schemas/expectations` suites (never raises on bad data).

    The row-count floor of `model_fact` is `thresholds.min_row_count`; the UNKNOWN ceiling of each
    `country_share` view is `thresholds.max_unknown_share`.

    With `precheck` (the default), the expectations a polars pass proves are reported passed
    without GX, which is imported only for the others (see `_precheck`); `precheck=False` runs
    every expectation through GX (the same report, slower: kept to compare the two).
    """
    parameters: dict[str, Any] = {
        "known_buckets": known_buckets(),
        "min_row_count": thresholds.min_row_count,
        "max_unknown_share": thresholds.max_unknown_share,
    }
    gx = _GxValidator()

    def validate(label: str, frame: pl.DataFrame, suite: Mapping[str, Any]) -> list[QualityCheck]:
        return _validate(gx, label, frame, suite, parameters, precheck=precheck)

    checks = [
        _describe_row_floor(check, thresholds)
        for check in validate("model_fact", model_fact, load_suite("model_fact"))
    ]
    checks += validate("model_origin", model_origin, load_suite("model_origin"))

    share_suite = load_suite("country_share")
    checks += validate("country_share", country_share, _subsuite(share_suite, all_views=True))
    per_view = _subsuite(share_suite, all_views=False)
    if "attribution" in country_share.columns:
        for view in ATTRIBUTIONS:
            frame = country_share.filter(pl.col("attribution") == view)
            if frame.height:  # a missing view fails the "views present" check above
                checks += validate(f"country_share[{view}]", frame, per_view)
    return QualityReport(tuple(checks))


#: Suite name of the checks `storage_checks` adds (not a GX suite: the warehouse's columns).
STORAGE_SUITE = "warehouse"
STORAGE_EXPECTATION = "exclude_models_the_warehouse_cannot_store"


def storage_checks(
    model_fact: pl.DataFrame, model_origin: pl.DataFrame
) -> tuple[QualityCheck, ...]:
    """The models left out of the warehouse's facts because a value breaks a column's rule
    (`tasks.load.unstorable_models`): one passing check per rule that excluded any, naming the
    column, the count and an example, or one check saying none was. They never fail the gate: the
    models still count in the shares, and one odd model must not block a date."""
    from tasks.load import unstorable_models

    excluded = unstorable_models(model_fact, model_origin)
    if excluded.is_empty():
        return (
            QualityCheck(
                STORAGE_SUITE,
                STORAGE_EXPECTATION,
                None,
                success=True,
                observed="0 models excluded",
                expected="every value fits its column and holds no NUL character",
            ),
        )
    checks = []
    for (column, rule), rows in excluded.group_by("column", "rule", maintain_order=True):
        oid, value = rows.row(0)[2:]
        # repr: a NUL or a control character is shown escaped, never stored in the result.
        example = _shorten(repr(value), 60)
        checks.append(
            QualityCheck(
                STORAGE_SUITE,
                STORAGE_EXPECTATION,
                str(column),
                success=True,
                observed=(
                    f"{rows.height} model(s) excluded from the warehouse's facts, e.g. "
                    f"{oid}: {example} ({len(value)} characters)"
                ),
                expected=f"{rule}, else the model is excluded",
            )
        )
    return tuple(checks)


# --- GX plumbing -------------------------------------------------------------------------------


class _GxValidator:
    """One ephemeral GX context and pandas batch definition per gate, made when the first
    expectation the pre-check cannot prove needs them (a clean gate never imports GX)."""

    def __init__(self) -> None:
        self._made: tuple[EphemeralDataContext, BatchDefinition[Any]] | None = None

    def parts(self) -> tuple[EphemeralDataContext, BatchDefinition[Any]]:
        if self._made is None:
            context = _ephemeral_context()
            batch_definition = (
                context.data_sources.add_pandas("hubshare")
                .add_dataframe_asset("frame")
                .add_batch_definition_whole_dataframe("whole_frame")
            )
            self._made = (context, batch_definition)
        return self._made


def _ephemeral_context() -> EphemeralDataContext:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.execution_engine import pandas_execution_engine

    # GX fingerprints every pandas batch below this many bytes by hashing each cell, only to
    # label the batch in its metadata, which the gate never reads: at 1M models that was over
    # half of the gate (4.5-5.7 s against 2.0 s without it).
    pandas_execution_engine.HASH_THRESHOLD = 0
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    return gx.get_context(project_config=config, mode="ephemeral")


def _subsuite(suite: Mapping[str, Any], *, all_views: bool) -> dict[str, Any]:
    """The expectations of `suite` whose `meta.scope` is (or is not) "all_views"."""
    expectations = [
        e
        for e in suite["expectations"]
        if (e.get("meta", {}).get("scope") == _SCOPE_ALL_VIEWS) is all_views
    ]
    return {**suite, "expectations": expectations}


def _validate(
    gx: _GxValidator,
    label: str,
    frame: pl.DataFrame,
    suite_dict: Mapping[str, Any],
    parameters: Mapping[str, Any],
    *,
    precheck: bool,
) -> list[QualityCheck]:
    configs: list[dict[str, Any]] = [
        {**e, "meta": {**e.get("meta", {}), _INDEX_KEY: i}}
        for i, e in enumerate(suite_dict["expectations"])
    ]
    checks: dict[int, QualityCheck] = {}
    if precheck:
        for index, spec in enumerate(configs):
            proven = _precheck(frame, spec, parameters)
            if proven is not None:
                checks[index] = _to_check(
                    label, spec, success=True, result=proven, exception={}, parameters=parameters
                )
    if len(checks) == len(configs):
        return [checks[i] for i in sorted(checks)]
    left = [spec for index, spec in enumerate(configs) if index not in checks]

    context, batch_definition = gx.parts()  # an ExpectationSuite needs a current context
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.core.validation_definition import ValidationDefinition

    suite = ExpectationSuite(name=label, expectations=left, meta=dict(suite_dict.get("meta", {})))
    # ExpectationSuite() logs and drops expectations it cannot parse: a suite file must not
    # lose checks silently.
    if len(suite.expectations) != len(left):
        raise ValueError(
            f"suite {suite_dict['name']!r}: {len(left) - len(suite.expectations)} "
            "expectation(s) are not valid GX 1.x configurations (see the log)"
        )
    wanted = _referenced_columns(left)
    # A ValidationDefinition fetches the batch once; `Batch.validate` would fetch it a second time,
    # and every fetch of a pandas batch hashes the whole frame (GX's batch fingerprint).
    validation = context.validation_definitions.add(
        ValidationDefinition(name=label, data=batch_definition, suite=context.suites.add(suite))
    )
    result = validation.run(
        batch_parameters={"dataframe": _pandas_columns(frame, wanted)},
        expectation_parameters=dict(parameters),
        result_format=RESULT_FORMAT,
    )

    for r in result.results:
        config = r.expectation_config
        if config is None:  # pragma: no cover - GX always attaches the configuration
            continue
        index = int(config.meta[_INDEX_KEY])
        original = configs[index]
        checks[index] = _to_check(
            label,
            original,
            success=bool(r.success),
            result=dict(r.result or {}),
            exception=dict(r.exception_info or {}),
            parameters=parameters,
        )
    missing = sorted(set(range(len(configs))) - set(checks))
    for index in missing:  # pragma: no cover - defensive: GX returned no result for it
        spec = configs[index]
        checks[index] = QualityCheck(
            label, spec["type"], spec["kwargs"].get("column"), False, "no result", "a result"
        )
    return [checks[i] for i in sorted(checks)]


def _pandas_columns(frame: pl.DataFrame, wanted: set[str]) -> Any:
    """A pandas copy of the columns of `frame` named in `wanted`; with none of them (a table-level
    expectation such as the row count), an empty frame of as many rows: nothing is copied."""
    columns = [c for c in frame.columns if c in wanted]
    if columns:
        return frame.select(columns).to_pandas()
    import pandas as pd

    return pd.DataFrame(index=pd.RangeIndex(frame.height))


# --- The polars pre-check ----------------------------------------------------------------------
#
# GX on pandas cost 3 s and 0.4 GB at a million models (a pandas copy of every column, an arrow
# factorize per uniqueness check, pydantic work per metric), and importing it costs 2 s of CPU
# and ~150 MB, while expectations almost always pass.
# `_precheck` proves in polars that an expectation passes, and gives the result GX would give
# for it. One it cannot prove passes (a failing row, a null or NaN where one might matter, a
# missing column, a dtype, an argument or a row condition it does not know) goes to GX as
# before, which then says how it fails, with GX's own counts, examples and errors. A proven
# pass reports what GX reports for a pass ("no nulls", "all in range", the observed sum or row
# count), so the report is the same either way (`tests/test_quality.py` compares the two).

#: The result GX gives for a per-row expectation that passes.
_NONE_UNEXPECTED: dict[str, Any] = {"unexpected_count": 0}


def _precheck(
    frame: pl.DataFrame, config: Mapping[str, Any], parameters: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The result GX would give if `config`'s expectation certainly passes on `frame` as GX
    evaluates it on pandas, else None (GX must decide)."""
    kind = config["type"]
    kwargs: Mapping[str, Any] = config.get("kwargs", {})
    allowed = _PRECHECKED.get(kind)
    if allowed is None or not set(kwargs) <= allowed:
        return None
    if kind == "expect_table_row_count_to_be_between":
        bounds = _real_bounds(kwargs, parameters)
        if bounds is None:
            return None
        low, high = bounds
        rows = frame.height
        inside = (low is None or rows >= low) and (high is None or rows <= high)
        return {"observed_value": rows} if inside else None
    names = [kwargs[k] for k in ("column", "column_A", "column_B") if k in kwargs]
    if not names or not all(isinstance(n, str) and n in frame.columns for n in names):
        return None
    columns = [frame.get_column(n) for n in names]
    if kind == "expect_column_sum_to_be_between":
        return _precheck_sum(frame, columns[0], kwargs, parameters)
    proven = _precheck_rows(kind, columns, kwargs, parameters)
    return _NONE_UNEXPECTED if proven else None


def _precheck_rows(
    kind: str, columns: list[pl.Series], kwargs: Mapping[str, Any], parameters: Mapping[str, Any]
) -> bool:
    """True if the per-row (or distinct-values) expectation `kind` certainly passes."""
    if kind == "expect_column_values_to_not_be_null":
        (column,) = columns
        return column.null_count() == 0 and not _has_nan(column)
    if kind == "expect_column_values_to_be_unique":
        (column,) = columns
        if not (column.dtype == pl.String or column.dtype.is_integer()):
            return False
        # Equal values hash equal, so as many distinct hashes as values proves them distinct (a
        # collision only sends the check to GX); 64-bit integers count distinct much faster
        # than strings.
        values = column.drop_nulls()
        return bool(values.hash().n_unique() == values.len())
    if kind in (
        "expect_column_values_to_be_in_set",
        "expect_column_distinct_values_to_contain_set",
    ):
        (column,) = columns
        value_set = _resolve(kwargs.get("value_set"), parameters)
        if column.dtype != pl.String or not isinstance(value_set, list):
            return False
        if not all(isinstance(v, str) for v in value_set):
            return False
        if kind == "expect_column_distinct_values_to_contain_set":
            return set(value_set) <= set(column.drop_nulls().unique().to_list())
        return bool(column.drop_nulls().is_in(value_set).all())
    if kind == "expect_column_values_to_be_between":
        (column,) = columns
        if not column.dtype.is_numeric() or _has_nan(column):
            return False
        bounds = _real_bounds(kwargs, parameters)
        if bounds is None:
            return False
        low, high = bounds
        values = column.drop_nulls()
        inside = pl.repeat(True, values.len(), eager=True)
        if low is not None:
            inside &= values > low if kwargs.get("strict_min") else values >= low
        if high is not None:
            inside &= values < high if kwargs.get("strict_max") else values <= high
        return bool(inside.all())
    if kind == "expect_column_pair_values_a_to_be_greater_than_b":
        a, b = columns
        if not all(c.dtype.is_numeric() for c in columns):
            return False
        if any(c.null_count() or _has_nan(c) for c in columns):  # GX decides what a gap means
            return False
        return bool((a >= b if kwargs.get("or_equal") else a > b).all())
    return False  # pragma: no cover - every kind of `_PRECHECKED` is handled


def _precheck_sum(
    frame: pl.DataFrame,
    column: pl.Series,
    kwargs: Mapping[str, Any],
    parameters: Mapping[str, Any],
) -> dict[str, Any] | None:
    """GX's result for a column sum that is certainly within its bounds, with its observed
    value summed as pandas sums (numpy's pairwise sum of the float64 values, in row order)."""
    if column.dtype != pl.Float64 or column.null_count() or _has_nan(column):
        return None
    bounds = _real_bounds(kwargs, parameters)
    if bounds is None:
        return None
    if "row_condition" in kwargs:
        rows = _condition_rows(frame, kwargs["row_condition"])
        if rows is None:
            return None
        column = column.filter(rows)  # no rows left: GX, like pandas, observes a sum of 0
    import numpy as np  # polars' own dependency for `to_numpy`: cheap, unlike pandas and GX

    total = np.sum(column.to_numpy())
    low, high = bounds
    if not math.isfinite(total):
        return None
    inside = (low is None or total >= low) and (high is None or total <= high)
    return {"observed_value": total} if inside else None


def _condition_rows(frame: pl.DataFrame, condition: Any) -> pl.Series | None:
    """The rows a GX 1.x comparison row condition `{"type": "comparison", "column": {"name":
    c}, "operator": "==", "parameter": v}` keeps (a text column without nulls equal to the text
    `v`); None for any other condition."""
    if not isinstance(condition, Mapping) or set(condition) != {
        "type",
        "column",
        "operator",
        "parameter",
    }:
        return None
    column, value = condition["column"], condition["parameter"]
    if condition["type"] != "comparison" or condition["operator"] != "==":
        return None
    if not isinstance(column, Mapping) or set(column) != {"name"} or not isinstance(value, str):
        return None
    name = column["name"]
    if name not in frame.columns or frame.schema[name] != pl.String:
        return None
    values = frame.get_column(name)
    return None if values.null_count() else values == value


def _real_bounds(
    kwargs: Mapping[str, Any], parameters: Mapping[str, Any]
) -> tuple[float | None, float | None] | None:
    """(min, max) of a `*_to_be_between` expectation, resolved; None unless at least one is
    given, each given one is a finite number, and min <= max (else GX decides: it may error)."""
    low = _resolve(kwargs.get("min_value"), parameters)
    high = _resolve(kwargs.get("max_value"), parameters)
    given = [
        value
        for key, value in (("min_value", low), ("max_value", high))
        if kwargs.get(key) is not None
    ]
    if not given or not all(_is_real(b) for b in given):
        return None
    if low is not None and high is not None and low > high:  # GX's error, even on no rows
        return None
    return low, high


_IN_SET = ("expect_column_values_to_be_in_set", "expect_column_distinct_values_to_contain_set")

#: The expectations `_precheck` knows, with the arguments it honours.
_PRECHECKED: dict[str, frozenset[str]] = {
    "expect_column_values_to_not_be_null": frozenset({"column"}),
    "expect_column_values_to_be_unique": frozenset({"column"}),
    "expect_column_values_to_be_in_set": frozenset({"column", "value_set"}),
    "expect_column_values_to_be_between": frozenset(
        {"column", "min_value", "max_value", "strict_min", "strict_max"}
    ),
    "expect_column_pair_values_a_to_be_greater_than_b": frozenset(
        {"column_A", "column_B", "or_equal", "ignore_row_if"}
    ),
    "expect_column_distinct_values_to_contain_set": frozenset({"column", "value_set"}),
    "expect_column_sum_to_be_between": frozenset(
        {"column", "min_value", "max_value", "row_condition"}
    ),
    "expect_table_row_count_to_be_between": frozenset({"min_value", "max_value"}),
}


def _has_nan(column: pl.Series) -> bool:
    """A float NaN, which pandas (and so GX) reads as a missing value."""
    return column.dtype.is_float() and bool(column.is_nan().any())


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _referenced_columns(configs: Iterable[Mapping[str, Any]]) -> set[str]:
    """Column names named by the expectations: `column` kwargs and row-condition columns."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key in _COLUMN_KEYS and isinstance(value, str):
                    names.add(value)
                elif key == "column" and isinstance(value, Mapping) and "name" in value:
                    names.add(str(value["name"]))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for config in configs:
        walk(config.get("kwargs", {}))
    return names


# --- Human texts -------------------------------------------------------------------------------


def _to_check(
    suite: str,
    config: Mapping[str, Any],
    *,
    success: bool,
    result: Mapping[str, Any],
    exception: Mapping[str, Any],
    parameters: Mapping[str, Any],
) -> QualityCheck:
    kind: str = config["type"]
    kwargs: Mapping[str, Any] = config.get("kwargs", {})
    meta: Mapping[str, Any] = config.get("meta", {})
    column = kwargs.get("column")
    if column is None and "column_A" in kwargs:  # column-pair expectations
        column = f"{kwargs['column_A']}, {kwargs.get('column_B')}"
    expected = _expected_text(kind, kwargs, parameters)
    error = _exception_message(exception)
    if error is not None:
        observed = f"error: {_shorten(error, 80)}"
        success = False
    else:
        observed = _observed_text(kind, kwargs, meta, result, success=success)
    return QualityCheck(
        suite=suite,
        expectation=kind,
        column=str(column) if column is not None else None,
        success=success,
        observed=observed,
        expected=expected,
    )


def _exception_message(info: Mapping[str, Any]) -> str | None:
    """First line of the exception GX caught, if any; `exception_info` is either one record or
    (when a metric failed) a mapping of metric ids to records."""
    records = [info] if "raised_exception" in info else list(info.values())
    for record in records:
        if isinstance(record, Mapping) and record.get("raised_exception"):
            message = str(record.get("exception_message") or "exception").strip()
            return message.removeprefix("Error: ").splitlines()[0]
    return None


def _observed_text(
    kind: str,
    kwargs: Mapping[str, Any],
    meta: Mapping[str, Any],
    result: Mapping[str, Any],
    *,
    success: bool,
) -> str:
    label = meta.get("label")
    if kind == "expect_column_distinct_values_to_contain_set":
        if success:
            return " and ".join(map(str, kwargs.get("value_set", []))) + " present"
        return " and ".join(map(str, result.get("partial_missing_list") or ["?"])) + " missing"
    if "unexpected_count" in result:
        count = int(result.get("unexpected_count") or 0)
        none, one, many = {
            "expect_column_values_to_be_unique": (
                "no duplicates",
                "duplicated row",
                "duplicated rows",
            ),
            "expect_column_values_to_not_be_null": ("no nulls", "null", "nulls"),
            "expect_column_values_to_be_in_set": (
                "all in set",
                "row not in set",
                "rows not in set",
            ),
            "expect_column_values_to_be_between": (
                "all in range",
                "row out of range",
                "rows out of range",
            ),
            "expect_column_pair_values_a_to_be_greater_than_b": (
                "all in order",
                "row out of order",
                "rows out of order",
            ),
        }.get(kind, ("none unexpected", "unexpected row", "unexpected rows"))
        if count == 0:
            return none
        pct = _percent(result.get("unexpected_percent_total", result.get("unexpected_percent")))
        text = f"{count:,} {one if count == 1 else many} ({pct})"
        examples = _examples(result.get("partial_unexpected_list"))
        if examples and kind != "expect_column_values_to_not_be_null":
            text += f", e.g. {examples}"
        return text
    if "observed_value" in result:
        value = result["observed_value"]
        if kind == "expect_table_row_count_to_be_between":
            return f"{_int(value)} {'row' if value == 1 else 'rows'}"
        text = _number(value)
        return f"{label} {text}" if label else text
    return "passed" if success else "failed"


def _expected_text(kind: str, kwargs: Mapping[str, Any], parameters: Mapping[str, Any]) -> str:
    if kind == "expect_column_values_to_be_unique":
        return "unique"
    if kind == "expect_column_values_to_not_be_null":
        return "no nulls"
    if kind == "expect_column_values_to_be_in_set":
        value_set = kwargs.get("value_set")
        if isinstance(value_set, Mapping) and "$PARAMETER" in value_set:
            name = str(value_set["$PARAMETER"])
            return f"in {name} ({len(parameters.get(name) or ())} codes)"
        return "in {" + ", ".join(map(str, value_set or [])) + "}"
    if kind == "expect_column_distinct_values_to_contain_set":
        return " and ".join(map(str, kwargs.get("value_set", []))) + " present"
    if kind == "expect_column_pair_values_a_to_be_greater_than_b":
        operator = ">=" if kwargs.get("or_equal") else ">"
        return f"{kwargs.get('column_A')} {operator} {kwargs.get('column_B')}"
    if "min_value" in kwargs or "max_value" in kwargs:
        low = _resolve(kwargs.get("min_value"), parameters)
        high = _resolve(kwargs.get("max_value"), parameters)
        if kind == "expect_table_row_count_to_be_between":
            return _bounds(low, high, kwargs, integer=True)
        return _bounds(low, high, kwargs, integer=False)
    return kind.removeprefix("expect_").replace("_", " ")


ROW_COUNT = "expect_table_row_count_to_be_between"


def _describe_row_floor(check: QualityCheck, thresholds: GateThresholds) -> QualityCheck:
    """Spell out where the row-count floor comes from (or that there is none)."""
    if check.expectation != ROW_COUNT:
        return check
    if check.observed.startswith("error"):
        return check
    previous = thresholds.previous_row_count
    if previous is None:
        return QualityCheck(
            check.suite,
            check.expectation,
            check.column,
            check.success,
            f"no previous snapshot ({check.observed})",
            "no floor",
        )
    drop = f"{thresholds.max_row_drop * 100:g}%"
    expected = f"{check.expected} (previous {previous:,} - {ROW_DROP_SETTING} {drop})"
    observed = check.observed
    rows = re.match(r"[\d,]+", observed)
    if not check.success and rows is not None and previous:
        fewer = 1 - int(rows.group().replace(",", "")) / previous
        observed += f" ({fewer * 100:.3g}% fewer)"
    return QualityCheck(
        check.suite, check.expectation, check.column, check.success, observed, expected
    )


def accept_row_drop(check: QualityCheck) -> str:
    """How to accept a row-count drop that is genuine (the Hub removed models): the setting
    that allows it, at the next percent above the drop."""
    fewer = float(re.findall(r"([\d.]+)% fewer", check.observed)[-1])
    allowed = (math.floor(fewer) + 1) / 100
    return (
        f"if the drop is genuine, accept it: `{ROW_DROP_SETTING}={allowed:g} hubshare run "
        "--date <date>` gates the stored snapshot again"
    )


#: The setting of the gate's row-count floor, named wherever the floor is.
ROW_DROP_SETTING = "HUBSHARE_MAX_ROW_DROP"


def _resolve(value: Any, parameters: Mapping[str, Any]) -> Any:
    if isinstance(value, Mapping) and "$PARAMETER" in value:
        return parameters.get(str(value["$PARAMETER"]))
    return value


def _bounds(low: Any, high: Any, kwargs: Mapping[str, Any], *, integer: bool) -> str:
    fmt = _int if integer else _number
    if low is not None and high is not None and not integer:
        lo, hi = float(low), float(high)
        centre, half = (lo + hi) / 2, (hi - lo) / 2
        if 0 < half <= 1e-6 * max(1.0, abs(centre)):  # a tolerance band: "1 ± 1e-09"
            return f"{_number(centre)} ± {half:.0e}"
    parts = []
    if low is not None:
        parts.append(f"{'>' if kwargs.get('strict_min') else '>='} {fmt(low)}")
    if high is not None:
        parts.append(f"{'<' if kwargs.get('strict_max') else '<='} {fmt(high)}")
    return " and ".join(parts) or "any"


def _int(value: Any) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


def _number(value: Any) -> str:
    if value is None:
        return "none"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if number.is_integer() and abs(number) < 1e15:
        return f"{int(number):,}" if abs(number) >= 1e4 else str(int(number))
    return f"{number:.12g}"


def _percent(value: Any) -> str:
    try:
        pct = float(value)
    except (TypeError, ValueError):
        return "?%"
    return "<0.01%" if 0 < pct < 0.01 else f"{pct:.2f}%".replace(".00%", "%")


def _examples(values: Sequence[Any] | None) -> str:
    seen: list[str] = []
    for value in values or ():
        if isinstance(value, str):
            text = repr(value)
        elif isinstance(value, (list, tuple)):  # column-pair values
            text = "(" + ", ".join(_number(v) for v in value) + ")"
        else:
            text = _number(value)
        text = _shorten(text, 40)
        if text not in seen:
            seen.append(text)
        if len(seen) == _MAX_EXAMPLES:
            break
    return ", ".join(seen)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
