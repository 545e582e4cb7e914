"""The study in one command: `import --study`, its headline, and `mapping compare --study`, on a
hand-made file in the study's documented schema (real-data.md §3.3), not on its real files."""

from __future__ import annotations

import json
import re
import shlex
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from hubshare.provenance import sha256_file, synthetic_object_id
from tasks.mapping import read_rows, validate_rows
from tasks.snapshot import SnapshotManifest, manifest_key, snapshot_key
from tasks.study import COUNTRY_ALIASES, country_code, headline_window
from tests.conftest import run_hubshare

README = Path(__file__).parent.parent / "README.md"
STUDY_FILE = "all_downloads_with_annotations.parquet"
T1, T2, T3 = date(2024, 9, 1), date(2025, 3, 1), date(2025, 9, 1)

# (model, author, created, {time: downloadsAllTime}, study org_type, org_country_single by time)
MODELS: list[tuple[str, str, str, dict[date, int], str | None, dict[date, str | None]]] = [
    ("deepseek-ai/DeepSeek-V3", "deepseek-ai", "2024-09-01", {T1: 0, T2: 1500, T3: 3650},
     "company", {T1: "China", T2: "China", T3: "China"}),
    ("deepseek-ai/DeepSeek-R1", "deepseek-ai", "2025-03-01", {T2: 0, T3: 1840},
     "company", {T2: "China", T3: "China"}),
    ("meta-llama/Llama-2-7b", "meta-llama", "2023-03-01", {T1: 10000, T2: 15000, T3: 20000},
     "company", {T1: "USA", T2: "USA", T3: "USA"}),
    ("meta-llama/Llama-3-8B", "meta-llama", "2024-03-02", {T1: 500, T2: 2000, T3: 4150},
     "company", {T1: "USA", T2: "USA", T3: "USA"}),
    ("TheBloke/Llama-3-8B-GGUF", "TheBloke", "2024-06-01", {T1: 100, T2: 2000, T3: 3750},
     "user", {T1: "International/Online", T2: "International/Online", T3: "International/Online"}),
    ("TheBloke/DeepSeek-R1-GGUF", "TheBloke", "2025-03-01", {T2: 0, T3: 920},
     "user", {T2: "International/Online", T3: "International/Online"}),
    ("TheBloke/Mistral-GGUF", "TheBloke", "2023-10-01", {T1: 5000, T2: 7000, T3: 8650},
     "user", {T1: "International/Online", T2: "International/Online", T3: "International/Online"}),
    ("mistralai/Mistral-Small", "mistralai", "2024-09-01", {T1: 0, T2: 400, T3: 1000},
     "company", {T1: "France", T2: "France", T3: "France"}),
    ("some-lab/model-x", "some-lab", "2024-10-01", {T2: 300, T3: 670},
     "team", {T2: None, T3: None}),
    # The study annotated Qwen "Singapore" at first, "China" later: the latest time wins.
    ("Qwen/Qwen2.5-7B", "Qwen", "2024-09-01", {T1: 0, T2: 900, T3: 2000},
     "company", {T1: "Singapore", T2: "China", T3: "China"}),
    ("stabilityai/sd-1", "stabilityai", "2022-08-01", {T1: 5000, T2: 7000, T3: 9000},
     "company", {T1: "United Kingdom", T2: "United Kingdom", T3: "United Kingdom"}),
    ("Xenova/tiny", "Xenova", "2025-01-01", {T2: 100, T3: 486},
     "user", {T2: "United States", T3: "United States"}),
]  # fmt: skip

# The window 2024-09-01..2025-09-01 (365 days), first-year cohort, by hand (tasks/windows.py:
# a model's window downloads times the part of its active span inside its first year):
#   DeepSeek-V3 3650 (created at the start: 365/365); DeepSeek-R1 1840 (new, 184/184 days);
#   Llama-2 first year ended 2024-02-29: 0; Llama-3 (3650 - 0 ...) 4150 - 500 = 3650, first
#   year to 2025-03-02 = 182 of 365 days: 1820; Llama-3-GGUF 3650 * 273/365 = 2730 (first year
#   to 2025-06-01); DeepSeek-R1-GGUF 920 (new); Mistral-GGUF 3650 * 29/365 = 290 (to
#   2024-09-30); Mistral-Small 1000; model-x 670 (new, 335/335); Qwen 2000; sd-1 0 (first year
#   ended 2023-08-01); Xenova/tiny 486 (new, 243/243).
FIRST_YEAR = {"CN": 3650 + 1840 + 2000, "US": 1820 + 486, "INTL": 2730 + 920 + 290,
              "FR": 1000, "UNKNOWN": 670, "GB": 0}  # fmt: skip
