"""Import the released data of *Economies of Open Intelligence* (Longpre et al., 2025).

The study released its per-model annotations as long tables, one row per (model, `time`):
`all_downloads_with_annotations.parquet` and `one_year_rolling.parquet` (columns in
`../shared/docs/real-data.md` §3.3). `import_study` turns either file into what hubshare reads:

- **one raw snapshot per distinct `time`** (its UTC date), written by the same writer as
  `tasks.import_archive` (deduplication by `_id`, manifest, create-if-absent), with manifest
  `source = "import:study"`: `id` = `model`, `author`, `_id` (the file's, else
  `synthetic_object_id(model)` as an archive import does), `downloadsAllTime` = the study's
  all-time counter, `createdAt` = `created`. The study has **no 30-day counter**, so `downloads`
  is null: only `D1..D2` windows (differences of all-time counters) can be computed from these
  snapshots. `tags` stay empty: `merged_derived_from` names base models without the relation
  (fine-tune, quantization, adapter) that a `base_model:<relation>:` tag carries, and its shape
  is not documented, so no lineage is made up (the origin view of a study import is the
  uploader's).
- **a mapping built from the study's own annotations** (`study_mapping_rows`): one row per
  author (case-insensitive, spelled as in its latest row), with the annotation of the author's
  most recent `time` (within that time, of its most downloaded model). It is validated by
  `tasks.mapping.validate_rows` and archived like any mapping (`<data dir>/mappings/<sha256>.csv`).
- **a record** `<data dir>/study/<file sha256>.json`: the file, its times, the mapping's SHA-256
  and the headline window (`headline_window`), which `hubshare shares --study FILE` reads.

Nothing is written unless the whole file passes: every needed column present with a usable
type (else an error naming the column), every row readable (else an error naming the row), and
no date already stored (snapshots are immutable: the import is refused up front, naming every
stored date, and writes nothing).
"""

from __future__ import annotations

import csv
import io
import tempfile
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

import orjson
import polars as pl
import pycountry

from hubshare.errors import ArchiveImportError, SnapshotError
from hubshare.provenance import sha256_file, synthetic_object_id
from hubshare.settings import Settings
from hubshare.storage import DataStore
from schemas.frames import WIRE_SCHEMA
from schemas.mapping import INTL_ORG_TYPES, MAPPING_COLUMNS
from tasks.import_archive import (
    TIMESTAMP_FORMATS,
    WIRE_TIMESTAMP,
    raise_first_failed_check,
    refuse_existing_snapshot,
    write_imported_snapshot,
)
from tasks.mapping import archive_mapping, load_mapping, validate_rows
from tasks.snapshot import SnapshotManifest

SOURCE_LAYOUT = "study"  # manifests say `import:study`
STUDY = "Longpre et al. 2025, Economies of Open Intelligence (arXiv 2512.03073)"
#: The study's headline year, "Sep 2024 - Aug 2025": the window runs from the study's last
#: `time` on or before the first date to its last `time` on or before the second.
HEADLINE_FROM = date(2024, 9, 1)
HEADLINE_TO = date(2025, 9, 1)

#: Columns read, and what each must hold. `_id` is optional (synthetic ids stand in).
TEXT_COLUMNS = ("model", "author", "org_country_single", "org_type")
TIME_COLUMNS = ("time", "created")
COUNTER = "downloadsAllTime"
REQUIRED_COLUMNS = ("model", "author", "time", "created", COUNTER, "org_type", "org_country_single")

#: `org_country_single` values that are not a country: the study's "International/Online"
#: group (unaffiliated people and online communities), and the ways a missing answer is written.
INTL_NAMES = frozenset({"international/online", "international", "online", "international_online"})
UNKNOWN_NAMES = frozenset({"", "unknown", "none", "nan", "n/a", "na", "null"})
#: Country names the study may use that pycountry does not resolve (checked by the tests).
COUNTRY_ALIASES = {"uk": "GB", "great britain": "GB", "russia": "RU", "turkey": "TR"}
#: The study's `org_type` -> ours. `team` and anything else become `community`: a group that is
#: not a company may be INTL (rule 3 allows INTL only for individuals, intermediaries and
#: communities), and the study's bucket must be kept to reproduce its shares.
ORG_TYPES = {"user": "individual", "company": "company"}
OTHER_ORG_TYPE = "community"


