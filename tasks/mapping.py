"""Read and validate the org-to-country mapping (`data/org_country.csv`)."""

from __future__ import annotations

import csv
import gzip
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import orjson
import polars as pl

from hubshare.errors import MappingError
from hubshare.provenance import sha256_file
from hubshare.resources import reference_file
from hubshare.storage import DataStore
from schemas.frames import SPECIAL_BUCKETS
from schemas.mapping import (
    AGGREGATOR_SOURCES,
    DEVELOPER_ORG_TYPES,
    INTL_ORG_TYPES,
    LEGACY_MAPPING_HEADERS,
    MAPPING_COLUMNS,
    MAPPING_SCHEMA,
    ORG_TYPES,
)
from schemas.quality import alpha2_codes


@dataclass(frozen=True)
class MappingProblem:
    line: int  # 1-based line in the file (the header is line 1)
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def _row_problems(row: dict[str, str], alpha2: frozenset[str]) -> list[str]:
    """The rules of docs/mapping.md that one row can break on its own."""
    org, country, org_type = row["org"], row["country"], row["org_type"]
    found: list[str] = []
    if not org or org != org.strip() or "/" in org or " " in org:
        found.append(f"org {org!r} is not a Hub namespace")
    if country not in alpha2 and country not in SPECIAL_BUCKETS:
        found.append(
            f"country {country!r} for {org!r} is not an ISO 3166-1 alpha-2 code, INTL or UNKNOWN"
        )
    if org_type not in ORG_TYPES:
        found.append(
            f"org_type {org_type!r} for {org!r} is not one of {', '.join(sorted(ORG_TYPES))}"
        )
    elif country == "INTL" and org_type not in INTL_ORG_TYPES:
        found.append(
            f"{org!r} is a {org_type} mapped INTL: an organisation is never INTL; give the "
            "country of its legal entity, or UNKNOWN with a note"
        )
    if not row["source"].strip():
        found.append(f"source is empty for {org!r}: name the evidence")
    if country == "UNKNOWN" and not row["notes"].strip():
        found.append(f"{org!r} is UNKNOWN without a note: say what was searched")
    alt, alt_source = row["alt_country"], row["alt_source"]
    if alt:
        if alt not in alpha2 and alt != "INTL":
            found.append(f"alt_country {alt!r} for {org!r} is not an alpha-2 code or INTL")
        elif alt == country:
            found.append(f"alt_country of {org!r} repeats its country {country}")
        elif country == "UNKNOWN":
            found.append(f"{org!r} is UNKNOWN: an alternative needs a country to contest")
        elif alt == "INTL" and org_type not in INTL_ORG_TYPES:
            found.append(f"alt_country of {org!r} is INTL: an organisation is never INTL")
        if not alt_source.strip():
            found.append(f"alt_country {alt!r} of {org!r} has no alt_source: name the evidence")
    elif alt_source.strip():
        found.append(f"{org!r} has an alt_source but no alt_country")
    return found


def _valid_on(row: dict[str, str], day: str) -> bool:
    """Whether the row holds on `day` (ISO text; "" stands for a day before every boundary)."""
    if row["valid_from"] and not (day and row["valid_from"] <= day):
        return False
    return not row["valid_to"] or not day or day < row["valid_to"]


