"""Shares: downloads per organisation and per bucket, for each view and definition
(methodology.md).

Per-model metrics are exact rationals (`num / den`: merges split a model's downloads equally among
its bases, the first-year cohort prorates window downloads). Organisation totals are summed
exactly and apportioned to whole downloads by largest remainder, so that the organisations and
the buckets of a view sum to exactly the population total.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction
from typing import Any

import polars as pl

from hubshare.errors import UnstorableDataError
from hubshare.provenance import sha256_bytes
from schemas.frames import CONCENTRATION_SCHEMA, COUNTRY_SHARE_SCHEMA, ORG_SHARE_SCHEMA
from tasks.alignment import model_row_of
from tasks.windows import COHORTS, HEADLINE, STANDARD_WINDOWS, Definition, model_metric

#: The metric of the daily headline: the Hub's trailing-30-day counter at the snapshot.
DEFINITION = HEADLINE
SHARE_DECIMALS = 12
TOP_ORGS = 10


def _round_half_even(value: Fraction) -> int:
    return round(value)  # Fraction.__round__ rounds half to even


def largest_remainder(values: Sequence[Fraction], total: int, names: Sequence[str]) -> list[int]:
    """`values` as whole numbers that sum to exactly `total`: each value's floor, then the units
    still missing one each to the largest fractional parts (ties by name), or, where the floors
    exceed `total`, taken one each from the smallest; round after round while units remain."""
    floors = [value.numerator // value.denominator for value in values]
    units = list(floors)
    if not values:
        return units
    order = sorted(range(len(values)), key=lambda i: (-(values[i] - floors[i]), names[i]))
    missing = total - sum(floors)
    step, ranked = (1, order) if missing > 0 else (-1, order[::-1])
    for turn in range(abs(missing)):
        units[ranked[turn % len(ranked)]] += step
    return units


def _org_totals(rows: pl.DataFrame, total: int) -> pl.DataFrame:
    """`rows` (org, bucket, num, den) -> (org, bucket, downloads) apportioned to `total`.

    Whole parts are summed in polars; only the organisations with a fractional remainder (merges,
    cohort proration) go through exact fractions; the downloads still missing from `total` go, one
    each, to the largest remainders (ties broken by organisation name)."""
    grouped = (
        rows.lazy()
        .group_by("org", "den")
        .agg(pl.col("num").cast(pl.Int128).sum(), pl.col("bucket").first())
        .with_columns(
            (pl.col("num") // pl.col("den")).alias("whole"),
            (pl.col("num") % pl.col("den")).alias("rem"),
        )
        # A morsel of rows at a time: only each organisation's sums are held, not the rows'.
        .collect(engine="streaming")
    )
    orgs = grouped.group_by("org").agg(pl.col("whole").sum(), pl.col("bucket").first())
    remainders: dict[str, Fraction] = {}
    for org, den, rem in grouped.filter(pl.col("rem") != 0).select("org", "den", "rem").iter_rows():
        remainders[org] = remainders.get(org, Fraction(0)) + Fraction(rem, den)
    fractional = list(remainders)
    units = largest_remainder(
        list(remainders.values()), total - int(orgs["whole"].sum()), fractional
    )
    extra = dict(zip(fractional, units, strict=True))
    bonus = pl.DataFrame(
        {"org": list(extra), "extra": list(extra.values())},
        schema={"org": pl.String, "extra": pl.Int64},
    )
    return orgs.join(bonus, on="org", how="left").select(
        "org",
        "bucket",
        (pl.col("whole") + pl.col("extra").fill_null(0)).cast(pl.Int64).alias("downloads"),
    )


def headline_metric(model_fact: pl.DataFrame) -> pl.DataFrame:
    return model_fact.select(
        "model_oid", pl.col("downloads_30d").alias("num"), pl.lit(1, pl.Int64).alias("den")
    )


def attribution_rows(
    model_fact: pl.DataFrame, model_origin: pl.DataFrame, metric: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(uploader view, origin view) rows (org, bucket, num, den): each model's exact metric
    `num / den` credited to its organisations, before any rounding."""
    num, den = metric.get_column("num"), metric.get_column("den")
    # A run's frames list the same models in the same order (by model_oid): then each row's
    # metric is found by position, not by joining 3M ids (a hash table of them, and a copy).
    ids = metric.get_column("model_oid")
    in_order = _strictly_increasing(ids)
    if in_order and ids.equals(model_fact.get_column("model_oid")):
        uploader_rows = model_fact.select(
            pl.col("uploader").alias("org"),
            pl.col("uploader_bucket").alias("bucket"),
            num.alias("num"),
            den.alias("den"),
        )
    else:
        uploader_rows = metric.join(
            model_fact.select("model_oid", "uploader", "uploader_bucket"), on="model_oid"
        ).select(
            pl.col("uploader").alias("org"),
            pl.col("uploader_bucket").alias("bucket"),
            "num",
            "den",
        )
    # Each origin row's model by position: the metric's row, if the origins name exactly the
    # metric's models, in its order.
    position = model_row_of(model_origin.get_column("model_oid"), ids) if in_order else None
    if position is not None:
        origin_rows = model_origin.select(
            pl.col("origin_org").alias("org"),
            pl.col("origin_bucket").alias("bucket"),
            (num.gather(position) * pl.col("weight_num")).alias("num"),
            (den.gather(position) * pl.col("weight_den")).alias("den"),
        )
    else:
        origin_rows = metric.join(model_origin, on="model_oid").select(
            pl.col("origin_org").alias("org"),
            pl.col("origin_bucket").alias("bucket"),
            (pl.col("num") * pl.col("weight_num")).alias("num"),
            (pl.col("den") * pl.col("weight_den")).alias("den"),
        )
    return uploader_rows, origin_rows