@dataclass(frozen=True)
class StudyRecord:
    """What `import_study` stored, in `<data dir>/study/<file sha256>.json`."""

    file: str
    file_sha256: str
    source: str
    times: list[str]  # ISO dates of the snapshots, ascending
    models: int  # distinct models in the file
    rows: int
    mapping_sha256: str
    authors: int
    annotation_disagreements: int  # authors whose rows carry more than one annotation
    retyped: int  # study companies in International/Online, typed `community` (rule 3)
    headline_start: str | None  # None when the file's times do not reach the window
    headline_end: str | None
    snapshot_sha256: dict[str, str]

    @property
    def headline(self) -> tuple[date, date]:
        if self.headline_start is None or self.headline_end is None:
            raise ArchiveImportError(
                f"{self.file}: its times ({self.times[0]} .. {self.times[-1]}) have none on or "
                f"before {HEADLINE_FROM} and a later one on or before {HEADLINE_TO}: the "
                "study's headline window cannot be computed from it"
            )
        return date.fromisoformat(self.headline_start), date.fromisoformat(self.headline_end)


def study_record_key(file_sha256: str) -> str:
    return f"study/{file_sha256}.json"


def read_study_record(file: Path, store: DataStore) -> StudyRecord:
    """The record of the import of `file` (found by the file's SHA-256)."""
    if not file.is_file():
        raise ArchiveImportError(f"{file}: no such file")
    key = study_record_key(sha256_file(file))
    data = store.get(key)
    if data is None:
        raise ArchiveImportError(
            f"{file}: not imported into {store.where('study')} (no {Path(key).name}); run "
            f"`hubshare import --study {file}` first"
        )
    return StudyRecord(**orjson.loads(data))


def headline_window(times: list[date]) -> tuple[date, date] | None:
    """(start, end) of the headline year on the study's time grid, or None if it has no time
    on or before `HEADLINE_FROM` and a later one on or before `HEADLINE_TO`."""
    starts = [day for day in times if day <= HEADLINE_FROM]
    ends = [day for day in times if day <= HEADLINE_TO]
    if not starts or not ends or max(ends) <= max(starts):
        return None
    return max(starts), max(ends)


# ----------------------------------------------------------------------------------------------
# Reading and checking the file


def _schema_problem(file: Path, name: str, dtype: pl.DataType) -> str | None:
    """Why column `name` of type `dtype` cannot be read, or None."""
    if dtype == pl.Null():
        return None
    if isinstance(dtype, pl.List | pl.Array):
        what = "a list" if name != "org_country_single" else "a list of countries"
        return (
            f"{file}: column {name!r} holds {what} ({dtype}) where one text value per row is "
            "expected (the study's documented schema: the primary country as a string)"
        )
    if name in TEXT_COLUMNS or name == "_id":
        if dtype in (pl.String(), pl.Categorical()) or isinstance(dtype, pl.Enum):
            return None
        return f"{file}: column {name!r} is {dtype}; expected text"
    if name in TIME_COLUMNS:
        if isinstance(dtype, pl.Datetime) or dtype in (pl.Date(), pl.String()):
            return None
        return f"{file}: column {name!r} is {dtype}; expected a date or timestamp (or ISO text)"
    if name == COUNTER:
        if dtype.is_integer() or dtype.is_float():
            return None
        return f"{file}: column {name!r} is {dtype}; expected a whole number of downloads"
    return None


def _timestamp(name: str, dtype: pl.DataType) -> pl.Expr:
    """Column `name` as a UTC timestamp (null where text cannot be read)."""
    column = pl.col(name)
    if isinstance(dtype, pl.Datetime):
        utc = (
            column.dt.replace_time_zone("UTC")
            if dtype.time_zone is None
            else column.dt.convert_time_zone("UTC")
        )
        return utc.dt.cast_time_unit("us")
    if dtype == pl.Date():
        return column.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    if dtype == pl.Null():
        return pl.lit(None, pl.Datetime("us", "UTC"))
    text = column.str.strip_chars()
    parsed = [
        text.str.to_datetime(fmt, time_zone="UTC", time_unit="us", strict=False)
        for fmt in TIMESTAMP_FORMATS
    ]
    day = text.str.to_date("%Y-%m-%d", strict=False).cast(pl.Datetime("us"))
    return pl.coalesce([*parsed, day.dt.replace_time_zone("UTC")])


