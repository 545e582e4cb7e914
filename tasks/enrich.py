"""Enrich: give every model its uploader bucket and its origin (methodology.md, "Views").

All in polars: models that declare a base are walked up their lineage together, one step per
generation of bases, keeping exact fractional weights (numerator, denominator) so that merges
split downloads without rounding drift.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import polars as pl

from schemas.frames import (
    ACCOUNT_TYPE_SCHEMA,
    MODEL_FACT_SCHEMA,
    MODEL_ORIGIN_SCHEMA,
    SNAPSHOT_SCHEMA,
)
from tasks.alignment import in_chunks_of

#: Declared relations in `base_model:<relation>:<id>` tags.
RELATIONS = ("adapter", "finetune", "merge", "quantized")
MAX_DEPTH = 10
#: Models parsed for their lineage at a time.
LINEAGE_SLICE_ROWS = 250_000
UNKNOWN = "UNKNOWN"
INTL = "INTL"
#: What the lineage is parsed from, and what the facts take, of a raw snapshot: reading each
#: apart keeps the tags (the largest column) out of memory once their base tags are parsed.
LINEAGE_SNAPSHOT_COLUMNS = ("_id", "tags")
FACT_SNAPSHOT_COLUMNS = tuple(
    name for name in SNAPSHOT_SCHEMA.names() if name not in ("tags", "private")
)
#: Nothing typed: attribution as it was before account types (every run recorded without them).
NO_ACCOUNT_TYPES = pl.DataFrame(schema=ACCOUNT_TYPE_SCHEMA)


@dataclass
class LineageReport:
    """What the lineage walk met, in the run's report: models (declaring a base, quantized,
    merges, whose walk hit the depth cap or a cycle) and distinct base ids by how they resolved."""

    models_with_base: int = 0
    quantized: int = 0
    merges: int = 0
    bases_in_snapshot: int = 0
    bases_by_namespace: int = 0
    bases_unresolvable: int = 0
    depth_capped: int = 0
    cycles: int = 0
    capped_examples: list[str] = field(default_factory=list)
    cycle_examples: list[str] = field(default_factory=list)


def parse_lineage(snapshot: pl.DataFrame) -> pl.DataFrame:
    """Per model with a declared base: `base_relation` and `base_lower` (distinct base ids,
    lower-cased, sorted) and `base_models` (their spelling in the tags, space-separated)."""
    rel_pattern = rf"^({'|'.join(RELATIONS)}):"
    base_tags = pl.element().filter(pl.element().str.starts_with("base_model:"))
    # Models are grouped by their row number, not their `_id` text: grouping by an integer
    # takes a fraction of the memory. The base tags are parsed once, for both aggregates.
    # A slice of the snapshot at a time: the base tags are a small part of all tags, and only
    # they are kept (the intermediate lists of every model are never all in memory).
    pieces = []
    for offset in range(0, snapshot.height, LINEAGE_SLICE_ROWS):
        pieces.append(
            snapshot.slice(offset, LINEAGE_SLICE_ROWS)
            .lazy()
            # Keep only base tags before exploding: a third of models have one or two, and
            # every model has several others.
            .select(
                (pl.int_range(pl.len(), dtype=pl.UInt32) + offset).alias("_row"),
                pl.col("tags").list.eval(base_tags),
            )
            .filter(pl.col("tags").list.len() > 0)
            .explode("tags")
            .with_columns(pl.col("tags").str.strip_prefix("base_model:").alias("rest"))
            .select(
                "_row",
                pl.col("rest").str.extract(rel_pattern).alias("relation"),
                pl.col("rest").str.replace(rel_pattern, "").str.strip_chars().alias("base_id"),
            )
            .filter(pl.col("base_id") != "")
            .with_columns(pl.col("base_id").str.to_lowercase().alias("base_lower"))
            .collect()
        )
    tags = (
        pl.concat(pieces)
        if pieces
        else pl.DataFrame(
            schema={
                "_row": pl.UInt32(),
                "relation": pl.String(),
                "base_id": pl.String(),
                "base_lower": pl.String(),
            }
        )
    ).lazy()
    del pieces
    relations = (
        tags.filter(pl.col("relation").is_not_null())
        .group_by("_row")
        .agg(pl.col("relation").unique().sort().str.join(",").alias("relations"))
    )
    bases = (
        tags.sort("_row", "base_lower", "base_id")
        .unique(subset=["_row", "base_lower"], keep="first", maintain_order=True)
        .group_by("_row", maintain_order=True)
        .agg(pl.col("base_lower"), pl.col("base_id").str.join(" ").alias("base_models"))
    )
    parsed = (
        bases.join(relations, on="_row", how="left", maintain_order="left")
        .with_columns(
            pl.when(pl.col("relations").str.contains("quantized"))
            .then(pl.lit("quantized"))
            .otherwise(pl.col("relations"))
            .alias("base_relation")
        )
        .drop("relations")
        .collect()
    )
    ids = snapshot.get_column("_id").gather(parsed.get_column("_row"))
    return parsed.select(ids.alias("_id"), pl.exclude("_row")).sort("_id")


def _bucket_table(mapping: pl.DataFrame) -> pl.DataFrame:
    return mapping.select(
        "org_lower",
        pl.col("org").alias("mapped_org"),
        pl.col("country").alias("bucket"),
        "is_developer",
    )


def _default_buckets(mapping: pl.DataFrame, account_types: pl.DataFrame) -> pl.DataFrame:
    """The account-type default of every typed namespace without a reviewed row (org_lower,
    bucket): a user account is INTL (an unaffiliated individual), an organisation or a vanished
    account UNKNOWN. Never a developer organisation (origin rule 2 needs a reviewed row)."""
    return (
        account_types.select(
            pl.col("namespace").str.to_lowercase().alias("org_lower"),
            pl.when(pl.col("account_type") == "user")
            .then(pl.lit(INTL))
            .otherwise(pl.lit(UNKNOWN))
            .alias("bucket"),
        )
        # One answer per namespace whatever its spelling (the Hub is case-insensitive).
        .sort("org_lower", "bucket")
        .unique("org_lower", keep="first", maintain_order=True)
        .join(mapping.select("org_lower"), on="org_lower", how="anti")
    )


def _attribution_table(mapping: pl.DataFrame, account_types: pl.DataFrame) -> pl.DataFrame:
    """(org_lower, bucket) of every namespace with an answer: its reviewed row, else its
    account-type default. A namespace in neither is UNKNOWN (filled by the callers)."""
    reviewed = mapping.select("org_lower", pl.col("country").alias("bucket"))
    return pl.concat([reviewed, _default_buckets(mapping, account_types)])


def attribute_models(
    snapshot: pl.DataFrame,
    mapping: pl.DataFrame,
    account_types: pl.DataFrame,
    lineage: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, LineageReport]:
    """Both views for a snapshot: (model facts, model origins, lineage report), with the
    lineage tags parsed once. `account_types` (at least `namespace`, `account_type`) decides the
    namespaces without a reviewed row; empty (NO_ACCOUNT_TYPES), every such namespace is
    UNKNOWN. `lineage` is `parse_lineage` of the snapshot if the caller has it (then the
    snapshot needs only FACT_SNAPSHOT_COLUMNS). Pass the snapshot without keeping a reference
    to free it early."""
    views: dict[str, pl.DataFrame] = {}
    report = store_attribution(snapshot, mapping, account_types, views.__setitem__, lineage)
    return views["model_fact"], views["model_origin"], report


def store_attribution(
    snapshot: pl.DataFrame,
    mapping: pl.DataFrame,
    account_types: pl.DataFrame,
    store: Callable[[str, pl.DataFrame], None],
    lineage: pl.DataFrame | None = None,
) -> LineageReport:
    """`attribute_models`, each view handed to `store(name, frame)` as soon as it is made:
    "model_fact" before the lineage walk, then "model_origin". A caller that writes them out
    (the daily flow) lets the facts go before the walk, which then holds only their ids: at 3M
    models that is about 0.4 GB less at enrichment's peak. Returns the lineage report."""
    if lineage is None:
        lineage = parse_lineage(snapshot)
    fact = attribute_uploader(snapshot, mapping, lineage, account_types)
    # The origin walk needs only each model's ids and uploader, which the facts hold: the
    # snapshot is let go here (a caller that passed it without keeping it frees it now).
    del snapshot
    ids = fact.select(
        pl.col("model_oid").alias("_id"),
        pl.col("model_id").alias("id"),
        pl.col("uploader").alias("author"),
    )
    store("model_fact", fact)
    del fact  # the ids are the facts' own columns (not copies); the others go now
    direct = ids.select(pl.col("_id").alias("model_oid"), pl.col("author").alias("uploader"))
    origin, report = attribute_origin(ids, direct, mapping, lineage, account_types)
    store("model_origin", origin)
    return report


