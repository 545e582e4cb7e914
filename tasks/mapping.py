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


# ----------------------------------------------------------------------------------------------
# Coverage: how much of a snapshot's downloads the mapping classifies


def _uploads_from_models(models: pl.DataFrame) -> pl.DataFrame:
    """(author, downloads) from model objects or frames in any layout we know."""
    columns = set(models.columns)
    if "private" in columns:  # private models never count; CSVs spell it "True"/"False"
        private = pl.col("private")
        if models.schema["private"] == pl.String:
            private = private.str.to_lowercase() == "true"
        models = models.filter(~private.cast(pl.Boolean).fill_null(False))
    author = next((c for c in ("author", "uploader", "organization") if c in columns), None)
    model_id = next((c for c in ("id", "modelId", "model_id", "model_url") if c in columns), None)
    downloads = next((c for c in ("downloads", "downloads_30d") if c in columns), None)
    if downloads is None or (author is None and model_id is None):
        raise MappingError(
            f"cannot find a downloads column and an author or model id column in {sorted(columns)}"
        )
    namespace = (
        pl.col(model_id)
        .cast(pl.String)
        .str.replace(r"^https?://[^/]+/", "")
        .str.split("/")
        .list.first()
        if model_id
        else pl.lit(None, pl.String)
    )
    uploader = pl.coalesce(pl.col(author).cast(pl.String), namespace) if author else namespace
    return models.select(
        uploader.alias("uploader"), pl.col(downloads).cast(pl.Int64).fill_null(0).alias("downloads")
    )


def _read_one(path: Path) -> pl.DataFrame:
    name = path.name.lower()
    if name.endswith(".parquet"):
        return _uploads_from_models(pl.read_parquet(path))
    if name.endswith(".csv"):
        return _uploads_from_models(pl.read_csv(path, infer_schema_length=0))
    raw = path.read_bytes()
    if name.endswith(".gz"):
        import gzip

        raw = gzip.decompress(raw)
    import orjson

    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        items = [orjson.loads(line) for line in raw.splitlines() if line.strip()]
    else:
        loaded = orjson.loads(raw)
        # /api/trending payloads: {"<org>/<model>": {"repoData": {...}}, ...}
        if isinstance(loaded, dict):
            items = [value.get("repoData", value) for value in loaded.values()]
        else:
            items = loaded
    frame = pl.DataFrame(
        [{k: item.get(k) for k in ("id", "author", "downloads", "private")} for item in items],
        schema={"id": pl.String, "author": pl.String, "downloads": pl.Int64, "private": pl.Boolean},
    )
    return _uploads_from_models(frame)


def read_uploads(paths: list[Path]) -> pl.DataFrame:
    """(uploader, downloads) rows from snapshot files: run parquet (raw snapshot or model facts),
    CSV layouts like the upstream ones, JSON/JSONL model objects or trending payloads.
    A directory stands for every such file inside it."""
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
    frames = []
    for file in files:
        try:
            frames.append(_read_one(file))
        except MappingError as err:
            raise MappingError(f"{file}: {err}") from None
        except (OSError, ValueError, pl.exceptions.PolarsError) as err:
            raise MappingError(f"{file}: cannot read it as a snapshot ({err})") from None
    return pl.concat(frames)


@dataclass(frozen=True)
class Coverage:
    total_downloads: int
    classified_downloads: int
    uploaders: int
    classified_uploaders: int
    top_unmapped: pl.DataFrame  # uploader, downloads, share, status (absent | UNKNOWN)

    @property
    def share(self) -> float:
        return self.classified_downloads / self.total_downloads if self.total_downloads else 0.0


