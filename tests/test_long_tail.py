"""Issue 18's acceptance on a long-tail Hub: the real daily flow (Prefect test harness, the
huggingface_hub client, the real CLI) against a fake Hub serving `long_tail(20_000)` with its
accounts, loading SQLite and PostgreSQL warehouses.

The reviewed mapping is tests/fixtures/org_country.csv, whose namespaces are the scenario's head.
The expected shares are computed here from the scenario's own models and accounts, never from
the pipeline's code: uploader view exactly (users -> INTL, organisations and vanished ->
UNKNOWN, reviewed rows win); origin view exactly too, by the methodology's rules 1-4 applied to
the scenario's tags (every base a tail model names is a reviewed model, so only a tail model
without a base rests on the default)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from hubshare.fakehub import FakeHub, Fault
from hubshare.fakehub_scenarios import LongTail, long_tail, namespaces_from_mapping
from hubshare.settings import Settings
from tasks.account_types import read_registry
from tests.conftest import HAND_MAPPING, run_hubshare

SEED = 18
DAYS = [date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 3)]
SMALL_BUDGET = 300
WHOLE_BUDGET = 20_000  # more than every namespace's two requests

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]


@pytest.fixture(scope="module")
def scenario() -> LongTail:
    return long_tail(20_000, seed=SEED, mapping_namespaces=namespaces_from_mapping(HAND_MAPPING))


@pytest.fixture(scope="module")
def module_hub(scenario: LongTail) -> Iterator[FakeHub]:
    with FakeHub(scenario.models, accounts=scenario.accounts) as fake:
        yield fake


@pytest.fixture
def hub(module_hub: FakeHub, env, warehouse_url, monkeypatch) -> FakeHub:
    """The module's Hub, its counters and faults cleared; a fresh data dir and warehouse."""
    module_hub.set_faults([])
    module_hub.reset_counters()
    monkeypatch.setenv("HF_ENDPOINT", module_hub.url)
    monkeypatch.setenv("HUBSHARE_PAGE_SIZE", "1000")
    monkeypatch.setenv("HUBSHARE_WAREHOUSE_URL", warehouse_url)
    return module_hub