def attribute_uploader(
    snapshot: pl.DataFrame,
    mapping: pl.DataFrame,
    lineage: pl.DataFrame | None = None,
    account_types: pl.DataFrame = NO_ACCOUNT_TYPES,
) -> pl.DataFrame:
    """Model facts with the uploader view's bucket: the mapped country of the namespace that
    uploaded the model (lookup exact, then case-insensitive: the mapping is free of
    case-insensitive duplicates, so one lower-case join does both), else its account-type
    default, else UNKNOWN. `lineage` is `parse_lineage(snapshot)` if the caller has it."""
    if lineage is None:
        lineage = parse_lineage(snapshot)
    buckets = _attribution_table(mapping, account_types)
    lineage = lineage.select("_id", "base_relation", "base_models")
    # Each namespace's bucket, looked up once per distinct spelling (not once per model).
    authors = snapshot.select(pl.col("author").drop_nulls().unique())
    bucket_of = authors.join(
        buckets, left_on=pl.col("author").str.to_lowercase(), right_on="org_lower", how="left"
    ).select("author", pl.col("bucket").fill_null(UNKNOWN).alias("uploader_bucket"))
    del authors
    # Only the looked-up columns are joined; the facts are the snapshot's own columns renamed
    # (not copied) beside them.
    looked_up = (
        snapshot.lazy()
        .select("_id", "author")
        .join(lineage.lazy(), on="_id", how="left", maintain_order="left")
        .join(bucket_of.lazy(), on="author", how="left", maintain_order="left")
        .select("base_relation", "base_models", pl.col("uploader_bucket").fill_null(UNKNOWN))
        .collect()
    )
    if looked_up.height != snapshot.height:
        # Only a snapshot that lists a model twice (never a stored one) gets here.
        return _facts_by_joins(snapshot, lineage, buckets)
    renamed = snapshot.select(*_fact_columns())
    looked_up = in_chunks_of(looked_up, renamed.get_column("model_oid"))
    fact = pl.concat([renamed, looked_up], how="horizontal").cast(MODEL_FACT_SCHEMA)
    del renamed, looked_up
    # A stored snapshot is sorted by `_id` already: sorting again would copy every fact.
    return fact if fact.get_column("model_oid").is_sorted() else fact.sort("model_oid")


