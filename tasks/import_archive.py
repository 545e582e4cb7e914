"""Import an archived dump of the model list as the raw snapshot of a past date.

The Hub keeps no history: a past date has data only if we crawled it then, or if someone kept a
dump of the model list that day. `import_snapshot` turns such a dump into `raw/<date>/
snapshot.parquet` + `manifest.json` exactly as a crawl does (same columns, same deduplication by
`_id` keeping the later row, private rows dropped, same deterministic writer), so every later step
cannot tell an imported date from a crawled one except by the manifest's `source`.

Layouts (detected from the file name's extension, then from the columns):

- `jsonl` — `.jsonl`, `.ndjson`, `.json` (JSON Lines, or one JSON list), optionally `.gz`: Hub API
  model objects (`_id`, `id` or its alias `modelId`, `author`, `downloads`, `downloadsAllTime`,
  `likes`, `createdAt`, `lastModified`, `pipeline_tag`, `library_name`, `tags`, `gated`,
  `private`); other keys are ignored.
- `csv-enochlev` — `.csv` with `modelId`: a `huggingface_hub.list_models` dump written by pandas
  (enochlev/CS573_Documentation_Quality `hf_models.csv`): `tags` is a Python list literal,
  `private` is `True`/`False`, `lastModified` is `2023-09-06 14:49:15+00:00`. Other snapshot
  columns are taken when present under their Hub name.
- `csv-kblab` — `.csv` with `model_url` (`https://huggingface.co/<org>/<name>`), `downloads`,
  `organization`, `model_name`, `date` (kb-labb/huggingface_stats `data/models/*_hf.csv`).
- `csv-nctu6` — the same plus `downloadsAllTime`; `model_url` is `<org>/<name>`
  (nctu6/huggingface_stats).
- `hub-stats-parquet` — `.parquet` in the layout of the public hub-stats `models.parquet` (`id`,
  `author`, `downloads`, `downloadsAllTime`, `likes`, `createdAt` as a timestamp or text,
  `lastModified`, `pipeline_tag`, `library_name`, `tags`; `_id`, `gated` and `private` are taken
  if present). Only these columns are read (the real file is ~1.5 GB, mostly `cardData`,
  `siblings`, `config`, ...).

Whatever a layout does not carry stays null (`author` falls back to the id's namespace, `tags` to
an empty list, `private` to false, as for a crawl). An empty CSV field is null (CSV cannot tell
"" from missing); JSON and parquet text is kept as it is, "" included, as a crawl keeps it. Text
timestamps may be ISO 8601 with `T` or a space, with `Z`, an offset or none (then UTC).

**Synthetic `_id`s.** A record without `_id` gets `hubshare.provenance.synthetic_object_id(id)` (the
first 24 hex digits of sha1 of the id), so re-importing the same file gives the same bytes. These
ids do NOT match the Mongo ObjectIds a crawl records for the same models: joining an imported
snapshot with a crawled one (download windows) must go through `id`, not `_id`. They also make a
renamed repo a different model, as the id is all an archive knows.

**Checks.** The whole file is validated before anything is written; the first problem found
raises `ArchiveImportError` naming the file, the row (records count from 1, a CSV header is not a
record) and the value: a row without id or without `downloads`, a value that cannot be read as
its type, a negative counter, a `date` column different from the date imported for, or a
`createdAt`/`lastModified` later than the end of the day after that date (the dump was taken
later than the date it is being labelled with; one day of grace for a crawl running past
midnight). A date that already has anything under `raw/<date>/` raises `SnapshotError`: stored
snapshots are immutable. The snapshot and then the manifest are each written whole and created
only if absent (the store enforces it, on a local disk and on object storage alike), so an error
leaves no half-written date behind and a date written meanwhile by anything else is refused.

The manifest records `source = "import:<layout>"`, `endpoint` = the file's name, no crawl times,
zero pages/requests/retries/resumes, the usual counts and SHA-256, and `input_sha256` = the
SHA-256 of the imported file as given (compressed bytes for a `.gz`).
"""

