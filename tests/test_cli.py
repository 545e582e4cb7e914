"""The CLI contract: exact forms scripts rely on, and bad input that leaves the warehouse as it
was (real flow under the Prefect harness, fake Hub on loopback)."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text

from hubshare.cli import DEMO_SAMPLE
from hubshare.fakehub import FakeHub, Fault
from tests.conftest import HAND_MAPPING, run_hubshare
from tests.test_attribution import EXPECTED_ORIGIN, EXPECTED_UPLOADER, TOTAL

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]
DAY = "2024-01-15"


invoke = run_hubshare


def last_line(text_: str) -> str:
    return [line for line in text_.splitlines() if line.strip()][-1]


@pytest.fixture
def hub(hand_models: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub(hand_models) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        yield fake


@pytest.fixture(scope="module")
def published_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One published run of DAY (hand fixture, fake Hub), made once per module."""
    from tests.conftest import HAND_MODELS, read_models

    data_dir = tmp_path_factory.mktemp("published") / "data"
    with FakeHub(read_models(HAND_MODELS)) as fake:
        result = invoke(
            "run",
            "--date",
            DAY,
            "--backdate",
            env={
                "HF_ENDPOINT": fake.url,
                "HUBSHARE_DATA_DIR": str(data_dir),
                "HUBSHARE_MAPPING": str(HAND_MAPPING),
                "HUBSHARE_PAGE_SIZE": "3",
                "HF_TOKEN": "",
                "HUBSHARE_WAREHOUSE_URL": f"sqlite:///{data_dir / 'warehouse.db'}",
            },
        )
    assert result.returncode == 0, result.stderr
    return data_dir


@pytest.fixture
def published(published_once: Path, hub: FakeHub, env: Path) -> Path:
    """A fresh copy of that data dir as this test's: returns its warehouse file."""
    shutil.copytree(published_once, env)
    return env / "warehouse.db"


