"""Explain: why did a bucket's share move between two published runs?

For a bucket b of one view, with T the population total and B(b) its downloads,

    share_to − share_from = B2(b)/T2 − B1(b)/T1
      = [B2(b) − B2'(b)] / T2                    mapping changes
      + Σ new models in b / T2                   models new since D1
      + Σ_org [existing models' change] / T2     per organisation
      + B1(b) · (1/T2 − 1/T1)                    the change of the population total

where B1, B2 are the published organisation totals of the two runs and B2' is the D2 snapshot
attributed with D1's mapping as of D1's date (so the mapping's effect is isolated from the
models'): a mapping part is a row edited between the two runs' files or a namespace whose dated
rows change country between the two dates, and names both countries when its bucket changed.
Organisations with no country are one organisation here, as the warehouse stores them. Every part is
an exact fraction, so the parts add up to the change exactly; they are then rounded to
SHARE_DECIMALS places so that the rounded parts still add up exactly to the rounded change.

Most of a bucket's parts are tiny (the population total moves every bucket a little), so what a
person reads is a summary (`summarise`): the few largest parts above a threshold, the others
summed in one `rest` part, still adding up exactly to the change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction
from typing import Any

import polars as pl
from sqlalchemy import Engine

from hubshare.errors import HubshareError, UsageError, WarehouseError
from hubshare.settings import Settings
from hubshare.warehouse import published_orgs, published_run_of, require_current
from schemas.run import RunInputs
from tasks.account_types import open_account_types
from tasks.enrich import attribute_models
from tasks.mapping import load_mapping, mapping_key
from tasks.shares import (
    DEFINITION,
    OTHER_UNKNOWN_ORGS,
    SHARE_DECIMALS,
    attribution_rows,
    compute_shares,
    fold_unknown_orgs,
    headline_metric,
    largest_remainder,
)
from tasks.snapshot import read_snapshot, stored_snapshot

#: Part kinds, in the order they are listed; `rest` only in a summary.
KINDS = ("mapping", "new_models", "organisation", "population_total", "rest")
#: A summary's defaults: at most this many parts per bucket, each moving it by at least this
#: many percentage points (the rest summed).
SUMMARY_PARTS = 5
SUMMARY_THRESHOLD_PP = Fraction(1, 100)
OTHER_ORGS = "(other organisations)"
OTHER_MAPPING = "(other mapping effects)"


@dataclass(frozen=True)
class Part:
    kind: str  # mapping | new_models | organisation | population_total | rest
    name: str
    contribution: Fraction
    # A mapping part whose organisation changed bucket: its bucket on each side (D2's snapshot
    # under D1's mapping as of D1, and under D2's as of D2).
    country_from: str | None = None
    country_to: str | None = None

    @property
    def label(self) -> str:
        """The name, with the move for a mapping part (`sentence-transformers DE → US`)."""
        if self.country_from is None or self.country_to is None:
            return self.name
        return f"{self.name} {self.country_from} → {self.country_to}"


@dataclass(frozen=True)
class BucketChange:
    country: str
    attribution: str
    share_from: Fraction
    share_to: Fraction
    parts: tuple[Part, ...]

    @property
    def change(self) -> Fraction:
        return self.share_to - self.share_from


@dataclass(frozen=True)
class PublishedRun:
    run_id: str
    inputs: RunInputs


def published_run(engine: Engine, day: date) -> PublishedRun:
    row = published_run_of(engine, day)
    if row is None:
        raise WarehouseError(
            f"no published run for {day}: `hubshare runs --date {day}` shows what ran "
            "(explain compares two published runs)"
        )
    return PublishedRun(row["run_id"], RunInputs.from_run_row(row))


def _published_orgs(engine: Engine, run_id: str) -> pl.DataFrame:
    """(attribution, org_lower, bucket, downloads) of a run's headline organisation shares."""
    return _by_lower(published_orgs(engine, run_id, DEFINITION))


def _by_lower(orgs: pl.DataFrame) -> pl.DataFrame:
    """Organisations keyed case-insensitively (two mappings may spell a namespace differently)."""
    return orgs.group_by("attribution", pl.col("org").str.to_lowercase().alias("org_lower")).agg(
        pl.col("org").first(), pl.col("bucket").first(), pl.col("downloads").sum()
    )


