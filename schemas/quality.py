"""Data-quality suites (great_expectations 1.x JSON, reviewed by hand) and their reference values.

The suites in `schemas/expectations/*.json` are what `ExpectationSuite.to_json_dict()` writes.
Values that change from run to run are GX suite parameters (`{"$PARAMETER": name}`), filled in by
`tasks.quality.check_quality`: `known_buckets` (see `known_buckets()`), `min_row_count`,
`max_unknown_share`.

Nothing here imports great_expectations: reading a suite is plain JSON.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from schemas.frames import SPECIAL_BUCKETS

#: Folder of the suite JSON files, one `<name>.json` per suite.
EXPECTATIONS_DIR = Path(__file__).resolve().parent / "expectations"

#: The suites kept in `EXPECTATIONS_DIR`.
SUITE_NAMES: tuple[str, ...] = ("model_fact", "model_origin", "country_share")


def suite_path(name: str) -> Path:
    """Path of the JSON file of suite `name` (one of `SUITE_NAMES`)."""
    if name not in SUITE_NAMES:
        raise ValueError(f"unknown expectation suite {name!r}; known: {', '.join(SUITE_NAMES)}")
    return EXPECTATIONS_DIR / f"{name}.json"


def load_suite(name: str) -> dict[str, Any]:
    """The suite `name` as a JSON dict (a fresh copy each call; safe to mutate)."""
    with suite_path(name).open(encoding="utf-8") as f:
        suite: dict[str, Any] = json.load(f)
    if suite.get("name") != name:
        raise ValueError(f"{suite_path(name)} holds suite {suite.get('name')!r}, not {name!r}")
    return suite


@functools.cache
def alpha2_codes() -> frozenset[str]:
    """Every ISO 3166-1 alpha-2 country code (pycountry's, imported when first asked for)."""
    import pycountry

    return frozenset(country.alpha_2 for country in pycountry.countries)


@functools.cache
def _known_buckets() -> tuple[str, ...]:
    return tuple(sorted(alpha2_codes() | set(SPECIAL_BUCKETS)))


def known_buckets() -> list[str]:
    """Every bucket code a frame may hold: ISO 3166-1 alpha-2 + INTL + UNKNOWN, sorted."""
    return list(_known_buckets())
