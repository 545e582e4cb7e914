"""Archive import: a dump of the model list becomes a date's raw snapshot, as a crawl makes it."""

from __future__ import annotations

import gzip
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson
import polars as pl
import pytest

from hubshare.errors import ArchiveImportError, SnapshotError
from hubshare.fakehub import FakeHub, synthetic_object_id
from hubshare.provenance import sha256_file
from hubshare.settings import Settings
from hubshare.storage import DataStore
from schemas.frames import SNAPSHOT_SCHEMA
from tasks.extract import extract_snapshot
from tasks.import_archive import import_snapshot
from tasks.snapshot import SnapshotManifest, manifest_key, snapshot_key
from tests.conftest import FIXTURES, HAND_MODELS, run_hubshare

DAY = date(2024, 7, 1)
KBLAB = FIXTURES / "kb-labb"
NCTU6 = FIXTURES / "nctu6"


def raw_dir(settings: Settings) -> Path:
    return Path(settings.data_dir) / "raw"


def snapshot_file(settings: Settings, day: date) -> Path:
    return Path(settings.data_dir) / snapshot_key(day)


def snapshot(settings: Settings, day: date) -> pl.DataFrame:
    return pl.read_parquet(snapshot_file(settings, day))


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*")) if folder.exists() else []


def file_date(path: Path) -> date:
    """`2024-08-01_hf.csv` -> 2024-08-01."""
    return date.fromisoformat(path.name.removesuffix("_hf.csv"))


# ----------------------------------------------------------------------------------------------
# JSON


def test_jsonl_import_is_the_crawl_snapshot_and_is_immutable(
    env, hand_models, tmp_path, monkeypatch
):
    settings = Settings()
    manifest = import_snapshot(DAY, HAND_MODELS, settings)

    assert (manifest.rows_listed, manifest.private_dropped, manifest.duplicates_dropped) == (
        10,
        1,
        0,
    )
    assert manifest.row_count == 9
    assert (
        SnapshotManifest.load((Path(settings.data_dir) / manifest_key(DAY)).read_bytes())
        == manifest
    )
    assert manifest.source == "import:jsonl"
    assert manifest.endpoint == "hand_models.jsonl"
    assert manifest.input_sha256 == sha256_file(HAND_MODELS)
    assert manifest.sha256 == sha256_file(snapshot_file(settings, DAY))
    assert (manifest.crawl_started_at, manifest.crawl_finished_at) == (None, None)
    assert (manifest.pages, manifest.requests, manifest.retries, manifest.resumes) == (0, 0, 0, 0)

    frame = snapshot(settings, DAY)
    assert frame.schema == SNAPSHOT_SCHEMA
    assert frame.height == 9
    assert "Qwen/secret" not in frame["id"].to_list()
    assert frame["_id"].to_list() == sorted(model["_id"] for model in hand_models[:9])
    first = frame.row(0, named=True)
    assert first["createdAt"] == datetime(2024, 1, 2, tzinfo=UTC)
    assert first["gated"] == "auto"
    assert sorted(set(frame["gated"])) == ["auto", "false", "manual"]

    # The same models crawled from the fake Hub give the very same bytes.
    with FakeHub(hand_models) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HUBSHARE_DATA_DIR", str(tmp_path / "crawled"))
        crawled = extract_snapshot(DAY, Settings(), allow_backdated=True).manifest
    assert crawled.sha256 == manifest.sha256

    # Re-importing for another date: byte-identical snapshot.
    again = import_snapshot(DAY + timedelta(days=1), HAND_MODELS, settings)
    assert again.sha256 == manifest.sha256
    assert again.snapshot_date == "2024-07-02"

    # The same date again: refused, and the stored snapshot is untouched.
    with pytest.raises(SnapshotError, match=r"2024-07-01 .*immutable.*pick another date.*delete"):
        import_snapshot(DAY, HAND_MODELS, settings)
    assert sha256_file(snapshot_file(settings, DAY)) == manifest.sha256