def mapping_coverage(mapping: pl.DataFrame, uploads: pl.DataFrame, top: int = 15) -> Coverage:
    """Share of downloads whose uploader the mapping classifies (anything but UNKNOWN), looked up
    as the pipeline does (exact, then case-insensitive)."""
    per_uploader = (
        uploads.group_by("uploader")
        .agg(pl.col("downloads").sum())
        .with_columns(pl.col("uploader").str.to_lowercase().alias("org_lower"))
        .join(mapping.select("org_lower", "country"), on="org_lower", how="left")
        .with_columns(
            (pl.col("country").is_not_null() & (pl.col("country") != "UNKNOWN")).alias("ok")
        )
    )
    total = int(per_uploader["downloads"].sum())
    classified = int(per_uploader.filter("ok")["downloads"].sum())
    unmapped = (
        per_uploader.filter(~pl.col("ok"))
        .sort(["downloads", "uploader"], descending=[True, False])
        .head(top)
        .select(
            "uploader",
            "downloads",
            (pl.col("downloads") / (total or 1)).alias("share"),
            pl.when(pl.col("country").is_null())
            .then(pl.lit("absent"))
            .otherwise(pl.lit("UNKNOWN"))
            .alias("status"),
        )
    )
    return Coverage(total, classified, per_uploader.height, int(per_uploader["ok"].sum()), unmapped)


# ----------------------------------------------------------------------------------------------
# Versions: the archive of every mapping a run used, and diffs between two versions


def archive_mapping(mapping: Mapping, data_dir: Path) -> Path:
    """Keep a copy of the mapping under its SHA-256, so a run's mapping can be found again."""
    target = data_dir / "mappings" / f"{mapping.sha256}.csv"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(mapping.path.read_bytes())
        tmp.replace(target)
    return target


def resolve_mapping_version(ref: str, data_dir: Path) -> Path:
    """A mapping file path, or a recorded version: a SHA-256 (or a prefix of at least 6 hex
    characters) of a mapping that a run used."""
    path = Path(ref)
    if path.is_file():
        return path
    archive = data_dir / "mappings"
    if len(ref) >= 6 and all(c in "0123456789abcdef" for c in ref.lower()):
        matches = sorted(archive.glob(f"{ref.lower()}*.csv"))
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise MappingError(f"{ref}: matches {len(matches)} recorded mappings; give more digits")
    raise MappingError(
        f"{ref}: neither a file nor a mapping version recorded in {archive} "
        "(see mapping_sha256 in `hubshare runs --format json`)"
    )


@dataclass(frozen=True)
class MappingChange:
    org: str
    kind: str  # added | removed | changed
    fields: tuple[tuple[str, str, str], ...]  # (column, old, new) for changed rows

    def __str__(self) -> str:
        if self.kind == "changed":
            parts = "; ".join(f"{col}: {old!r} -> {new!r}" for col, old, new in self.fields)
            return f"~ {self.org}: {parts}"
        sign = "+" if self.kind == "added" else "-"
        return f"{sign} {self.org}: " + ", ".join(f"{c}={v!r}" for c, _, v in self.fields)


def diff_mappings(old: list[dict[str, str]], new: list[dict[str, str]]) -> list[MappingChange]:
    """Rows added, removed or changed between two mappings, keyed by namespace (case-insensitive),
    in namespace order."""
    before = {row["org"].lower(): row for row in old}
    after = {row["org"].lower(): row for row in new}
    changes: list[MappingChange] = []
    for key in sorted(before.keys() | after.keys()):
        if key not in before:
            row = after[key]
            shown = tuple((c, "", row[c]) for c in ("country", "org_type", "name"))
            changes.append(MappingChange(row["org"], "added", shown))
        elif key not in after:
            row = before[key]
            shown = tuple((c, "", row[c]) for c in ("country", "org_type", "name"))
            changes.append(MappingChange(row["org"], "removed", shown))
        else:
            fields = tuple(
                (column, before[key][column], after[key][column])
                for column in MAPPING_COLUMNS
                if before[key][column] != after[key][column]
            )
            if fields:
                changes.append(MappingChange(after[key]["org"], "changed", fields))
    return changes
