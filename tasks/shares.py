"""Shares: downloads per organisation and per bucket, for each view (methodology.md).

Organisation downloads in the origin view are exact fractions (merges split a model's downloads
equally among its bases); they are apportioned to whole downloads by largest remainder, so that
organisations and buckets of a view sum to exactly the population total.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction

import polars as pl

from hubshare.provenance import sha256_bytes
from schemas.frames import COUNTRY_SHARE_SCHEMA, ORG_SHARE_SCHEMA

#: The metric of the daily headline: the Hub's trailing-30-day counter at the snapshot.
DEFINITION = "downloads_30d"
SHARE_DECIMALS = 12


def apportion(exact: dict[str, Fraction], total: int) -> dict[str, int]:
    """Largest-remainder rounding: floors, then one more download to the largest remainders
    (ties broken by name) until the parts sum to `total`."""
    floors = {key: value.numerator // value.denominator for key, value in exact.items()}
    missing = total - sum(floors.values())
    by_remainder = sorted(exact, key=lambda key: (-(exact[key] - floors[key]), key))
    for key in by_remainder[:missing]:
        floors[key] += 1
    return floors


def _org_frame(attribution: str, org_downloads: pl.DataFrame, total: int) -> pl.DataFrame:
    return org_downloads.select(
        pl.lit(attribution).alias("attribution"),
        "org",
        "bucket",
        "downloads",
        (pl.col("downloads") / total if total else pl.lit(0.0)).alias("share"),
    )


def org_downloads_uploader(model_fact: pl.DataFrame) -> pl.DataFrame:
    return (
        model_fact.group_by("uploader")
        .agg(
            pl.col("downloads_30d").sum().alias("downloads"),
            pl.col("uploader_bucket").first().alias("bucket"),
        )
        .rename({"uploader": "org"})
    )


def org_downloads_origin(
    model_fact: pl.DataFrame, model_origin: pl.DataFrame, total: int
) -> pl.DataFrame:
    parts = (
        model_origin.join(model_fact.select("model_oid", "downloads_30d"), on="model_oid")
        .group_by("origin_org", "weight_den")
        .agg(
            (pl.col("downloads_30d") * pl.col("weight_num")).sum().alias("numerator"),
            pl.col("origin_bucket").first().alias("bucket"),
        )
    )
    exact: dict[str, Fraction] = {}
    bucket_of: dict[str, str] = {}
    for org, den, numerator, bucket in parts.iter_rows():
        exact[org] = exact.get(org, Fraction(0)) + Fraction(numerator, den)
        bucket_of[org] = bucket
    whole = apportion(exact, total)
    return pl.DataFrame(
        {
            "org": list(whole),
            "bucket": [bucket_of[org] for org in whole],
            "downloads": list(whole.values()),
        },
        schema={"org": pl.String, "bucket": pl.String, "downloads": pl.Int64},
    )


def compute_shares(
    model_fact: pl.DataFrame, model_origin: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(country_share, org_share) for both views, sorted by (attribution, bucket/org)."""
    total = int(model_fact["downloads_30d"].sum())
    orgs = (
        pl.concat(
            [
                _org_frame("uploader", org_downloads_uploader(model_fact), total),
                _org_frame("origin", org_downloads_origin(model_fact, model_origin, total), total),
            ]
        )
        .cast(ORG_SHARE_SCHEMA)
        .sort("attribution", "org")
    )
    countries = (
        orgs.group_by("attribution", "bucket")
        .agg(pl.col("downloads").sum())
        .with_columns((pl.col("downloads") / total if total else pl.lit(0.0)).alias("share"))
        .select(list(COUNTRY_SHARE_SCHEMA.names()))
        .cast(COUNTRY_SHARE_SCHEMA)
        .sort("attribution", "bucket")
    )
    return countries, orgs


def render_share(downloads: int, total: int) -> str:
    """The share as a fixed decimal string: exact division, rounded half-even."""
    if total == 0:
        return f"{0:.{SHARE_DECIMALS}f}"
    with localcontext() as ctx:
        ctx.prec = 50
        value = Decimal(downloads) / Decimal(total)
    return str(value.quantize(Decimal(1).scaleb(-SHARE_DECIMALS), rounding=ROUND_HALF_EVEN))


def render_share_table(country_share: pl.DataFrame) -> bytes:
    """The canonical text of a share table (sorted rows, fixed decimals): what `shares_sha256`
    hashes, so that a recomputation proves a published table bit for bit."""
    lines = ["definition,attribution,bucket,downloads,share"]
    totals = dict(country_share.group_by("attribution").agg(pl.col("downloads").sum()).iter_rows())
    for attribution, bucket, downloads, _share in country_share.sort(
        "attribution", "bucket"
    ).iter_rows():
        share = render_share(downloads, totals[attribution])
        lines.append(f"{DEFINITION},{attribution},{bucket},{downloads},{share}")
    return ("\n".join(lines) + "\n").encode()


def share_table_sha256(country_share: pl.DataFrame) -> str:
    return sha256_bytes(render_share_table(country_share))
