"""The reference mapping `data/org_country.csv`: columns and allowed codes (methodology.md,
docs/mapping.md)."""

from __future__ import annotations

import polars as pl

MAPPING_COLUMNS: tuple[str, ...] = (
    "org",
    # The row holds from valid_from (inclusive) to valid_to (exclusive), ISO dates, empty = open:
    # a namespace that changed country has one row per period.
    "valid_from",
    "valid_to",
    "country",
    "org_type",
    "org_group",  # the main namespace of the organisation; one country per group
    "name",
    "source",
    "alt_country",  # the other defensible answer of a contested row, or empty
    "alt_source",  # evidence for alt_country
    "notes",
)
#: The headers of mappings written before org_group/alt_country, then before valid_from/valid_to
#: existed: archived copies of them (`<data dir>/mappings/`) still load, the new columns empty.
LEGACY_MAPPING_HEADERS: tuple[tuple[str, ...], ...] = (
    ("org", "country", "org_type", "name", "source", "notes"),
    tuple(name for name in MAPPING_COLUMNS if name not in ("valid_from", "valid_to")),
)
ORG_TYPES: frozenset[str] = frozenset(
    {"company", "academic", "nonprofit", "government", "community", "individual", "intermediary"}
)
#: org types that make a mapped namespace a "developer organisation" (when its country is alpha-2).
DEVELOPER_ORG_TYPES: frozenset[str] = frozenset({"company", "academic", "nonprofit", "government"})
#: org types that may be INTL: unaffiliated people, their re-uploads, and online communities.
INTL_ORG_TYPES: frozenset[str] = frozenset({"individual", "intermediary", "community"})
#: Datasets that aggregate other sources: cross-checks, never the evidence for a country.
AGGREGATOR_SOURCES: tuple[str, ...] = ("ATOM tracked-models", "Epoch AI, Data on AI Models")
MAPPING_SCHEMA = pl.Schema({name: pl.String for name in MAPPING_COLUMNS})