def _group_problems(rows: list[dict[str, str]]) -> list[MappingProblem]:
    """One organisation, one country on every date: the namespaces of an `org_group` (and the
    group's main namespace itself) valid on a date carry the same country. A group is checked
    before its members' first boundary and on every boundary (a valid_from or valid_to of one of
    its rows), the dates where what is valid can change. (Alternatives may differ: a staff
    account's alternative is INTL, the company's a lab location.)"""
    lines_of: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        lines_of.setdefault(row["org"].lower(), []).append(index + 2)
    members: dict[str, set[int]] = {}
    problems: list[MappingProblem] = []
    for index, row in enumerate(rows):
        group = row["org_group"].strip()
        if not group:
            continue
        if group.lower() not in lines_of:
            problems.append(
                MappingProblem(
                    index + 2,
                    f"org_group {group!r} of {row['org']!r} is not a namespace in the file",
                )
            )
            continue
        members.setdefault(group.lower(), set(lines_of[group.lower()])).add(index + 2)
    for group, lines in members.items():
        group_rows = [rows[line - 2] for line in sorted(lines)]
        boundaries = sorted(
            {row[c] for row in group_rows for c in ("valid_from", "valid_to") if row[c]}
        )
        for day in ["", *boundaries]:  # "": before the first boundary
            valid = [(line, rows[line - 2]) for line in sorted(lines)]
            valid = [(line, row) for line, row in valid if _valid_on(row, day)]
            answers: dict[str, list[str]] = {}
            for _, row in valid:
                answers.setdefault(row["country"], []).append(row["org"])
            if len(answers) <= 1:
                continue
            parts = "; ".join(
                f"{country} ({', '.join(orgs)})" for country, orgs in sorted(answers.items())
            )
            when = "" if not boundaries else f" on {day}" if day else f" before {boundaries[0]}"
            problems.append(
                MappingProblem(
                    max(line for line, _ in valid),
                    f"org_group {rows[lines_of[group][0] - 2]['org']!r} has more than one "
                    f"country{when}: {parts}",
                )
            )
            break  # the first date it disagrees; fixing it may settle the later ones
    return problems


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _period_problems(row: dict[str, str]) -> list[str]:
    """valid_from / valid_to: ISO dates or empty (open), the start before the end."""
    found: list[str] = []
    for column in ("valid_from", "valid_to"):
        value = row[column]
        if not value:
            continue
        try:
            if not _ISO_DATE.match(value):
                raise ValueError(value)
            date.fromisoformat(value)
        except ValueError:
            found.append(f"{column} {value!r} of {row['org']!r} is not a date (YYYY-MM-DD)")
    start, end = row["valid_from"], row["valid_to"]
    if not found and start and end and start >= end:
        found.append(
            f"{row['org']!r} is valid from {start} to {end}: valid_from must precede valid_to"
        )
    return found


def _overlaps(a: dict[str, str], b: dict[str, str]) -> bool:
    """Two periods [valid_from, valid_to) overlap (empty = open; ISO dates compare as text)."""
    a_from, a_to = a["valid_from"] or "0000", a["valid_to"] or "9999"
    b_from, b_to = b["valid_from"] or "0000", b["valid_to"] or "9999"
    return a_from < b_to and b_from < a_to