def _fact_columns() -> list[pl.Expr | str]:
    """The snapshot's columns under their fact names, in the fact's order."""
    return [
        pl.col("_id").alias("model_oid"),
        pl.col("id").alias("model_id"),
        pl.col("author").alias("uploader"),
        pl.col("downloads").alias("downloads_30d"),
        pl.col("downloadsAllTime").alias("downloads_all_time"),
        "likes",
        pl.col("createdAt").alias("created_at"),
        pl.col("lastModified").alias("last_modified"),
        "pipeline_tag",
        "library_name",
        "gated",
    ]


def _facts_by_joins(
    snapshot: pl.DataFrame, lineage: pl.DataFrame, buckets: pl.DataFrame
) -> pl.DataFrame:
    """`attribute_uploader` of a snapshot that lists some model more than once."""
    fact = (
        snapshot.lazy()
        .join(lineage.lazy(), on="_id", how="left", maintain_order="left")
        .with_columns(pl.col("author").str.to_lowercase().alias("org_lower"))
        .join(buckets.lazy(), on="org_lower", how="left", maintain_order="left")
        .select(
            *_fact_columns(),
            "base_relation",
            "base_models",
            pl.col("bucket").fill_null(UNKNOWN).alias("uploader_bucket"),
        )
        .cast(MODEL_FACT_SCHEMA)
        .collect()
    )
    return fact if fact.get_column("model_oid").is_sorted() else fact.sort("model_oid")