def run_daily(day: date, budget: int, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from flows.daily import daily

    monkeypatch.setenv("HUBSHARE_NAMESPACE_LOOKUPS", str(budget))
    outcome = daily(run_date=day, backdate=True)
    assert outcome["status"] == "published"
    return outcome


def asked(fake: FakeHub) -> list[str]:
    """Namespaces asked about (lower-cased), in order, once each."""
    return list(dict.fromkeys(str(r.namespace).lower() for r in fake.overview_requests()))


def reviewed_rows() -> dict[str, tuple[str, str]]:
    with HAND_MAPPING.open(newline="") as handle:
        return {r["org"].lower(): (r["country"], r["org_type"]) for r in csv.DictReader(handle)}


def unreviewed_by_size(scenario: LongTail) -> list[str]:
    """Unreviewed namespaces (lower-cased), largest summed downloads first, ties by name."""
    reviewed = reviewed_rows()
    totals = {ns.lower(): d for ns, d in scenario.downloads_by_namespace().items()}
    return sorted((k for k in totals if k not in reviewed), key=lambda k: (-totals[k], k))


def default_bucket(scenario: LongTail) -> dict[str, str]:
    """Bucket of every namespace by the account-type default (lower-cased)."""
    buckets = {name.lower(): "INTL" for name in scenario.users}
    buckets |= {name.lower(): "UNKNOWN" for name in (*scenario.orgs, *scenario.vanished)}
    return buckets


def expected_shares(scenario: LongTail) -> dict[str, dict[str, tuple[int, int]]]:
    """Per view, bucket -> (downloads, downloads_by_default), by hand from the scenario."""
    reviewed = reviewed_rows()
    defaults = default_bucket(scenario)
    developer = {
        ns
        for ns, (country, org_type) in reviewed.items()
        if org_type in {"company", "academic", "nonprofit", "government"} and len(country) == 2
    }
    by_id = {str(m["id"]).lower(): m for m in scenario.models}

    def base_of(model: dict[str, Any]) -> tuple[str | None, bool]:
        bases = {t.rsplit(":", 1)[1].lower() for t in model["tags"] if t.startswith("base_model:")}
        assert len(bases) <= 1  # the scenario makes no merges
        quantized = any(t.startswith("base_model:quantized:") for t in model["tags"])
        return (bases.pop() if bases else None), quantized

    def origin(model: dict[str, Any], depth: int = 0) -> str:
        """The namespace (lower-cased) whose bucket is the model's origin (rules 1-4)."""
        assert depth < 10  # the methodology's depth cap is never reached here
        uploader = str(model["author"]).lower()
        base, quantized = base_of(model)
        if base is not None and quantized:
            return origin(by_id[base], depth + 1)
        if uploader in developer:
            return uploader
        if base is not None:
            return origin(by_id[base], depth + 1)
        return uploader

    def bucket(namespace: str) -> str:
        return reviewed[namespace][0] if namespace in reviewed else defaults[namespace]

    views: dict[str, dict[str, list[int]]] = {"uploader": {}, "origin": {}}
    for model in scenario.models:
        downloads = int(model["downloads"])
        for view, decided_by in (
            ("uploader", str(model["author"]).lower()),
            ("origin", origin(model)),
        ):
            row = views[view].setdefault(bucket(decided_by), [0, 0])
            row[0] += downloads
            row[1] += 0 if decided_by in reviewed else downloads
    return {view: {b: (d, dd) for b, (d, dd) in rows.items()} for view, rows in views.items()}


def published(attribution: str, day: date) -> dict[str, tuple[int, int, float]]:
    """`hubshare shares --format json`: country -> (downloads, downloads_by_default, share)."""
    done = run_hubshare(
        "shares", "--date", day.isoformat(), "--attribution", attribution, "--format", "json"
    )
    assert done.returncode == 0, done.stderr
    return {
        r["country"]: (r["downloads"], r["downloads_by_default"], r["share"])
        for r in json.loads(done.stdout)
    }


def registry_kinds() -> dict[str, str]:
    """What the registry learned: namespace (lower-cased) -> account type."""
    registry = read_registry(Settings().store)
    return {
        str(ns).lower(): kind for ns, kind in registry.select("namespace", "account_type").rows()
    }


def model_buckets(url: str, run_id: str, namespaces: list[str]) -> dict[str, set[str]]:
    """Uploader buckets of the published models of `namespaces` (lower-cased) in a run."""
    found: dict[str, set[str]] = {}
    sql = text("SELECT model_id, uploader_bucket FROM published_model_fact WHERE run_id = :run")
    with create_engine(url).connect() as connection:
        for model_id, uploader_bucket in connection.execute(sql, {"run": run_id}):
            namespace = str(model_id).split("/", 1)[0].lower()
            if namespace in namespaces:
                found.setdefault(namespace, set()).add(uploader_bucket)
    return found


def test_a_long_tail_is_typed_within_budgets_and_counted_exactly(hub, scenario, monkeypatch):
    by_size = unreviewed_by_size(scenario)
    assert len(scenario.models) == 20_000
    assert min(len(scenario.users), len(scenario.orgs)) >= 3000 and scenario.vanished

    # 1. A small budget: at most that many requests, for the largest unreviewed namespaces.
    first = run_daily(DAYS[0], SMALL_BUDGET, monkeypatch)
    first_asked = asked(hub)
    assert SMALL_BUDGET - 1 <= hub.overview_request_count <= SMALL_BUDGET
    assert first_asked == by_size[: len(first_asked)]
    assert sorted(registry_kinds()) == sorted(first_asked)

    # 2. A budget for every namespace: the rest is typed, and both views are the hand-computed
    # ones, to the download.
    hub.reset_counters()
    run_daily(DAYS[1], WHOLE_BUDGET, monkeypatch)
    assert asked(hub) == by_size[len(first_asked) :]
    assert registry_kinds() == {
        name.lower(): kind
        for names, kind in (
            (scenario.users, "user"),
            (scenario.orgs, "org"),
            (scenario.vanished, "vanished"),
        )
        for name in names
    }
    expected = expected_shares(scenario)
    total = sum(int(m["downloads"]) for m in scenario.models)
    by_namespace = scenario.downloads_by_namespace()
    users = sum(by_namespace[name] for name in scenario.users)
    assert expected["uploader"]["INTL"][1] == users
    for view in ("uploader", "origin"):
        shares = published(view, DAYS[1])
        assert {c: (d, dd) for c, (d, dd, _) in shares.items()} == expected[view], view
        for country, (downloads, _, share) in shares.items():
            assert share == pytest.approx(downloads / total, rel=1e-12, abs=0), country

    # 3. A later run asks nothing: every namespace is settled within the re-check period.
    hub.reset_counters()
    run_daily(DAYS[2], WHOLE_BUDGET, monkeypatch)
    assert hub.overview_request_count == 0

    # 4. The first run still reproduces from the account types it froze.
    done = run_hubshare("reproduce", first["run_id"])
    assert done.returncode == 0, done.stdout + done.stderr


def test_refused_and_failed_lookups_stay_untyped_and_are_asked_again(
    hub, scenario, warehouse_url, monkeypatch
):
    by_size = unreviewed_by_size(scenario)
    user_keys = {name.lower() for name in scenario.users}
    big_user = next(k for k in by_size if k in user_keys)
    big_org = next(k for k in by_size if k not in user_keys)
    next_user = next(k for k in by_size if k in user_keys and k != big_user)
    failing = [big_user, big_org, next_user]
    hub.set_faults(
        [
            Fault(None, "429", on="overview", namespace=big_user, reset=1),
            Fault(None, "503", on="overview", namespace=big_org),
            Fault(None, "500", on="overview", namespace=next_user),
        ]
    )
    first = run_daily(DAYS[0], 40, monkeypatch)
    # Each was asked, answered only with its fault (retried), and the run went on past them.
    statuses = {name: {r.status for r in hub.overview_requests(name)} for name in failing}
    assert statuses == {big_user: {429}, big_org: {503}, next_user: {500}}
    assert len(asked(hub)) > len(failing)
    typed = set(registry_kinds())
    assert typed and not typed & set(failing)
    # Untyped: UNKNOWN, whatever their account.
    assert model_buckets(warehouse_url, first["run_id"], failing) == {
        name: {"UNKNOWN"} for name in failing
    }

    hub.set_faults([])
    hub.reset_counters()
    second = run_daily(DAYS[1], 40, monkeypatch)
    assert asked(hub)[:3] == [k for k in by_size if k in failing]  # first: the largest untyped
    kinds = registry_kinds()
    assert {name: kinds[name] for name in failing} == {
        big_user: "user",
        big_org: "org",
        next_user: "user",
    }
    assert model_buckets(warehouse_url, second["run_id"], failing) == {
        big_user: {"INTL"},
        big_org: {"UNKNOWN"},
        next_user: {"INTL"},
    }