def validate_rows(rows: list[dict[str, str]]) -> list[MappingProblem]:
    """Every rule of the mapping contract; `rows[i]` is on line i + 2."""
    problems: list[MappingProblem] = []
    seen: dict[str, list[int]] = {}
    bad_periods: set[int] = set()  # lines whose dates are not valid: no overlap is judged
    previous: tuple[str, str, str] | None = None
    alpha2 = alpha2_codes()
    for index, row in enumerate(rows):
        line = index + 2
        org = row["org"]
        problems += [MappingProblem(line, message) for message in _row_problems(row, alpha2)]
        period_problems = _period_problems(row)
        problems += [MappingProblem(line, message) for message in period_problems]
        if period_problems:
            bad_periods.add(line)
        key = org.lower()
        for other in seen.get(key, []):
            first = rows[other - 2]
            if first["org"] != org:
                problems.append(
                    MappingProblem(
                        line,
                        f"org {org!r} duplicates line {other} (namespaces are case-insensitive)",
                    )
                )
                break
            if line not in bad_periods and other not in bad_periods and _overlaps(first, row):
                problems.append(
                    MappingProblem(
                        line,
                        f"org {org!r} duplicates line {other}: their validity periods overlap "
                        "(several rows of a namespace need periods that do not)",
                    )
                )
                break
        seen.setdefault(key, []).append(line)
        sort_key = (key, org, row["valid_from"])
        if previous is not None and sort_key < previous:
            problems.append(
                MappingProblem(
                    line,
                    f"org {org!r} is out of order (rows are sorted by org, case-insensitively, "
                    "then by valid_from)",
                )
            )
        previous = sort_key
    problems += _group_problems(rows)
    return sorted(problems, key=lambda problem: problem.line)


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a mapping file, every column present (a legacy file's new columns empty)."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle, strict=True)
            header = tuple(reader.fieldnames or ())
            if header != MAPPING_COLUMNS and header not in LEGACY_MAPPING_HEADERS:
                raise MappingError(
                    f"{path}: line 1: header is {','.join(header) or '(empty)'}; expected "
                    f"{','.join(MAPPING_COLUMNS)}"
                )
            rows: list[dict[str, str]] = []
            for row in reader:
                if None in row or any(value is None for value in row.values()):
                    raise MappingError(
                        f"{path}: line {reader.line_num}: expected {len(header)} fields"
                    )
                rows.append({name: row.get(name, "") for name in MAPPING_COLUMNS})
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise MappingError(f"{path}: cannot read the mapping file ({err})") from None
    return rows


def validate_mapping(path: Path) -> list[MappingProblem]:
    return validate_rows(read_rows(path))


@dataclass(frozen=True)
class Mapping:
    path: Path
    sha256: str
    rows: pl.DataFrame  # every row, dated ones included: MAPPING_COLUMNS + org_lower + is_developer

    def on(self, day: date) -> pl.DataFrame:
        """The rows valid on `day`: one per namespace at most (periods do not overlap)."""
        return rows_valid_on(self.rows, day)


def rows_valid_on(rows: pl.DataFrame, day: date) -> pl.DataFrame:
    """The rows of a mapping frame (valid_from, valid_to as ISO text, empty = open) that hold on
    `day`: from valid_from inclusive to valid_to exclusive."""
    iso = day.isoformat()
    return rows.filter(
        ((pl.col("valid_from") == "") | (pl.col("valid_from") <= iso))
        & ((pl.col("valid_to") == "") | (pl.col("valid_to") > iso))
    )


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
    return Mapping(path=path, sha256=sha256_file(path), rows=frame)


def contested_rows(mapping: pl.DataFrame) -> pl.DataFrame:
    """The rows with a second defensible answer: (org_lower, alt_bucket)."""
    return mapping.filter(pl.col("alt_country") != "").select(
        "org_lower", pl.col("alt_country").alias("alt_bucket")
    )


# ----------------------------------------------------------------------------------------------
# Evidence: is a row's source evidence of its country?

_HUB_PROFILE = re.compile(r"^https?://(www\.)?huggingface\.co/[^/?#\s]+/?$", re.IGNORECASE)


def evidence_kind(row: dict[str, str]) -> str:
    """`primary` when the source names something that can state a country (a site, a paper, a
    model card); `hub_page_only` when it names only Hub profile pages (a namespace's own page
    does not say where its owner is), `aggregator_only` when only ATOM/Epoch besides those."""
    parts = [part.strip() for part in row["source"].split(" ; ") if part.strip()]
    rest = [part for part in parts if not _HUB_PROFILE.match(part)]
    if not rest:
        return "hub_page_only"
    if all(part in AGGREGATOR_SOURCES for part in rest):
        return "aggregator_only"
    return "primary"


def unsupported_rows(mapping: pl.DataFrame) -> pl.DataFrame:
    """Rows with an alpha-2 country whose source is not evidence of it: org, country,
    org_type, evidence (hub_page_only | aggregator_only)."""
    rows = mapping.filter(pl.col("country").is_in(list(alpha2_codes())))
    kinds = [evidence_kind(row) for row in rows.select("source").to_dicts()]
    return (
        rows.with_columns(pl.Series("evidence", kinds, dtype=pl.String))
        .filter(pl.col("evidence") != "primary")
        .select("org", "org_lower", "country", "org_type", "evidence")
    )


# ----------------------------------------------------------------------------------------------
# Cross-checks: ATOM regions and Epoch countries, reported, never enforced

#: ATOM's `eu` bucket covers Europe at large (UK, Switzerland and Norway included).
# fmt: off
EUROPE: frozenset[str] = frozenset({
    "AD", "AL", "AT", "BA", "BE", "BG", "BY", "CH", "CY", "CZ", "DE", "DK", "EE", "ES", "FI",
    "FR", "GB", "GR", "HR", "HU", "IE", "IS", "IT", "LI", "LT", "LU", "LV", "MC", "MD", "ME",
    "MK", "MT", "NL", "NO", "PL", "PT", "RO", "RS", "SE", "SI", "SK", "SM", "UA", "VA",
})
# fmt: on


def _atom_agrees(region: str, country: str) -> bool | None:
    if region == "us":
        return country == "US"
    if region == "china":
        return country == "CN"
    if region == "eu":
        return country in EUROPE
    if region == "other":
        return country not in EUROPE | {"US", "CN"}
    return None  # `unknown`: ATOM takes no position


def cross_check(mapping: pl.DataFrame, atom: pl.DataFrame, epoch: pl.DataFrame) -> pl.DataFrame:
    """Where the mapping disagrees with ATOM's region or with every country Epoch lists for the
    namespace: org, country, source (ATOM | Epoch), says. `atom` is (hf_org, region); `epoch` is
    (hf_org, countries) with countries space-separated alpha-2 codes."""
    by_org = dict(mapping.select("org_lower", "country").rows())
    found: list[tuple[str, str, str, str]] = []
    for org, region in atom.select("hf_org", "region").rows():
        country = by_org.get(org.lower())
        if country is None:
            found.append((org, "(absent)", "ATOM", region))
        elif _atom_agrees(region, country) is False:
            found.append((org, country, "ATOM", region))
    for org, countries in epoch.select("hf_org", "countries").rows():
        country = by_org.get(org.lower())
        listed = countries.split()
        if country is not None and listed and country not in listed:
            found.append((org, country, "Epoch", " ".join(listed)))
    return pl.DataFrame(
        found,
        schema={"org": pl.String, "country": pl.String, "source": pl.String, "says": pl.String},
        orient="row",
    ).sort(pl.col("org").str.to_lowercase(), "source")


# ----------------------------------------------------------------------------------------------
# Coverage: how much of a snapshot's downloads (and models) the mapping classifies

_MODEL_COLUMNS = ("_id", "id", "modelId", "model_id", "model_url")
_CAPTURE_COLUMNS = ("date", "snapshot_date", "captured_at")


def _observations(models: pl.DataFrame) -> pl.DataFrame:
    """(model, uploader, downloads, captured) from model objects or frames in any layout we
    know; `model` is null where the layout has no model id (each row is then its own model)."""
    columns = set(models.columns)
    if "private" in columns:  # private models never count; CSVs spell it "True"/"False"
        private = pl.col("private")
        if models.schema["private"] == pl.String:
            private = private.str.to_lowercase() == "true"
        models = models.filter(~private.cast(pl.Boolean).fill_null(False))
    author = next((c for c in ("author", "uploader", "organization") if c in columns), None)
    model_id = next((c for c in _MODEL_COLUMNS if c in columns and c != "_id"), None)
    downloads = next((c for c in ("downloads", "downloads_30d") if c in columns), None)
    captured = next((c for c in _CAPTURE_COLUMNS if c in columns), None)
    if downloads is None or (author is None and model_id is None):
        raise MappingError(
            f"cannot find a downloads column and an author or model id column in {sorted(columns)}"
        )
    repo_id = (
        pl.col(model_id).cast(pl.String).str.replace(r"^https?://[^/]+/", "")
        if model_id
        else pl.lit(None, pl.String)
    )
    namespace = repo_id.str.split("/").list.first()
    uploader = pl.coalesce(pl.col(author).cast(pl.String), namespace) if author else namespace
    # The Hub's object id is the model's identity; the repo id stands in where it is absent.
    model = pl.coalesce(pl.col("_id").cast(pl.String), repo_id) if "_id" in columns else repo_id
    return models.select(
        model.alias("model"),
        uploader.alias("uploader"),
        pl.col(downloads).cast(pl.Int64).fill_null(0).alias("downloads"),
        (pl.col(captured).cast(pl.String) if captured else pl.lit(None, pl.String)).alias(
            "captured"
        ),
    )


def _read_one(path: Path) -> pl.DataFrame:
    name = path.name.lower()
    if name.endswith(".parquet"):
        return _observations(pl.read_parquet(path))
    if name.endswith(".csv"):
        return _observations(pl.read_csv(path, infer_schema_length=0))
    raw = path.read_bytes()
    if name.endswith(".gz"):
        raw = gzip.decompress(raw)
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        items = [orjson.loads(line) for line in raw.splitlines() if line.strip()]
    else:
        loaded = orjson.loads(raw)
        # /api/trending payloads: {"<org>/<model>": {"repoData": {...}}, ...}
        if isinstance(loaded, dict):
            items = [value.get("repoData", value) for value in loaded.values()]
        else:
            items = loaded
    keys = ("_id", "id", "author", "downloads", "private")
    frame = pl.DataFrame(
        [{k: item.get(k) for k in keys} for item in items],
        schema={
            "_id": pl.String,
            "id": pl.String,
            "author": pl.String,
            "downloads": pl.Int64,
            "private": pl.Boolean,
        },
    )
    return _observations(frame)


def _snapshot_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.name.lower().endswith(
                    (".parquet", ".csv", ".json", ".jsonl", ".json.gz", ".jsonl.gz")
                )
            )
        else:
            files.append(path)
    if not files:
        raise MappingError(f"no snapshot files found in {', '.join(map(str, paths))}")
    return files