TOTAL = 15406
# All downloads in the window: Llama-2 10000, Llama-3 3650, sd-1 4000, Mistral-GGUF 3650.
ALL_COHORT = {"CN": 7490, "US": 10000 + 3650 + 486, "INTL": 3650 + 920 + 3650, "FR": 1000,
              "UNKNOWN": 670, "GB": 4000}  # fmt: skip

# A small mapping of ours with dated rows: on the study's last time (2025-09-01) mistralai is US
# (FR until 2025-06-01) and Qwen SG (CN only from 2026-01-01); Xenova is INTL; some-lab absent.
HAND_MAPPING = """\
org,valid_from,valid_to,country,org_type,org_group,name,source,alt_country,alt_source,notes
deepseek-ai,,,CN,company,,DeepSeek,https://example.org/deepseek,,,test
meta-llama,,,US,company,,Meta,https://example.org/meta,,,test
mistralai,,2025-06-01,FR,company,,Mistral AI,https://example.org/mistral,,,test
mistralai,2025-06-01,,US,company,,Mistral AI,https://example.org/mistral,,,test (planted)
Qwen,,2026-01-01,SG,company,,Qwen,https://example.org/qwen,,,test (planted)
Qwen,2026-01-01,,CN,company,,Qwen,https://example.org/qwen,,,test
stabilityai,,,GB,company,,Stability AI,https://example.org/stability,,,test
TheBloke,,,INTL,intermediary,,TheBloke,https://example.org/thebloke,,,test
Xenova,,,INTL,individual,,Xenova,https://example.org/xenova,,,test (planted)
"""


def study_frame(models: list[Any] = MODELS) -> pl.DataFrame:
    """The models as the study's long table: one row per (model, time), every documented
    column, `time` naive (as pandas writes it) and `created` in UTC."""
    rows = []
    for model, author, created, counters, org_type, countries in models:
        for time, all_time in counters.items():
            country = countries[time]
            rows.append(
                {
                    "_id": synthetic_object_id(model),
                    "model": model,
                    "author": author,
                    "time": datetime.combine(time, datetime.min.time()),
                    "created": datetime.fromisoformat(created + "T12:00:00+00:00"),
                    "downloadsAllTime": all_time,
                    "annotator": "team",
                    "org_model": author,
                    "org_type": org_type,
                    "org_country": [] if country is None else [country],
                    "derived_author": author,
                    "org_country_single": country,
                    "derived_org_country": [] if country is None else [country],
                    "derived_org_country_single": country,
                    "merged_country_groups_single": country,
                    "merged_derived_country_groups_single": country,
                    "merged_derived_from": None,
                    "merged_languages": ["en"],
                    "merged_modality": "text",
                }
            )
    return pl.DataFrame(rows).with_columns(
        pl.col("time").cast(pl.Datetime("ns")),
        pl.col("created").cast(pl.Datetime("ns", "UTC")),
        pl.col("org_type", "org_country_single").cast(pl.String),
    )


def write_study(path: Path, frame: pl.DataFrame | None = None) -> Path:
    (study_frame() if frame is None else frame).write_parquet(path)
    return path


