"""The review queue (issue 18, "the mapping keeps up"): each run ranks the namespaces without a
reviewed row in the mapping, or mapped UNKNOWN; a published run stores it, `hubshare mapping todo`
reads it, and organisations without a country above HUBSHARE_MAX_UNREVIEWED_SHARE are a warning
(log, artifact, webhook) that does not stop the run."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import create_engine, text

from hubshare.fakehub import FakeHub
from schemas.frames import ACCOUNT_TYPE_SCHEMA, REVIEW_QUEUE_SCHEMA
from tasks.review_queue import alert_payload, review_queue
from tests import test_alerts, test_reader_role
from tests.test_cli import invoke

#: The loopback webhook receiver of tests/test_alerts.py; a published PostgreSQL warehouse and
#: a reader role of tests/test_reader_role.py.
webhook = test_alerts.webhook
published_pg = test_reader_role.published_pg
role = test_reader_role.role

DAY = date(2024, 1, 15)
NEXT_DAY = date(2024, 1, 16)

FACTS = pl.DataFrame(
    {
        "model_oid": ["a1", "a2", "b1", "c1", "d1", "e1", "f1", "g1"],
        "uploader": ["Alpha", "alpha", "beta", "Gamma", "delta", "eps", "zeta", None],
        "uploader_bucket": [
            "UNKNOWN",
            "UNKNOWN",
            "UNKNOWN",
            "UNKNOWN",
            "US",
            "UNKNOWN",
            "INTL",
            "X",
        ],
        "downloads_30d": [300, 100, 200, 50, 1000, 150, 100, 100],
    }
)
# gamma is reviewed (case-insensitively) but UNKNOWN; delta is reviewed with a country.
MAPPING = pl.DataFrame(
    {"org_lower": ["delta", "gamma", "zeta"], "country": ["US", "UNKNOWN", "INTL"]}
)
TYPES = pl.DataFrame(
    {
        "namespace": ["ALPHA", "beta", "eps", "Gamma"],
        "account_type": ["org", "user", "vanished", "org"],
        "fullname": ["Alpha Inc.", "Beta B.", None, "Gamma Lab"],
        "verified": [True, None, None, False],
        "checked_at": [datetime(2024, 1, 1, tzinfo=UTC)] * 4,
    },
    schema=ACCOUNT_TYPE_SCHEMA,
)


def test_the_queue_ranks_namespaces_without_a_reviewed_country():
    first_seen = pl.DataFrame(
        {"namespace_lower": ["alpha", "eps"], "first_seen": [date(2023, 5, 1), date(2030, 1, 1)]}
    )
    queue, summary = review_queue(FACTS, MAPPING, TYPES, first_seen, DAY, threshold=0.2)
    assert queue.schema == REVIEW_QUEUE_SCHEMA
    assert queue.rows() == [
        # Both spellings are one namespace (the Hub is case-insensitive), spelled as its
        # largest model; first seen in an earlier published run.
        ("Alpha", "org", "Alpha Inc.", 400, 0.2, 2, date(2023, 5, 1)),
        ("beta", "user", "Beta B.", 200, 0.1, 1, DAY),
        ("eps", "vanished", None, 150, 0.075, 1, DAY),  # never later than the run's date
        ("Gamma", "org", "Gamma Lab", 50, 0.025, 1, DAY),  # reviewed, but UNKNOWN
    ]
    assert (summary.namespaces, summary.downloads, summary.total_downloads) == (4, 800, 2000)
    # Organisations without a reviewed row: alpha (org) and eps (vanished); beta is a user,
    # gamma has a reviewed row.
    assert summary.unreviewed_org_share == pytest.approx(0.275)
    assert summary.top_unreviewed == ("Alpha", "eps")
    assert summary.warns
    assert "WARNING" in summary.describe() and "Alpha, eps" in summary.warning()
    assert alert_payload(summary, DAY, "run-1", None) == {
        "snapshot_date": "2024-01-15",
        "run_id": "run-1",
        "flow_run_id": None,
        "status": "published",
        "warning": "unreviewed_organisations",
        "share": pytest.approx(0.275),
        "threshold": 0.2,
        "top_namespaces": ["Alpha", "eps"],
    }


def test_with_no_types_known_every_unreviewed_namespace_counts_as_an_organisation():
    untyped = pl.DataFrame(schema=ACCOUNT_TYPE_SCHEMA)
    no_history = pl.DataFrame(schema={"namespace_lower": pl.String, "first_seen": pl.Date})
    queue, summary = review_queue(FACTS, MAPPING, untyped, no_history, DAY, threshold=0.4)
    assert queue["namespace"].to_list() == ["Alpha", "beta", "eps", "Gamma"]
    assert queue["account_type"].null_count() == 4 and queue["fullname"].null_count() == 4
    assert summary.unreviewed_org_share == pytest.approx(0.375)  # all but gamma (reviewed)
    assert not summary.warns  # 37.5 % is not above 40 %
    assert "WARNING" not in summary.describe()


class WarningsKept(logging.Handler):
    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _set_models(models: list[dict[str, Any]], day: date) -> list[dict[str, Any]]:
    newcomer = dict(models[0]) | {
        "_id": "ffffffffffffffffffffff01",
        "id": "Newcomer/model",
        "author": "Newcomer",
        "downloads": 400,
    }
    return models + ([newcomer] if day == NEXT_DAY else [])


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_published_runs_store_their_queue_and_mapping_todo_reads_it(
    env, warehouse_url, hand_models, webhook, monkeypatch
):
    from flows.daily import daily

    # The run log, as its task's logger emits it (Prefect's own handlers may not propagate).
    task_log = logging.getLogger("prefect.task_runs")
    warnings = WarningsKept(level=logging.WARNING)
    task_log.addHandler(warnings)
    monkeypatch.setattr(task_log, "level", logging.INFO)
    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", warehouse_url)  # SQLite and PostgreSQL
    for day in (DAY, NEXT_DAY):
        with FakeHub(_set_models(hand_models, day)) as hub:
            monkeypatch.setenv("HF_ENDPOINT", hub.url)
            outcome = daily(run_date=day, backdate=True)
        assert outcome["status"] == "published"  # the warning does not stop a run

    # randomuser (unmapped, 160 of 3,010 downloads) is above the default 2 %: announced, logged.
    first, second = webhook
    assert first == {
        "snapshot_date": "2024-01-15",
        "run_id": first["run_id"],
        "flow_run_id": first["run_id"],
        "status": "published",
        "warning": "unreviewed_organisations",
        "share": pytest.approx(160 / 3010),
        "threshold": 0.02,
        "top_namespaces": ["randomuser"],
    }
    assert second["top_namespaces"] == ["Newcomer", "randomuser"]
    task_log.removeHandler(warnings)
    assert any(
        "organisations without a reviewed country carry 5.32% of downloads" in message
        for message in warnings.messages
    ), warnings.messages
    queue = pl.read_parquet(env / "runs" / outcome["run_id"] / "review_queue.parquet")
    assert queue["namespace"].to_list() == ["Newcomer", "randomuser"]

    engine = create_engine(warehouse_url)
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT snapshot_date, namespace, account_type, downloads, models, first_seen "
                "FROM published_review_queue ORDER BY snapshot_date, downloads DESC"
            )
        ).all()
    assert [tuple(str(value) for value in row) for row in rows] == [
        ("2024-01-15", "randomuser", "vanished", "160", "2", "2024-01-15"),
        ("2024-01-16", "Newcomer", "vanished", "400", "1", "2024-01-16"),
        # First seen on the earlier published date.
        ("2024-01-16", "randomuser", "vanished", "160", "2", "2024-01-15"),
    ]

    listed = invoke("mapping", "todo", "--format", "json")  # the latest published date
    assert listed.returncode == 0, listed.stderr
    todo = json.loads(listed.stdout)
    assert [(row["namespace"], row["downloads"], row["first_seen"]) for row in todo] == [
        ("Newcomer", 400, "2024-01-16"),
        ("randomuser", 160, "2024-01-15"),
    ]
    assert todo[0]["share"] == pytest.approx(400 / 3410) and todo[0]["snapshot_date"] == (
        "2024-01-16"
    )
    as_csv = invoke("mapping", "todo", "--date", "2024-01-15", "--top", "1", "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    [row] = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert (row["namespace"], row["account_type"], row["models"]) == ("randomuser", "vanished", "2")
    table = invoke("mapping", "todo", "--top", "20")  # as the README shows it: the latest date
    assert table.returncode == 0, table.stderr
    assert "Newcomer" in table.stdout and "11.730%" in table.stdout
    nothing = invoke("mapping", "todo", "--date", "2024-01-10")
    assert nothing.returncode == 6 and nothing.stdout == ""
    assert nothing.stderr.startswith("error: no published run for 2024-01-10")


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_under_the_threshold_nothing_is_announced(env, hand_models, webhook, monkeypatch):
    from flows.daily import daily

    monkeypatch.setenv("HUBSHARE_MAX_UNREVIEWED_SHARE", "0.06")  # randomuser's 5.3 % is under
    with FakeHub(hand_models) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        daily(run_date=DAY, backdate=True)
    assert webhook == []


@pytest.mark.postgres
@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_a_reader_role_reads_the_review_queue(published_pg, role, monkeypatch):
    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", published_pg)
    assert invoke("db", "grant-reader", role).returncode == 0
    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", test_reader_role.as_role(published_pg, role))
    listed = invoke("mapping", "todo", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert [row["namespace"] for row in json.loads(listed.stdout)] == ["randomuser"]
    with create_engine(test_reader_role.as_role(published_pg, role)).connect() as connection:
        assert connection.execute(text("SELECT COUNT(*) FROM published_review_queue")).scalar() == 1


def _upstream() -> Path:
    """The real sets beside the repository (HUBSHARE_TEST_UPSTREAM elsewhere, e.g. a worktree)."""
    override = os.environ.get("HUBSHARE_TEST_UPSTREAM")
    return (
        Path(override)
        if override
        else Path(__file__).resolve().parents[2] / "shared" / "data" / "upstream"
    )


def _trending_jsonl(folder: Path, out: Path) -> Path:
    """The trending payloads as JSON Lines `hubshare import` reads: each model's latest object
    (files sort by capture time), with a stand-in `_id` (the payloads carry none)."""
    latest: dict[str, dict[str, Any]] = {}
    for file in sorted(folder.glob("*.json")):
        for value in json.loads(file.read_text()).values():
            item = value.get("repoData", value)
            latest[item["id"]] = item
    keys = ("id", "author", "downloads", "likes", "lastModified", "pipeline_tag", "private")
    with out.open("w") as handle:
        for model_id, item in sorted(latest.items()):
            record = {key: item[key] for key in keys if key in item}
            record["_id"] = hashlib.sha256(model_id.encode()).hexdigest()[:24]
            handle.write(json.dumps(record) + "\n")
    return out


#: The real sets, the date each is imported as (the trending set's: its latest lastModified)
#: and the namespaces the queue must list among its largest where each appears (reviewed as
#: UNKNOWN: no country found yet).
REAL_SETS = {
    "enochlev__CS573_Documentation_Quality/hf_models.csv": (
        date(2024, 9, 20),
        ["nesaorg", "sportstensor", "Falconsai"],
    ),
    "park-onezero__daily-hf-trending/trending_cache_history": (
        date(2026, 8, 22),
        ["deepreinforce-ai"],
    ),
}


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("path", sorted(REAL_SETS))
def test_mapping_todo_on_the_real_sets_lists_what_the_mapping_lacks(env, path, monkeypatch):
    upstream = _upstream()
    if not upstream.is_dir():
        pytest.skip(f"no real data at {upstream}")
    monkeypatch.delenv("HUBSHARE_MAPPING")  # the shipped mapping, as a user has it
    day, expected = REAL_SETS[path]
    source = upstream / path
    if source.is_dir():
        source = _trending_jsonl(source, env.parent / "trending.jsonl")
    imported = invoke("import", "--date", str(day), "--file", str(source))
    assert imported.returncode == 0, imported.stderr
    ran = invoke("run", "--date", str(day))
    assert ran.returncode == 0, ran.stderr
    listed = invoke("mapping", "todo", "--date", str(day), "--top", "5", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    largest = [row["namespace"] for row in json.loads(listed.stdout)]
    assert largest[: len(expected)] == expected, largest
    table = invoke("mapping", "todo", "--date", str(day), "--top", "5")
    assert table.returncode == 0 and expected[0] in table.stdout, table.stderr