@pytest.mark.parametrize("variant", ["json-list", "jsonl-gz", "modelId-alias"])
def test_other_json_forms_give_the_same_snapshot(env, hand_models, tmp_path, variant):
    reference = import_snapshot(DAY, HAND_MODELS, Settings())
    if variant == "json-list":
        path = tmp_path / "models.json"
        path.write_bytes(orjson.dumps(hand_models))
    elif variant == "jsonl-gz":
        path = tmp_path / "models.jsonl.gz"
        path.write_bytes(gzip.compress(HAND_MODELS.read_bytes()))
    else:
        path = tmp_path / "models.jsonl"
        renamed = [
            {("modelId" if key == "id" else key): v for key, v in m.items()} for m in hand_models
        ]
        path.write_bytes(b"\n".join(orjson.dumps(model) for model in renamed))
    manifest = import_snapshot(DAY + timedelta(days=1), path, Settings())
    assert manifest.source == "import:jsonl"
    assert manifest.sha256 == reference.sha256


def test_records_without_object_id_get_the_synthetic_one_and_the_later_duplicate_wins(
    env, tmp_path
):
    path = tmp_path / "dump.jsonl"
    records = [
        {"id": "a/one", "downloads": 1, "tags": ["x"]},
        {"id": "b/two", "downloads": 2, "author": "someone-else"},
        {"id": "a/one", "downloads": 3},
    ]
    path.write_bytes(b"\n".join(orjson.dumps(record) for record in records))
    manifest = import_snapshot(DAY, path, Settings())
    assert (manifest.rows_listed, manifest.duplicates_dropped, manifest.row_count) == (3, 1, 2)
    frame = snapshot(Settings(), DAY).sort("id")
    assert frame["_id"].to_list() == [synthetic_object_id("a/one"), synthetic_object_id("b/two")]
    assert frame["downloads"].to_list() == [3, 2]
    assert frame["author"].to_list() == ["a", "someone-else"]
    assert frame["tags"].to_list() == [[], []]


# ----------------------------------------------------------------------------------------------
# CSV and parquet layouts

ENOCHLEV_CSV = """\
modelId,modelName,author,downloads,lastModified,tags,pipeline_tag,sha,private,inference
MIT/ast-finetuned-audioset-10-10-0.4593,ast-finetuned-audioset-10-10-0.4593,MIT,189285567,\
2023-09-06 14:49:15+00:00,"['transformers', 'pytorch', 'audio-classification', 'region:us']",\
audio-classification,f826b80d28226b62986cc218e5cec390b1096902,False,cold
TheBloke/Llama-2-7B-GGUF,Llama-2-7B-GGUF,TheBloke,1193,2024-09-20 19:55:23+00:00,\
"['gguf', 'base_model:quantized:meta-llama/Llama-2-7b-hf', ""it's"", 'region:us']",,\
0a1b2c3d,False,warm
someone/private-model,private-model,someone,5000,2024-02-03 00:00:00+00:00,[],\
text-generation,deadbeef,True,cold
"""


def test_enochlev_csv(env, tmp_path):
    path = tmp_path / "hf_models.csv"
    path.write_text(ENOCHLEV_CSV)
    manifest = import_snapshot(date(2024, 9, 20), path, Settings())
    assert manifest.source == "import:csv-enochlev"
    assert (manifest.rows_listed, manifest.private_dropped, manifest.row_count) == (3, 1, 2)

    frame = snapshot(Settings(), date(2024, 9, 20))
    assert frame.schema == SNAPSHOT_SCHEMA
    rows = {row["id"]: row for row in frame.iter_rows(named=True)}
    assert set(rows) == {"MIT/ast-finetuned-audioset-10-10-0.4593", "TheBloke/Llama-2-7B-GGUF"}
    mit = rows["MIT/ast-finetuned-audioset-10-10-0.4593"]
    assert mit == {
        "_id": synthetic_object_id("MIT/ast-finetuned-audioset-10-10-0.4593"),
        "id": "MIT/ast-finetuned-audioset-10-10-0.4593",
        "author": "MIT",
        "downloads": 189285567,
        "downloadsAllTime": None,
        "likes": None,
        "createdAt": None,
        "lastModified": datetime(2023, 9, 6, 14, 49, 15, tzinfo=UTC),
        "pipeline_tag": "audio-classification",
        "library_name": None,
        "tags": ["transformers", "pytorch", "audio-classification", "region:us"],
        "gated": None,
        "private": False,
    }
    bloke = rows["TheBloke/Llama-2-7B-GGUF"]
    assert bloke["tags"] == [
        "gguf",
        "base_model:quantized:meta-llama/Llama-2-7b-hf",
        "it's",
        "region:us",
    ]
    assert bloke["pipeline_tag"] is None
    assert bloke["lastModified"] == datetime(2024, 9, 20, 19, 55, 23, tzinfo=UTC)


