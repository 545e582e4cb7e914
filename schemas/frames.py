"""Polars frame schemas: the single source of truth for every file the pipeline writes.

Raw snapshot columns keep the Hub's own key names (they are the API's words); derived frames use
snake_case names that a BI tool shows as they are.
"""

from __future__ import annotations

import polars as pl

UTC_TS = pl.Datetime("us", "UTC")

#: The `expand` keys requested from `GET /api/models` (methodology: "Per model").
EXPAND_FIELDS: tuple[str, ...] = (
    "author",
    "downloads",
    "downloadsAllTime",
    "likes",
    "createdAt",
    "lastModified",
    "pipeline_tag",
    "library_name",
    "tags",
    "gated",
    "private",
)

#: One row per public model, as listed by the Hub on the crawl (raw snapshot parquet).
SNAPSHOT_SCHEMA = pl.Schema(
    {
        "_id": pl.String(),
        "id": pl.String(),
        "author": pl.String(),
        "downloads": pl.Int64(),
        "downloadsAllTime": pl.Int64(),
        "likes": pl.Int64(),
        "createdAt": UTC_TS,
        "lastModified": UTC_TS,
        "pipeline_tag": pl.String(),
        "library_name": pl.String(),
        "tags": pl.List(pl.String()),
        # false | "auto" | "manual" on the wire; stored as text ("false", "auto", "manual").
        "gated": pl.String(),
        "private": pl.Boolean(),
    }
)

#: Per model facts of one run (enriched snapshot), table `model_fact`.
MODEL_FACT_SCHEMA = pl.Schema(
    {
        "model_oid": pl.String(),
        "model_id": pl.String(),
        "uploader": pl.String(),
        "downloads_30d": pl.Int64(),
        "downloads_all_time": pl.Int64(),
        "likes": pl.Int64(),
        "created_at": UTC_TS,
        "last_modified": UTC_TS,
        "pipeline_tag": pl.String(),
        "library_name": pl.String(),
        "gated": pl.String(),
        "base_relation": pl.String(),
        "base_models": pl.String(),  # space-separated declared base ids, as tagged
        "uploader_bucket": pl.String(),
    }
)

#: Origin attribution of each model: one row per (model, origin organisation), weights sum to 1
#: per model (merges split their downloads equally among their bases), table `model_origin`.
MODEL_ORIGIN_SCHEMA = pl.Schema(
    {
        "model_oid": pl.String(),
        "origin_org": pl.String(),
        "origin_bucket": pl.String(),
        "weight": pl.Float64(),  # for reading; the exact weight is weight_num / weight_den
        "weight_num": pl.Int64(),
        "weight_den": pl.Int64(),
    }
)

#: Bucket shares per definition and view (attribution), table `country_share`.
COUNTRY_SHARE_SCHEMA = pl.Schema(
    {
        "definition": pl.String(),  # downloads_30d | window_7d | window_30d | window_365d
        "cohort": pl.String(),  # all | first_year
        "attribution": pl.String(),  # uploader | origin
        "bucket": pl.String(),  # alpha-2 | INTL | UNKNOWN
        "downloads": pl.Int64(),
        "share": pl.Float64(),
        # The range over the contested rows' answers (country or alt_country); the high end also
        # counts every UNKNOWN download as possibly the bucket's (docs/mapping.md).
        "share_low": pl.Float64(),
        "share_high": pl.Float64(),
    }
)

#: Bucket shares of one definition (both views): the frame the quality gate validates.
VIEW_SHARE_SCHEMA = pl.Schema(
    {
        name: dtype
        for name, dtype in COUNTRY_SHARE_SCHEMA.items()
        if name not in ("definition", "cohort")
    }
)

#: Organisation shares per definition and view, table `org_share`.
ORG_SHARE_SCHEMA = pl.Schema(
    {
        "definition": pl.String(),
        "cohort": pl.String(),
        "attribution": pl.String(),
        "org": pl.String(),
        "bucket": pl.String(),
        "downloads": pl.Int64(),
        "share": pl.Float64(),
    }
)

#: Concentration of downloads over organisations, per definition and view, table
#: `concentration`.
CONCENTRATION_SCHEMA = pl.Schema(
    {
        "definition": pl.String(),
        "cohort": pl.String(),
        "attribution": pl.String(),
        "orgs": pl.Int64(),
        "hhi": pl.Float64(),  # Herfindahl-Hirschman index, 0-10,000
        "gini": pl.Float64(),
        "top10_share": pl.Float64(),
    }
)

ATTRIBUTIONS: tuple[str, ...] = ("uploader", "origin")
SPECIAL_BUCKETS: tuple[str, ...] = ("INTL", "UNKNOWN")