def _walk_lineage(
    with_base: pl.DataFrame, ids: pl.DataFrame, canonical: pl.DataFrame
) -> tuple[pl.DataFrame, LineageReport]:
    """Walk every declared lineage up to its origin organisations, all models at once: one
    polars step per generation of bases (at most MAX_DEPTH). Returns (model_oid, origin_org,
    weight_num, weight_den) with exact weights, and what the walk met. `ids` holds every
    model's `id` and `author`."""
    # The walk moves integers, not text: each lower-cased id it can meet (a model with a base,
    # or a base) has a number (`numbered`), each walked row carries its model's row in
    # `with_base` (`m`), and an organisation is named by where it is read (`src`, `ref`) until
    # the walk ends. At 3M models the ids, uploaders and paths as text were most of its memory.
    keys = pl.concat(
        [with_base.get_column("id_lower"), with_base.get_column("base_lower").explode()]
    ).unique()
    numbered = pl.DataFrame(
        {"key": keys, "code": pl.int_range(keys.len(), dtype=pl.UInt32, eager=True)}
    )

    def code(ids: pl.Series) -> pl.Series:
        return (
            ids.to_frame("key")
            .join(numbered, on="key", how="left", maintain_order="left")
            .get_column("code")
        )

    # Each model's bases, one row each, as (m, base): a generation's next ids come by a join.
    edges = with_base.select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("m"), pl.col("base_lower").alias("base")
    ).explode("base")
    edges = edges.with_columns(code(edges.get_column("base")).alias("base"))
    walked = with_base.select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("m"),
        code(with_base.get_column("id_lower")).alias("cur"),
        ((pl.col("base_relation") == "quantized").fill_null(False) | ~pl.col("is_developer")).alias(
            "cur_follows"
        ),
        pl.col("base_lower").list.len().cast(pl.Int64).alias("n_bases"),
    )
    # A node is the first model with its lower-cased id; its uploader is read at row `node`.
    nodes = walked.unique("cur", keep="first").rename({"m": "node"})
    # Only ids that some model names as a base can be met on the walk: joining each step with
    # those alone keeps the hash tables to a third of the snapshot.
    bases = keys.gather(edges.get_column("base").unique())
    listed = (
        ids.lazy()
        .select(
            pl.col("id").str.to_lowercase().alias("cur"), pl.col("author").alias("listed_uploader")
        )
        .filter(pl.col("cur").is_in(bases.implode()))
        # A morsel at a time: the lower-cased ids of every model are never all in memory.
        .collect(engine="streaming")
    )
    del bases
    listed_uploader = listed.get_column("listed_uploader")
    # A listed model's row in `listed_uploader` (none where the Hub gave it no author).
    listed = listed.select(
        pl.lit(code(listed.get_column("cur"))).alias("cur"),
        pl.when(pl.col("listed_uploader").is_not_null())
        .then(pl.int_range(pl.len(), dtype=pl.UInt32))
        .alias("listed"),
    )
    # Whether each id has a namespace (its kind when it is neither a node nor listed).
    slashed = keys.str.contains("/", literal=True)
    # Rule 1 (quantized) and rule 2 (developer organisations) as the node of the model's id has
    # them; the model's own bases.
    roots = walked.drop("cur_follows").join(nodes.select("cur", "cur_follows"), on="cur")
    del walked
    # Where a terminal's organisation is read: the uploader of `with_base` row `ref`, the
    # listed model `ref`'s uploader, or the namespace of id `ref`.
    uploader, listed_model, namespace = 0, 1, 2
    # Rule 2 (developer organisations keep their models) unless rule 1 (quantized) applies.
    terminals = [
        roots.filter(~pl.col("cur_follows")).select(
            "m",
            pl.lit(uploader, pl.UInt8).alias("src"),
            pl.col("m").alias("ref"),
            pl.lit(1, pl.Int64).alias("num"),
            pl.lit(1, pl.Int64).alias("den"),
        )
    ]
    frontier = (
        roots.filter("cur_follows")
        .select(
            "m",
            pl.col("m").alias("parent"),
            pl.lit(1, pl.Int64).alias("num"),
            pl.col("n_bases").alias("den"),
            pl.lit(1, pl.UInt8).alias("depth"),
            pl.concat_list("cur").alias("path"),
        )
        .join(edges, on="m")
        .rename({"base": "cur"})
    )
    del roots
    met: dict[str, list[pl.Series]] = {"listed": [], "namespace": [], "unresolvable": []}
    capped: list[pl.Series] = []
    cycled: list[pl.Series] = []
    while frontier.height:
        step = frontier.join(nodes, on="cur", how="left").join(listed, on="cur", how="left")
        step = step.with_columns(slashed.gather(step.get_column("cur")).alias("slashed"))
        cycle = pl.col("path").list.contains(pl.col("cur"))
        follows = pl.col("cur_follows").fill_null(False)
        at_cap = follows & (pl.col("depth") >= MAX_DEPTH)
        step = step.with_columns(
            pl.when(cycle)
            .then(pl.lit("cycle"))
            .when(at_cap)
            .then(pl.lit("capped"))
            .when(follows)
            .then(pl.lit("expand"))
            .when(pl.col("listed").is_not_null())
            .then(pl.lit("listed"))
            .when("slashed")
            .then(pl.lit("namespace"))
            .otherwise(pl.lit("unresolvable"))
            .cast(pl.Categorical)
            .alias("kind")
        )
        kind = pl.col("kind")
        for name in ("listed", "namespace", "unresolvable"):
            met[name].append(step.filter(kind == name).get_column("cur"))
        met["listed"].append(step.filter(kind.is_in(["capped", "expand"])).get_column("cur"))
        capped.append(step.filter(kind == "capped").get_column("m"))
        cycled.append(step.filter(kind == "cycle").get_column("m"))
        terminals.append(
            step.filter(kind != "expand").select(
                "m",
                pl.when(kind == "listed")
                .then(pl.lit(listed_model, pl.UInt8))
                .when(kind == "namespace")
                .then(pl.lit(namespace, pl.UInt8))
                .otherwise(pl.lit(uploader, pl.UInt8))
                .alias("src"),
                pl.when(kind == "listed")
                .then(pl.col("listed"))
                .when(kind == "capped")
                .then(pl.col("node"))
                .when(kind == "namespace")
                .then(pl.col("cur"))
                # A cycle ends at the model where it closes, and a bare id that is not listed
                # cannot be resolved: either way that model keeps its uploader.
                .otherwise(pl.col("parent"))
                .alias("ref"),
                "num",
                "den",
            )
        )
        frontier = (
            step.filter(kind == "expand")
            .select(
                "m",
                pl.col("node").alias("parent"),
                "num",
                (pl.col("den") * pl.col("n_bases")).alias("den"),
                (pl.col("depth") + 1).alias("depth"),
                pl.concat_list("path", "cur").alias("path"),
            )
            .join(edges, left_on="parent", right_on="m")
            .rename({"base": "cur"})
        )
        del step
    del nodes, listed, frontier
    ended = pl.concat(terminals)
    del terminals
    named = []
    for source in (uploader, listed_model, namespace):
        part = ended.filter(pl.col("src") == source)
        refs = part.get_column("ref")
        if source == uploader:
            org = with_base.get_column("author").gather(refs)
        elif source == listed_model:
            org = listed_uploader.gather(refs)
        else:
            org = keys.gather(refs).str.split("/").list.first()
        named.append(part.select("m", org.alias("org"), "num", "den"))
    del ended
    reached = (
        pl.concat(named)
        .with_columns(pl.col("org").str.to_lowercase().alias("k"))
        .join(canonical, on="k", how="left")
        .select("m", pl.coalesce("canonical", "org").alias("origin_org"), "num", "den")
    )
    # Several paths to one organisation (merges): add their exact fractions.
    parts = reached.group_by("m", "origin_org").agg("num", "den")
    model_oid = with_base.get_column("_id").gather(parts.get_column("m")).alias("model_oid")
    parts = parts.select(model_oid, pl.exclude("m"))
    single = parts.filter(pl.col("num").list.len() == 1).select(
        "model_oid",
        "origin_org",
        pl.col("num").list.first().alias("weight_num"),
        pl.col("den").list.first().alias("weight_den"),
    )
    summed = []
    for oid, org, nums, dens in parts.filter(pl.col("num").list.len() > 1).iter_rows():
        total = sum((Fraction(n, d) for n, d in zip(nums, dens, strict=True)), Fraction(0))
        summed.append((oid, org, total.numerator, total.denominator))
    schema = pl.Schema(
        {
            "model_oid": pl.String(),
            "origin_org": pl.String(),
            "weight_num": pl.Int64(),
            "weight_den": pl.Int64(),
        }
    )
    lineage_origin = pl.concat(
        [single.cast(schema), pl.DataFrame(summed, schema=schema, orient="row")]
    )
    capped_roots, cycle_roots = _roots(with_base, capped), _roots(with_base, cycled)
    report = LineageReport(
        bases_in_snapshot=_distinct(met["listed"]),
        bases_by_namespace=_distinct(met["namespace"]),
        bases_unresolvable=_distinct(met["unresolvable"]),
        depth_capped=len(capped_roots),
        cycles=len(cycle_roots),
        capped_examples=sorted(capped_roots)[:5],
        cycle_examples=sorted(cycle_roots)[:5],
    )
    return lineage_origin, report


