"""The org-to-country mapping: validator, shipped file, coverage, versions and diffs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import polars as pl
import pytest

from hubshare.errors import MappingError
from hubshare.settings import DEFAULT_MAPPING
from tasks.mapping import (
    archive_mapping,
    diff_mappings,
    load_mapping,
    mapping_coverage,
    read_rows,
    read_uploads,
    resolve_mapping_version,
    validate_mapping,
)
from tests.conftest import FIXTURES, HAND_MAPPING, HAND_MODELS, run_hubshare

EUROPE = {
    "AT",
    "BE",
    "BG",
    "CH",
    "CY",
    "CZ",
    "DE",
    "DK",
    "EE",
    "ES",
    "FI",
    "FR",
    "GB",
    "GR",
    "HR",
    "HU",
    "IE",
    "IS",
    "IT",
    "LT",
    "LU",
    "LV",
    "MT",
    "NL",
    "NO",
    "PL",
    "PT",
    "RO",
    "SE",
    "SI",
    "SK",
    "UA",
}
HEADER = "org,country,org_type,name,source,notes\n"
GOOD = [
    "alpha,US,company,Alpha,https://example.org/alpha,\n",
    "Beta,CN,academic,Beta,Epoch AI,\n",
    "gamma,INTL,individual,Gamma,https://huggingface.co/gamma,\n",
]


def write(tmp_path: Path, rows: list[str], header: str = HEADER) -> Path:
    path = tmp_path / "org_country.csv"
    path.write_text(header + "".join(rows))
    return path


def test_a_good_file_passes(tmp_path):
    assert validate_mapping(write(tmp_path, GOOD)) == []


@pytest.mark.parametrize(
    ("rows", "line", "message"),
    [
        ([GOOD[0], "Beta,XX,academic,Beta,Epoch AI,\n", GOOD[2]], 3, "country 'XX'"),
        ([GOOD[0], "Beta,us,academic,Beta,Epoch AI,\n", GOOD[2]], 3, "country 'us'"),
        ([GOOD[0], GOOD[1], "beta,CN,company,B,https://x.org,\n"], 4, "duplicates line 3"),
        ([GOOD[0], "Beta,CN,academic,Beta,,\n", GOOD[2]], 3, "source is empty"),
        ([GOOD[1], GOOD[0], GOOD[2]], 3, "out of order"),
        ([GOOD[0], "Beta,CN,university,Beta,Epoch AI,\n", GOOD[2]], 3, "org_type 'university'"),
        ([GOOD[0], "Beta/x,CN,academic,Beta,Epoch AI,\n", GOOD[2]], 3, "not a Hub namespace"),
    ],
    ids=[
        "bad-code",
        "lower-case-code",
        "duplicate",
        "missing-source",
        "unsorted",
        "bad-org-type",
        "not-a-namespace",
    ],
)
def test_broken_files_name_the_line(tmp_path, rows, line, message):
    path = write(tmp_path, rows)
    problems = validate_mapping(path)
    assert [p.line for p in problems] == [line]
    assert message in problems[0].message
    with pytest.raises(MappingError, match=rf"line {line}: .*{message}"):
        load_mapping(path)


def test_bad_header_and_short_rows_are_errors(tmp_path):
    with pytest.raises(MappingError, match="line 1: header is org,country"):
        load_mapping(write(tmp_path, GOOD, header="org,country\n"))
    with pytest.raises(MappingError, match="line 3: expected 6 fields"):
        load_mapping(write(tmp_path, [GOOD[0], "Beta,CN\n"]))
    with pytest.raises(MappingError, match="cannot read"):
        load_mapping(tmp_path / "missing.csv")


def test_the_shipped_mapping_is_valid():
    mapping = load_mapping(DEFAULT_MAPPING)
    assert mapping.frame.height > 500
    developers = mapping.frame.filter("is_developer")["org"].to_list()
    assert {"Qwen", "deepseek-ai", "meta-llama", "google", "mistralai"} <= set(developers)
    # The Hub's canonical legacy namespaces belong to the developer of the weights.
    country = dict(mapping.frame.select("org", "country").rows())
    assert (country["google-bert"], country["openai-community"], country["FacebookAI"]) == (
        "US",
        "US",
        "US",
    )
    assert country["THUDM"] == country["zai-org"] == "CN"
    assert country["CohereForAI"] == country["CohereLabs"] == "CA"
    for quantizer in ("bartowski", "mradermacher", "TheBloke"):
        assert country[quantizer] == "INTL"


def test_every_atom_organisation_agrees_with_its_region():
    atom = pl.read_csv(FIXTURES / "atom_organization_regions.csv")
    country = dict(load_mapping(DEFAULT_MAPPING).frame.select("org", "country").rows())
    missing = [org for org in atom["hf_org"] if org not in country]
    assert missing == []
    wrong = []
    for org, region in atom.select("hf_org", "region").rows():
        code = country[org]
        ok = {
            "us": code == "US",
            "china": code == "CN",
            "eu": code in EUROPE,
            "other": code not in {"US", "CN", "UNKNOWN"},
            "unknown": True,
        }[region]
        if not ok:
            wrong.append((org, region, code))
    assert wrong == []


def test_coverage_on_the_hand_fixture():
    mapping = load_mapping(HAND_MAPPING).frame
    report = mapping_coverage(mapping, read_uploads([HAND_MODELS]))
    # 3,010 public downloads; randomuser's 160 are unmapped; the private model never counts.
    assert (report.total_downloads, report.classified_downloads) == (3010, 2850)
    assert report.share == pytest.approx(2850 / 3010)
    assert report.top_unmapped.rows() == [("randomuser", 160, pytest.approx(160 / 3010), "absent")]


def test_coverage_reads_upstream_layouts(tmp_path):
    csv = tmp_path / "snap.csv"
    csv.write_text(
        "modelId,author,downloads,private\nQwen/a,Qwen,10,False\nx/b,x,5,False\n"
        "Qwen/p,Qwen,99,True\n"
    )
    trending = tmp_path / "trending.json"
    trending.write_text(
        '{"Qwen/c": {"repoData": {"author": "Qwen", "downloads": 30}}, '
        '"y/d": {"repoData": {"author": "y", "downloads": 10}}}'
    )
    kb = tmp_path / "kb.csv"
    kb.write_text(
        "model_url,downloads,organization,model_name,date\n"
        "https://huggingface.co/KBLab/m,7,KBLab,m,2022-02-18\n"
    )
    uploads = read_uploads([tmp_path])
    assert dict(uploads.group_by("uploader").agg(pl.col("downloads").sum()).rows()) == {
        "Qwen": 40,
        "x": 5,
        "y": 10,
        "KBLab": 7,
    }
    bad = tmp_path / "bad" / "bad.csv"
    bad.parent.mkdir()
    bad.write_text("name,size\na,1\n")
    with pytest.raises(MappingError, match=r"bad\.csv: cannot find a downloads column"):
        read_uploads([bad])


def test_diff_lists_changed_rows_and_finds_recorded_versions(tmp_path):
    old = write(tmp_path, GOOD)
    new = tmp_path / "new.csv"
    new.write_text(
        HEADER
        + GOOD[0]
        + "Beta,FR,academic,Beta,https://beta.fr,moved\n"
        + "delta,DE,company,Delta,https://delta.de,\n"
    )
    changes = diff_mappings(read_rows(old), read_rows(new))
    assert [(c.org, c.kind) for c in changes] == [
        ("Beta", "changed"),
        ("delta", "added"),
        ("gamma", "removed"),
    ]
    assert str(changes[0]) == (
        "~ Beta: country: 'CN' -> 'FR'; source: 'Epoch AI' -> "
        "'https://beta.fr'; notes: '' -> 'moved'"
    )

    data_dir = tmp_path / "data"
    recorded = archive_mapping(load_mapping(old), data_dir)
    sha = load_mapping(old).sha256
    assert resolve_mapping_version(sha[:8], data_dir) == recorded
    assert recorded.read_bytes() == old.read_bytes()
    with pytest.raises(MappingError, match="neither a file nor a mapping version"):
        resolve_mapping_version("abcdef12", data_dir)


def hubshare(*args: str) -> subprocess.CompletedProcess[str]:
    return run_hubshare(*args, env={"HUBSHARE_MAPPING": str(DEFAULT_MAPPING)})


def test_mapping_check_command(tmp_path):
    ok = hubshare(
        "mapping",
        "check",
        "--snapshot",
        str(HAND_MODELS),
        "--mapping",
        str(HAND_MAPPING),
        "--min-coverage",
        "0.9",
    )
    assert ok.returncode == 0, ok.stderr
    assert "classified: 94.68% of 3,010 downloads" in ok.stdout
    low = hubshare(
        "mapping",
        "check",
        "--snapshot",
        str(HAND_MODELS),
        "--mapping",
        str(HAND_MAPPING),
        "--min-coverage",
        "0.95",
    )
    assert low.returncode == 1 and "below --min-coverage" in low.stderr
    broken = write(tmp_path, [GOOD[1], GOOD[0]])
    bad = hubshare("mapping", "check", "--mapping", str(broken))
    assert bad.returncode == 1
    assert "line 3: org 'alpha' is out of order" in bad.stderr


def test_mapping_diff_command(tmp_path):
    old = write(tmp_path, GOOD)
    new = tmp_path / "new.csv"
    new.write_text(HEADER + GOOD[0] + GOOD[1])
    result = hubshare("mapping", "diff", str(old), str(new))
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "- gamma: country='INTL', org_type='individual', name='Gamma'"
    ]