from __future__ import annotations

import ast
import gzip
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import orjson
import polars as pl

from hubshare.errors import ArchiveImportError, SnapshotError
from hubshare.provenance import sha256_file, synthetic_object_id
from hubshare.settings import Settings
from schemas.frames import SNAPSHOT_SCHEMA, WIRE_SCHEMA, wire_problem
from tasks.snapshot import (
    STORED_BY_THIS_RUN,
    SnapshotManifest,
    day_key,
    describe_snapshot,
    finalise_snapshot,
    manifest_key,
    snapshot_key,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = [
    "LAYOUTS",
    "TIMESTAMP_FORMATS",
    "WIRE_TIMESTAMP",
    "detect_layout",
    "import_snapshot",
    "refuse_existing_snapshot",
    "write_imported_snapshot",
]

#: Every layout `import_snapshot` accepts, with what identifies it (for error messages).
LAYOUTS: dict[str, str] = {
    "jsonl": ".jsonl/.ndjson/.json[.gz] of Hub API model objects with id (or modelId), downloads",
    "csv-enochlev": ".csv with modelId, downloads[, author, lastModified, tags, pipeline_tag, "
    "private]",
    "csv-kblab": ".csv with model_url, downloads[, organization, model_name, date]",
    "csv-nctu6": ".csv with model_url, downloads, downloadsAllTime[, organization, model_name, "
    "date]",
    "hub-stats-parquet": ".parquet with id, downloads[, author, downloadsAllTime, likes, "
    "createdAt, lastModified, pipeline_tag, library_name, tags]",
}

JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
#: Text timestamps we read, tried in order; a naive one is taken as UTC.
TIMESTAMP_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
)
#: How timestamps travel to `normalise_models` (which parses wire text, as from the Hub).
WIRE_TIMESTAMP = "%Y-%m-%dT%H:%M:%S%.6fZ"
HUB_URL_PREFIX = r"^(?:https?://)?(?:www\.)?huggingface\.co/"
COUNTERS = ("downloads", "downloadsAllTime", "likes")
TIMESTAMPS = ("createdAt", "lastModified")
#: A quoted item without backslashes (its text is then its value), and a list made only of such
#: items: `['a', "b's"]`.
PY_STRING = r"'[^'\\]*'" + "|" + r'"[^"\\]*"'
SIMPLE_LIST = rf"^\s*\[\s*(?:(?:{PY_STRING})(?:\s*,\s*(?:{PY_STRING}))*\s*,?)?\s*\]\s*$"
RAW = "_raw:"  # prefix of the columns keeping the text a typed column was parsed from
FILE_DATE = "_file_date"

# A source column: an expression over the input frame and the type it has there.
Source = tuple[pl.Expr, pl.DataType]


# ----------------------------------------------------------------------------------------------
# Entry point


def import_snapshot(snapshot_date: date, file: Path, settings: Settings) -> SnapshotManifest:
    """Build the raw snapshot of `snapshot_date` from an archive `file` (see the module doc for
    the layouts) and return its manifest. Raises `SnapshotError` if the date already has one,
    `ArchiveImportError` if the file does not fit; nothing is written then."""
    file = Path(file)
    refuse_existing_snapshot(snapshot_date, settings)
    if not file.is_file():
        raise ArchiveImportError(f"{file}: no such file")
    input_sha256 = sha256_file(file)
    layout = detect_layout(file)
    typed = _typed_frame(file, layout)
    _validate(file, layout, typed, snapshot_date)
    return write_imported_snapshot(
        snapshot_date, settings, file, layout, _wire_frame(typed), input_sha256
    )


