"""Polars frame schemas: the single source of truth for every file the pipeline writes.

Raw snapshot columns keep the Hub's own key names (they are the API's words); derived frames use
snake_case names that a BI tool shows as they are.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import polars as pl

UTC_TS = pl.Datetime("us", "UTC")


@dataclass(frozen=True)
class WireField:
    """One field of a model object listed by `GET /api/models`: the JSON types it may have on
    the wire (null is always allowed: a field may be absent) and its raw snapshot column."""

    kinds: tuple[type, ...]
    column: pl.DataType
    #: Ids must be present and non-empty; every other field may be null.
    required: bool = False


#: The one declaration of a model on the wire, in snapshot column order. Counts are never
#: negative and fit a signed 64-bit integer; `tags` is a list of strings.
WIRE_FIELDS: dict[str, WireField] = {
    "_id": WireField((str,), pl.String(), required=True),
    "id": WireField((str,), pl.String(), required=True),
    "author": WireField((str,), pl.String()),
    "downloads": WireField((int,), pl.Int64()),
    "downloadsAllTime": WireField((int,), pl.Int64()),
    "likes": WireField((int,), pl.Int64()),
    "createdAt": WireField((str,), UTC_TS),
    "lastModified": WireField((str,), UTC_TS),
    "pipeline_tag": WireField((str,), pl.String()),
    "library_name": WireField((str,), pl.String()),
    "tags": WireField((list,), pl.List(pl.String())),
    # false | "auto" | "manual" on the wire; stored as text ("false", "auto", "manual").
    "gated": WireField((bool, str), pl.String()),
    "private": WireField((bool,), pl.Boolean()),
}

#: The `expand` keys requested from `GET /api/models` (methodology: "Per model").
EXPAND_FIELDS: tuple[str, ...] = tuple(
    name for name, wire in WIRE_FIELDS.items() if not wire.required
)

#: One row per public model, as listed by the Hub on the crawl (raw snapshot parquet).
SNAPSHOT_SCHEMA = pl.Schema({name: wire.column for name, wire in WIRE_FIELDS.items()})

#: How a page looks on the wire: timestamps as text, parsed once when the snapshot is built.
WIRE_SCHEMA = pl.Schema(
    {
        name: (pl.String() if wire.column == UTC_TS else wire.column)
        for name, wire in WIRE_FIELDS.items()
    }
)

#: `WIRE_FIELDS` as exact types (JSON gives no subclasses; a bool is not a count).
EXACT_WIRE_TYPES: dict[str, frozenset[type]] = {
    name: frozenset(wire.kinds) | {type(None)} for name, wire in WIRE_FIELDS.items()
}

_COUNT_FIELDS = tuple(name for name, wire in WIRE_FIELDS.items() if wire.kinds == (int,))


def _msgspec_type(wire: WireField) -> Any:
    kinds: list[Any] = list(wire.kinds)
    if wire.kinds == (int,):
        kinds = [Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]]
    elif wire.kinds == (list,):
        kinds = [list[str]]
    if wire.required:
        return Annotated[str, msgspec.Meta(min_length=1)]
    return functools.reduce(operator.or_, [*kinds, None])


#: `WIRE_FIELDS` as a msgspec type: its decoder checks a well-formed page in C, several times
#: faster than `wire_problem` on each parsed object (which still names what is wrong).
WIRE_MODEL: type[msgspec.Struct] = msgspec.defstruct(
    "WireModel",
    [
        (f"f{position}", _msgspec_type(wire), msgspec.field(name=name))
        if wire.required
        else (f"f{position}", _msgspec_type(wire), msgspec.field(name=name, default=None))
        for position, (name, wire) in enumerate(WIRE_FIELDS.items())
    ],
    gc=False,
)


def wire_problem(item: object) -> str | None:
    """What is wrong with one model object against the wire schema, or None. The common case,
    a well-formed object, takes one exact-type lookup per field (20 ms per 1,000-model page with
    isinstance and its bool exception, 1,000 pages per million models)."""
    if (
        type(item) is dict
        and item.get("_id")
        and item.get("id")
        and all(type(item.get(name)) in kinds for name, kinds in EXACT_WIRE_TYPES.items())
        and all(type(tag) is str for tag in item.get("tags") or ())
        and all(0 <= item[name] < 2**63 for name in _COUNT_FIELDS if item.get(name) is not None)
    ):
        return None
    return _describe_wire_problem(item)


def _describe_wire_problem(item: object) -> str | None:
    if not isinstance(item, dict):
        return f"is a {type(item).__name__}, not an object"
    if not item.get("_id") or not item.get("id"):
        return "has no `_id`/`id`"
    for name, wire in WIRE_FIELDS.items():
        kinds = wire.kinds
        value = item.get(name)
        if value is None:
            continue
        # bool is an int in Python: a count must not be true/false.
        wrong = not isinstance(value, kinds) or (kinds == (int,) and isinstance(value, bool))
        if wrong and kinds == (int,) and isinstance(value, float) and abs(value) >= 2**63:
            # A JSON integer too large for 64 bits arrives as a float: say what it is.
            return f"has `{name}` = {int(value)} out of range (a count must be below 2^63)"
        if wrong:
            return f"has `{name}` = {value!r:.40} ({type(value).__name__})"
        if kinds == (list,) and not all(isinstance(tag, str) for tag in value):
            return "has a `tags` entry that is not a string"
        if kinds == (int,) and not 0 <= value < 2**63:
            return f"has `{name}` = {value} out of range (a count must be below 2^63)"
    return None


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
        # The part of `downloads` whose bucket was decided by a namespace with no reviewed row
        # (the account-type default: docs/mapping.md); null for runs from before it existed.
        "downloads_by_default": pl.Int64(),
    }
)

#: Bucket shares of one definition (both views): the columns the quality gate validates
#: (`downloads_by_default` describes the shares; the gate does not decide on it).
VIEW_SHARE_SCHEMA = pl.Schema(
    {
        name: dtype
        for name, dtype in COUNTRY_SHARE_SCHEMA.items()
        if name not in ("definition", "cohort", "downloads_by_default")
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

#: What the Hub says each namespace is (the account types a run used): what attribution reads
#: for a namespace without a reviewed mapping row. Looked up by the lower-cased namespace (the
#: Hub is case-insensitive); `account_type` is user | org | vanished (404 on both overviews).
ACCOUNT_TYPE_SCHEMA = pl.Schema(
    {
        "namespace": pl.String(),  # as the Hub spells it
        "account_type": pl.String(),  # user | org | vanished
        "fullname": pl.String(),
        "verified": pl.Boolean(),
        "checked_at": UTC_TS,
    }
)

ATTRIBUTIONS: tuple[str, ...] = ("uploader", "origin")
SPECIAL_BUCKETS: tuple[str, ...] = ("INTL", "UNKNOWN")

ACCOUNT_TYPES: tuple[str, ...] = ("user", "org", "vanished")

#: A run's review queue: the namespaces without a reviewed row in the mapping, or mapped
#: UNKNOWN, largest uploader downloads first, table `review_queue`.
REVIEW_QUEUE_SCHEMA = pl.Schema(
    {
        "namespace": pl.String(),  # the snapshot's spelling
        "account_type": pl.String(),  # user | org | vanished, null when not typed yet
        "fullname": pl.String(),
        "downloads": pl.Int64(),  # downloads_30d of the models it uploaded
        "share": pl.Float64(),  # of all the run's downloads
        "models": pl.Int64(),
        "first_seen": pl.Date(),  # earliest published snapshot date it uploaded in
    }
)
