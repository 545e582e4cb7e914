"""The review queue: which namespaces the mapping should review next (issue 18, "the mapping keeps
up"). From a run's model facts, its mapping and the account types it used: every uploader
without a reviewed row in the mapping, or mapped UNKNOWN, ranked by the downloads it carries.

Organisations without a country (typed `org`, untyped or vanished, with no reviewed row) above
`HUBSHARE_MAX_UNREVIEWED_SHARE` of the downloads is a warning, never a failure: the run still
publishes, and says so in its log, its `mapping-review-<date>` artifact and the alert webhook.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import polars as pl

from schemas.frames import REVIEW_QUEUE_SCHEMA

#: Model fact columns the queue reads.
FACT_COLUMNS: tuple[str, ...] = ("model_oid", "uploader", "uploader_bucket", "downloads_30d")
#: Account types that leave a namespace without a reviewed row UNKNOWN (null: not typed yet).
ORGANISATION_TYPES: tuple[str, ...] = ("org", "vanished")
#: Rows of the `mapping-review-<date>` artifact, and namespaces named in a warning.
ARTIFACT_ROWS = 50
WARNING_NAMESPACES = 10
UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class ReviewSummary:
    """What a run's queue amounts to: its totals and the unreviewed-organisation warning."""

    namespaces: int
    downloads: int  # carried by the queue
    total_downloads: int  # the run's, all models
    unreviewed_org_share: float  # organisations without a country (no reviewed row)
    threshold: float
    top_unreviewed: tuple[str, ...]  # the largest of those organisations

    @property
    def share(self) -> float:
        return self.downloads / self.total_downloads if self.total_downloads else 0.0

    @property
    def warns(self) -> bool:
        return self.unreviewed_org_share > self.threshold

    def describe(self) -> str:
        """One line with the totals (the artifact's description)."""
        line = (
            f"{self.namespaces:,} namespaces without a reviewed country carry "
            f"{self.downloads:,} of {self.total_downloads:,} downloads ({self.share:.2%}); "
            f"organisations without a reviewed row {self.unreviewed_org_share:.2%} "
            f"(HUBSHARE_MAX_UNREVIEWED_SHARE {self.threshold:.2%})"
        )
        return line + (f" — WARNING: {self.warning()}" if self.warns else "")

    def warning(self) -> str:
        return (
            f"organisations without a reviewed country carry {self.unreviewed_org_share:.2%} of "
            f"downloads, above {self.threshold:.2%}: review "
            + ", ".join(self.top_unreviewed)
            + " in data/org_country.csv"
        )


def _namespaces(facts: pl.DataFrame) -> pl.DataFrame:
    """Per uploader (lower-cased: the Hub is case-insensitive): its spelling in the snapshot (of
    its largest model), downloads and models. Models without an uploader have no namespace to
    review; they still count in the total."""
    return (
        facts.lazy()
        .filter(pl.col("uploader").is_not_null())
        .with_columns(pl.col("uploader").str.to_lowercase().alias("namespace_lower"))
        .group_by("namespace_lower")
        .agg(
            pl.col("uploader")
            .sort_by(["downloads_30d", "model_oid"], descending=[True, False])
            .first()
            .alias("namespace"),
            pl.col("downloads_30d").fill_null(0).sum().alias("downloads"),
            pl.len().cast(pl.Int64).alias("models"),
        )
        .collect()
    )


def _account_types(account_types: pl.DataFrame) -> pl.DataFrame:
    """(namespace_lower, account_type, fullname): one row per namespace (the latest checked)."""
    frame = account_types.with_columns(
        pl.col("namespace").str.to_lowercase().alias("namespace_lower")
    )
    if "checked_at" in frame.columns:
        frame = frame.sort("checked_at", descending=True, nulls_last=True)
    if "fullname" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, pl.String).alias("fullname"))
    return frame.unique("namespace_lower", keep="first").select(
        "namespace_lower", pl.col("account_type").cast(pl.String), pl.col("fullname")
    )


def review_queue(
    facts: pl.DataFrame,
    mapping: pl.DataFrame,
    account_types: pl.DataFrame,
    first_seen: pl.DataFrame,
    run_date: date,
    threshold: float,
) -> tuple[pl.DataFrame, ReviewSummary]:
    """The queue (REVIEW_QUEUE_SCHEMA, largest downloads first, then namespace) and its summary.

    `facts`: model facts (FACT_COLUMNS); `mapping`: the mapping frame (`org_lower`, `country`);
    `account_types`: at least `namespace`, `account_type` (ACCOUNT_TYPE_SCHEMA; empty: nothing
    typed); `first_seen`: (namespace_lower, first_seen) of earlier published dates."""
    total = int(facts.get_column("downloads_30d").fill_null(0).sum())
    reviewed = mapping.select(
        pl.col("org_lower").alias("namespace_lower"),
        (pl.col("country") == UNKNOWN).alias("mapped_unknown"),
    ).unique("namespace_lower", keep="first")
    candidates = (
        _namespaces(facts)
        .join(reviewed, on="namespace_lower", how="left")
        .with_columns(pl.col("mapped_unknown").is_not_null().alias("reviewed"))
        .filter(~pl.col("reviewed") | pl.col("mapped_unknown"))
        .join(_account_types(account_types), on="namespace_lower", how="left")
        .join(first_seen, on="namespace_lower", how="left")
        .with_columns(
            pl.min_horizontal(pl.col("first_seen"), pl.lit(run_date)).alias("first_seen"),
            (pl.col("downloads") / total if total else pl.lit(0.0)).alias("share"),
        )
        .sort(["downloads", "namespace"], descending=[True, False])
    )
    queue = candidates.select(REVIEW_QUEUE_SCHEMA.names()).cast(REVIEW_QUEUE_SCHEMA)
    # Organisations without a country: no reviewed row, and the Hub did not say "user".
    unreviewed = candidates.filter(
        ~pl.col("reviewed")
        & (pl.col("account_type").is_null() | pl.col("account_type").is_in(ORGANISATION_TYPES))
    )
    unreviewed_downloads = int(unreviewed.get_column("downloads").sum())
    summary = ReviewSummary(
        namespaces=queue.height,
        downloads=int(queue.get_column("downloads").sum()),
        total_downloads=total,
        unreviewed_org_share=unreviewed_downloads / total if total else 0.0,
        threshold=threshold,
        top_unreviewed=tuple(unreviewed.get_column("namespace").head(WARNING_NAMESPACES)),
    )
    return queue, summary


def artifact_rows(queue: pl.DataFrame) -> list[dict[str, Any]]:
    """The `mapping-review-<date>` table: the largest ARTIFACT_ROWS rows, as text a table shows."""
    return (
        queue.head(ARTIFACT_ROWS)
        .with_row_index("rank", offset=1)
        .with_columns(
            pl.col("account_type").fill_null("(not typed)"),
            pl.col("fullname").fill_null(""),
            pl.col("share").map_elements(lambda share: f"{share:.3%}", pl.String),
            pl.col("first_seen").cast(pl.String),
        )
        .to_dicts()
    )


def alert_payload(
    summary: ReviewSummary, snapshot_date: date, run_id: str, flow_run_id: str | None
) -> dict[str, Any]:
    """What `HUBSHARE_ALERT_WEBHOOK_URL` gets for a published run above the threshold."""
    return {
        "snapshot_date": snapshot_date.isoformat(),
        "run_id": run_id,
        "flow_run_id": flow_run_id,
        "status": "published",
        "warning": "unreviewed_organisations",
        "share": summary.unreviewed_org_share,
        "threshold": summary.threshold,
        "top_namespaces": list(summary.top_unreviewed),
    }
