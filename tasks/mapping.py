"""Read and validate the org-to-country mapping (`data/org_country.csv`)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import polars as pl
import pycountry

from hubshare.errors import MappingError
from hubshare.provenance import sha256_file
from schemas.frames import SPECIAL_BUCKETS
from schemas.mapping import DEVELOPER_ORG_TYPES, MAPPING_COLUMNS, MAPPING_SCHEMA, ORG_TYPES


@cache
def alpha2_codes() -> frozenset[str]:
    return frozenset(country.alpha_2 for country in pycountry.countries)


def known_buckets() -> frozenset[str]:
    return alpha2_codes() | frozenset(SPECIAL_BUCKETS)


@dataclass(frozen=True)
class MappingProblem:
    line: int  # 1-based line in the file (the header is line 1)
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def validate_rows(rows: list[dict[str, str]]) -> list[MappingProblem]:
    """Every rule of the mapping contract; `rows[i]` is on line i + 2."""
    problems: list[MappingProblem] = []
    seen: dict[str, int] = {}
    previous: tuple[str, str] | None = None
    buckets = known_buckets()
    for index, row in enumerate(rows):
        line = index + 2
        org = row["org"]
        if not org or org != org.strip() or "/" in org or " " in org:
            problems.append(MappingProblem(line, f"org {org!r} is not a Hub namespace"))
        key = org.lower()
        if key in seen:
            problems.append(
                MappingProblem(
                    line,
                    f"org {org!r} duplicates line {seen[key]} (namespaces are case-insensitive)",
                )
            )
        seen.setdefault(key, line)
        if row["country"] not in buckets:
            problems.append(
                MappingProblem(
                    line,
                    f"country {row['country']!r} for {org!r} is not an ISO 3166-1 alpha-2 code, "
                    "INTL or UNKNOWN",
                )
            )
        if row["org_type"] not in ORG_TYPES:
            problems.append(
                MappingProblem(
                    line,
                    f"org_type {row['org_type']!r} for {org!r} is not one of "
                    f"{', '.join(sorted(ORG_TYPES))}",
                )
            )
        if not row["source"].strip():
            problems.append(MappingProblem(line, f"source is empty for {org!r}: name the evidence"))
        sort_key = (key, org)
        if previous is not None and sort_key < previous:
            problems.append(
                MappingProblem(
                    line,
                    f"org {org!r} is out of order (rows are sorted by org, case-insensitively)",
                )
            )
        previous = sort_key
    return problems


def read_rows(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle, strict=True)
            header = tuple(reader.fieldnames or ())
            if header != MAPPING_COLUMNS:
                raise MappingError(
                    f"{path}: line 1: header is {','.join(header) or '(empty)'}; expected "
                    f"{','.join(MAPPING_COLUMNS)}"
                )
            rows: list[dict[str, str]] = []
            for row in reader:
                if None in row or any(value is None for value in row.values()):
                    raise MappingError(
                        f"{path}: line {reader.line_num}: expected {len(MAPPING_COLUMNS)} fields"
                    )
                rows.append({name: row[name] for name in MAPPING_COLUMNS})
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise MappingError(f"{path}: cannot read the mapping file ({err})") from None
    return rows


def validate_mapping(path: Path) -> list[MappingProblem]:
    return validate_rows(read_rows(path))


@dataclass(frozen=True)
class Mapping:
    path: Path
    sha256: str
    frame: pl.DataFrame  # MAPPING_COLUMNS + org_lower + is_developer


def load_mapping(path: Path) -> Mapping:
    """The validated mapping, or a MappingError naming the first bad lines."""
    rows = read_rows(path)
    problems = validate_rows(rows)
    if problems:
        shown = "; ".join(str(problem) for problem in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise MappingError(f"{path}: {shown}{more}")
    frame = pl.DataFrame(rows, schema=MAPPING_SCHEMA).with_columns(
        pl.col("org").str.to_lowercase().alias("org_lower"),
        (
            pl.col("org_type").is_in(list(DEVELOPER_ORG_TYPES))
            & pl.col("country").is_in(list(alpha2_codes()))
        ).alias("is_developer"),
    )
    return Mapping(path=path, sha256=sha256_file(path), frame=frame)