def read_observations(paths: list[Path]) -> pl.DataFrame:
    """Every model observation in snapshot files (model, uploader, downloads, captured, seq):
    run parquet (raw snapshot or model facts), CSV layouts like the upstream ones, JSON/JSONL
    model objects or trending payloads. A folder stands for every such file in it, in name
    order (capture-time file names sort in time); `seq` is the order of reading."""
    frames = []
    for file in _snapshot_files(paths):
        try:
            frames.append(_read_one(file))
        except MappingError as err:
            raise MappingError(f"{file}: {err}") from None
        except (OSError, ValueError, pl.exceptions.PolarsError) as err:
            raise MappingError(f"{file}: cannot read it as a snapshot ({err})") from None
    return pl.concat(frames).with_row_index("seq")


def latest_per_model(observations: pl.DataFrame) -> pl.DataFrame:
    """One row per model, its latest observation (methodology: one row per `_id`, the later
    observation kept): by capture date where the layout has one, else by reading order. Rows
    without a model id are models of their own."""
    ordered = observations.sort(["captured", "seq"], nulls_last=False)
    keyed = ordered.filter(pl.col("model").is_not_null()).unique("model", keep="last")
    return pl.concat([keyed, ordered.filter(pl.col("model").is_null())]).sort("seq")


@dataclass(frozen=True)
class Coverage:
    observations: int  # rows read, before deduplication
    models: int  # distinct models counted (latest observation each)
    classified_models: int
    total_downloads: int
    classified_downloads: int
    uploaders: int
    classified_uploaders: int
    top_unmapped: pl.DataFrame  # uploader, downloads, share, models, status (absent | UNKNOWN)
    per_uploader: pl.DataFrame  # uploader, org_lower, downloads, models, country

    @property
    def share(self) -> float:
        return self.classified_downloads / self.total_downloads if self.total_downloads else 0.0

    @property
    def model_share(self) -> float:
        return self.classified_models / self.models if self.models else 0.0


