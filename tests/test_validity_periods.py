"""Mapping rows with validity periods (valid_from inclusive, valid_to exclusive): the validator,
`mapping check --as-of`, and a namespace that changes country between two published dates, by
hand: the old country before and the new one after, in both views, in the published shares, in
a window (attributed by its end date), in `explain`, in the daily-explain artifact and in the
report; and a run made with a six-column mapping still reproduces after the mapping changed."""

from __future__ import annotations

import asyncio
import csv
import json
from datetime import date
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from hubshare.errors import MappingError
from hubshare.fakehub import FakeHub
from hubshare.read_warehouse import list_runs, published_shares
from hubshare.settings import Settings
from schemas.mapping import MAPPING_COLUMNS
from tasks.explain import explain_shares
from tasks.mapping import diff_mappings, load_mapping, read_rows, validate_mapping
from tests.conftest import HAND_MAPPING, HAND_MODELS, read_models, run_hubshare
from tests.test_report import parse

HEADER = (
    "org,valid_from,valid_to,country,org_type,org_group,name,source,alt_country,alt_source,notes\n"
)
QWEN = "Qwen,,,CN,company,,Alibaba Qwen,https://qwenlm.github.io,,,\n"
# UKP Lab (TU Darmstadt) until 2025-01-05, Hugging Face from then on.
ST_DE = (
    "sentence-transformers,,2025-01-05,DE,academic,,UKP Lab,https://www.ukp.tu-darmstadt.de,,,\n"
)
ST_US = (
    "sentence-transformers,2025-01-05,,US,company,,Hugging Face,"
    "https://huggingface.co/blog/sentence-transformers-joins-hf,,,\n"
)
D1, D2 = date(2025, 1, 1), date(2025, 1, 8)