def detect_layout(file: Path) -> str:
    """The layout of `file` (a key of `LAYOUTS`), from its extension and columns; raises
    `ArchiveImportError` naming what is missing when it fits none."""
    suffix = _base_suffix(file)
    if suffix in JSON_SUFFIXES:
        return "jsonl"
    if suffix == ".parquet":
        columns = _read_guard(file, "parquet", lambda: pl.scan_parquet(file).collect_schema())
        _require(file, columns.names(), ("id|modelId", "downloads"))
        return "hub-stats-parquet"
    if suffix == ".csv":
        names = _csv_columns(file)
        if "model_url" in names:
            layout = "csv-nctu6" if "downloadsAllTime" in names else "csv-kblab"
            _require(file, names, ("model_url", "downloads"))
            return layout
        _require(file, names, ("modelId|model_url", "downloads"))
        return "csv-enochlev"
    raise ArchiveImportError(
        f"{file}: unsupported file type {suffix or '(no extension)'!r}; expected one of the "
        f"layouts: {_layouts_help()}"
    )


# ----------------------------------------------------------------------------------------------
# Reading each layout into one typed frame


def _typed_frame(file: Path, layout: str) -> pl.LazyFrame:
    """The file as a lazy frame with `_row` (1-based record number), every snapshot column in
    its snapshot type (null where the layout has nothing), the raw text of each column parsed
    from text (`_raw:<name>`), and `_file_date` for layouts that carry a capture date."""
    if layout == "jsonl":
        frame, sources = _json_sources(file)
    elif layout == "hub-stats-parquet":
        frame, sources = _parquet_sources(file)
    else:
        frame, sources = _csv_sources(file, layout)
    # A CSV cannot tell an empty text from a missing one; JSON and parquet can, and keep "".
    blank_text_is_null = layout.startswith("csv-")
    frame = frame.with_row_index("_row", offset=1)
    exprs: list[pl.Expr] = [pl.col("_row").cast(pl.Int64)]
    for name, target in SNAPSHOT_SCHEMA.items():
        source = sources.pop(name, None)
        if source is None:
            exprs.append(pl.lit(None, dtype=target).alias(name))
            continue
        typed, raw = _convert(name, target, *source, blank_text_is_null=blank_text_is_null)
        exprs.append(typed.alias(name))
        if raw is not None:
            exprs.append(raw.alias(RAW + name))
    if FILE_DATE in sources:
        text = _blank_to_null(sources.pop(FILE_DATE)[0].cast(pl.String))
        exprs += [
            text.str.to_date("%Y-%m-%d", strict=False).alias(FILE_DATE),
            text.alias(RAW + FILE_DATE),
        ]
    assert not sources, f"unmapped source columns {sorted(sources)}"
    return frame.select(exprs)


def _json_sources(file: Path) -> tuple[pl.LazyFrame, dict[str, Source]]:
    schema = pl.Schema({**dict(WIRE_SCHEMA), "modelId": pl.String()})
    if _json_is_list(file):
        frame = _read_guard(file, "a JSON list", lambda: pl.read_json(file, schema=schema)).lazy()
    else:
        frame = pl.scan_ndjson(file, schema=schema)
    sources: dict[str, Source] = {name: (pl.col(name), dtype) for name, dtype in schema.items()}
    del sources["modelId"]
    sources["id"] = (pl.coalesce("id", "modelId"), pl.String())
    return frame, sources


def _csv_sources(file: Path, layout: str) -> tuple[pl.LazyFrame, dict[str, Source]]:
    frame = pl.scan_csv(file, infer_schema=False)
    names = set(frame.collect_schema().names())
    text = pl.String()
    if layout == "csv-enochlev":
        sources: dict[str, Source] = {
            name: (pl.col(name), text) for name in SNAPSHOT_SCHEMA.names() if name in names
        }
        if "modelId" in names:
            id_expr = pl.col("modelId")
            sources["id"] = (pl.coalesce("id", id_expr) if "id" in names else id_expr, text)
        return frame, sources
    # kb-labb and nctu6: model_url is the repo URL (kb-labb) or the bare id (nctu6).
    from_url = _blank_to_null(
        pl.col("model_url").str.strip_chars().str.replace(HUB_URL_PREFIX, "").str.strip_suffix("/")
    )
    id_expr = from_url
    if {"organization", "model_name"} <= names:
        id_expr = pl.coalesce(from_url, pl.concat_str("organization", pl.lit("/"), "model_name"))
    sources = {"id": (id_expr, text), "downloads": (pl.col("downloads"), text)}
    if "organization" in names:
        sources["author"] = (pl.col("organization"), text)
    if "downloadsAllTime" in names:
        sources["downloadsAllTime"] = (pl.col("downloadsAllTime"), text)
    if "date" in names:
        sources[FILE_DATE] = (pl.col("date"), text)
    return frame, sources