def mapping_coverage(mapping: pl.DataFrame, observations: pl.DataFrame, top: int = 15) -> Coverage:
    """Share of downloads and of models whose uploader the mapping classifies (anything but
    UNKNOWN), counted once per model (its latest observation), looked up as the pipeline does
    (exact, then case-insensitive)."""
    models = latest_per_model(observations)
    per_uploader = (
        models.group_by("uploader")
        .agg(pl.col("downloads").sum(), pl.len().alias("models"))
        .with_columns(pl.col("uploader").str.to_lowercase().alias("org_lower"))
        .join(mapping.select("org_lower", "country"), on="org_lower", how="left")
        .with_columns(
            (pl.col("country").is_not_null() & (pl.col("country") != "UNKNOWN")).alias("ok")
        )
        .sort(["downloads", "uploader"], descending=[True, False])
    )
    total = int(per_uploader["downloads"].sum())
    classified = per_uploader.filter("ok")
    unmapped = (
        per_uploader.filter(~pl.col("ok"))
        .head(top)
        .select(
            "uploader",
            "downloads",
            (pl.col("downloads") / (total or 1)).alias("share"),
            "models",
            pl.when(pl.col("country").is_null())
            .then(pl.lit("absent"))
            .otherwise(pl.lit("UNKNOWN"))
            .alias("status"),
        )
    )
    return Coverage(
        observations=observations.height,
        models=models.height,
        classified_models=int(classified["models"].sum()),
        total_downloads=total,
        classified_downloads=int(classified["downloads"].sum()),
        uploaders=per_uploader.height,
        classified_uploaders=classified.height,
        top_unmapped=unmapped,
        per_uploader=per_uploader.drop("ok"),
    )


def unsupported_downloads(coverage: Coverage, mapping: pl.DataFrame) -> pl.DataFrame:
    """The rows without evidence of their country that carry downloads in a snapshot, largest
    first: org, country, org_type, evidence, downloads, share."""
    total = coverage.total_downloads or 1
    return (
        unsupported_rows(mapping)
        .join(coverage.per_uploader.select("org_lower", "downloads"), on="org_lower")
        .with_columns((pl.col("downloads") / total).alias("share"))
        .sort(["downloads", "org"], descending=[True, False])
        .drop("org_lower")
    )


# ----------------------------------------------------------------------------------------------
# Versions: the archive of every mapping a run used, and diffs between two versions


MAPPINGS = "mappings"


def mapping_key(sha256: str) -> str:
    return f"{MAPPINGS}/{sha256}.csv"


