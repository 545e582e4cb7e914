"""Enrich: give every model its uploader bucket and its origin (methodology.md, "Views").

Vectorised in polars for the many models without lineage; only models that declare a base are
walked up their lineage, in Python with memoisation, keeping exact fractional weights so that
merges split downloads without rounding drift.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import polars as pl

from schemas.frames import MODEL_FACT_SCHEMA, MODEL_ORIGIN_SCHEMA

#: Declared relations in `base_model:<relation>:<id>` tags.
RELATIONS = ("adapter", "finetune", "merge", "quantized")
MAX_DEPTH = 10
ONE = Fraction(1)
UNKNOWN = "UNKNOWN"


@dataclass
class LineageReport:
    """What the lineage walk met: counted in the run's report."""

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
    tags = (
        snapshot.lazy()
        .select("_id", "tags")
        .explode("tags")
        .filter(pl.col("tags").str.starts_with("base_model:"))
        .with_columns(pl.col("tags").str.strip_prefix("base_model:").alias("rest"))
        .with_columns(
            pl.col("rest").str.extract(rel_pattern).alias("relation"),
            pl.col("rest").str.replace(rel_pattern, "").str.strip_chars().alias("base_id"),
        )
        .filter(pl.col("base_id") != "")
        .with_columns(pl.col("base_id").str.to_lowercase().alias("base_lower"))
    )
    relations = (
        tags.filter(pl.col("relation").is_not_null())
        .group_by("_id")
        .agg(pl.col("relation").unique().sort().str.join(",").alias("relations"))
    )
    bases = (
        tags.sort("_id", "base_lower", "base_id")
        .unique(subset=["_id", "base_lower"], keep="first")
        .sort("_id", "base_lower")
        .group_by("_id", maintain_order=True)
        .agg(pl.col("base_lower"), pl.col("base_id").str.join(" ").alias("base_models"))
    )
    return (
        bases.join(relations, on="_id", how="left")
        .with_columns(
            pl.when(pl.col("relations").str.contains("quantized"))
            .then(pl.lit("quantized"))
            .otherwise(pl.col("relations"))
            .alias("base_relation")
        )
        .drop("relations")
        .collect()
    )


def _bucket_table(mapping: pl.DataFrame) -> pl.DataFrame:
    return mapping.select(
        "org_lower",
        pl.col("org").alias("mapped_org"),
        pl.col("country").alias("bucket"),
        "is_developer",
    )


def attribute_uploader(snapshot: pl.DataFrame, mapping: pl.DataFrame) -> pl.DataFrame:
    """Model facts with the uploader view's bucket: the mapped country of the namespace that
    uploaded the model (lookup exact, then case-insensitive: the mapping is free of
    case-insensitive duplicates, so one lower-case join does both), else UNKNOWN."""
    lineage = parse_lineage(snapshot)
    return (
        snapshot.join(lineage.drop("base_lower"), on="_id", how="left")
        .with_columns(pl.col("author").str.to_lowercase().alias("org_lower"))
        .join(_bucket_table(mapping), on="org_lower", how="left")
        .select(
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
            "base_relation",
            "base_models",
            pl.col("bucket").fill_null(UNKNOWN).alias("uploader_bucket"),
        )
        .cast(MODEL_FACT_SCHEMA)
        .sort("model_oid")
    )


@dataclass(frozen=True)
class _Walk:
    weights: dict[str, Fraction]
    hops: int = 0  # longest chain of base links followed
    truncated: bool = False  # cut by the depth cap or a cycle somewhere below


@dataclass(frozen=True)
class _Node:
    uploader: str
    is_developer: bool
    quantized: bool
    bases: tuple[str, ...]