def _parquet_sources(file: Path) -> tuple[pl.LazyFrame, dict[str, Source]]:
    frame = pl.scan_parquet(file)
    schema = frame.collect_schema()
    sources: dict[str, Source] = {
        name: (pl.col(name), schema[name]) for name in SNAPSHOT_SCHEMA.names() if name in schema
    }
    if "id" not in schema:
        sources["id"] = (pl.col("modelId"), schema["modelId"])
    return frame, sources


def _convert(
    name: str,
    target: pl.DataType,
    expr: pl.Expr,
    dtype: pl.DataType,
    *,
    blank_text_is_null: bool,
) -> tuple[pl.Expr, pl.Expr | None]:
    """(typed expression, raw text it was parsed from or None) for one snapshot column. A
    blank value to parse (a number, timestamp, list, flag) is always null."""
    if dtype == pl.Null():
        return pl.lit(None, dtype=target), None
    if dtype == pl.String():
        text = _blank_to_null(expr)
        kept = text if blank_text_is_null else expr
        if name == "gated":  # false | "auto" | "manual" on the wire; pandas writes False
            return kept.str.to_lowercase(), None
        if target == pl.String():
            return kept, None
        if target == pl.Int64():
            return text.str.strip_chars().cast(pl.Int64, strict=False), text
        if isinstance(target, pl.Datetime):
            return _parse_timestamp(text), text
        if isinstance(target, pl.List):
            return _parse_list_text(text), text
        if target == pl.Boolean():
            return _parse_bool(text), text
    elif target == pl.Int64() and dtype.is_integer():
        return expr.cast(pl.Int64), None
    elif isinstance(target, pl.Datetime) and isinstance(dtype, pl.Datetime):
        utc = (
            expr.dt.replace_time_zone("UTC")
            if dtype.time_zone is None
            else expr.dt.convert_time_zone("UTC")
        )
        return utc.dt.cast_time_unit("us"), None
    elif isinstance(target, pl.List) and isinstance(dtype, pl.List):
        return expr.cast(target), None
    elif target == pl.Boolean() and dtype == pl.Boolean():
        return expr, None
    elif name == "gated" and dtype == pl.Boolean():
        return pl.when(expr).then(pl.lit("true")).otherwise(pl.lit("false")), None
    elif target == pl.String():
        return expr.cast(pl.String), None
    # Anything else (a float counter, a numeric timestamp, ...) is read as its text, so that a
    # value that does not fit is reported instead of silently truncated.
    return _convert(
        name, target, expr.cast(pl.String), pl.String(), blank_text_is_null=blank_text_is_null
    )


def _blank_to_null(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr.str.strip_chars() == "").then(None).otherwise(expr)


def _parse_timestamp(text: pl.Expr) -> pl.Expr:
    return pl.coalesce(
        [
            text.str.to_datetime(fmt, time_zone="UTC", time_unit="us", strict=False)
            for fmt in TIMESTAMP_FORMATS
        ]
    )


def _parse_bool(text: pl.Expr) -> pl.Expr:
    return (
        text.str.strip_chars()
        .str.to_lowercase()
        .replace_strict(
            {"true": True, "false": False, "1": True, "0": False},
            default=None,
            return_dtype=pl.Boolean,
        )
    )