def scan_study(file: Path, *, numbered: bool = True) -> pl.LazyFrame:
    """The needed columns of a study file, typed, lazily: `_row` (1-based; only if `numbered`,
    as numbering rows forces a reader to see all of them), `_id`, `model`,
    `author`, `time` (UTC timestamp), `day` (its date), `created`, `downloadsAllTime`
    (Int64, `_raw_counter` keeping the value read), `org_country_single`, `org_type`, and the
    raw text of the two timestamps (`_raw_time`, `_raw_created`). Raises naming the column when
    one is missing or of a type that cannot hold its values."""
    if not file.is_file():
        raise ArchiveImportError(f"{file}: no such file")
    try:
        scan = pl.scan_parquet(file)
        schema = scan.collect_schema()
    except (OSError, pl.exceptions.PolarsError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ArchiveImportError(f"{file}: cannot be read as parquet ({first})") from None
    missing = [name for name in REQUIRED_COLUMNS if name not in schema]
    if missing:
        shown = ", ".join(schema.names()[:30]) + (", ..." if len(schema) > 30 else "")
        raise ArchiveImportError(
            f"{file}: no column {', '.join(repr(name) for name in missing)} (columns: "
            f"{shown or 'none'}); a study file has the documented columns "
            f"{', '.join(REQUIRED_COLUMNS)}"
        )
    for name in (*REQUIRED_COLUMNS, "_id"):
        if name in schema:
            problem = _schema_problem(file, name, schema[name])
            if problem:
                raise ArchiveImportError(problem)
    counter_type = schema[COUNTER]
    counter = pl.col(COUNTER)
    whole = counter.cast(pl.Int64, strict=False)
    if counter_type.is_float():  # pandas writes a counter with gaps as float64
        whole = pl.when(counter == counter.floor()).then(whole).otherwise(None)
    time_of = _timestamp("time", schema["time"])

    def text(name: str) -> pl.Expr:
        return pl.col(name).cast(pl.String) if name in schema else pl.lit(None, pl.String)

    row = [pl.col("_row").cast(pl.Int64)] if numbered else []
    return (scan.with_row_index("_row", offset=1) if numbered else scan).select(
        *row,
        text("_id").alias("_id"),
        text("model").alias("model"),
        text("author").alias("author"),
        time_of.alias("time"),
        time_of.dt.date().alias("day"),
        _timestamp("created", schema["created"]).alias("created"),
        whole.alias(COUNTER),
        counter.cast(pl.String).alias("_raw_counter"),
        text("org_country_single").alias("org_country_single"),
        text("org_type").alias("org_type"),
        text("time").alias("_raw_time"),
        text("created").alias("_raw_created"),
    )


def _checks() -> list[tuple[pl.Expr, pl.Expr | None, str]]:
    """(bad row, value shown, what is wrong) for every row-level rule."""
    late = pl.col("created") >= (
        pl.col("day").cast(pl.Datetime("us")).dt.replace_time_zone("UTC") + timedelta(days=2)
    )
    return [
        (pl.col("model").is_null(), None, "no model (column 'model' is empty)"),
        (pl.col("_raw_time").is_null(), None, "no time (column 'time' is empty)"),
        (
            pl.col("time").is_null(),
            pl.col("_raw_time"),
            "column 'time' holds {!r}, which is not a date or timestamp",
        ),
        (
            pl.col("_raw_created").is_not_null() & pl.col("created").is_null(),
            pl.col("_raw_created"),
            "column 'created' holds {!r}, which is not a date or timestamp",
        ),
        (pl.col("_raw_counter").is_null(), None, f"no {COUNTER} (column {COUNTER!r} is empty)"),
        (
            pl.col(COUNTER).is_null() & pl.col("_raw_counter").is_not_null(),
            pl.col("_raw_counter"),
            f"column {COUNTER!r} holds {{!r}}, which is not a whole number",
        ),
        (pl.col(COUNTER) < 0, pl.col("_raw_counter"), f"column {COUNTER!r} is negative ({{}})"),
        (
            late.fill_null(False),
            pl.col("created").dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "column 'created' ({}) is after the row's time: a model cannot be counted before it "
            "exists",
        ),
    ]


def check_study(file: Path, scan: pl.LazyFrame) -> tuple[int, list[date]]:
    """One pass over the file: (rows, distinct dates, ascending); raises naming the first bad
    row (rows count from 1) and the column."""
    checks = _checks()
    aggregates: list[pl.Expr] = [
        pl.len().alias("rows"),
        pl.col("day").unique().implode().alias("days"),
    ]
    for index, (bad, value, _) in enumerate(checks):
        aggregates += [
            bad.sum().alias(f"count{index}"),
            pl.col("_row").filter(bad).first().alias(f"row{index}"),
            pl.col("model").filter(bad).first().alias(f"model{index}"),
        ]
        if value is not None:
            aggregates.append(value.filter(bad).first().alias(f"value{index}"))
    try:
        stats = scan.select(aggregates).collect(engine="streaming").row(0, named=True)
    except (OSError, pl.exceptions.PolarsError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ArchiveImportError(f"{file}: cannot be read as a study file ({first})") from None
    if stats["rows"] == 0:
        raise ArchiveImportError(f"{file}: holds no rows")
    raise_first_failed_check(file, stats, [problem.format for _, _, problem in checks], "model")
    return int(stats["rows"]), sorted(day for day in stats["days"] if day is not None)


# ----------------------------------------------------------------------------------------------
# The study's annotations as a mapping


def country_code(value: str | None) -> str:
    """A study country name -> alpha-2, INTL or UNKNOWN; ValueError for a name we cannot
    resolve (no guessing: a fuzzy match could put a namespace in the wrong country)."""
    name = (value or "").strip()
    key = name.lower()
    if key in UNKNOWN_NAMES:
        return "UNKNOWN"
    if key in INTL_NAMES:
        return "INTL"
    if key in COUNTRY_ALIASES:
        return COUNTRY_ALIASES[key]
    try:
        return str(pycountry.countries.lookup(name).alpha_2)
    except LookupError:
        raise ValueError(name) from None


@dataclass(frozen=True)
class StudyMapping:
    rows: list[dict[str, str]]  # MAPPING_COLUMNS, sorted as a mapping file is
    disagreements: int
    retyped: int


def study_mapping_rows(file: Path, scan: pl.LazyFrame, file_sha256: str) -> StudyMapping:
    """One mapping row per author (case-insensitive) from its latest annotation: the row of its
    most recent `time`, and within that time its most downloaded model's."""
    author = pl.coalesce("author", pl.col("model").str.split("/").list.first())
    order = [pl.col("time"), pl.col(COUNTER).fill_null(-1), pl.col("_row")]
    latest = (
        scan.with_columns(author.alias("author"))
        .group_by(pl.col("author").str.to_lowercase().alias("org_lower"))
        .agg(
            pl.col("author").sort_by(order).last(),
            pl.col("org_country_single").sort_by(order).last(),
            pl.col("org_type").sort_by(order).last(),
            pl.col("day").max(),
            pl.struct("org_country_single", "org_type").n_unique().alias("annotations"),
        )
        .sort("org_lower", "author")
        .collect(engine="streaming")
    )
    codes: dict[str | None, str] = {}
    for value, example in (
        latest.group_by("org_country_single").agg(pl.col("author").first()).rows()
    ):
        try:
            codes[value] = country_code(value)
        except ValueError:
            raise ArchiveImportError(
                f"{file}: column 'org_country_single' holds {value!r} (e.g. for author "
                f"{example!r}), which is not a country name pycountry knows, International/"
                "Online or unknown"
            ) from None
    source = f"{STUDY}: {file.name} org_country_single (sha256 {file_sha256[:12]})"
    rows: list[dict[str, str]] = []
    retyped = 0
    for record in latest.iter_rows(named=True):
        country = codes[record["org_country_single"]]
        study_type = record["org_type"]
        org_type = ORG_TYPES.get((study_type or "").strip().lower(), OTHER_ORG_TYPE)
        notes = (
            f"the study's annotation at {record['day']}: org_country_single="
            f"{record['org_country_single']!r}, org_type={study_type!r}"
        )
        if country == "INTL" and org_type not in INTL_ORG_TYPES:
            notes += f"; typed {OTHER_ORG_TYPE} to keep the study's International/Online bucket"
            org_type = OTHER_ORG_TYPE
            retyped += 1
        rows.append(
            {
                "org": record["author"],
                "valid_from": "",
                "valid_to": "",
                "country": country,
                "org_type": org_type,
                "org_group": "",
                "name": record["author"],
                "source": source,
                "alt_country": "",
                "alt_source": "",
                "notes": notes,
            }
        )
    rows.sort(key=lambda row: (row["org"].lower(), row["org"]))
    problems = validate_rows(rows)
    if problems:
        shown = "; ".join(str(problem) for problem in problems[:3])
        raise ArchiveImportError(
            f"{file}: the mapping built from its annotations is not valid: {shown}"
            + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
        )
    disagreements = int((latest["annotations"] > 1).sum())
    return StudyMapping(rows, disagreements, retyped)


def mapping_bytes(rows: list[dict[str, str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MAPPING_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


# ----------------------------------------------------------------------------------------------
# Import


def _wire_of(file: Path, day: date) -> pl.LazyFrame:
    """The rows of one date as the wire frame `write_imported_snapshot` takes; `_order` puts a
    later `time` (then a later row) last, so it wins deduplication by `_id`. Read streaming, so
    that only that date's rows are held, not the whole file's columns."""
    synthetic = pl.col("model").map_batches(
        lambda ids: pl.Series(
            [None if model is None else synthetic_object_id(model) for model in ids],
            dtype=pl.String,
        ),
        return_dtype=pl.String,
        is_elementwise=True,
    )
    values = {
        "_id": pl.coalesce("_id", synthetic),
        "id": pl.col("model"),
        "author": pl.col("author"),
        "downloadsAllTime": pl.col(COUNTER),
        "createdAt": pl.col("created").dt.strftime(WIRE_TIMESTAMP),
        "tags": pl.lit([], pl.List(pl.String)),
        "private": pl.lit(False),
    }
    rows = (
        scan_study(file, numbered=False)
        .filter(pl.col("day") == day)
        .sort("time", maintain_order=True)
        .select(
            *(
                values.get(name, pl.lit(None)).cast(dtype).alias(name)
                for name, dtype in WIRE_SCHEMA.items()
            ),
        )
        .collect(engine="streaming")
    )
    return rows.with_row_index("_order").with_columns(pl.col("_order").cast(pl.Int64)).lazy()


@dataclass(frozen=True)
class StudyImport:
    record: StudyRecord
    manifests: list[SnapshotManifest]
    mapping_key: str
    record_key: str


def import_study(file: Path, settings: Settings) -> StudyImport:
    """Check the whole file, refuse it if any of its dates is stored, then write one raw
    snapshot per date, archive the study's mapping and record the import."""
    file = Path(file)
    scan = scan_study(file)
    rows, days = check_study(file, scan)
    stored: list[str] = []
    for day in days:
        try:
            refuse_existing_snapshot(day, settings)
        except SnapshotError:
            stored.append(day.isoformat())
    if stored:
        raise SnapshotError(
            f"{file}: {len(stored)} of its {len(days)} dates already have a raw snapshot in "
            f"{settings.store.where('raw')} ({', '.join(stored[:10])}"
            f"{', ...' if len(stored) > 10 else ''}), and stored snapshots are immutable: "
            "nothing was imported (delete those dates on purpose to import the file again)"
        )
    file_sha256 = sha256_file(file)
    built = study_mapping_rows(file, scan, file_sha256)
    models = int(scan.select(pl.col("model").n_unique()).collect(engine="streaming").item())
    manifests = [
        write_imported_snapshot(
            day, settings, file, SOURCE_LAYOUT, _wire_of(file, day), file_sha256
        )
        for day in days
    ]
    with tempfile.TemporaryDirectory(prefix="hubshare-study-") as scratch:
        path = Path(scratch) / "org_country.csv"
        path.write_bytes(mapping_bytes(built.rows))
        mapping = load_mapping(path)
        mapping_key = archive_mapping(mapping, settings.store)
    window = headline_window(days)
    record = StudyRecord(
        file=file.name,
        file_sha256=file_sha256,
        source=f"import:{SOURCE_LAYOUT}",
        times=[day.isoformat() for day in days],
        models=models,
        rows=rows,
        mapping_sha256=mapping.sha256,
        authors=len(built.rows),
        annotation_disagreements=built.disagreements,
        retyped=built.retyped,
        headline_start=window[0].isoformat() if window else None,
        headline_end=window[1].isoformat() if window else None,
        snapshot_sha256={manifest.snapshot_date: manifest.sha256 for manifest in manifests},
    )
    record_key = study_record_key(file_sha256)
    settings.store.put(record_key, orjson.dumps(asdict(record), option=orjson.OPT_INDENT_2))
    return StudyImport(record, manifests, mapping_key, record_key)


# ----------------------------------------------------------------------------------------------
# Where the study's annotation and a mapping disagree


def compare_annotations(org_share: pl.DataFrame, our_rows: pl.DataFrame) -> pl.DataFrame:
    """Every uploader whose bucket under the study's mapping (`org_share`: org, bucket,
    downloads, of one view) differs from our mapping's row valid on the day (`our_rows`, with
    `org_lower`; no row = `absent`): author, downloads, share_moved (of all the view's
    downloads, from our bucket to the study's), study, ours; largest first."""
    total = int(org_share["downloads"].sum())
    return (
        org_share.with_columns(pl.col("org").str.to_lowercase().alias("org_lower"))
        .join(
            our_rows.select("org_lower", pl.col("country").alias("ours")),
            on="org_lower",
            how="left",
        )
        .with_columns(pl.col("ours").fill_null("absent"))
        .filter(pl.col("ours") != pl.col("bucket"))
        .select(
            pl.col("org").alias("author"),
            "downloads",
            (pl.col("downloads") / total if total else pl.lit(0.0)).alias("share_moved"),
            pl.col("bucket").alias("study"),
            "ours",
        )
        .sort(["downloads", "author"], descending=[True, False])
    )
