"""Look up namespaces' account types: is an uploader a user, an organisation, or gone?

The Hub says so through two overview endpoints (docs: hub-api.md §5): `GET
/api/organizations/{name}/overview` answers 200 for an organisation and 404 otherwise, then `GET
/api/users/{name}/overview` answers 200 with `type: "user"`; 404 on both is a vanished account.

What was learned is kept across runs in the registry (`accounts/registry.parquet` in the data
dir, one row per namespace). A run asks only for the namespaces of its snapshot that have no
reviewed row in the mapping and no type checked within `HUBSHARE_ACCOUNT_RECHECK_DAYS`, largest
downloads first, within `HUBSHARE_NAMESPACE_LOOKUPS` overview requests. A lookup that fails (429
or 5xx after the retries, a timeout, a malformed or unexpected answer) leaves the namespace
untyped for this run, and is asked again next run; it never fails the run.

What a run used is frozen, content-addressed: `accounts/<sha256>.parquet`, the registry's rows
for the snapshot's namespaces, whose SHA-256 the run records (`RunInputs.account_types_sha256`),
so a later run that typed more does not change what an earlier run reproduces.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote

import polars as pl

from hubshare.errors import ExtractError, SnapshotError, TransientExtractError
from hubshare.hub import HubClient
from hubshare.provenance import sha256_bytes
from hubshare.settings import Settings
from hubshare.storage import DataStore
from schemas.frames import ACCOUNT_TYPE_SCHEMA
from schemas.run import RunInputs
from tasks.mapping import load_mapping
from tasks.snapshot import read_snapshot

ACCOUNTS = "accounts"
REGISTRY_KEY = f"{ACCOUNTS}/registry.parquet"

#: Overview requests one namespace may take: an organisation answers the first, a user the
#: second. A namespace is started only if both fit in what is left of the budget.
REQUESTS_PER_NAMESPACE = 2

#: Consecutive failed namespaces after which a run stops asking: a Hub that refuses everything
#: costs at most this many namespaces' retries, not the whole budget's.
MAX_CONSECUTIVE_FAILURES = 20


def account_types_key(sha256: str) -> str:
    """Where the account types a run used are frozen, by their SHA-256."""
    return f"{ACCOUNTS}/{sha256}.parquet"


def empty_account_types() -> pl.DataFrame:
    return pl.DataFrame(schema=ACCOUNT_TYPE_SCHEMA)


# ----------------------------------------------------------------------------------------------
# The snapshot's namespaces and the registry


def snapshot_namespaces(snapshot: pl.DataFrame) -> pl.DataFrame:
    """One row per namespace of the snapshot (`author`, else the namespace of the model id):
    `key` (lower-cased), `namespace` (a spelling the snapshot uses) and `downloads` (summed),
    largest first, ties by key. Of `snapshot`, `id`, `author` and `downloads` are read."""
    return (
        snapshot.lazy()
        .select(
            pl.coalesce(
                pl.col("author"),
                pl.when(pl.col("id").str.contains("/", literal=True)).then(
                    pl.col("id").str.split("/").list.first()
                ),
            ).alias("namespace"),
            pl.col("downloads").fill_null(0),
        )
        .filter(pl.col("namespace").is_not_null() & (pl.col("namespace") != ""))
        .with_columns(pl.col("namespace").str.to_lowercase().alias("key"))
        .group_by("key")
        .agg(pl.col("namespace").min(), pl.col("downloads").sum())
        .sort(["downloads", "key"], descending=[True, False])
        .collect()
    )


def read_registry(store: DataStore) -> pl.DataFrame:
    """Every namespace typed so far (ACCOUNT_TYPE_SCHEMA), empty before the first lookup."""
    if not store.exists(REGISTRY_KEY):
        return empty_account_types()
    try:
        registry = store.read_parquet(REGISTRY_KEY)
    except (OSError, pl.exceptions.PolarsError) as err:
        raise SnapshotError(
            f"{store.where(REGISTRY_KEY)}: cannot read the account types registry ({err}); "
            "remove it to type every namespace again"
        ) from None
    if registry.schema != ACCOUNT_TYPE_SCHEMA:
        raise SnapshotError(
            f"{store.where(REGISTRY_KEY)}: not an account types registry (columns "
            f"{dict(registry.schema)}); remove it to type every namespace again"
        )
    return registry


def lookup_candidates(
    namespaces: pl.DataFrame,
    registry: pl.DataFrame,
    reviewed: pl.Series,
    now: datetime,
    recheck_days: int,
) -> pl.DataFrame:
    """The namespaces to ask about, in order: no reviewed row (`reviewed`: lower-cased
    namespaces of the mapping) and no type checked within `recheck_days` of `now`."""
    fresh = registry.filter(pl.col("checked_at") >= now - timedelta(days=recheck_days)).select(
        pl.col("namespace").str.to_lowercase().alias("key")
    )
    return namespaces.filter(~pl.col("key").is_in(reviewed.implode())).join(
        fresh, on="key", how="anti", maintain_order="left"
    )


# ----------------------------------------------------------------------------------------------
# The lookups


class _UnexpectedAnswerError(Exception):
    """A 200 whose body is not the overview the Hub documents."""


def _spelling(body: dict[str, Any], name_field: str, asked: str) -> str:
    """The Hub's spelling of the namespace when its answer gives one for `asked`."""
    name = body.get(name_field)
    return name if isinstance(name, str) and name.lower() == asked.lower() else asked