def _parse_list_text(text: pl.Expr) -> pl.Expr:
    """A list of strings written as a Python (or JSON) list literal. The common shape (quoted
    items without backslashes, separated by commas) is split natively; anything else goes
    through `ast.literal_eval`, row by row, only for the rows that need it."""
    simple = text.str.contains(SIMPLE_LIST)
    native = text.str.extract_all(PY_STRING).list.eval(
        pl.element().str.slice(1, pl.element().str.len_chars() - 2)
    )
    general = (
        pl.when(~simple)
        .then(text)
        .map_elements(_parse_string_list, return_dtype=pl.List(pl.String))
    )
    return pl.when(simple).then(native).otherwise(general)


def _parse_string_list(text: str) -> list[str] | None:
    """`"['a', 'b']"` (a Python list literal, as pandas writes a list; JSON lists parse too) ->
    `["a", "b"]`; None if the text is not a list of strings."""
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return list(value)
    return None


# ----------------------------------------------------------------------------------------------
# Validation: one pass over the file, before anything is written


@dataclass(frozen=True)
class _Check:
    bad: pl.Expr
    value: pl.Expr | None  # the offending value shown in the message
    problem: Callable[[str | None], str]


def _checks(typed_names: list[str], snapshot_date: date) -> list[_Check]:
    raw_kind = {
        "downloads": "a whole number",
        "downloadsAllTime": "a whole number",
        "likes": "a whole number",
        "createdAt": "an ISO 8601 timestamp",
        "lastModified": "an ISO 8601 timestamp",
        "tags": "a list of strings",
        "private": "true or false",
        FILE_DATE: "a YYYY-MM-DD date",
    }
    checks: list[_Check] = []
    for name, kind in raw_kind.items():
        if RAW + name not in typed_names:
            continue
        label = "date" if name == FILE_DATE else name

        def cannot_read(value: str | None, label: str = label, kind: str = kind) -> str:
            return f"{label} {value!r} is not {kind}"

        checks.append(
            _Check(
                pl.col(RAW + name).is_not_null() & pl.col(name).is_null(),
                pl.col(RAW + name),
                cannot_read,
            )
        )
    checks.append(_Check(pl.col("id").is_null(), None, lambda _: "no model id"))
    checks.append(
        _Check(
            pl.col("downloads").is_null(),
            None,
            lambda _: "no downloads (the 30-day counter is required)",
        )
    )
    for name in COUNTERS:

        def negative(value: str | None, name: str = name) -> str:
            return f"{name} {value} is negative"

        checks.append(_Check(pl.col(name) < 0, pl.col(name).cast(pl.String), negative))
    if FILE_DATE in typed_names:

        def other_date(value: str | None) -> str:
            return (
                f"its date column says {value}, but it is imported for {snapshot_date}; import "
                "each file for its own capture date"
            )

        checks.append(
            _Check(
                pl.col(FILE_DATE) != pl.lit(snapshot_date),
                pl.col(FILE_DATE).cast(pl.String),
                other_date,
            )
        )
    latest = datetime.combine(snapshot_date + timedelta(days=2), datetime.min.time(), tzinfo=UTC)
    for name in TIMESTAMPS:

        def too_late(value: str | None, name: str = name) -> str:
            return (
                f"{name} {value} is after {snapshot_date}: the file was taken later than the "
                "date it is imported for (use its capture date)"
            )

        checks.append(
            _Check(
                pl.col(name) >= pl.lit(latest, dtype=pl.Datetime("us", "UTC")),
                pl.col(name).dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                too_late,
            )
        )
    return checks


