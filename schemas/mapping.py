"""The reference mapping `data/org_country.csv`: columns and allowed codes (methodology.md)."""

from __future__ import annotations

import polars as pl

MAPPING_COLUMNS: tuple[str, ...] = ("org", "country", "org_type", "name", "source", "notes")
ORG_TYPES: frozenset[str] = frozenset(
    {"company", "academic", "nonprofit", "government", "community", "individual", "intermediary"}
)
#: org types that make a mapped namespace a "developer organisation" (when its country is alpha-2).
DEVELOPER_ORG_TYPES: frozenset[str] = frozenset({"company", "academic", "nonprofit", "government"})
MAPPING_SCHEMA = pl.Schema({name: pl.String for name in MAPPING_COLUMNS})