def test_hub_stats_parquet_keeps_what_it_needs(env, tmp_path):
    created = [
        datetime(2023, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        None,
        datetime(2022, 3, 2, 23, 29, 4, tzinfo=UTC),
    ]
    frame = pl.DataFrame(
        {
            "id": ["Qwen/Qwen2-7B", "someone/tune", "bert-base-uncased"],
            "author": ["Qwen", None, None],
            "downloads": [1000, 10, 5],
            "downloadsAllTime": [50_000, 20, 900],
            "createdAt": pl.Series(created, dtype=pl.Datetime("ms", "UTC")),
            "lastModified": ["2024-06-01T00:00:00.000Z", "2024-06-02T10:00:00Z", None],
            "likes": [7, 0, 1],
            "tags": [["transformers", "base_model:Qwen/Qwen2"], [], None],
            "pipeline_tag": ["text-generation", None, "fill-mask"],
            "library_name": ["transformers", "peft", None],
            "cardData": ['{"license": "apache-2.0"}', None, "{}"],
            "siblings": [[{"rfilename": "config.json"}], [], [{"rfilename": "a"}]],
            "config": [{"model_type": "qwen2"}, None, {"model_type": "bert"}],
            "safetensors": [{"total": 7_000_000_000}, None, None],
            "gguf": [None, None, None],
            "baseModels": [None, {"relation": "finetune", "models": ["Qwen/Qwen2-7B"]}, None],
            "trendingScore": [3.5, 0.0, 0.1],
        }
    )
    path = tmp_path / "models.parquet"
    frame.write_parquet(path)

    manifest = import_snapshot(DAY, path, Settings())
    assert manifest.source == "import:hub-stats-parquet"
    assert manifest.endpoint == "models.parquet"
    assert manifest.row_count == 3
    out = snapshot(Settings(), DAY).sort("id")
    assert out.schema == SNAPSHOT_SCHEMA
    assert out["id"].to_list() == ["Qwen/Qwen2-7B", "bert-base-uncased", "someone/tune"]
    assert out["_id"].to_list() == [synthetic_object_id(i) for i in out["id"]]
    assert out["author"].to_list() == ["Qwen", "bert-base-uncased", "someone"]
    assert out["createdAt"].to_list() == [created[0], created[2], None]
    assert out["lastModified"].to_list() == [
        datetime(2024, 6, 1, tzinfo=UTC),
        None,
        datetime(2024, 6, 2, 10, tzinfo=UTC),
    ]
    assert out["downloadsAllTime"].to_list() == [50_000, 900, 20]
    assert out["tags"].to_list() == [["transformers", "base_model:Qwen/Qwen2"], [], []]
    assert out["private"].to_list() == [False, False, False]
    assert out["gated"].null_count() == 3


# ----------------------------------------------------------------------------------------------
# Files that do not fit: one line naming the file and the problem, nothing written


BAD_FILES = {
    "no-downloads-column": (
        "foo.csv",
        "modelId,author\nx/y,x\n",
        r"foo\.csv: no column 'downloads' \(columns: modelId, author\); expected one of the "
        r"layouts: .*csv-enochlev",
    ),
    "no-id-column": (
        "foo.csv",
        "name,size\nx,1\n",
        r"foo\.csv: no column 'modelId' or 'model_url'",
    ),
    "no-downloads-field": (
        "dump.jsonl",
        '{"id": "a/b", "likes": 1}\n',
        r"dump\.jsonl: no record has the field 'downloads' \(fields found: id, likes\)",
    ),
    "null-downloads": (
        "kb.csv",
        "model_url,downloads,organization,model_name,date\n"
        "https://huggingface.co/KB/a,1,KB,a,2024-07-01\n"
        "https://huggingface.co/KB/b,,KB,b,2024-07-01\n",
        r"kb\.csv: row 2 \(KB/b\): no downloads",
    ),
    "not-a-number": (
        "kb.csv",
        "model_url,downloads,organization,model_name,date\n"
        "https://huggingface.co/KB/a,1.5k,KB,a,2024-07-01\n",
        r"kb\.csv: row 1 \(KB/a\): downloads '1.5k' is not a whole number",
    ),
    "other-date": (
        "kb.csv",
        "model_url,downloads,organization,model_name,date\n"
        "https://huggingface.co/KB/a,1,KB,a,2024-07-01\n"
        "https://huggingface.co/KB/b,1,KB,b,2024-08-01\n",
        r"kb\.csv: row 2 \(KB/b\): its date column says 2024-08-01, but it is imported for "
        r"2024-07-01",
    ),
    "bad-tags": (
        "hf_models.csv",
        "modelId,downloads,tags\na/b,1,['x'\n",
        r"hf_models\.csv: row 1 \(a/b\): tags \"\['x'\" is not a list of strings",
    ),
    "taken-later": (
        "dump.jsonl",
        '{"id": "a/b", "downloads": 1, "lastModified": "2024-07-03T00:00:00Z"}\n',
        r"dump\.jsonl: row 1 \(a/b\): lastModified 2024-07-03T00:00:00Z is after 2024-07-01",
    ),
    "unknown-type": ("models.xlsx", "x", r"models\.xlsx: unsupported file type '\.xlsx'"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_file_that_does_not_fit_is_refused_and_nothing_is_written(env, tmp_path, case):
    name, content, message = BAD_FILES[case]
    path = tmp_path / "in" / name
    path.parent.mkdir()
    path.write_text(content)
    settings = Settings()
    with pytest.raises(ArchiveImportError, match=message) as raised:
        import_snapshot(DAY, path, settings)
    assert "\n" not in str(raised.value)
    assert files_under(raw_dir(settings)) == []


def test_a_failure_while_writing_leaves_no_half_written_date(env, monkeypatch):
    """The snapshot is written, then writing the manifest fails: raw/ is left as it was."""
    create = DataStore.create

    def broken_create(store: DataStore, key: str, data: bytes) -> bool:
        if key.endswith("manifest.json"):
            raise OSError(f"disk full writing {key}")
        return create(store, key, data)

    monkeypatch.setattr(DataStore, "create", broken_create)
    settings = Settings()
    with pytest.raises(OSError, match=r"disk full writing raw/2024-07-01/manifest\.json"):
        import_snapshot(DAY, HAND_MODELS, settings)
    assert not raw_dir(settings).exists()

    raw_dir(settings).mkdir(parents=True)
    (raw_dir(settings) / "2024-06-30").mkdir()
    with pytest.raises(OSError, match="disk full"):
        import_snapshot(DAY, HAND_MODELS, settings)
    assert files_under(raw_dir(settings)) == [raw_dir(settings) / "2024-06-30"]


def test_a_date_with_an_unfinished_crawl_is_refused(env):
    settings = Settings()
    pages = raw_dir(settings) / DAY.isoformat() / "pages"
    pages.mkdir(parents=True)
    (pages / "state.json").write_text("{}")
    with pytest.raises(SnapshotError, match="crawl that has not finished"):
        import_snapshot(DAY, HAND_MODELS, settings)
    assert files_under(raw_dir(settings)) == [pages.parent, pages, pages / "state.json"]


# ----------------------------------------------------------------------------------------------
# Real archives


def test_kblab_every_month_sums_to_the_published_total(env):
    """kb-labb/huggingface_stats publishes each month's total of its models files: importing
    each file as its date's snapshot must keep every model (no dedup loss, no private drop)."""
    settings = Settings()
    totals = dict(
        pl.read_csv(KBLAB / "totals" / "total_downloads_monthly.csv", try_parse_dates=True)
        .select("date", "downloads")
        .iter_rows()
    )
    files = sorted((KBLAB / "models").glob("*_hf.csv"))
    assert len(files) == len(totals) == 55
    got = {}
    for path in files:
        day = file_date(path)
        manifest = import_snapshot(day, path, settings)
        assert manifest.source == "import:csv-kblab"
        assert (manifest.duplicates_dropped, manifest.private_dropped) == (0, 0)
        frame = snapshot(settings, day)
        assert set(frame["author"]) <= {"KB", "KBLab"}
        assert frame["id"].str.starts_with("https://").sum() == 0
        got[day] = int(frame["downloads"].sum())
    assert got == totals


#: (earlier, later) snapshots 30-31 days apart -> Σ Δ downloadsAllTime / Σ downloads(later) - 1,
#: in percent rounded to 0.1.
NCTU6_PAIRS = {
    (date(2024, 7, 1), date(2024, 8, 1)): 0.5,  # 35,691 all-time vs 35,501 30-day
    (date(2024, 8, 1), date(2024, 9, 1)): 2.5,  # 45,830 vs 44,721 (one new model)
    (date(2024, 9, 1), date(2024, 10, 1)): -2.1,  # 11,623 vs 11,876
    (date(2024, 10, 1), date(2024, 11, 1)): 3.0,  # 10,483 vs 10,175
}


def test_nctu6_all_time_differences_match_the_30_day_counter(env):
    settings = Settings()
    days = []
    for path in sorted((NCTU6 / "models").glob("*_hf.csv")):
        manifest = import_snapshot(file_date(path), path, settings)
        assert manifest.source == "import:csv-nctu6"
        days.append(file_date(path))
    assert len(days) == 19

    found = {}
    for earlier in days:
        for later in days:
            if not 30 <= (later - earlier).days <= 31:
                continue
            before = snapshot(settings, earlier).select(
                "id", pl.col("downloadsAllTime").alias("before")
            )
            joined = snapshot(settings, later).join(before, on="id", how="left")
            diff = pl.col("downloadsAllTime") - pl.col("before").fill_null(0)
            sums = joined.select(
                diff.sum().alias("all_time"),
                pl.col("downloads").sum().alias("d30"),
                (diff < 0).sum().alias("negative"),
            ).row(0, named=True)
            assert sums["negative"] == 0
            relative = sums["all_time"] / sums["d30"] - 1
            assert abs(relative) <= 0.04
            found[earlier, later] = round(relative * 100, 1)
    assert found == NCTU6_PAIRS


def test_import_command(env, tmp_path):
    hubshare = run_hubshare

    first = hubshare("import", "--date", "2024-07-01", "--file", str(HAND_MODELS))
    assert first.returncode == 0, first.stderr
    assert "9 public models" in first.stderr
    assert (env / snapshot_key(date(2024, 7, 1))).exists()
    again = hubshare("import", "--date", "2024-07-01", "--file", str(HAND_MODELS))
    assert again.returncode == 5  # data/input
    assert "2024-07-01" in again.stderr.strip().splitlines()[-1]
    bad = tmp_path / "bad.csv"
    bad.write_text("name,size\na,1\n")
    refused = hubshare("import", "--date", "2024-07-02", "--file", str(bad))
    assert refused.returncode == 5
    assert "no column" in refused.stderr.strip().splitlines()[-1]