def _validate(file: Path, layout: str, typed: pl.LazyFrame, snapshot_date: date) -> None:
    names = typed.collect_schema().names()
    checks = _checks(names, snapshot_date)
    aggregates: list[pl.Expr] = [pl.len().alias("rows")]
    aggregates += [pl.col(name).is_not_null().any().alias(f"has:{name}") for name in WIRE_SCHEMA]
    for index, check in enumerate(checks):
        aggregates += [
            check.bad.fill_null(False).sum().alias(f"count{index}"),
            pl.col("_row").filter(check.bad).first().alias(f"row{index}"),
            pl.col("id").filter(check.bad).first().alias(f"id{index}"),
        ]
        if check.value is not None:
            aggregates.append(check.value.filter(check.bad).first().alias(f"value{index}"))
    try:
        stats = _read_guard(file, layout, lambda: typed.select(aggregates).collect()).row(
            0, named=True
        )
    except ArchiveImportError:
        if layout == "jsonl":
            _raise_first_wire_problem(file)  # name the record and field, as for a Hub page
        raise
    if stats["rows"] == 0:
        raise ArchiveImportError(f"{file}: holds no models (layout {layout})")
    if layout == "jsonl":
        present = [name for name in WIRE_SCHEMA if stats[f"has:{name}"]]
        for name, label in (("id", "'id' (or 'modelId')"), ("downloads", "'downloads'")):
            if not stats[f"has:{name}"]:
                raise ArchiveImportError(
                    f"{file}: no record has the field {label} (fields found: "
                    f"{', '.join(present) or 'none'}); expected one of the layouts: "
                    f"{_layouts_help()}"
                )
    raise_first_failed_check(file, stats, [check.problem for check in checks], "id")


def raise_first_failed_check(
    file: Path, stats: dict[str, Any], problems: list[Callable[[Any], str]], model_key: str
) -> None:
    """Raise for the first check that some row fails, naming the row, its model and the value:
    `stats` holds, per check i, `count{i}` (rows failing), `row{i}`, `{model_key}{i}` and
    `value{i}` (the first failing row's number, model and value)."""
    for index, problem in enumerate(problems):
        count = stats[f"count{index}"]
        if not count:
            continue
        model = stats[f"{model_key}{index}"]
        where = f"row {stats[f'row{index}']}" + (f" ({model})" if model else "")
        more = f" ({count - 1:,} more rows like it)" if count > 1 else ""
        raise ArchiveImportError(f"{file}: {where}: {problem(stats.get(f'value{index}'))}{more}")


# ----------------------------------------------------------------------------------------------
# Writing


def _wire_frame(typed: pl.LazyFrame) -> pl.LazyFrame:
    """Typed frame -> what `finalise_snapshot` takes: the wire columns (timestamps as text, as
    the Hub sends them) and `_order` = the record's position in the file."""
    columns: list[pl.Expr] = []
    for name, dtype in WIRE_SCHEMA.items():
        if name == "_id":
            synthetic = pl.col("id").map_batches(
                _synthetic_ids, return_dtype=pl.String, is_elementwise=True
            )
            column = pl.coalesce("_id", synthetic)
        elif name in TIMESTAMPS:
            column = pl.col(name).dt.strftime(WIRE_TIMESTAMP)
        else:
            column = pl.col(name)
        columns.append(column.cast(dtype).alias(name))
    return typed.select(*columns, pl.col("_row").cast(pl.Int64).alias("_order"))


def _synthetic_ids(ids: pl.Series) -> pl.Series:
    """`synthetic_object_id` of each id (null stays null), one batch at a time."""
    return pl.Series(
        [None if model_id is None else synthetic_object_id(model_id) for model_id in ids],
        dtype=pl.String,
    )


def write_imported_snapshot(
    snapshot_date: date,
    settings: Settings,
    file: Path,
    layout: str,
    wire: pl.LazyFrame,
    input_sha256: str,
) -> SnapshotManifest:
    """Store snapshot + manifest with the store's create-if-absent (the manifest last, so a
    manifest always has its snapshot): a date written meanwhile by anything else is refused."""
    refuse_existing_snapshot(snapshot_date, settings)
    store = settings.store
    source = f"import:{layout}"
    listed = _read_guard(file, layout, wire.collect)
    stored = finalise_snapshot(
        listed,
        store,
        snapshot_date,
        lambda counts, sha: describe_snapshot(
            snapshot_date, sha, counts, source, file.name, input_sha256=input_sha256
        ),
    )
    manifest = stored.manifest
    if stored.stored_by != STORED_BY_THIS_RUN:
        raise SnapshotError(
            f"{snapshot_date}: another writer stored a snapshot of that date meanwhile "
            f"({manifest.source}, sha256 {manifest.sha256[:12]}…); this import was not stored"
        )
    log.info(
        "Imported %s as the %s snapshot (%s): %d models, %d duplicates and %d private dropped, "
        "sha256 %s",
        file.name,
        snapshot_date,
        layout,
        manifest.row_count,
        manifest.duplicates_dropped,
        manifest.private_dropped,
        manifest.sha256[:12],
    )
    return manifest