def _distinct(parts: list[pl.Series]) -> int:
    """How many distinct values the parts hold together."""
    return pl.concat(parts).n_unique() if parts else 0


def _roots(with_base: pl.DataFrame, rows: list[pl.Series]) -> set[str]:
    """The lower-cased ids of the models at `rows` of `with_base`."""
    if not rows:
        return set()
    return set(with_base.get_column("id_lower").gather(pl.concat(rows).unique()).to_list())


def attribute_origin(
    snapshot: pl.DataFrame,
    model_fact: pl.DataFrame,
    mapping: pl.DataFrame,
    lineage: pl.DataFrame | None = None,
    account_types: pl.DataFrame = NO_ACCOUNT_TYPES,
) -> tuple[pl.DataFrame, LineageReport]:
    """One row per (model, origin organisation) with the exact weight of the model's downloads
    that goes to it, and the organisation's bucket (its reviewed row, else its account-type
    default, else UNKNOWN). Only reviewed rows make developer organisations (rule 2); rules 1,
    3 and 4 carry a default like any bucket. Of `snapshot` only `_id`, `id` and `author` are
    read (and `tags`, unless `lineage` is given); of `model_fact`, `model_oid` and `uploader`."""
    if lineage is None:
        lineage = parse_lineage(snapshot)
    buckets = _bucket_table(mapping)
    # Ids are lower-cased for the models with a base only (the walk looks the others up as it
    # meets them), not for every model.
    with_base = (
        lineage.join(snapshot.select("_id", "id", "author"), on="_id")
        .with_columns(
            pl.col("id").str.to_lowercase().alias("id_lower"),
            pl.col("author").str.to_lowercase().alias("org_lower"),
        )
        .drop("id")
        .join(buckets, on="org_lower", how="left")
        .with_columns(pl.col("is_developer").fill_null(False))
    )
    # Report namespaces as the mapping spells them, else as the Hub does (author field).
    spelled = buckets.select(
        pl.col("org_lower").alias("k"), pl.col("mapped_org").alias("canonical")
    )
    # Distinct spellings first (in order, so "first" is the same model's), then lower-cased.
    authors = (
        snapshot.select(pl.col("author").unique(maintain_order=True))
        .select(pl.col("author").str.to_lowercase().alias("k"), pl.col("author").alias("canonical"))
        .unique("k", keep="first")
    )
    canonical = pl.concat([spelled, authors.join(spelled, on="k", how="anti")])

    lineage_origin, report = _walk_lineage(with_base, snapshot, canonical)
    report.models_with_base = with_base.height
    report.quantized = int((with_base["base_relation"] == "quantized").sum())
    report.merges = int((with_base["base_lower"].list.len() > 1).sum())
    # Every model without a lineage row is its uploader's own: taken in the facts' order.
    # The two columns first, then the filter: filtering the facts first copied all of them.
    direct = (
        model_fact.select("model_oid", pl.col("uploader").alias("origin_org"))
        .filter(~pl.col("model_oid").is_in(lineage.get_column("_id").implode()))
        .with_columns(
            pl.lit(1, pl.Int64).alias("weight_num"), pl.lit(1, pl.Int64).alias("weight_den")
        )
    )
    lineage_origin = lineage_origin.sort("model_oid", "origin_org")
    if direct.get_column("model_oid").is_sorted():
        # The two share no model: merging them is sorting them all, without the copies.
        combined = direct.merge_sorted(lineage_origin, key="model_oid")
    else:
        combined = pl.concat([direct, lineage_origin]).sort("model_oid", "origin_org")
    del direct, lineage_origin
    # Each organisation's bucket, looked up once per distinct spelling.
    orgs = combined.select(pl.col("origin_org").drop_nulls().unique())
    bucket_of = orgs.join(
        _attribution_table(mapping, account_types),
        left_on=pl.col("origin_org").str.to_lowercase(),
        right_on="org_lower",
        how="left",
    ).select("origin_org", pl.col("bucket").fill_null(UNKNOWN).alias("origin_bucket"))
    del orgs
    # Only the bucket is joined; the other columns are combined's own beside it (not copied).
    looked_up = (
        combined.lazy()
        .select("origin_org")
        .join(bucket_of.lazy(), on="origin_org", how="left", maintain_order="left")
        .select(pl.col("origin_bucket").fill_null(UNKNOWN))
        .collect()
    )
    looked_up = in_chunks_of(looked_up, combined.get_column("model_oid"))
    origin = pl.concat([combined, looked_up], how="horizontal").select(
        "model_oid",
        "origin_org",
        "origin_bucket",
        (pl.col("weight_num") / pl.col("weight_den")).alias("weight"),
        "weight_num",
        "weight_den",
    )
    del combined, looked_up
    return origin.cast(MODEL_ORIGIN_SCHEMA), report