def dump(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as connection:
        return {
            table: sorted(map(tuple, connection.execute(text(f"SELECT * FROM {table}"))))
            for table in inspect(engine).get_table_names()
        }


def test_shares_json_and_csv(published):
    result = invoke("shares", "--format", "json")
    assert result.returncode == 0
    rows = json.loads(result.stdout)  # only data on stdout
    assert {row["country"]: row["downloads"] for row in rows} == EXPECTED_UPLOADER
    assert sum(row["downloads"] for row in rows) == TOTAL
    assert sum(row["share"] for row in rows) == pytest.approx(1.0)
    assert {row["snapshot_date"] for row in rows} == {DAY}
    # No contested rows in the hand mapping: the range only adds UNKNOWN's 160 downloads.
    cn = next(row for row in rows if row["country"] == "CN")
    assert (cn["share_low"], cn["share_high"]) == (
        pytest.approx(1500 / TOTAL),
        pytest.approx((1500 + 160) / TOTAL),
    )

    result = invoke("shares", "--date", DAY, "--attribution", "origin", "--format", "csv")
    assert result.returncode == 0
    parsed = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {row["country"]: int(row["downloads"]) for row in parsed} == EXPECTED_ORIGIN
    assert list(parsed[0])[-2:] == ["share_low", "share_high"]

    table = invoke("shares", "--date", DAY)
    cn_row = next(line for line in table.stdout.splitlines() if line.startswith("│ CN "))
    assert [cell.strip() for cell in cn_row.split("│")[1:-1]] == [
        "CN",
        "1,500",
        "49.83%",
        "49.8–55.1%",
    ]


def test_runs_json_lists_every_version(published):
    assert invoke("run", "--date", DAY).returncode == 0  # the stored snapshot: no --backdate
    result = invoke("runs", "--date", DAY, "--format", "json")
    runs = json.loads(result.stdout)
    assert [run["version"] for run in runs] == [1, 2]
    for run in runs:
        assert {
            "run_id",
            "snapshot_date",
            "version",
            "status",
            "raw_sha256",
            "mapping_sha256",
            "code_version",
            "shares_sha256",
        } <= set(run)
        assert run["status"] == "published" and len(run["raw_sha256"]) == 64
    assert runs[0]["shares_sha256"] == runs[1]["shares_sha256"]


def test_rejected_run_exits_non_zero(published, monkeypatch):
    monkeypatch.setenv("HUBSHARE_MAX_UNKNOWN_SHARE", "0.0")
    result = invoke("run", "--date", DAY)
    assert result.returncode == 3  # gate rejection
    assert last_line(result.stderr).startswith("error:")
    assert "quality gate" in last_line(result.stderr)
    # Taken literally, not as markup: the failed check's suite keeps its brackets.
    assert "country_share[uploader]" in last_line(result.stderr)


def test_no_published_shares_is_a_clear_error(env):
    result = invoke("shares", "--date", DAY)
    assert result.returncode == 6  # warehouse
    assert last_line(result.stderr).startswith("error: no warehouse at sqlite:///")
    assert last_line(result.stderr).endswith("run `hubshare run` (or `hubshare db upgrade`) first")
    assert not (env / "warehouse.db").exists()  # a read command creates nothing
    assert invoke("db", "upgrade").returncode == 0
    result = invoke("shares", "--date", DAY)
    assert result.returncode == 6
    assert f"no published shares for {DAY}" in last_line(result.stderr)
    assert result.stdout == ""


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("case", ["unreachable", "malformed", "mapping", "date"])
def test_bad_input_exits_non_zero_and_leaves_the_warehouse(
    case, published, hand_models, monkeypatch, tmp_path
):
    before = dump(published)
    args = ["run", "--date", "2024-01-16", "--backdate"]
    expected = {
        "unreachable": "ConnectError",
        "malformed": "not valid JSON",
        "mapping": "line 3: country 'XX'",
        "date": "not a date",
    }[case]
    monkeypatch.setenv("HUBSHARE_EXTRACT_TASK_RETRIES", "0")
    monkeypatch.setenv("HUBSHARE_HTTP_MAX_RETRIES", "1")
    if case == "unreachable":
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    elif case == "mapping":
        bad = tmp_path / "bad_mapping.csv"
        bad.write_text(HAND_MAPPING.read_text().replace("cmu-lti,US,", "cmu-lti,XX,"))
        monkeypatch.setenv("HUBSHARE_MAPPING", str(bad))
    elif case == "date":
        args = ["run", "--date", "2024-02-30"]
    if case == "malformed":
        with FakeHub(hand_models, faults=[Fault(2, "malformed")]) as fake:
            monkeypatch.setenv("HF_ENDPOINT", fake.url)
            result = invoke(*args)
    else:
        result = invoke(*args)
    assert result.returncode != 0
    reason = last_line(result.stderr)
    assert expected in reason
    after = dump(published)
    new_runs = sorted(set(after.pop("etl_run")) - set(before.pop("etl_run")))
    assert after == before  # no fact, share or pointer changed
    if case == "date":  # refused before a run started
        assert new_runs == []
    else:  # a run that started and failed is on record, with the same reason
        [run] = new_runs
        assert run[:4] == (run[0], "2024-01-16", 1, "failed") and expected in run[4]


def test_demo_prints_both_views_of_the_real_sample(tmp_path):
    """The README's first command: the bundled 2024-09-20 sample through the fake Hub."""
    result = invoke("demo", "--data-dir", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stderr
    assert "2024-09-20 v1" in result.stdout
    # The reviewed mapping: Google DeepMind (GB) and Hugging Face (FR) give US its wide range.
    assert "│ US              │        58.60% │ 48.7–62.7% │        59.74% │ 49.6–63.8% │" in (
        result.stdout
    )
    # On 2024-09-20 sentence-transformers was still UKP Lab's (TU Darmstadt): its rows valid then.
    assert "│ DE              │        11.26% │ 11.0–14.5% │        11.36% │ 11.0–14.5% │" in (
        result.stdout
    )
    assert "1,368,390,199" in result.stdout
    assert (tmp_path / "demo" / "warehouse.db").exists()
    # The sample's unreviewed namespaces have no account on the fake Hub: vanished, UNKNOWN by
    # default, in both views.
    uploader, origin = by_default_row(result.stdout)
    assert uploader > 0 and origin > 0
    assert "uploader view by default (no reviewed mapping row): UNKNOWN " in result.stdout
    assert "SYNTHETIC" not in result.stderr
    # The sample has no createdAt: its first-year cohort is refused, not 0 % everywhere.
    first_year = invoke("shares", "--cohort", "first_year", env=demo_env(tmp_path / "demo"))
    assert first_year.returncode == 5, first_year.stdout
    assert first_year.stderr.strip() == (
        "error: no model of 2024-09-20's snapshot has a createdAt (9,715 models): the first_year "
        "cohort (downloads_30d) needs each model's creation date; use --cohort all"
    )


def demo_env(data_dir: Path) -> dict[str, str]:
    """What reads a demo's data: its data dir (and the warehouse there, as the demo sets it)."""
    warehouse = f"sqlite:///{(data_dir / 'warehouse.db').resolve()}"
    return {"HUBSHARE_DATA_DIR": str(data_dir), "HUBSHARE_WAREHOUSE_URL": warehouse}


def test_demo_with_synthetic_history_shows_the_studys_view(tmp_path):
    """The README's `hubshare demo --synthetic-history` and the study's view on its data."""
    data_dir = tmp_path / "demo-history"
    result = invoke("demo", "--synthetic-history", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    assert "History: SYNTHETIC createdAt and downloadsAllTime" in result.stderr
    # The headline view is the real sample's, untouched by the synthetic history.
    assert "1,368,390,199" in result.stdout
    view = invoke(
        "shares", "--window", "365d", "--cohort", "first_year", "--format", "json",
        env=demo_env(data_dir),
    )  # fmt: skip
    assert view.returncode == 0, view.stderr
    rows = json.loads(view.stdout)
    assert {(r["snapshot_date"], r["definition"], r["cohort"]) for r in rows} == {
        ("2024-09-20", "window_365d", "first_year")
    }
    downloads = {r["country"]: r["downloads"] for r in rows}
    assert downloads["US"] > downloads["CN"] > 0
    assert sum(downloads.values()) > 0


def test_synthetic_history_keeps_the_real_counter_and_grows_with_age():
    from datetime import datetime

    from hubshare.cli import DEMO_DATE, DEMO_YEAR_BEFORE
    from hubshare.fakehub import load_models
    from hubshare.fakehub_scenarios import with_synthetic_history

    sample = load_models(DEMO_SAMPLE)
    at_day, at_start = with_synthetic_history(sample, DEMO_DATE, DEMO_YEAR_BEFORE, seed=1)
    assert [m["downloads"] for m in at_day] == [m["downloads"] for m in sample]
    assert all(m["createdAt"] <= m["lastModified"] for m in at_day if m.get("lastModified"))
    assert all(m["downloadsAllTime"] >= m["downloads"] for m in at_day)
    on_day = {m["_id"]: m for m in at_day}
    start = datetime(2023, 9, 21).isoformat()
    assert 0 < len(at_start) < len(at_day)
    for model in at_start:  # only models created by then, with a smaller counter
        assert model["createdAt"] < start
        assert model["downloadsAllTime"] <= on_day[model["_id"]]["downloadsAllTime"]
        assert model["downloads"] <= model["downloadsAllTime"]


BY_DEFAULT_ROW = re.compile(r"│ by default\s+│\s+([\d,]+) │\s+│\s+([\d,]+) │")


def by_default_row(stdout: str) -> tuple[int, int]:
    """The both-views table's `by default` row: each view's downloads resting on the default."""
    match = BY_DEFAULT_ROW.search(stdout)
    assert match, stdout
    uploader, origin = (int(value.replace(",", "")) for value in match.groups())
    return uploader, origin


def bucket_by_default(stdout: str, view: str, bucket: str) -> int:
    """`bucket`'s downloads resting on the default in `view`, from the table's caption."""
    match = re.search(
        rf"^{view} view by default \(no reviewed mapping row\):.* {bucket} ([\d,]+) of ",
        stdout,
        re.MULTILINE,
    )
    assert match, stdout
    return int(match.group(1).replace(",", ""))


def test_demo_with_a_long_tail_shows_intl_unknown_and_what_rests_on_the_default(tmp_path):
    """The README's `hubshare demo --long-tail 20000`: synthetic users, organisations and
    vanished namespaces beside the real sample, said to be synthetic."""
    result = invoke("demo", "--data-dir", str(tmp_path / "demo"), "--long-tail", "20000")
    assert result.returncode == 0, result.stderr
    assert "Long tail: 20,000 SYNTHETIC models" in result.stderr
    assert "2024-09-20 v1" in result.stdout
    for bucket in ("INTL", "UNKNOWN"):
        assert re.search(rf"^│ {bucket} +│ +[1-9]\d*\.\d\d% │", result.stdout, re.MULTILINE)
        for view in ("uploader", "origin"):
            assert bucket_by_default(result.stdout, view, bucket) > 0
    uploader, origin = by_default_row(result.stdout)
    plain_total = 1_368_390_199  # the sample alone; the tail adds about a third of it
    assert uploader > plain_total // 10 and origin > plain_total // 10


def test_the_demo_long_tail_never_names_a_sample_namespace():
    from hubshare.cli import _demo_long_tail
    from hubshare.fakehub import load_models

    sample = load_models(DEMO_SAMPLE)
    models, accounts, described = _demo_long_tail(3000, sample)
    sample_namespaces = {str(m["id"]).split("/", 1)[0].lower() for m in sample}
    tail_namespaces = {str(m["author"]).lower() for m in models}
    assert len(models) == 3000 and "SYNTHETIC" in described
    assert tail_namespaces.isdisjoint(sample_namespaces)
    assert {a.name.lower() for a in accounts} <= tail_namespaces
    # Scaled: the tail carries about a quarter of all the demo's downloads.
    sample_downloads = sum(int(m.get("downloads") or 0) for m in sample)
    tail_downloads = sum(int(m["downloads"]) for m in models)
    assert 0.24 < tail_downloads / (sample_downloads + tail_downloads) <= 0.25


BAD_INPUT = {
    # command line -> the exit code (README, "Exit codes") and a word of the one error line
    "run-dead-hub": (("run", "--date", "2024-01-16", "--backdate"), 4, "is HF_ENDPOINT reachable"),
    "run-future": (("run", "--date", "2999-01-01", "--backdate"), 2, "in the future"),
    "shares-bad-date": (("shares", "--date", "2024-02-30"), 2, "not a date"),
    "shares-no-run": (("shares", "--date", "2024-01-10"), 6, "no published shares"),
    "runs-bad-date": (("runs", "--date", "yesterday"), 2, "not a date"),
    "import-bad-file": (
        ("import", "--date", "2024-01-10", "--file", "missing.jsonl"),
        5,
        "missing",
    ),
    "backfill-reversed": (("backfill", "--start", "2024-01-15", "--end", "2024-01-01"), 2, "end"),
    "reproduce-unknown": (("reproduce", "ffffffff"), 2, "no run id starts with"),
    "explain-unpublished": (("explain", "--from", "2024-01-10", "--to", "2024-01-15"), 6, "no pub"),
    "mapping-check-missing": (("mapping", "check", "--mapping", "nope.csv"), 5, "nope.csv"),
    "mapping-diff-unknown": (("mapping", "diff", "abcdef12", "fedcba98"), 5, "neither a file"),
    "mapping-todo-no-run": (("mapping", "todo", "--date", "2024-01-10"), 6, "no published run"),
    "report-empty-span": (("report", "--from", "2016-01-01", "--to", "2016-01-02"), 6, "nothing"),
    "grant-reader-sqlite": (("db", "grant-reader", "bi"), 6, "needs a PostgreSQL warehouse"),
    "import-truncated-gz": (
        ("import", "--date", "2024-01-10", "--file", "truncated.jsonl.gz"),
        5,
        "truncated.jsonl.gz: cannot be read",
    ),
    "import-wrong-type": (
        ("import", "--date", "2024-01-10", "--file", "wrong-type.jsonl"),
        5,
        "record 2 has `downloads` = '12' (str)",
    ),
    "reproduce-no-warehouse": (("reproduce", "abcdef12"), 6, "no warehouse at"),
    "shares-window-no-all-time": (
        ("shares", "--window", "2024-01-08..2024-01-09"),
        5,
        "has no downloadsAllTime counter",
    ),
}
#: Files the cases read, written in the working directory first.
BAD_FILES: dict[str, Callable[[], bytes]] = {
    "truncated.jsonl.gz": lambda: DEMO_SAMPLE.read_bytes()[:3000],
    "wrong-type.jsonl": lambda: (
        b'{"_id": "a1", "id": "a/one", "downloads": 3}\n'
        b'{"_id": "a2", "id": "a/two", "downloads": "12"}\n'
    ),
    "no-all-time.jsonl": lambda: b'{"_id": "a1", "id": "a/one", "downloads": 3}\n',
}
#: Steps before a case (their effects on the data dir are part of the setting, not the case).
BAD_SETUP = {
    "shares-window-no-all-time": [
        ("import", "--date", day, "--file", "no-all-time.jsonl")
        for day in ("2024-01-08", "2024-01-09")
    ],
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_every_command_fails_in_one_line_and_leaves_the_warehouse(case, published, monkeypatch):
    args, code, word = BAD_INPUT[case]
    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", f"sqlite:///{published}")
    monkeypatch.setenv("HUBSHARE_EXTRACT_TASK_RETRIES", "0")
    monkeypatch.setenv("HUBSHARE_HTTP_MAX_RETRIES", "0")
    if case == "run-dead-hub":
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    if case == "reproduce-no-warehouse":
        monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", f"sqlite:///{published.parent / 'none.db'}")
    for name, content in BAD_FILES.items():
        Path(name).write_bytes(content())
    for step in BAD_SETUP.get(case, []):
        assert invoke(*step).returncode == 0
    before = dump(published)
    result = invoke(*args)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert word in lines[0]
    assert result.returncode == code, lines[0]
    assert result.stdout == ""
    assert not (published.parent / "none.db").exists()  # nothing created by a reader
    after = dump(published)
    if case == "run-dead-hub":  # the failed run is on record; nothing else changed
        new_runs = set(after.pop("etl_run")) - set(before.pop("etl_run"))
        assert [run[3] for run in new_runs] == ["failed"]
    assert after == before