def _exact_per_org(rows: pl.DataFrame) -> dict[str, Fraction]:
    """Exact sum of `num / den` per organisation (lower-cased)."""
    sums = (
        rows.group_by(pl.col("org").str.to_lowercase().alias("org_lower"), "den")
        .agg(pl.col("num").cast(pl.Int128).sum())
        .iter_rows()
    )
    exact: dict[str, Fraction] = {}
    for org, den, num in sums:
        exact[org] = exact.get(org, Fraction(0)) + Fraction(int(num), int(den))
    return exact


def _top_parts(
    kind: str,
    amounts: dict[str, Fraction],
    top: int | None,
    rest: str,
    moves: dict[str, tuple[str, str]] | None = None,
) -> list[Part]:
    """The `top` largest contributions by size (None: all), the others summed in one part;
    `moves` gives the (from, to) buckets of the names that changed bucket."""
    ranked = sorted((a for a in amounts.items() if a[1] != 0), key=lambda a: (-abs(a[1]), a[0]))
    top = len(ranked) if top is None else top
    parts = [
        Part(kind, name, value, *(moves or {}).get(name, (None, None)))
        for name, value in ranked[:top]
    ]
    remainder = sum((value for _, value in ranked[top:]), Fraction(0))
    if remainder != 0:
        parts.append(Part(kind, rest, remainder))
    return parts


def explain_shares(
    from_date: date, to_date: date, settings: Settings, engine: Engine, top: int | None = None
) -> list[BucketChange]:
    """Every bucket's headline share change from `from_date` to `to_date`, in both views, in
    full (`top`: name only that many organisations per kind and bucket, the others summed)."""
    if from_date >= to_date:
        raise UsageError(f"--from {from_date} must precede --to {to_date}")
    require_current(engine)
    run_from, run_to = published_run(engine, from_date), published_run(engine, to_date)
    for day in (from_date, to_date):
        if stored_snapshot(day, settings) is None:
            raise HubshareError(
                f"no raw snapshot stored for {day} in {settings.store.where('raw')}: explain "
                "recomputes from the stored inputs of both runs"
            )
    mapping_sha256 = run_from.inputs.mapping_sha256
    archived = mapping_key(mapping_sha256)
    with settings.store.local_file(archived) as mapping_file:
        if mapping_file is None:
            raise HubshareError(
                f"the mapping of {from_date}'s run ({mapping_sha256[:12]}…) is not "
                f"archived at {settings.store.where(archived)}"
            )
        # D1's rows as of D1: a namespace whose dated rows change country between the dates
        # shows as a mapping part, as an edit of the file does.
        old_mapping = load_mapping(mapping_file).on(from_date)
    snapshot = read_snapshot(to_date, settings)
    # D1's account types with D1's mapping: a namespace typed since counts as a mapping effect.
    old_types = open_account_types(settings, run_from.inputs)
    fact, origin, _ = attribute_models(snapshot, old_mapping, old_types)
    _, under_old = compute_shares(fact, origin)  # D2's models under D1's mapping
    known = read_snapshot(from_date, settings, columns=["_id"]).rename({"_id": "model_oid"})
    new_fact = fact.join(known, on="model_oid", how="anti")
    new_rows = dict(
        zip(
            ("uploader", "origin"),
            attribution_rows(new_fact, origin, headline_metric(new_fact)),
            strict=True,
        )
    )
    orgs_from = _published_orgs(engine, run_from.run_id)
    orgs_to = _published_orgs(engine, run_to.run_id)
    # The warehouse keeps organisations with no country as one row (fold_unknown_orgs): the
    # middle term is folded the same way, and so are the new models it counts.
    orgs_mid = _by_lower(fold_unknown_orgs(under_old))
    new_rows = {
        view: rows.with_columns(
            pl.when(pl.col("bucket") == "UNKNOWN")
            .then(pl.lit(OTHER_UNKNOWN_ORGS))
            .otherwise(pl.col("org"))
            .alias("org")
        )
        for view, rows in new_rows.items()
    }
    changes: list[BucketChange] = []
    for view in ("uploader", "origin"):
        before, middle, after = (
            orgs.filter(pl.col("attribution") == view) for orgs in (orgs_from, orgs_mid, orgs_to)
        )
        changes += _explain_view(view, before, middle, after, _exact_per_org(new_rows[view]), top)
    return changes