def refuse_existing_snapshot(snapshot_date: date, settings: Settings) -> None:
    store = settings.store
    folder = day_key(snapshot_date)
    present = store.keys(folder)
    if not present:
        return
    if manifest_key(snapshot_date) in present or snapshot_key(snapshot_date) in present:
        what = "a stored snapshot"
    else:
        what = "files of a crawl that has not finished"
    raise SnapshotError(
        f"{snapshot_date} already has {what} in {store.where(folder)}, and stored snapshots are "
        f"immutable: pick another date, or delete {store.where(folder)} on purpose to replace it"
    )


# ----------------------------------------------------------------------------------------------
# Helpers


def _base_suffix(file: Path) -> str:
    suffixes = [suffix.lower() for suffix in file.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def _json_is_list(file: Path) -> bool:
    """A `.json` file holding one list (rather than JSON Lines): its first non-blank byte is `[`."""
    try:
        if file.name.lower().endswith(".gz"):
            with gzip.open(file, "rb") as zipped:
                head = zipped.read(4096)
        else:
            with file.open("rb") as handle:
                head = handle.read(4096)
    except OSError as err:
        raise ArchiveImportError(f"{file}: cannot be read ({err})") from None
    return head.lstrip()[:1] == b"["


def _csv_columns(file: Path) -> list[str]:
    return _read_guard(
        file, "CSV", lambda: pl.scan_csv(file, infer_schema=False).collect_schema().names()
    )


def _require(file: Path, columns: list[str], required: tuple[str, ...]) -> None:
    """Each entry of `required` is a column name or alternatives joined by `|`."""
    missing = [entry for entry in required if not set(entry.split("|")) & set(columns)]
    if missing:
        wanted = ", ".join(
            " or ".join(repr(name) for name in entry.split("|")) for entry in missing
        )
        shown = ", ".join(columns[:30]) + (", ..." if len(columns) > 30 else "")
        raise ArchiveImportError(
            f"{file}: no column {wanted} (columns: {shown or 'none'}); expected one of the "
            f"layouts: {_layouts_help()}"
        )


def _layouts_help() -> str:
    return "; ".join(f"{name} ({description})" for name, description in LAYOUTS.items())


def _raise_first_wire_problem(file: Path) -> None:
    """Find the first record of a JSON file that a Hub page would be rejected for (bad JSON, a
    field of the wrong type) and raise naming it; return if every record is well formed."""
    opener = gzip.open if file.name.lower().endswith(".gz") else open
    try:
        with opener(file, "rb") as handle:
            text = handle.read()
    except (OSError, EOFError):
        return  # unreadable as a whole: the reader's own message says so
    if _json_is_list(file):
        try:
            records: list[tuple[int, bytes | object]] = list(enumerate(orjson.loads(text), 1))
        except orjson.JSONDecodeError:
            return
    else:
        records = list(enumerate(text.splitlines(), 1))
    for number, record in records:
        if isinstance(record, bytes):
            if not record.strip():
                continue
            try:
                record = orjson.loads(record)
            except orjson.JSONDecodeError as err:
                raise ArchiveImportError(f"{file}: line {number} is not JSON ({err})") from None
        problem = wire_problem(record)
        if problem is not None:
            raise ArchiveImportError(f"{file}: record {number} {problem}")


def _read_guard(file: Path, what: str, read: Callable[[], T]) -> T:
    """Run `read`, turning a reader's failure into one line naming the file."""
    try:
        return read()
    except (OSError, pl.exceptions.PolarsError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ArchiveImportError(f"{file}: cannot be read as {what} ({first})") from None