def _strictly_increasing(ids: pl.Series) -> bool:
    """Whether every id is greater than the one before (sorted, none twice)."""
    return ids.is_sorted() and not (ids.slice(1) == ids.slice(0, max(ids.len() - 1, 0))).any()


def compute_shares(
    model_fact: pl.DataFrame,
    model_origin: pl.DataFrame,
    metric: pl.DataFrame | None = None,
    *,
    mapping: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(country_share, org_share) of one metric for both views, sorted. `metric` is
    (model_oid, num, den) per model; by default the headline 30-day counter. `mapping` (its
    `org_lower`: the reviewed namespaces) gives each bucket its `downloads_by_default`; without
    it that column is null."""
    metric = headline_metric(model_fact) if metric is None else metric
    uploader_rows, origin_rows = attribution_rows(model_fact, model_origin, metric)
    exact_total = sum(
        (
            Fraction(num, den)
            for den, num in uploader_rows.group_by("den")
            .agg(pl.col("num").cast(pl.Int128).sum())
            .iter_rows()
        ),
        Fraction(0),
    )
    total = _round_half_even(exact_total)
    if total >= 2**63:  # summed exactly; the warehouse's share columns hold 64-bit integers
        name = "model_id" if "model_id" in model_fact.columns else "model_oid"
        columns = list(dict.fromkeys(["model_oid", name, "uploader"]))
        largest = (
            metric.join(model_fact.select(columns).unique(), on="model_oid")
            .sort(["num", name], descending=[True, False])  # ties: the first id, every time
            .row(0, named=True)
        )
        raise UnstorableDataError(
            f"the downloads sum to {total}, beyond the 64-bit integers the warehouse holds "
            f"(2^63-1); the largest count is {largest['num']}, model {largest[name]} of "
            f"{largest['uploader']}: check that snapshot's counters"
        )

    def with_share(attribution: str, orgs: pl.DataFrame) -> pl.DataFrame:
        return orgs.select(
            pl.lit(attribution).alias("attribution"),
            "org",
            "bucket",
            "downloads",
            (pl.col("downloads") / total if total else pl.lit(0.0)).alias("share"),
        )

    orgs = pl.concat(
        [
            with_share("uploader", _org_totals(uploader_rows, total)),
            with_share("origin", _org_totals(origin_rows, total)),
        ]
    ).sort("attribution", "org")
    countries = (
        orgs.with_columns(by_default(orgs, mapping))
        .group_by("attribution", "bucket")
        .agg(
            pl.col("downloads").sum(),
            pl.col("downloads").filter(pl.col("by_default")).sum().alias("downloads_by_default"),
        )
        .select(
            "attribution",
            "bucket",
            "downloads",
            (pl.col("downloads") / total if total else pl.lit(0.0)).alias("share"),
            pl.col("downloads_by_default").cast(pl.Int64)
            if mapping is not None
            else pl.lit(None, pl.Int64).alias("downloads_by_default"),
        )
        .sort("attribution", "bucket")
    )
    return countries, orgs


def by_default(orgs: pl.DataFrame, mapping: pl.DataFrame | None) -> pl.Expr:
    """Whether each organisation row's bucket rests on the account-type default: its namespace
    (the uploader, or the origin row's organisation) has no reviewed row in `mapping`. The
    organisations' downloads are whole already (apportioned exactly), so a bucket's part that
    rests on the default is a sum of them and never exceeds the bucket's downloads."""
    if mapping is None:
        return pl.lit(False).alias("by_default")
    reviewed = mapping.get_column("org_lower").implode()
    return (~pl.col("org").str.to_lowercase().is_in(reviewed)).alias("by_default")


#: The one org_share row that sums the organisations with no country (bucket UNKNOWN, mapped so
#: or not mapped at all) of a definition, cohort and view. They are most of the Hub's
#: namespaces: one row each would make org_share grow with the Hub, not with the mapping.
OTHER_UNKNOWN_ORGS = "(namespaces with no country)"


def fold_unknown_orgs(org_share: pl.DataFrame) -> pl.DataFrame:
    """org_share as the warehouse keeps it: every organisation with a country (or INTL), and
    one OTHER_UNKNOWN_ORGS row per group summing the UNKNOWN ones (so that bucket totals still
    add up). Groups are the frame's definition, cohort and attribution columns present."""
    keys = [name for name in ("definition", "cohort", "attribution") if name in org_share.columns]
    unknown = pl.col("bucket") == "UNKNOWN"
    totals = org_share.group_by(keys).agg(pl.col("downloads").sum().alias("total"))
    folded = (
        org_share.filter(unknown)
        .group_by(keys)
        .agg(pl.col("downloads").sum())
        .join(totals, on=keys)
        .select(
            *keys,
            pl.lit(OTHER_UNKNOWN_ORGS).alias("org"),
            pl.lit("UNKNOWN").alias("bucket"),
            "downloads",
            pl.when(pl.col("total") > 0)
            .then(pl.col("downloads") / pl.col("total"))
            .otherwise(0.0)
            .alias("share"),
        )
    )
    return (
        pl.concat([org_share.filter(~unknown), folded.select(org_share.columns)])
        .cast(org_share.schema)
        .sort(*keys, "org")
    )


def concentration(org_share: pl.DataFrame) -> pl.DataFrame:
    """The study's concentration measures over organisations, per definition and view: HHI on
    the 0-10,000 scale, Gini of organisation downloads, and the top-10 organisations' share."""
    keys = ["definition", "cohort", "attribution"]
    ordered = pl.col("downloads").sort()
    rank = pl.int_range(1, pl.len() + 1)
    return (
        org_share.group_by(keys)
        .agg(
            pl.len().alias("orgs"),
            ((pl.col("share") * 100) ** 2).sum().alias("hhi"),
            pl.when(pl.col("downloads").sum() > 0)
            .then(
                ((2 * rank - pl.len() - 1) * ordered).sum() / (pl.len() * pl.col("downloads").sum())
            )
            .otherwise(0.0)
            .alias("gini"),
            pl.col("share").top_k(TOP_ORGS).sum().alias("top10_share"),
        )
        .sort(keys)
        .cast(CONCENTRATION_SCHEMA)
        .select(list(CONCENTRATION_SCHEMA.names()))
    )


def has_all_time_counter(snapshot: pl.DataFrame) -> bool:
    """Whether a raw snapshot carries `downloadsAllTime` (archives and old crawls may not)."""
    return snapshot.is_empty() or snapshot["downloadsAllTime"].null_count() < snapshot.height


def definitions_for(
    day: date, starts: dict[date, pl.DataFrame], snapshot: pl.DataFrame | None = None
) -> list[Definition]:
    """The headline, and each standard window whose start snapshot is stored, both ends with a
    `downloadsAllTime` counter; both cohorts."""
    found = [Definition.headline(day, cohort) for cohort in COHORTS]
    if snapshot is not None and not has_all_time_counter(snapshot):
        return found
    for days in STANDARD_WINDOWS:
        start = day - timedelta(days=days)
        if start in starts and has_all_time_counter(starts[start]):
            found += [Definition.window(start, day, cohort) for cohort in COHORTS]
    return found


def share_ranges(
    country_share: pl.DataFrame, org_share: pl.DataFrame, contested: pl.DataFrame
) -> pl.DataFrame:
    """`country_share` with `share_low` and `share_high`: the range of each bucket's share over
    every assignment of the contested organisations (`contested`: org_lower, alt_bucket) to their
    country or their alternative; `share_high` also counts every UNKNOWN download as possibly the
    bucket's. A bucket that only an alternative reaches gets a row with 0 downloads."""
    keys = ["definition", "cohort", "attribution"]
    moves = (
        org_share.with_columns(pl.col("org").str.to_lowercase().alias("org_lower"))
        .join(contested, on="org_lower")
        .filter(pl.col("alt_bucket") != pl.col("bucket"))
    )
    moved_out = moves.group_by(*keys, "bucket").agg(pl.col("downloads").sum().alias("out"))
    moved_in = moves.group_by(*keys, pl.col("alt_bucket").alias("bucket")).agg(
        pl.col("downloads").sum().alias("in")
    )
    views = country_share.group_by(keys).agg(
        pl.col("downloads").sum().alias("total"),
        pl.col("downloads").filter(pl.col("bucket") == "UNKNOWN").sum().alias("unknown"),
    )
    reached = moved_in.join(country_share, on=[*keys, "bucket"], how="anti").select(
        *keys,
        "bucket",
        pl.lit(0, pl.Int64).alias("downloads"),
        pl.lit(0.0).alias("share"),
        # 0 of nothing, or unknown (null) where the view's other rows do not know it either.
        pl.lit(0, pl.Int64).alias("downloads_by_default"),
    )
    lost = pl.col("out").fill_null(0)
    gained = pl.col("in").fill_null(0) + pl.when(pl.col("bucket") == "UNKNOWN").then(0).otherwise(
        pl.col("unknown")
    )

    def moved(amount: pl.Expr) -> pl.Expr:
        # Offsets from the published share, so that a bucket nothing can move keeps it exactly.
        return pl.when(amount > 0).then(amount / pl.col("total")).otherwise(0.0)

    return (
        pl.concat([country_share.select(reached.columns), reached.cast(country_share.schema)])
        .join(views, on=keys)
        .join(moved_out, on=[*keys, "bucket"], how="left")
        .join(moved_in, on=[*keys, "bucket"], how="left")
        .with_columns(
            (pl.col("share") - moved(lost)).clip(0.0, 1.0).alias("share_low"),
            (pl.col("share") + moved(gained)).clip(0.0, 1.0).alias("share_high"),
        )
        .with_columns(
            pl.when(pl.col("downloads_by_default").null_count().over(keys) > 0)
            .then(pl.lit(None, pl.Int64))
            .otherwise(pl.col("downloads_by_default"))
            .alias("downloads_by_default")
        )
        .sort([*keys, "bucket"])
        .cast(COUNTRY_SHARE_SCHEMA)
        .select(list(COUNTRY_SHARE_SCHEMA.names()))
    )


#: What `compute_all_shares` reads of the raw snapshot and of the model facts.
SHARE_SNAPSHOT_COLUMNS = ("_id", "createdAt", "downloads", "downloadsAllTime")
SHARE_FACT_COLUMNS = ("model_oid", "uploader", "uploader_bucket")

NO_CONTESTED = pl.DataFrame(schema={"org_lower": pl.String, "alt_bucket": pl.String})


def compute_all_shares(
    day: date,
    snapshot: pl.DataFrame,
    model_fact: pl.DataFrame,
    model_origin: pl.DataFrame,
    starts: dict[date, pl.DataFrame],
    contested: pl.DataFrame = NO_CONTESTED,
    *,
    mapping: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    """Every definition of one run: (country_share, org_share, concentration, report). `starts`
    are the stored snapshots of earlier dates that windows can start from; `contested` the
    mapping's rows with an alternative answer (org_lower, alt_bucket), which give each share its
    range; `mapping` (org_lower) the reviewed namespaces, which give each share its
    `downloads_by_default` (null without it: not part of the canonical table)."""
    country_parts, org_parts = [], []
    report: dict[str, Any] = {}
    for definition in definitions_for(day, starts, snapshot):
        metric, metric_report = model_metric(definition, snapshot, starts.get(definition.start))
        countries, orgs = compute_shares(model_fact, model_origin, metric, mapping=mapping)
        tag = [
            pl.lit(definition.metric).alias("definition"),
            pl.lit(definition.cohort).alias("cohort"),
        ]
        country_parts.append(countries.select(*tag, pl.all()))
        org_parts.append(orgs.select(*tag, pl.all()))
        if definition.metric != HEADLINE and definition.cohort == "all":
            report[definition.metric] = {
                "start": definition.start.isoformat(),
                **asdict(metric_report),
            }
    org_share = pl.concat(org_parts).cast(ORG_SHARE_SCHEMA)
    country_share = share_ranges(pl.concat(country_parts), org_share, contested)
    return country_share, org_share, concentration(org_share), report


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
    keys = ["definition", "cohort", "attribution"]
    lines = [",".join([*keys, "bucket", "downloads", "share"])]
    totals = {
        tuple(row[:3]): row[3]
        for row in country_share.group_by(keys).agg(pl.col("downloads").sum()).iter_rows()
    }
    for definition, cohort, attribution, bucket, downloads in (
        country_share.sort([*keys, "bucket"]).select(*keys, "bucket", "downloads").iter_rows()
    ):
        share = render_share(downloads, totals[(definition, cohort, attribution)])
        lines.append(f"{definition},{cohort},{attribution},{bucket},{downloads},{share}")
    return ("\n".join(lines) + "\n").encode()


def share_table_sha256(country_share: pl.DataFrame) -> str:
    return sha256_bytes(render_share_table(country_share))