def _explain_view(
    view: str,
    before: pl.DataFrame,
    middle: pl.DataFrame,
    after: pl.DataFrame,
    new_models: dict[str, Fraction],
    top: int | None,
) -> list[BucketChange]:
    def table(frame: pl.DataFrame) -> dict[str, tuple[str, str, int]]:
        return {
            key: (org, bucket, downloads)
            for key, org, bucket, downloads in frame.select(
                "org_lower", "org", "bucket", "downloads"
            ).rows()
        }

    t_from, t_mid, t_to = table(before), table(middle), table(after)
    total_from = sum(d for _, _, d in t_from.values())
    total_to = sum(d for _, _, d in t_to.values())
    if total_from == 0 or total_to == 0:
        raise HubshareError(f"{view} view: a run has no downloads, so no share to explain")
    names = {key: entry[0] for table_ in (t_from, t_mid, t_to) for key, entry in table_.items()}
    # Organisations in a bucket under both mappings, not the same one: the mapping moved them.
    moves = {
        names[key]: (t_mid[key][1], t_to[key][1])
        for key in t_mid.keys() & t_to.keys()
        if t_mid[key][1] != t_to[key][1]
    }
    # Only the organisations that sit in a bucket on some side can contribute to it: one pass
    # over those, not over every organisation for every bucket.
    members: dict[str, set[str]] = {}
    for entries in (t_from, t_mid, t_to):
        for key, (_, bucket, _) in entries.items():
            members.setdefault(bucket, set()).add(key)
    results = []
    for bucket in sorted(members):

        def amount(entries: dict[str, tuple[str, str, int]], key: str, b: str = bucket) -> int:
            entry = entries.get(key)
            return entry[2] if entry is not None and entry[1] == b else 0

        mapping: dict[str, Fraction] = {}
        organisation: dict[str, Fraction] = {}
        new_total = Fraction(0)
        for key in sorted(members[bucket]):
            name = names[key]
            mapping[name] = Fraction(amount(t_to, key) - amount(t_mid, key), total_to)
            # New models count where their organisation sits under the first date's mapping.
            in_bucket = key in t_mid and t_mid[key][1] == bucket
            new = new_models.get(key, Fraction(0)) if in_bucket else Fraction(0)
            new_total += new / total_to
            organisation[name] = (
                Fraction(amount(t_mid, key) - amount(t_from, key), total_to) - new / total_to
            )
        in_from = sum(amount(t_from, key) for key in members[bucket])
        parts = _top_parts("mapping", mapping, top, OTHER_MAPPING, moves)
        if new_total != 0:
            parts.append(Part("new_models", "models new since the first date", new_total))
        parts += _top_parts("organisation", organisation, top, OTHER_ORGS)
        total_effect = in_from * (Fraction(1, total_to) - Fraction(1, total_from))
        if total_effect != 0:
            parts.append(Part("population_total", "change of the population total", total_effect))
        in_to = sum(amount(t_to, key) for key in members[bucket])
        change = BucketChange(
            bucket,
            view,
            Fraction(in_from, total_from),
            Fraction(in_to, total_to),
            tuple(parts),
        )
        assert sum((p.contribution for p in parts), Fraction(0)) == change.change
        results.append(change)
    return sorted(results, key=lambda c: (c.attribution != "uploader", -abs(c.change), c.country))


# ----------------------------------------------------------------------------------------------
# Rendering: fixed decimals that still add up exactly


def to_decimal(value: Fraction, decimals: int = SHARE_DECIMALS) -> Decimal:
    """`value` rounded half-even to `decimals` places."""
    units = round(value * 10**decimals)  # Fraction.__round__ rounds half to even
    return Decimal(units).scaleb(-decimals)