class _OriginResolver:
    """Walks lineage up to MAX_DEPTH; results are exact fractions of one model's downloads."""

    def __init__(
        self,
        nodes: dict[str, _Node],
        uploader_of: dict[str, str],
        is_developer: dict[str, bool],
        canonical: dict[str, str],
    ) -> None:
        self.nodes = nodes
        self.uploader_of = uploader_of  # base id (lower) in the snapshot -> its uploader
        self.is_developer = is_developer
        self.canonical = canonical  # namespace (lower) -> spelling to report
        self.memo: dict[str, _Walk] = {}
        self.report = LineageReport()

    def org(self, namespace: str) -> str:
        return self.canonical.get(namespace.lower(), namespace)

    def follows_base(self, node: _Node) -> bool:
        # Rule 1 (quantized copies are the base) before rule 2 (developer orgs keep their
        # models), then rule 3 (any declared base); rule 4 (uploader) otherwise.
        return bool(node.bases) and (node.quantized or not node.is_developer)

    def resolve(self, key: str, path: tuple[str, ...]) -> dict[str, Fraction]:
        return self._walk(key, path).weights

    def _walk(self, key: str, path: tuple[str, ...]) -> _Walk:
        """Origin of the model `key`, reached along `path` (which ends with `key`)."""
        budget = MAX_DEPTH - (len(path) - 1)
        cached = self.memo.get(key)
        if cached is not None and cached.hops <= budget:
            return cached
        node = self.nodes.get(key)
        if node is None:  # in the snapshot, no declared base: its uploader
            return _Walk({self.org(self.uploader_of[key]): ONE})
        if not self.follows_base(node):
            walk = _Walk({self.org(node.uploader): ONE})
        elif budget <= 0:
            self.report.depth_capped += 1
            if len(self.report.capped_examples) < 5:
                self.report.capped_examples.append(key)
            return _Walk({self.org(node.uploader): ONE}, truncated=True)
        elif len(node.bases) == 1:  # the common case: no splitting, no fraction arithmetic
            sub = self._walk_base(node.bases[0], key, path)
            walk = _Walk(sub.weights, sub.hops + 1, sub.truncated)
        else:
            weights: dict[str, Fraction] = {}
            hops, truncated = 0, False
            share = Fraction(1, len(node.bases))
            for base in node.bases:
                sub = self._walk_base(base, key, path)
                hops, truncated = max(hops, sub.hops + 1), truncated or sub.truncated
                for org, weight in sub.weights.items():
                    weights[org] = weights.get(org, Fraction(0)) + weight * share
            walk = _Walk(weights, hops, truncated)
        # A walk cut short by the cap or a cycle depends on where it started: not reusable.
        if not walk.truncated:
            self.memo[key] = walk
        return walk

    def _walk_base(self, base: str, child: str, path: tuple[str, ...]) -> _Walk:
        if base in path:
            # The cycle ends at the model where it closes: that model keeps its uploader.
            self.report.cycles += 1
            if len(self.report.cycle_examples) < 5:
                self.report.cycle_examples.append(child)
            return _Walk({self.org(self.nodes[child].uploader): ONE}, truncated=True)
        if base in self.nodes or base in self.uploader_of:
            self.report.bases_in_snapshot += 1
            return self._walk(base, (*path, base))
        if "/" in base:  # absent from the snapshot: resolve through its namespace
            self.report.bases_by_namespace += 1
            return _Walk({self.org(base.split("/", 1)[0]): ONE})
        # A bare legacy id (e.g. "gpt2") that is not listed: nothing to resolve it through.
        self.report.bases_unresolvable += 1
        return _Walk({self.org(self.nodes[child].uploader): ONE})


def _frame_rows(frame: pl.DataFrame, *columns: str) -> Iterable[tuple[Any, ...]]:
    return frame.select(columns).iter_rows()


def attribute_origin(
    snapshot: pl.DataFrame, model_fact: pl.DataFrame, mapping: pl.DataFrame
) -> tuple[pl.DataFrame, LineageReport]:
    """One row per (model, origin organisation) with the exact weight of the model's downloads
    that goes to it, and the organisation's bucket."""
    lineage = parse_lineage(snapshot)
    buckets = _bucket_table(mapping)
    ids = snapshot.select(
        "_id", pl.col("id").str.to_lowercase().alias("id_lower"), pl.col("author")
    )
    with_base = (
        lineage.join(ids, on="_id")
        .with_columns(pl.col("author").str.to_lowercase().alias("org_lower"))
        .join(buckets, on="org_lower", how="left")
        .with_columns(pl.col("is_developer").fill_null(False))
    )
    nodes = {
        id_lower: _Node(author, bool(is_dev), relation == "quantized", tuple(bases))
        for id_lower, author, is_dev, relation, bases in _frame_rows(
            with_base, "id_lower", "author", "is_developer", "base_relation", "base_lower"
        )
    }
    referenced = with_base.select(pl.col("base_lower").explode().unique().alias("id_lower"))
    uploader_of = dict(_frame_rows(referenced.join(ids, on="id_lower"), "id_lower", "author"))
    # Report namespaces as the mapping spells them, else as the Hub does (author field).
    canonical = dict(
        _frame_rows(
            ids.select(pl.col("author").str.to_lowercase().alias("k"), "author").unique("k"),
            "k",
            "author",
        )
    )
    canonical.update(_frame_rows(buckets, "org_lower", "mapped_org"))
    is_developer = dict(_frame_rows(buckets, "org_lower", "is_developer"))

    resolver = _OriginResolver(nodes, uploader_of, is_developer, canonical)
    report = resolver.report
    report.models_with_base = len(nodes)
    report.quantized = sum(node.quantized for node in nodes.values())
    report.merges = sum(len(node.bases) > 1 for node in nodes.values())
    rows: list[tuple[str, str, int, int]] = []
    for oid, id_lower in _frame_rows(with_base.sort("_id"), "_id", "id_lower"):
        for org, weight in sorted(resolver.resolve(str(id_lower), (str(id_lower),)).items()):
            rows.append((str(oid), org, weight.numerator, weight.denominator))
    lineage_origin = pl.DataFrame(
        rows,
        schema={
            "model_oid": pl.String,
            "origin_org": pl.String,
            "weight_num": pl.Int64,
            "weight_den": pl.Int64,
        },
        orient="row",
    )
    direct = model_fact.join(lineage_origin.select("model_oid"), on="model_oid", how="anti").select(
        "model_oid",
        pl.col("uploader").alias("origin_org"),
        pl.lit(1, pl.Int64).alias("weight_num"),
        pl.lit(1, pl.Int64).alias("weight_den"),
    )
    origin = (
        pl.concat([direct, lineage_origin])
        .with_columns(pl.col("origin_org").str.to_lowercase().alias("org_lower"))
        .join(buckets.select("org_lower", "bucket"), on="org_lower", how="left")
        .select(
            "model_oid",
            "origin_org",
            pl.col("bucket").fill_null(UNKNOWN).alias("origin_bucket"),
            (pl.col("weight_num") / pl.col("weight_den")).alias("weight"),
            "weight_num",
            "weight_den",
        )
        .sort("model_oid", "origin_org")
    )
    return origin.cast(MODEL_ORIGIN_SCHEMA), report