def write(tmp_path: Path, rows: list[str], name: str = "org_country.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + "".join(rows))
    return path


# ----------------------------------------------------------------------------------------------
# The file: periods, overlaps, groups on every date, diffs


def test_one_row_per_period_and_the_rows_of_a_date(tmp_path):
    mapping = load_mapping(write(tmp_path, [QWEN, ST_DE, ST_US]))
    assert mapping.rows.height == 3

    def countries(day: date) -> dict[str, str]:
        return dict(mapping.on(day).select("org", "country").rows())

    # valid_to is exclusive, valid_from inclusive: the change holds from 2025-01-05 on.
    assert countries(date(2025, 1, 4)) == {"Qwen": "CN", "sentence-transformers": "DE"}
    assert countries(date(2025, 1, 5)) == {"Qwen": "CN", "sentence-transformers": "US"}
    assert countries(date(2022, 1, 1))["sentence-transformers"] == "DE"  # open start


@pytest.mark.parametrize(
    ("rows", "line", "message"),
    [
        # An open row and a dated one of the same namespace overlap.
        (
            [QWEN, ST_DE, ST_US.replace(",2025-01-05,,", ",,,", 1)],
            4,
            "duplicates line 3: their validity periods overlap",
        ),
        # [.., 2025-01-05) and [2025-01-04, ..) share 2025-01-04.
        (
            [QWEN, ST_DE, ST_US.replace("2025-01-05", "2025-01-04", 1)],
            4,
            "duplicates line 3: their validity periods overlap",
        ),
        ([QWEN, ST_DE.replace("2025-01-05", "2025-1-5", 1), ST_US], 3, "valid_to '2025-1-5'"),
        ([QWEN, ST_DE.replace("2025-01-05", "2025-02-30", 1), ST_US], 3, "not a date"),
        (
            [QWEN, ST_US.replace(",2025-01-05,,", ",2025-01-05,2025-01-05,", 1)],
            3,
            "valid from 2025-01-05 to 2025-01-05: valid_from must precede valid_to",
        ),
        ([QWEN, ST_US, ST_DE], 4, "out of order"),  # periods sort by valid_from
    ],
    ids=["open-overlaps-dated", "one-day-overlap", "not-iso", "no-such-day", "empty", "unsorted"],
)
def test_bad_periods_are_rejected_naming_the_line(tmp_path, rows, line, message):
    path = write(tmp_path, rows)
    problems = validate_mapping(path)
    assert [p.line for p in problems] == [line]
    assert message in problems[0].message
    with pytest.raises(MappingError, match=f"line {line}: "):
        load_mapping(path)


def test_a_group_must_agree_on_every_date(tmp_path):
    # st-testing follows sentence-transformers, but moves to the US a week later: on 2025-01-05
    # the group's namespaces say US and DE.
    testing = "st-testing,{},{},{},company,sentence-transformers,ST tests,https://x.org/t,,,\n"
    late = [
        testing.format("", "2025-01-12", "DE"),
        testing.format("2025-01-12", "", "US"),
    ]
    path = write(tmp_path, [QWEN, ST_DE, ST_US, *late])
    problems = validate_mapping(path)
    assert [(p.line, p.message) for p in problems] == [
        (
            5,
            "org_group 'sentence-transformers' has more than one country on 2025-01-05: "
            "DE (st-testing); US (sentence-transformers)",
        )
    ]
    # Moving together, the group agrees on every date.
    together = [row.replace("2025-01-12", "2025-01-05") for row in late]
    assert validate_mapping(write(tmp_path, [QWEN, ST_DE, ST_US, *together])) == []
    # Disagreeing before the first boundary: named as such.
    early = [testing.format("", "2025-01-05", "FR"), testing.format("2025-01-05", "", "US")]
    assert [p.message for p in validate_mapping(write(tmp_path, [QWEN, ST_DE, ST_US, *early]))] == [
        "org_group 'sentence-transformers' has more than one country before 2025-01-05: "
        "DE (sentence-transformers); FR (st-testing)"
    ]


def test_diffs_compare_each_period_with_the_same_period(tmp_path):
    old = write(tmp_path, [QWEN, ST_DE.replace(",,2025-01-05,", ",,,", 1)], "old.csv")
    new = write(tmp_path, [QWEN, ST_DE, ST_US], "new.csv")
    changes = [str(change) for change in diff_mappings(read_rows(old), read_rows(new))]
    assert changes == [
        "~ sentence-transformers […, 2025-01-05): valid_to: '' -> '2025-01-05'",
        "+ sentence-transformers [2025-01-05, …): country='US', org_type='company', "
        "name='Hugging Face'",
    ]
    result = run_hubshare("mapping", "diff", str(old), str(new))
    assert result.returncode == 0 and result.stdout.splitlines() == changes


def hand_mapping_with(path: Path, rows: list[dict[str, str]], without: str = "") -> Path:
    """The hand mapping in eleven columns, plus `rows` (other columns empty), less the rows of
    namespace `without`."""
    kept = [row for row in read_rows(HAND_MAPPING) if row["org"] != without]
    added = [dict.fromkeys(MAPPING_COLUMNS, "") | row for row in rows]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, MAPPING_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(
            sorted(kept + added, key=lambda r: (r["org"].lower(), r["org"], r["valid_from"]))
        )
    return path


def test_mapping_check_measures_the_rows_of_a_date(tmp_path):
    # The hand mapping, plus randomuser (160 of the fixture's 3,010 downloads) from 2024-06-01.
    randomuser = {
        "org": "randomuser",
        "valid_from": "2024-06-01",
        "country": "DE",
        "org_type": "company",
        "name": "Random GmbH",
        "source": "https://example.org/random",
    }
    path = hand_mapping_with(tmp_path / "dated.csv", [randomuser])
    assert validate_mapping(path) == []
    check = ("mapping", "check", "--mapping", str(path), "--snapshot", str(HAND_MODELS))
    before = run_hubshare(*check, "--as-of", "2024-05-31", "--max-unsupported", "1")
    assert before.returncode == 0, before.stderr
    assert "classified: 94.68% of 3,010 downloads" in before.stdout  # 2,850 of 3,010
    assert "9 namespaces, valid" in before.stdout
    assert "8 of its 9 rows hold on 2024-05-31" in before.stdout
    after = run_hubshare(*check, "--as-of", "2024-06-01", "--max-unsupported", "1")
    assert after.returncode == 0, after.stderr
    assert "classified: 100.00% of 3,010 downloads" in after.stdout
    bad = run_hubshare(*check, "--as-of", "2024-6-1")
    assert bad.returncode == 2 and "--as-of '2024-6-1' is not a date" in bad.stderr


# ----------------------------------------------------------------------------------------------
# Two published dates across the change, by hand


def model(n: int, repo: str, downloads: int, all_time: int, tags: list[str]) -> dict[str, Any]:
    return {
        "_id": f"{n:024d}",
        "id": repo,
        "author": repo.split("/")[0],
        "downloads": downloads,
        "downloadsAllTime": all_time,
        "likes": 0,
        "createdAt": "2021-06-01T00:00:00.000Z",
        "lastModified": "2021-06-01T00:00:00.000Z",
        "tags": tags,
        "private": False,
    }


FINETUNE = [
    "base_model:sentence-transformers/mini",
    "base_model:finetune:sentence-transformers/mini",
]
# randomuser has no row (UNKNOWN as uploader); its fine-tune's origin is sentence-transformers.
ON_D1 = [
    model(1, "Qwen/A", 500, 5000, []),
    model(2, "randomuser/ft", 100, 1000, FINETUNE),
    model(3, "sentence-transformers/mini", 400, 4000, []),
]
ON_D2 = [
    model(1, "Qwen/A", 300, 5200, []),
    model(2, "randomuser/ft", 100, 1100, FINETUNE),
    model(3, "sentence-transformers/mini", 600, 4300, []),
]


@pytest.fixture
def across_the_change(env, tmp_path, monkeypatch):
    from flows.daily import daily

    monkeypatch.setenv("HUBSHARE_MAPPING", str(write(tmp_path, [QWEN, ST_DE, ST_US])))
    for day, models in ((D1, ON_D1), (D2, ON_D2)):
        with FakeHub(models) as hub:
            monkeypatch.setenv("HF_ENDPOINT", hub.url)
            daily(run_date=day, backdate=True)
    return create_engine(f"sqlite:///{env / 'warehouse.db'}")


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_a_namespace_that_changes_country_between_two_dates(across_the_change, env, tmp_path):
    engine = across_the_change

    def shares(day: date, view: str, definition: str = "downloads_30d") -> dict[str, int]:
        frame = published_shares(engine, day, view, definition)
        return {c: d for c, d in frame.select("country", "downloads").rows() if d}

    # Before the change DE, after it US; the fine-tune follows its origin in the origin view.
    assert shares(D1, "uploader") == {"CN": 500, "DE": 400, "UNKNOWN": 100}
    assert shares(D1, "origin") == {"CN": 500, "DE": 500}
    assert shares(D2, "uploader") == {"CN": 300, "US": 600, "UNKNOWN": 100}
    assert shares(D2, "origin") == {"CN": 300, "US": 700}
    # D2's 7-day window (from D1's snapshot) counts by D2's rows: 4300 - 4000 = 300 for
    # sentence-transformers, 200 for Qwen, 100 for the fine-tune.
    window = {"uploader": {"CN": 200, "US": 300, "UNKNOWN": 100}, "origin": {"CN": 200, "US": 400}}
    for view, expected in window.items():
        assert shares(D2, view, "window_7d") == expected
        # The same span on demand: also by the rows of its end date.
        span = run_hubshare(
            "shares", "--window", f"{D1}..{D2}", "--attribution", view, "--format", "json"
        )
        assert span.returncode == 0, span.stderr
        got = {r["country"]: r["downloads"] for r in json.loads(span.stdout) if r["downloads"]}
        assert got == expected

    # explain: the move is a mapping part naming the namespace and both countries.
    changes = explain_shares(D1, D2, Settings(), engine)
    by = {(c.attribution, c.country): c for c in changes}
    for view, amount in (("uploader", 600), ("origin", 700)):
        de, us = by[(view, "DE")], by[(view, "US")]
        move = ("mapping", "sentence-transformers", "DE", "US")
        assert {
            (p.kind, p.name, p.country_from, p.country_to): p.contribution for p in us.parts
        } == {move: Fraction(amount, 1000)}
        de_parts = {
            (p.kind, p.name, p.country_from, p.country_to): p.contribution for p in de.parts
        }
        assert de_parts == {
            move: Fraction(-amount, 1000),
            ("organisation", "sentence-transformers", None, None): Fraction(200, 1000),
        }
    table = run_hubshare("explain", "--from", str(D1), "--to", str(D2), "--country", "US")
    assert table.returncode == 0, table.stderr
    assert "sentence-transformers DE → US" in table.stdout
    as_json = run_hubshare(
        "explain", "--from", str(D1), "--to", str(D2), "--country", "DE", "--format", "json"
    )
    parts = [p for bucket in json.loads(as_json.stdout) for p in bucket["parts"]]
    assert {
        (p["kind"], p["name"], p["country_from"], p["country_to"], p["contribution"]) for p in parts
    } == {
        ("mapping", "sentence-transformers", "DE", "US", -0.6),
        ("organisation", "sentence-transformers", None, None, 0.2),
        ("mapping", "sentence-transformers", "DE", "US", -0.7),
    }

    # The daily run of D2 explained itself the same way.
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"daily-explain-{D2}"]))
            )

    artifact = max(asyncio.run(read()), key=lambda a: a.created)
    assert (
        "| uploader | US | 0.00% | 60.00% | +60.0000 | sentence-transformers DE → US (mapping)"
        in (artifact.data)
    )

    # The report marks the change on both charts, on D2, and lists it.
    out = tmp_path / "report.html"
    result = run_hubshare("report", "--out", str(out))
    assert result.returncode == 0, result.stderr
    parsed = parse(out)
    markers = [attrs["data-date"] for tag, attrs in parsed.tags if tag == "g"]
    assert markers == [str(D2), str(D2)]  # the uploader and the origin chart
    text = " ".join(" ".join(parsed.text).split())
    assert f"{D2}: sentence-transformers DE → US" in text  # the markers' tooltip
    assert f"{D2}: sentence-transformers DE → US" in text.split("Country changes in the mapping")[1]

    # Both runs reproduce from their archived (dated) mapping.
    for run_id in list_runs(engine, None)["run_id"]:
        reproduced = run_hubshare("reproduce", run_id)
        assert reproduced.returncode == 0, reproduced.stderr


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_a_run_made_with_a_six_column_mapping_reproduces_after_the_mapping_changed(
    env, tmp_path, monkeypatch
):
    from flows.daily import daily

    assert HAND_MAPPING.read_text().splitlines()[0] == "org,country,org_type,name,source,notes"
    with FakeHub(read_models(HAND_MODELS)) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        first = daily(run_date=D1, backdate=True)
        # The mapping changes (eleven columns, Qwen dated to another country) and a later run
        # uses it; the first run still reads its own archived six-column file.
        qwen = {"org": "Qwen", "org_type": "company", "name": "Qwen", "source": "https://x.org"}
        changed = hand_mapping_with(
            tmp_path / "changed.csv",
            [
                qwen | {"valid_to": "2025-01-05", "country": "CN"},
                qwen | {"valid_from": "2025-01-05", "country": "SG"},
            ],
            without="Qwen",
        )
        monkeypatch.setenv("HUBSHARE_MAPPING", str(changed))
        second = daily(run_date=D2, backdate=True)
    assert first["shares_sha256"] != second["shares_sha256"]
    archived = env / "mappings" / f"{load_mapping(HAND_MAPPING).sha256}.csv"
    assert archived.read_bytes() == HAND_MAPPING.read_bytes()
    reproduced = run_hubshare("reproduce", first["run_id"])
    assert reproduced.returncode == 0, reproduced.stderr
    assert f"share table sha256 {first['shares_sha256']}" in reproduced.stdout