def rounded_parts(
    change: BucketChange, decimals: int = SHARE_DECIMALS
) -> tuple[Decimal, Decimal, Decimal, list[Decimal]]:
    """(share_from, share_to, change, parts) rounded to `decimals` places so that the parts sum
    exactly to the change and the change is exactly share_to − share_from: largest remainders
    take the last units."""
    share_from = to_decimal(change.share_from, decimals)
    share_to = to_decimal(change.share_to, decimals)
    target = round((share_to - share_from).scaleb(decimals))
    if not change.parts:  # nothing moved, and the rounded shares are equal
        return share_from, share_to, share_to - share_from, []
    units = largest_remainder(
        [part.contribution * 10**decimals for part in change.parts],
        target,
        [part.name for part in change.parts],
    )
    parts = [Decimal(u).scaleb(-decimals) for u in units]
    return share_from, share_to, share_to - share_from, parts


def summarise(
    change: BucketChange,
    top: int = SUMMARY_PARTS,
    threshold_pp: Fraction = SUMMARY_THRESHOLD_PP,
) -> BucketChange:
    """The bucket's change with only its `top` largest parts of at least `threshold_pp`
    percentage points, the others summed in one `rest` part (absent when there are none): the
    parts still add up exactly to the change."""
    threshold = threshold_pp / 100
    ranked = sorted(change.parts, key=lambda p: (-abs(p.contribution), KINDS.index(p.kind), p.name))
    shown = [p for p in ranked[:top] if abs(p.contribution) >= threshold]
    others = ranked[len(shown) :]
    if others:
        rest = sum((p.contribution for p in others), Fraction(0))
        noun = "part" if len(others) == 1 else "parts"
        shown.append(Part("rest", f"… {len(others)} other {noun}", rest))
    return BucketChange(
        change.country, change.attribution, change.share_from, change.share_to, tuple(shown)
    )


def moves_visibly(change: BucketChange, threshold_pp: Fraction = SUMMARY_THRESHOLD_PP) -> bool:
    """Whether the bucket's change, or one of its parts, reaches the summary's threshold."""
    threshold = threshold_pp / 100
    return abs(change.change) >= threshold or any(
        abs(p.contribution) >= threshold for p in change.parts
    )


def change_as_json(change: BucketChange) -> dict[str, Any]:
    share_from, share_to, delta, parts = rounded_parts(change)
    return {
        "country": change.country,
        "attribution": change.attribution,
        "share_from": float(share_from),
        "share_to": float(share_to),
        "change": float(delta),
        "parts": [
            {
                "kind": part.kind,
                "name": part.name,
                "contribution": float(value),
                "country_from": part.country_from,  # null unless the mapping moved it
                "country_to": part.country_to,
            }
            for part, value in zip(change.parts, parts, strict=True)
        ],
    }


#: Shares are shown to 4 decimals of a percentage point: 6 decimals of a share.
SHOWN_DECIMALS = 6


def explain_markdown(
    changes: list[BucketChange],
    from_date: date,
    to_date: date,
    top: int = SUMMARY_PARTS,
    threshold_pp: Fraction = SUMMARY_THRESHOLD_PP,
) -> str:
    """The daily-explain artifact: each bucket that moved visibly, its summary (`summarise`)."""
    lines = [
        f"# Why did the shares move? {from_date} → {to_date}",
        "",
        f"Each bucket's largest parts of at least {float(threshold_pp):g} pp (at most {top}), "
        "the rest summed; `hubshare explain --from … --to … --all` (or `--format json`) lists "
        "every part.",
        "",
        "| view | country | from | to | change (pp) | largest parts (pp) |",
        "|---|---|---:|---:|---:|---|",
    ]
    quiet = 0
    for change in changes:
        if not moves_visibly(change, threshold_pp):
            quiet += 1
            continue
        summary = summarise(change, top, threshold_pp)
        share_from, share_to, delta, parts = rounded_parts(summary, SHOWN_DECIMALS)
        described = "; ".join(
            f"{part.label} ({part.kind}) {value * 100:+.4f}"
            for part, value in zip(summary.parts, parts, strict=True)
        )
        lines.append(
            f"| {change.attribution} | {change.country} | {share_from:.2%} | {share_to:.2%} | "
            f"{delta * 100:+.4f} | {described} |"
        )
    if quiet:
        noun = "bucket (view × country)" if quiet == 1 else "buckets (view × country)"
        lines += ["", f"{quiet} other {noun} moved less than {float(threshold_pp):g} pp."]
    return "\n".join(lines)