def archive_mapping(mapping: Mapping, store: DataStore) -> str:
    """Keep a copy of the mapping under its SHA-256 (its key in the data dir's store), so a run's
    mapping can be found again."""
    key = mapping_key(mapping.sha256)
    if not store.exists(key):
        store.create(key, mapping.path.read_bytes())  # a racing run stores the same bytes
    return key


@contextmanager
def mapping_version(ref: str, store: DataStore) -> Iterator[tuple[Path, str]]:
    """A mapping file path, or a recorded version: a SHA-256 (or a prefix of at least 6 hex
    characters) of a mapping that a run used. Yields (a local file to read, its name)."""
    path = Path(ref)
    if path.is_file():
        yield path, str(path)
        return
    if len(ref) >= 6 and all(c in "0123456789abcdef" for c in ref.lower()):
        matches = [
            key
            for key in store.keys(MAPPINGS)
            if key.startswith(f"{MAPPINGS}/{ref.lower()}") and key.endswith(".csv")
        ]
        if len(matches) == 1:
            with store.local_file(matches[0]) as local:
                if local is not None:
                    yield local, store.where(matches[0])
                    return
        if len(matches) > 1:
            raise MappingError(f"{ref}: matches {len(matches)} recorded mappings; give more digits")
    raise MappingError(
        f"{ref}: neither a file nor a mapping version recorded in {store.where(MAPPINGS)} "
        "(see mapping_sha256 in `hubshare runs --format json`)"
    )


def period_label(row: dict[str, str]) -> str:
    """A dated row's period, as `[from, to)` with `…` for an open end; "" for an undated row."""
    if not row["valid_from"] and not row["valid_to"]:
        return ""
    return f"[{row['valid_from'] or '…'}, {row['valid_to'] or '…'})"


@dataclass(frozen=True)
class MappingChange:
    org: str
    kind: str  # added | removed | changed
    fields: tuple[tuple[str, str, str], ...]  # (column, old, new) for changed rows
    period: str = ""  # the row's period (period_label) when it is dated

    def __str__(self) -> str:
        org = f"{self.org} {self.period}" if self.period else self.org
        if self.kind == "changed":
            parts = "; ".join(f"{col}: {old!r} -> {new!r}" for col, old, new in self.fields)
            return f"~ {org}: {parts}"
        sign = "+" if self.kind == "added" else "-"
        return f"{sign} {org}: " + ", ".join(f"{c}={v!r}" for c, _, v in self.fields)


def diff_mappings(old: list[dict[str, str]], new: list[dict[str, str]]) -> list[MappingChange]:
    """Rows added, removed or changed between two mappings, keyed by namespace
    (case-insensitive) and valid_from, so that each period of a dated namespace is compared with
    the same period; in the file's order (namespace, then valid_from)."""

    def key(row: dict[str, str]) -> tuple[str, str]:
        return row["org"].lower(), row["valid_from"]

    before = {key(row): row for row in old}
    after = {key(row): row for row in new}
    changes: list[MappingChange] = []
    shown_columns = ("country", "org_type", "name")
    for row_key in sorted(before.keys() | after.keys()):
        if row_key not in before:
            row = after[row_key]
            shown = tuple((c, "", row[c]) for c in shown_columns)
            changes.append(MappingChange(row["org"], "added", shown, period_label(row)))
        elif row_key not in after:
            row = before[row_key]
            shown = tuple((c, "", row[c]) for c in shown_columns)
            changes.append(MappingChange(row["org"], "removed", shown, period_label(row)))
        else:
            fields = tuple(
                (column, before[row_key][column], after[row_key][column])
                for column in MAPPING_COLUMNS
                if before[row_key][column] != after[row_key][column]
            )
            if fields:
                row = after[row_key]
                changes.append(MappingChange(row["org"], "changed", fields, period_label(row)))
    return changes


CROSSCHECK_DIR = reference_file("data/crosscheck")


def read_crosscheck(folder: Path = CROSSCHECK_DIR) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(ATOM regions, Epoch countries) as shipped in `data/crosscheck/` (see its README)."""
    try:
        atom = pl.read_csv(folder / "atom_regions.csv", infer_schema_length=0)
        epoch = pl.read_csv(folder / "epoch_countries.csv", infer_schema_length=0)
    except (OSError, pl.exceptions.PolarsError) as err:
        raise MappingError(f"{folder}: cannot read the cross-check tables ({err})") from None
    return atom, epoch.with_columns(pl.col("countries").fill_null(""))