def _optional(body: dict[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    if value is not None and not isinstance(value, kind):
        raise _UnexpectedAnswerError(f"{name} is {type(value).__name__}")
    return value


def _org(body: Any, asked: str) -> tuple[str, str | None, bool | None]:
    if not isinstance(body, dict):
        raise _UnexpectedAnswerError(f"organisation overview is a {type(body).__name__}")
    return (
        _spelling(body, "name", asked),
        _optional(body, "fullname", str),
        _optional(body, "isVerified", bool),
    )


def _user(body: Any, asked: str) -> tuple[str, str | None, bool | None]:
    if not isinstance(body, dict) or body.get("type") != "user":
        raise _UnexpectedAnswerError("user overview without type user")
    return (
        _spelling(body, "user", asked),
        _optional(body, "fullname", str),
        _optional(body, "isVerified", bool),
    )


@dataclass
class AccountLookups:
    """What one run's lookups did (the accounts stage's result, and its log line)."""

    candidates: int = 0
    budget: int = 0
    requests: int = 0
    typed: Counter[str] = field(default_factory=Counter)
    #: Namespaces left untyped, by why: `transient` (429/5xx/timeout after the retries),
    #: `refused` (another HTTP error, or a body that is not JSON), `unexpected` (JSON of
    #: another shape).
    failed: Counter[str] = field(default_factory=Counter)
    stopped_after_failures: bool = False

    @property
    def looked_up(self) -> int:
        return sum(self.typed.values()) + sum(self.failed.values())

    def describe(self) -> str:
        typed = ", ".join(f"{self.typed[kind]} {kind}" for kind in ("org", "user", "vanished"))
        text = (
            f"Account types: {self.looked_up} of {self.candidates} untyped namespaces asked "
            f"with {self.requests} of {self.budget} overview requests: {typed}"
        )
        if self.failed:
            reasons = ", ".join(f"{n} {why}" for why, n in sorted(self.failed.items()))
            text += f"; {sum(self.failed.values())} left untyped for this run ({reasons})"
        if self.stopped_after_failures:
            text += f"; stopped after {MAX_CONSECUTIVE_FAILURES} failures in a row"
        if self.looked_up < self.candidates:
            text += f"; {self.candidates - self.looked_up} wait for a later run"
        return text


def look_up_accounts(
    hub: HubClient, candidates: pl.DataFrame, budget: int, lookups: AccountLookups
) -> pl.DataFrame:
    """Ask the Hub about `candidates` (`namespace` column, in order) within `budget` overview
    requests; the rows learned (ACCOUNT_TYPE_SCHEMA). Failures are counted in `lookups`."""
    rows: list[dict[str, Any]] = []
    in_a_row = 0
    for name in candidates.get_column("namespace"):
        if budget - lookups.requests < REQUESTS_PER_NAMESPACE:
            break
        if in_a_row >= MAX_CONSECUTIVE_FAILURES:
            lookups.stopped_after_failures = True
            break
        try:
            row = _look_up(hub, name, lookups)
        except TransientExtractError:
            lookups.failed["transient"] += 1
        except ExtractError:
            lookups.failed["refused"] += 1
        except _UnexpectedAnswerError:
            lookups.failed["unexpected"] += 1
        else:
            rows.append(row)
            lookups.typed[row["account_type"]] += 1
            in_a_row = 0
            continue
        in_a_row += 1
    return pl.DataFrame(rows, schema=ACCOUNT_TYPE_SCHEMA)


def _look_up(hub: HubClient, name: str, lookups: AccountLookups) -> dict[str, Any]:
    quoted = quote(name, safe="")
    lookups.requests += 1
    reply = hub.get_json(f"/api/organizations/{quoted}/overview")
    if reply.found:
        spelled, fullname, verified = _org(reply.body, name)
        kind = "org"
    else:
        lookups.requests += 1
        reply = hub.get_json(f"/api/users/{quoted}/overview")
        if reply.found:
            spelled, fullname, verified = _user(reply.body, name)
            kind = "user"
        else:
            spelled, fullname, verified, kind = name, None, None, "vanished"
    return {
        "namespace": spelled,
        "account_type": kind,
        "fullname": fullname,
        "verified": verified,
        "checked_at": datetime.now(UTC),
    }


def merge_registry(registry: pl.DataFrame, learned: pl.DataFrame) -> pl.DataFrame:
    """`registry` with `learned` rows: per namespace (case-insensitive) the latest check."""
    return (
        pl.concat([registry, learned])
        .with_columns(pl.col("namespace").str.to_lowercase().alias("key"))
        .sort("checked_at", "namespace")
        .unique(subset="key", keep="last")
        .drop("key")
        .sort("namespace")
    )


def update_account_types(
    settings: Settings, day: date, now: datetime | None = None
) -> AccountLookups:
    """The step after the crawl: type the largest untyped namespaces of `day`'s snapshot
    within the budget, and write what was learned into the registry (once, at the end)."""
    now = now or datetime.now(UTC)
    store = settings.store
    namespaces = snapshot_namespaces(
        read_snapshot(day, settings, columns=["id", "author", "downloads"])
    )
    # Reviewed: a row valid on `day` (a namespace whose rows ended before it is typed like any).
    reviewed = load_mapping(settings.mapping_path).on(day).get_column("org_lower")
    candidates = lookup_candidates(
        namespaces, read_registry(store), reviewed, now, settings.account_recheck_days
    )
    lookups = AccountLookups(candidates=candidates.height, budget=settings.namespace_lookups)
    if candidates.is_empty() or settings.namespace_lookups < REQUESTS_PER_NAMESPACE:
        return lookups
    with HubClient(settings) as hub:
        learned = look_up_accounts(hub, candidates, settings.namespace_lookups, lookups)
    if not learned.is_empty():
        # Read again just before writing: a concurrent run's rows (a backfill) are kept.
        store.write_parquet(REGISTRY_KEY, merge_registry(read_registry(store), learned))
    return lookups


# ----------------------------------------------------------------------------------------------
# What a run used, frozen


def frozen_account_types(settings: Settings, day: date) -> pl.DataFrame:
    """The registry's rows for the namespaces of `day`'s snapshot, sorted by namespace."""
    registry = read_registry(settings.store)
    if registry.is_empty():
        return registry
    keys = snapshot_namespaces(
        read_snapshot(day, settings, columns=["id", "author", "downloads"])
    ).get_column("key")
    return (
        registry.filter(pl.col("namespace").str.to_lowercase().is_in(keys.implode()))
        .sort("namespace")
        .select(ACCOUNT_TYPE_SCHEMA.names())
    )


def account_types_bytes(frame: pl.DataFrame) -> bytes:
    """`frame` as parquet with fixed writer settings: the same rows give the same bytes."""
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", compression_level=3, statistics=False)
    return buffer.getvalue()


def freeze_account_types(settings: Settings, day: date) -> str | None:
    """Freeze the account types a run of `day` reads now (`accounts/<sha256>.parquet`, written
    once) and return their SHA-256; None when no namespace of the snapshot is typed (a run then
    reads exactly what runs before account types did)."""
    frame = frozen_account_types(settings, day)
    if frame.is_empty():
        return None
    data = account_types_bytes(frame)
    sha256 = sha256_bytes(data)
    settings.store.create(account_types_key(sha256), data)
    return sha256


def open_account_types(settings: Settings, inputs: RunInputs) -> pl.DataFrame:
    """The account types the run recorded (empty when it recorded none), checked against their
    SHA-256: a missing or altered file is an error naming it."""
    sha256 = inputs.account_types_sha256
    if sha256 is None:
        return empty_account_types()
    store = settings.store
    key = account_types_key(sha256)
    where = store.where(key)
    actual = store.sha256(key)
    if actual is None:
        raise SnapshotError(
            f"{where}: missing, but the run of {inputs.snapshot_date} recorded these account "
            f"types (sha256 {sha256[:12]}…)"
        )
    if actual != sha256:
        raise SnapshotError(
            f"{where}: SHA-256 {actual[:12]}… differs from the recorded {sha256[:12]}…; the "
            "account types file was altered"
        )
    return store.read_parquet(key)
