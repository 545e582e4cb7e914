"""Download metrics per model for each share definition (methodology.md, "Metrics and windows").

A metric is an exact rational number of downloads per model, `num / den`, so that cohort
proration stays exact until the final apportionment to whole downloads (tasks/shares.py).

- `downloads_30d`: the Hub's trailing-30-day counter at the snapshot.
- `window_<N>d`: `downloadsAllTime(end) - downloadsAllTime(start)` over `[end - N days, end)`, a
  model absent at the start counting from 0, a negative difference counting as 0 (and reported).
- cohort `first_year`: only downloads received within 365 days of `createdAt`. Within a window a
  model is active over `[max(start, created), end)`; the part of that span inside its first year
  is `[max(start, created), min(end, created + 365 days))`, and its window downloads are prorated
  by the ratio of the two lengths in days (downloads are assumed even over the span). A model
  without `createdAt` is outside the cohort.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

HEADLINE = "downloads_30d"
COHORTS = ("all", "first_year")
#: The windows computed with every run whose start snapshot is stored.
STANDARD_WINDOWS = (7, 30, 365)
FIRST_YEAR_DAYS = 365


@dataclass(frozen=True)
class Definition:
    """What a share table measures: a metric over a period and a cohort."""

    metric: str  # downloads_30d | window_<N>d | window_<start>..<end>
    cohort: str  # all | first_year
    start: date  # period [start, end): for downloads_30d, the counter's trailing 30 days
    end: date

    @classmethod
    def headline(cls, day: date, cohort: str = "all") -> Definition:
        return cls(HEADLINE, cohort, day - timedelta(days=30), day)

    @classmethod
    def window(cls, start: date, end: date, cohort: str = "all") -> Definition:
        days = (end - start).days
        if days <= 0:
            raise ValueError(f"window {start}..{end} is empty: the start must precede the end")
        return cls(f"window_{days}d", cohort, start, end)

    @property
    def days(self) -> int:
        return (self.end - self.start).days


@dataclass(frozen=True)
class MetricReport:
    negative_differences: int = 0  # models whose downloadsAllTime went down (counted as 0)
    negative_downloads: int = 0  # the sum of those decreases
    new_models: int = 0  # models absent from the start snapshot (counted from 0)


def _cohort_fraction(created: pl.Expr, start: date, end: date) -> tuple[pl.Expr, pl.Expr]:
    """(inside first year, active) lengths in days of the model's part of `[start, end)`."""
    created_day = created.dt.date()
    active_from = pl.max_horizontal(pl.lit(start), created_day)
    first_year_end = pl.min_horizontal(pl.lit(end), created_day + pl.duration(days=FIRST_YEAR_DAYS))
    inside = (first_year_end - active_from).dt.total_days().clip(lower_bound=0)
    active = (pl.lit(end) - active_from).dt.total_days()
    return inside, active


def model_metric(
    definition: Definition, end: pl.DataFrame, start: pl.DataFrame | None = None
) -> tuple[pl.DataFrame, MetricReport]:
    """`(model_oid, num, den)` for every model of the `end` snapshot (raw snapshot columns)."""
    if definition.metric == HEADLINE:
        value = end.select("_id", "createdAt", pl.col("downloads").fill_null(0).alias("value"))
        report = MetricReport()
    else:
        if start is None:
            raise ValueError(f"{definition.metric} needs the snapshot of {definition.start}")
        if end["downloadsAllTime"].null_count() == end.height and end.height:
            raise ValueError(f"the snapshot of {definition.end} has no downloadsAllTime")
        joined = end.select("_id", "createdAt", pl.col("downloadsAllTime").alias("at_end")).join(
            start.select("_id", pl.col("downloadsAllTime").alias("at_start")),
            on="_id",
            how="left",
        )
        diff = pl.col("at_end").fill_null(0) - pl.col("at_start").fill_null(0)
        joined = joined.with_columns(diff.alias("diff"))
        negatives = joined.filter(pl.col("diff") < 0)
        report = MetricReport(
            negative_differences=negatives.height,
            negative_downloads=int(-negatives["diff"].sum()),
            new_models=joined["at_start"].null_count(),
        )
        value = joined.select("_id", "createdAt", pl.col("diff").clip(lower_bound=0).alias("value"))
    if definition.cohort == "all":
        metric = value.select(
            pl.col("_id").alias("model_oid"),
            pl.col("value").alias("num"),
            pl.lit(1, pl.Int64).alias("den"),
        )
    elif definition.cohort == "first_year":
        inside, active = _cohort_fraction(pl.col("createdAt"), definition.start, definition.end)
        metric = value.with_columns(inside.alias("inside"), active.alias("active")).select(
            pl.col("_id").alias("model_oid"),
            pl.when(pl.col("createdAt").is_null() | (pl.col("active") <= 0))
            .then(0)
            .otherwise(pl.col("value") * pl.col("inside"))
            .cast(pl.Int64)
            .alias("num"),
            pl.when(pl.col("createdAt").is_null() | (pl.col("active") <= 0))
            .then(1)
            .otherwise(pl.col("active"))
            .cast(pl.Int64)
            .alias("den"),
        )
    else:
        raise ValueError(f"unknown cohort {definition.cohort!r}; expected one of {COHORTS}")
    return metric, report