def readme_commands() -> list[list[str]]:
    """The `hubshare` commands of the README's study section, as they are written there."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## The study in one command", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [
        shlex.split(line.split("  #", 1)[0])
        for line in block.splitlines()
        if line.startswith("hubshare ")
    ]


def shares_of(stdout: str) -> dict[str, int]:
    return {row["country"]: row["downloads"] for row in json.loads(stdout)}


def data_files(data_dir: Path) -> list[str]:
    if not data_dir.exists():
        return []
    return sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*") if p.is_file())


def test_the_readme_commands_reproduce_the_hand_computed_headline(env):
    write_study(Path(STUDY_FILE))
    imported, headline, compared = (run_hubshare(*command[1:]) for command in readme_commands())

    # import --study: one snapshot per time, indistinguishable from an archive import.
    assert imported.returncode == 0, imported.stderr
    assert "3 snapshots (2024-09-01 .. 2025-09-01), 12 models in 32 rows" in imported.stderr
    assert "1 authors with differing annotations" in imported.stderr  # Qwen
    for day, count in ((T1, 8), (T2, 12), (T3, 12)):
        manifest = SnapshotManifest.load((env / manifest_key(day)).read_bytes())
        assert (manifest.source, manifest.endpoint, manifest.row_count) == (
            "import:study",
            STUDY_FILE,
            count,
        )
        assert manifest.input_sha256 == sha256_file(Path(STUDY_FILE))
        assert manifest.sha256 == sha256_file(env / snapshot_key(day))
    last = pl.read_parquet(env / snapshot_key(T3)).sort("id")
    llama3 = last.filter(pl.col("id") == "meta-llama/Llama-3-8B").row(0, named=True)
    assert llama3["downloadsAllTime"] == 4150 and llama3["downloads"] is None
    assert llama3["createdAt"] == datetime.fromisoformat("2024-03-02T12:00:00+00:00")
    assert llama3["_id"] == synthetic_object_id("meta-llama/Llama-3-8B")
    assert (llama3["author"], llama3["tags"]) == ("meta-llama", [])

    # The study's mapping, archived under its SHA-256 and recorded with the headline window.
    record = json.loads(
        (env / "study" / f"{sha256_file(Path(STUDY_FILE))}.json").read_text(encoding="utf-8")
    )
    assert (record["headline_start"], record["headline_end"]) == ("2024-09-01", "2025-09-01")
    archived = env / "mappings" / f"{record['mapping_sha256']}.csv"
    rows = read_rows(archived)
    assert validate_rows(rows) == []
    assert {row["org"]: (row["country"], row["org_type"]) for row in rows} == {
        "deepseek-ai": ("CN", "company"),
        "meta-llama": ("US", "company"),
        "mistralai": ("FR", "company"),
        "Qwen": ("CN", "company"),  # its latest annotation, not the first ("Singapore")
        "some-lab": ("UNKNOWN", "community"),
        "stabilityai": ("GB", "company"),
        "TheBloke": ("INTL", "individual"),
        "Xenova": ("US", "individual"),
    }
    assert all(row["source"].startswith("Longpre et al. 2025") for row in rows)

    # The headline: window, cohort and mapping from the record; shares exactly as by hand.
    assert headline.returncode == 0, headline.stderr
    assert "window 2024-09-01..2025-09-01" in headline.stderr
    assert "cohort first_year" in headline.stderr
    for country, downloads, percent in (("CN", "7,490", "48.62%"), ("US", "2,306", "14.97%"),
                                        ("INTL", "3,940", "25.57%")):  # fmt: skip
        assert re.search(rf"│ {country} +│ +{downloads} │ +{percent} │", headline.stdout), (
            headline.stdout
        )
    as_json = run_hubshare("shares", "--study", STUDY_FILE, "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    found = json.loads(as_json.stdout)
    assert {row["country"]: row["downloads"] for row in found} == FIRST_YEAR
    # Downloads are exact integers; a share is their quotient in floating point (polars may
    # divide by multiplying with the reciprocal: one unit in the last place).
    share = {row["country"]: row["share"] for row in found}
    assert share["CN"] == pytest.approx(7490 / TOTAL, rel=1e-15, abs=0)  # 48.62 %
    assert share["US"] == pytest.approx(2306 / TOTAL, rel=1e-15, abs=0)  # 14.97 %
    assert share["INTL"] == pytest.approx(3940 / TOTAL, rel=1e-15, abs=0)  # 25.57 %
    everything = run_hubshare(
        "shares", "--study", STUDY_FILE, "--cohort", "all", "--format", "json"
    )
    assert shares_of(everything.stdout) == ALL_COHORT

    # mapping compare against the default (test) mapping: deepseek-ai, meta-llama, mistralai,
    # Qwen and TheBloke agree; some-lab, Xenova and stabilityai have no row there.
    assert compared.returncode == 0, compared.stderr
    assert re.search(r"some-lab +│ +670 │ 4\.3490 pp +│ UNKNOWN │ absent", compared.stdout)
    assert re.search(r"Xenova +│ +486 │ 3\.1546 pp +│ US +│ absent", compared.stdout)
    assert "total: 3 authors disagree, moving 1,156 of the 15,406 downloads" in compared.stdout


def test_compare_lists_the_planted_disagreements_with_the_shares_they_move(env, tmp_path):
    study = write_study(tmp_path / "one_year_rolling.parquet")
    assert run_hubshare("import", "--study", str(study)).returncode == 0
    mapping = tmp_path / "hand.csv"
    mapping.write_text(HAND_MAPPING, encoding="utf-8")
    result = run_hubshare(
        "mapping", "compare", "--study", str(study), "--mapping", str(mapping), "--format", "json"
    )
    assert result.returncode == 0, result.stderr
    # Qwen is SG on 2025-09-01 (its CN row starts in 2026), mistralai US since 2025-06-01.
    assert json.loads(result.stdout) == [
        {"author": "Qwen", "downloads": 2000, "share_moved": 2000 / TOTAL, "study": "CN",
         "ours": "SG"},
        {"author": "mistralai", "downloads": 1000, "share_moved": 1000 / TOTAL, "study": "FR",
         "ours": "US"},
        {"author": "some-lab", "downloads": 670, "share_moved": 670 / TOTAL, "study": "UNKNOWN",
         "ours": "absent"},
        {"author": "Xenova", "downloads": 486, "share_moved": 486 / TOTAL, "study": "US",
         "ours": "INTL"},
    ]  # fmt: skip
    assert "total: 4 authors disagree, moving 4,156 of the 15,406 downloads" in result.stderr
    top = run_hubshare(
        "mapping", "compare", "--study", str(study), "--mapping", str(mapping), "--top", "1",
        "--format", "csv",
    )  # fmt: skip
    assert top.stdout.splitlines()[1:] == [f"Qwen,2000,{2000 / TOTAL},CN,SG"]

    # The same window with our mapping, through `shares --window D1..D2 --mapping FILE`: the
    # planted rows move exactly those downloads (some-lab has no row and no account type).
    ours = run_hubshare(
        "shares", "--window", "2024-09-01..2025-09-01", "--cohort", "first_year",
        "--mapping", str(mapping), "--format", "json",
    )  # fmt: skip
    assert ours.returncode == 0, ours.stderr
    assert shares_of(ours.stdout) == {
        "CN": 5490, "SG": 2000, "US": 1820 + 1000, "INTL": 3940 + 486, "UNKNOWN": 670, "GB": 0,
    }  # fmt: skip


def _list_country(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.concat_list(pl.col("org_country_single")).alias(
        "org_country_single"))  # fmt: skip


BAD_SCHEMAS = {
    "list-country": (_list_country, "column 'org_country_single' holds a list of countries"),
    "renamed-country": (
        lambda f: f.rename({"org_country_single": "country_single"}),
        "no column 'org_country_single'",
    ),
    "renamed-counter": (
        lambda f: f.rename({"downloadsAllTime": "downloads_all_time"}),
        "no column 'downloadsAllTime'",
    ),
    "missing-counter": (lambda f: f.drop("downloadsAllTime"), "no column 'downloadsAllTime'"),
    "time-as-number": (
        lambda f: f.with_columns(pl.col("time").dt.year().alias("time")),
        "column 'time' is Int32; expected a date or timestamp",
    ),
    "counter-as-text": (
        lambda f: f.with_columns(pl.col("downloadsAllTime").cast(pl.String)),
        "column 'downloadsAllTime' is String; expected a whole number",
    ),
    "fractional-counter": (
        lambda f: f.with_columns(
            pl.when(pl.int_range(pl.len()) == 3)
            .then(pl.col("downloadsAllTime") + 0.5)
            .otherwise(pl.col("downloadsAllTime"))
            .alias("downloadsAllTime")
        ),
        "row 4 (deepseek-ai/DeepSeek-R1): column 'downloadsAllTime' holds '0.5', which is not a "
        "whole number",
    ),
    "created-as-text": (
        lambda f: f.with_columns(
            pl.when(pl.int_range(pl.len()) == 0)
            .then(pl.lit("last spring"))
            .otherwise(pl.col("created").dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
            .alias("created")
        ),
        "row 1 (deepseek-ai/DeepSeek-V3): column 'created' holds 'last spring'",
    ),
    "unknown-country": (
        lambda f: f.with_columns(
            pl.when(pl.col("author") == "mistralai")
            .then(pl.lit("Frankreich"))
            .otherwise(pl.col("org_country_single"))
            .alias("org_country_single")
        ),
        "column 'org_country_single' holds 'Frankreich' (e.g. for author 'mistralai')",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SCHEMAS))
def test_schema_differences_name_the_column_and_write_nothing(case, env, tmp_path):
    change, message = BAD_SCHEMAS[case]
    study = write_study(tmp_path / STUDY_FILE, change(study_frame()))
    result = run_hubshare("import", "--study", str(study))
    assert result.returncode == 5, result.stderr
    assert result.stderr.startswith(f"error: {study}: "), result.stderr
    assert message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert data_files(env) == []


def test_a_stored_date_refuses_the_whole_import(env, tmp_path):
    first = write_study(tmp_path / "first.parquet")
    assert run_hubshare("import", "--study", str(first)).returncode == 0
    before = data_files(env)
    # A later release of the file: one more time (2025-10-01) besides the three stored ones.
    later = study_frame().with_columns(pl.col("time").dt.offset_by("30d"))
    second = write_study(
        tmp_path / "second.parquet",
        pl.concat([study_frame(), later.filter(pl.col("time") == datetime(2025, 10, 1))]),
    )
    result = run_hubshare("import", "--study", str(second))
    assert result.returncode == 5
    assert "3 of its 4 dates already have a raw snapshot" in result.stderr
    assert "2024-09-01, 2025-03-01, 2025-09-01" in result.stderr
    assert "nothing was imported" in result.stderr
    assert data_files(env) == before  # not 2025-10-01 either, nor a mapping or record


def test_headline_before_import_and_misused_options_are_clear(env, tmp_path):
    study = write_study(tmp_path / STUDY_FILE)
    result = run_hubshare("shares", "--study", str(study))
    assert result.returncode == 5
    assert f"run `hubshare import --study {study}` first" in result.stderr
    both = run_hubshare("import", "--study", str(study), "--date", "2024-09-01")
    assert both.returncode == 2 and "--study takes no --date" in both.stderr
    stray = run_hubshare("shares", "--mapping", "abcdef12")
    assert stray.returncode == 2 and "--mapping needs --window D1..D2" in stray.stderr


def test_one_year_rolling_counts_its_counters_whole(env, tmp_path):
    """one_year_rolling.parquet's counters stop a year after creation already: its headline
    takes every window download (cohort all) unless told otherwise."""
    study = write_study(tmp_path / "one_year_rolling.parquet")
    assert run_hubshare("import", "--study", str(study)).returncode == 0
    headline = run_hubshare("shares", "--study", str(study), "--format", "json")
    assert headline.returncode == 0, headline.stderr
    assert "cohort all" in headline.stderr
    assert shares_of(headline.stdout) == ALL_COHORT
    prorated = run_hubshare(
        "shares", "--study", str(study), "--cohort", "first_year", "--format", "json"
    )
    assert shares_of(prorated.stdout) == FIRST_YEAR


def test_country_names_and_the_headline_grid():
    assert [country_code(v) for v in ("USA", "United States", "China", "France")] == [
        "US",
        "US",
        "CN",
        "FR",
    ]
    assert [country_code(v) for v in ("International/Online", " online ")] == ["INTL", "INTL"]
    assert [country_code(v) for v in (None, "", "Unknown", "nan")] == ["UNKNOWN"] * 4
    # The aliases exist because pycountry does not resolve these names itself.
    import pycountry

    for name, code in COUNTRY_ALIASES.items():
        with pytest.raises(LookupError):
            pycountry.countries.lookup(name)
        assert country_code(name.title()) == code
    with pytest.raises(ValueError, match="Atlantis"):
        country_code("Atlantis")
    weekly = [date(2024, 8, 26), date(2024, 9, 2), date(2025, 8, 25), date(2025, 9, 1)]
    assert headline_window(weekly) == (date(2024, 8, 26), date(2025, 9, 1))
    assert headline_window([date(2024, 9, 2), date(2025, 9, 1)]) is None


def test_an_international_company_keeps_its_bucket_as_a_community(tmp_path):
    """Rule 3 forbids an organisation in INTL: a study `company` annotated International/Online
    is typed `community` (with a note) so that the mapping is valid and the study's bucket kept;
    a `team` becomes a `community` too, and an author's latest spelling names its row."""
    from tasks.study import scan_study, study_mapping_rows

    models = [
        ("hub-collective/m", "hub-collective", "2024-09-01", {T1: 1, T3: 2}, "company",
         {T1: "International/Online", T3: "International/Online"}),
        ("band/m", "band", "2024-09-01", {T1: 1}, "team", {T1: "Germany"}),
        ("Band/n", "Band", "2024-09-01", {T3: 1}, "team", {T3: "Germany"}),
    ]  # fmt: skip
    study = write_study(tmp_path / STUDY_FILE, study_frame(models))
    built = study_mapping_rows(study, scan_study(study), "0" * 64)
    assert [(r["org"], r["country"], r["org_type"]) for r in built.rows] == [
        ("Band", "DE", "community"),
        ("hub-collective", "INTL", "community"),
    ]
    assert (
        "typed community to keep the study's International/Online bucket"
        in (built.rows[1]["notes"])
    )
    assert (built.retyped, built.disagreements) == (1, 0)
    assert validate_rows(built.rows) == []
