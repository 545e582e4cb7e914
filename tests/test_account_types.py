"""Account types: the overview lookups after the crawl (budget, registry, faults) against the
fake Hub, the frozen view a run records, and `reproduce` of a run after later runs typed more."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import create_engine

from hubshare.errors import SnapshotError
from hubshare.fakehub import Account, FakeHub, Fault
from hubshare.provenance import sha256_bytes, synthetic_object_id
from hubshare.settings import Settings
from schemas.frames import ACCOUNT_TYPE_SCHEMA
from tasks.account_types import (
    MAX_CONSECUTIVE_FAILURES,
    REGISTRY_KEY,
    account_types_key,
    freeze_account_types,
    open_account_types,
    read_registry,
    update_account_types,
)
from tasks.extract import extract_snapshot
from tasks.inputs import resolve_run_inputs

DAY = date(2024, 1, 15)
TOKEN = "hf_ACCOUNTStokenMUSTnotLEAK13579"  # noqa: S105 - a fake token

#: Unreviewed namespaces of the test Hub, largest downloads first: (name, kind, downloads);
#: kind None is a vanished account (models, no account). `Qwen` is reviewed (tests' mapping).
NAMESPACES: list[tuple[str, str | None, int]] = [
    ("bigUser", "user", 900),
    ("bigorg", "org", 800),
    ("gone", None, 700),
    ("midUser", "user", 600),
    ("smallorg", "org", 500),
    ("tiny", "user", 100),
]


def model(namespace: str, n: int, downloads: int, *, author: bool = True) -> dict[str, Any]:
    model_id = f"{namespace}/model-{n}"
    return {
        "_id": synthetic_object_id(model_id),
        "id": model_id,
        "author": namespace if author else None,
        "downloads": downloads,
        "downloadsAllTime": downloads * 10,
        "likes": 1,
        "createdAt": "2024-01-02T00:00:00.000Z",
        "lastModified": "2024-06-01T00:00:00.000Z",
        "pipeline_tag": "text-generation",
        "library_name": "transformers",
        "tags": ["transformers"],
        "gated": False,
        "private": False,
    }


def hub_models() -> list[dict[str, Any]]:
    # Each namespace's downloads over two models (one without `author`: its id names it).
    models = [model("Qwen", 1, 5000)]
    for name, _, downloads in NAMESPACES:
        models += [model(name, 1, downloads - 50), model(name, 2, 50, author=False)]
    return models


def hub_accounts() -> list[Account]:
    accounts = [Account("Qwen", "org", fullname="Qwen", verified=True)]
    for name, kind, _ in NAMESPACES:
        if kind == "org":
            accounts.append(Account(name, "org", fullname=f"{name} Inc.", verified=True))
        elif kind == "user":
            accounts.append(Account(name, "user", fullname=f"{name} Person"))
    return accounts


@pytest.fixture
def hub(env, monkeypatch):
    with FakeHub(hub_models(), accounts=hub_accounts(), token=TOKEN) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        yield fake


def crawled(fake: FakeHub, budget: int, day: date = DAY) -> Settings:
    """Settings with `budget` lookups, after the day's snapshot is stored; the hub's request
    log restarts (only the lookups are counted)."""
    settings = Settings(HUBSHARE_NAMESPACE_LOOKUPS=budget)
    extract_snapshot(day, settings, allow_backdated=True)
    fake.reset_counters()
    return settings


def asked(fake: FakeHub) -> list[str]:
    """Namespaces asked about, in order, once each."""
    return list(dict.fromkeys(str(r.namespace) for r in fake.overview_requests()))


def types(settings: Settings) -> dict[str, str]:
    registry = read_registry(settings.store)
    return dict(registry.select("namespace", "account_type").iter_rows())


def test_a_small_budget_asks_for_the_largest_namespaces_and_not_again(hub):
    # 5 requests: bigUser (org 404, user 200) 2, bigorg 1, gone (404, 404) 2.
    settings = crawled(hub, budget=5)
    lookups = update_account_types(settings, DAY)
    assert hub.overview_request_count == lookups.requests == 5
    assert asked(hub) == ["bigUser", "bigorg", "gone"]  # never Qwen: it has a reviewed row
    assert types(settings) == {"bigUser": "user", "bigorg": "org", "gone": "vanished"}
    registry = read_registry(settings.store)
    assert registry.schema == ACCOUNT_TYPE_SCHEMA
    org = registry.filter(pl.col("namespace") == "bigorg").row(0, named=True)
    assert (org["fullname"], org["verified"]) == ("bigorg Inc.", True)

    # A budget of 4 stops before a namespace that could cost 2 with 1 left.
    hub.reset_counters()
    small = Settings(HUBSHARE_NAMESPACE_LOOKUPS=4)
    assert update_account_types(small, DAY).requests == 3  # midUser 2, smallorg 1
    assert asked(hub) == ["midUser", "smallorg"]

    # What is typed is not asked again; the rest is.
    hub.reset_counters()
    update_account_types(settings, DAY)
    assert asked(hub) == ["tiny"]
    hub.reset_counters()
    update_account_types(settings, DAY)
    assert hub.overview_request_count == 0
    # After the re-check period every namespace is asked again, largest first.
    later = datetime.now(UTC) + timedelta(days=settings.account_recheck_days + 1)
    update_account_types(settings, DAY, now=later)
    assert asked(hub) == ["bigUser", "bigorg", "gone"]


def test_a_namespace_whose_rows_have_ended_is_looked_up(hub, tmp_path, monkeypatch):
    """Reviewed means a row valid on the snapshot's date: Qwen's only row ended before DAY, so
    Qwen (the largest namespace) is typed like any unreviewed one."""
    ended = tmp_path / "ended.csv"
    ended.write_text(
        "org,valid_from,valid_to,country,org_type,org_group,name,source,alt_country,alt_source,"
        "notes\nQwen,,2024-01-01,CN,company,,Qwen,https://qwenlm.github.io,,,\n"
    )
    monkeypatch.setenv("HUBSHARE_MAPPING", str(ended))
    settings = crawled(hub, budget=2)  # Qwen costs 1 (an org); bigUser could cost 2
    assert update_account_types(settings, DAY).requests == 1
    assert asked(hub) == ["Qwen"]
    assert types(settings) == {"Qwen": "org"}


def test_429_and_5xx_leave_namespaces_untyped_until_a_later_run(hub):
    hub.set_faults(
        [
            Fault(None, "503", on="overview", namespace="bigorg"),
            Fault(None, "429", on="overview", namespace="midUser", retry_after=0),
            Fault(1, "malformed", on="overview", namespace="smallorg"),
        ]
    )
    settings = crawled(hub, budget=100)
    lookups = update_account_types(settings, DAY)
    assert dict(lookups.failed) == {"transient": 2, "refused": 1}
    assert types(settings) == {"bigUser": "user", "gone": "vanished", "tiny": "user"}
    assert "3 left untyped for this run (1 refused, 2 transient)" in lookups.describe()

    hub.set_faults([])
    hub.reset_counters()
    update_account_types(settings, DAY)
    assert asked(hub) == ["bigorg", "midUser", "smallorg"]
    assert set(types(settings)) == {name for name, _, _ in NAMESPACES}


def test_a_hub_refusing_everything_stops_the_lookups(env, monkeypatch):
    many = [(f"user{n:03d}", "user", 1000 - n) for n in range(40)]
    models = [model(name, 1, downloads) for name, _, downloads in many]
    with FakeHub(models, faults=[Fault(n, "500", on="overview") for n in range(1, 400)]) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        settings = crawled(fake, budget=1000)
        lookups = update_account_types(settings, DAY)
    assert lookups.stopped_after_failures
    assert lookups.failed["transient"] == MAX_CONSECUTIVE_FAILURES
    # Each failed namespace: its first overview, retried (HUBSHARE_HTTP_MAX_RETRIES=3).
    assert fake.overview_request_count == MAX_CONSECUTIVE_FAILURES * 4
    assert not settings.store.exists(REGISTRY_KEY)


def test_the_frozen_view_is_the_snapshots_rows_and_is_checked(hub):
    settings = crawled(hub, budget=5)
    assert freeze_account_types(settings, DAY) is None  # nothing typed: as runs before
    update_account_types(settings, DAY)
    sha = freeze_account_types(settings, DAY)
    assert sha is not None
    assert freeze_account_types(settings, DAY) == sha  # deterministic bytes
    key = account_types_key(sha)
    data = settings.store.get(key)
    assert data is not None and sha256_bytes(data) == sha
    inputs = resolve_run_inputs(settings, DAY, "a" * 64, previous_row_count=None)
    assert inputs.account_types_sha256 == sha
    assert inputs.to_parameters()["account_types_sha256"] == sha
    frame = open_account_types(settings, inputs)
    assert frame["namespace"].to_list() == ["bigUser", "bigorg", "gone"]  # sorted

    no_types = inputs.model_copy(update={"account_types_sha256": None})
    assert open_account_types(settings, no_types).is_empty()
    assert "account_types_sha256" not in no_types.to_parameters()

    path = Path(settings.store.where(key))
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(SnapshotError, match=f"{path}: SHA-256 .* the account types file was"):
        open_account_types(settings, inputs)
    path.unlink()
    with pytest.raises(SnapshotError, match=f"{path}: missing"):
        open_account_types(settings, inputs)


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_daily_runs_type_more_and_the_first_run_still_reproduces(hub, env, monkeypatch):
    from flows.daily import daily
    from flows.recompute import reproduce_run
    from hubshare.read_warehouse import list_runs

    monkeypatch.setenv("HUBSHARE_NAMESPACE_LOOKUPS", "4")
    hub.set_faults([Fault(None, "503", on="overview", namespace="bigorg")])
    first = daily(run_date=DAY, backdate=True)
    assert first["status"] == "published"
    assert asked(hub) == ["bigUser", "bigorg"]  # 2 + 1 requests (bigorg failed), 1 left
    assert first["stage_seconds"].keys() >= {"crawl", "accounts", "inputs"}

    hub.set_faults([])
    hub.reset_counters()
    monkeypatch.setenv("HUBSHARE_NAMESPACE_LOOKUPS", "100")
    # A run of a past date (a backfill's) does not ask the Hub; it reads the registry.
    past = daily(run_date=DAY)
    assert past["status"] == "published"
    assert hub.overview_request_count == 0
    # A re-run of the day's crawl asks again, only for what is still untyped.
    second = daily(run_date=DAY, backdate=True)
    assert second["status"] == "published"
    assert asked(hub) == ["bigorg", "gone", "midUser", "smallorg", "tiny"]

    settings = Settings()
    runs = list_runs(create_engine(settings.resolved_warehouse_url), DAY)
    assert runs.height == 3
    for run in (first, past, second):
        result = reproduce_run(run["run_id"], settings)
        assert result.ok, result.problems

    # A frozen file that is gone is named like a missing mapping.
    for key in settings.store.keys("accounts"):
        if key != REGISTRY_KEY:
            settings.store.delete(key)
    result = reproduce_run(first["run_id"], settings)
    assert not result.ok
    assert any(p.startswith("account types ") and "is missing" in p for p in result.problems)
