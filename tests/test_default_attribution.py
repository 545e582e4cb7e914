"""Namespaces without a reviewed row (issue 18): the account-type default in both views, and how
much of each bucket rests on it (`downloads_by_default`), on hand-computed fixtures."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import polars as pl
import pytest

from schemas.frames import ACCOUNT_TYPE_SCHEMA, COUNTRY_SHARE_SCHEMA
from tasks.enrich import NO_ACCOUNT_TYPES, attribute_models
from tasks.mapping import contested_rows, load_mapping
from tasks.shares import (
    compute_all_shares,
    compute_shares,
    render_share_table,
    share_table_sha256,
)
from tests.conftest import HAND_MAPPING
from tests.test_attribution import snapshot_of

DAY = date(2024, 7, 1)
CREATED = "2024-06-21T00:00:00.000Z"  # ten days before DAY: every download is first-year


def model(i: int, mid: str, downloads: int, tags: list[str] | None = None) -> dict[str, Any]:
    return {
        "_id": f"{i:024x}",
        "id": mid,
        "author": mid.split("/")[0],
        "downloads": downloads,
        "downloadsAllTime": 2 * downloads,
        "createdAt": CREATED,
        "tags": tags or [],
        "private": False,
    }


# tests/fixtures/org_country.csv reviews Qwen (CN, company), meta-llama (US, company) and
# hobbyist (INTL, individual); every other namespace here has no row.
MODELS = [
    model(1, "Qwen/base", 1000),
    model(2, "alice/own-model", 100),  # a user's own model: INTL in both views
    # An unreviewed user's quantized copy: INTL as uploaded, Qwen's (CN) as made (rule 1).
    model(3, "alice/Qwen-base-GGUF", 50, ["base_model:quantized:Qwen/base"]),
    model(4, "Alice/other", 20),  # the same account spelled otherwise (case-insensitive)
    model(5, "acme-corp/model", 200),  # an organisation with no row: UNKNOWN
    model(6, "gone-user/model", 10),  # vanished: UNKNOWN
    model(7, "newbie/model", 5),  # not typed yet: UNKNOWN
    model(8, "meta-llama/Llama", 400),  # reviewed US, typed user: the row wins
    # Reviewed INTL (typed org: the row wins) fine-tuning a user's model: as made, it is the
    # user's (rule 3), INTL by default.
    model(9, "hobbyist/tune", 60, ["base_model:finetune:alice/own-model"]),
    # A user's merge of three bases: 100/3 each to Qwen, acme-corp and alice.
    model(
        10,
        "bob/merge",
        100,
        [
            "base_model:merge:Qwen/base",
            "base_model:merge:acme-corp/model",
            "base_model:merge:alice/own-model",
        ],
    ),
]
TOTAL = 1945
CHECKED = datetime(2024, 7, 1, tzinfo=UTC)
ACCOUNT_TYPES = pl.DataFrame(
    [
        ("alice", "user"),
        ("bob", "user"),
        ("acme-corp", "org"),
        ("gone-user", "vanished"),
        ("meta-llama", "user"),
        ("hobbyist", "org"),
    ],
    schema=["namespace", "account_type"],
    orient="row",
).with_columns(
    pl.lit(None, pl.String).alias("fullname"),
    pl.lit(None, pl.Boolean).alias("verified"),
    pl.lit(CHECKED).alias("checked_at"),
)

# Uploader view: CN Qwen 1000; US meta-llama 400; INTL alice 150 + Alice 20 + bob 100 (by
# default, 270) + hobbyist 60 (reviewed); UNKNOWN acme-corp 200 + gone-user 10 + newbie 5 (all by
# default).
UPLOADER = {"CN": (1000, 0), "US": (400, 0), "INTL": (330, 270), "UNKNOWN": (215, 215)}
# Origin view, exact: Qwen 1000 + 50 + 100/3, alice 100 + 60 + 100/3, acme-corp 200 + 100/3,
# Alice 20, gone-user 10, newbie 5, meta-llama 400. Whole parts sum to 1944: the spare download
# goes to the largest remainder, all 1/3, ties by name: "Qwen" < "acme-corp" < "alice".
# CN Qwen 1084; US 400; INTL alice 193 + Alice 20 (by default); UNKNOWN acme-corp 233 +
# gone-user 10 + newbie 5 (by default).
ORIGIN = {"CN": (1084, 0), "US": (400, 0), "INTL": (213, 213), "UNKNOWN": (248, 248)}
# Nothing typed: every namespace without a row is UNKNOWN, as before account types.
UNTYPED_UPLOADER = {"CN": (1000, 0), "US": (400, 0), "INTL": (60, 0), "UNKNOWN": (485, 485)}
UNTYPED_ORIGIN = {"CN": (1084, 0), "US": (400, 0), "UNKNOWN": (461, 461)}


def by_bucket(countries: pl.DataFrame, attribution: str) -> dict[str, tuple[int, int]]:
    rows = countries.filter(pl.col("attribution") == attribution)
    return {
        bucket: (downloads, by_default)
        for bucket, downloads, by_default in rows.select(
            "bucket", "downloads", "downloads_by_default"
        ).rows()
    }


def shares_of(tmp_path, account_types: pl.DataFrame) -> pl.DataFrame:
    mapping = load_mapping(HAND_MAPPING).on(DAY)
    fact, origin, _ = attribute_models(snapshot_of(MODELS, tmp_path), mapping, account_types)
    countries, _ = compute_shares(fact, origin, mapping=mapping)
    return countries


def test_users_are_intl_and_organisations_unknown_in_both_views(tmp_path):
    mapping = load_mapping(HAND_MAPPING).on(DAY)
    fact, origin, _ = attribute_models(snapshot_of(MODELS, tmp_path), mapping, ACCOUNT_TYPES)
    buckets = dict(fact.select("model_id", "uploader_bucket").rows())
    assert buckets == {
        "Qwen/base": "CN",
        "alice/own-model": "INTL",
        "alice/Qwen-base-GGUF": "INTL",
        "Alice/other": "INTL",
        "acme-corp/model": "UNKNOWN",
        "gone-user/model": "UNKNOWN",
        "newbie/model": "UNKNOWN",
        "meta-llama/Llama": "US",  # reviewed rows win over the account type
        "hobbyist/tune": "INTL",
        "bob/merge": "INTL",
    }
    made = origin.join(fact.select("model_oid", "model_id"), on="model_oid")
    by_model = {
        (mid, org): bucket
        for mid, org, bucket in made.select("model_id", "origin_org", "origin_bucket").rows()
    }
    assert by_model[("alice/Qwen-base-GGUF", "Qwen")] == "CN"  # a quantized copy is its base
    assert by_model[("hobbyist/tune", "alice")] == "INTL"  # a default carried by rule 3
    assert by_model[("alice/own-model", "alice")] == "INTL"  # and by rule 4
    assert {org: by_model[("bob/merge", org)] for org in ("Qwen", "acme-corp", "alice")} == {
        "Qwen": "CN",
        "acme-corp": "UNKNOWN",
        "alice": "INTL",
    }


def test_a_default_never_makes_a_developer_organisation(tmp_path):
    """A user's fine-tune of a Chinese base is Chinese: the default does not keep it (rule 2)."""
    models = [model(1, "Qwen/base", 10), model(2, "alice/ft", 7, ["base_model:Qwen/base"])]
    mapping = load_mapping(HAND_MAPPING).on(DAY)
    fact, origin, _ = attribute_models(snapshot_of(models, tmp_path), mapping, ACCOUNT_TYPES)
    assert fact["uploader_bucket"].to_list() == ["CN", "INTL"]
    assert origin.select("origin_org", "origin_bucket").rows() == [("Qwen", "CN")] * 2


def test_downloads_by_default_per_bucket_both_views(tmp_path):
    countries = shares_of(tmp_path, ACCOUNT_TYPES)
    assert by_bucket(countries, "uploader") == UPLOADER
    assert by_bucket(countries, "origin") == ORIGIN
    for view in ("uploader", "origin"):
        assert countries.filter(pl.col("attribution") == view)["downloads"].sum() == TOTAL


def test_nothing_typed_is_attribution_as_before(tmp_path, hand_models):
    assert by_bucket(shares_of(tmp_path / "a", NO_ACCOUNT_TYPES), "uploader") == UNTYPED_UPLOADER
    assert by_bucket(shares_of(tmp_path / "b", NO_ACCOUNT_TYPES), "origin") == UNTYPED_ORIGIN
    # Types known only for reviewed namespaces change nothing either: the rows win.
    reviewed_only = ACCOUNT_TYPES.filter(pl.col("namespace").is_in(["meta-llama", "hobbyist"]))
    assert shares_of(tmp_path / "c", reviewed_only).equals(
        shares_of(tmp_path / "d", NO_ACCOUNT_TYPES)
    )
    # The hand-made models under the hand mapping, as the daily run of 2026-01-01 published them
    # before account types existed (/work/scratch/baseline-before.json, scenario "hand").
    mapping = load_mapping(HAND_MAPPING).on(DAY)
    snapshot = snapshot_of(hand_models, tmp_path / "hand")
    fact, origin, _ = attribute_models(snapshot, mapping, NO_ACCOUNT_TYPES)
    countries, _, _, _ = compute_all_shares(
        date(2026, 1, 1), snapshot, fact, origin, {}, contested_rows(mapping), mapping=mapping
    )
    assert (
        share_table_sha256(countries)
        == "bfed4de6e382c2fbf27f99dab8789255e3415c632093edca3c75adb029c90693"
    )


def test_every_definition_cohort_and_view_carries_it(tmp_path):
    """Windows and the first-year cohort split the same way: here every model's window and
    first-year downloads equal its 30-day counter, so every table is the headline's."""
    mapping = load_mapping(HAND_MAPPING).on(DAY)
    snapshot = snapshot_of(MODELS, tmp_path / "end")
    start = snapshot.select("_id", (pl.col("downloadsAllTime") // 2).alias("downloadsAllTime"))
    fact, origin, _ = attribute_models(snapshot, mapping, ACCOUNT_TYPES)
    countries, _, _, _ = compute_all_shares(
        DAY, snapshot, fact, origin, {date(2024, 6, 24): start}, mapping=mapping
    )
    assert countries.schema == COUNTRY_SHARE_SCHEMA
    tables = countries.select("definition", "cohort").unique().sort("definition", "cohort").rows()
    assert tables == [
        ("downloads_30d", "all"),
        ("downloads_30d", "first_year"),
        ("window_7d", "all"),
        ("window_7d", "first_year"),
    ]
    for definition, cohort in tables:
        one = countries.filter((pl.col("definition") == definition) & (pl.col("cohort") == cohort))
        assert (by_bucket(one, "uploader"), by_bucket(one, "origin")) == (UPLOADER, ORIGIN)


def test_downloads_by_default_never_exceeds_downloads_when_rounded(tmp_path):
    """Merges of unreviewed namespaces split in thirds: whole organisation totals, so a bucket's
    default part is exact and at most its downloads."""
    models = [
        model(1, "u1/a", 1),
        model(2, "u2/b", 1),
        model(3, "Qwen/c", 1),
        model(4, "x/m", 1, ["base_model:merge:u1/a", "base_model:merge:u2/b", "base_model:Qwen/c"]),
        model(5, "y/m", 2, ["base_model:merge:u1/a", "base_model:merge:Qwen/c"]),
    ]
    types = ACCOUNT_TYPES.clear().vstack(
        pl.DataFrame(
            {"namespace": ["u1", "u2", "x", "y"], "account_type": ["user", "org", "user", "user"]}
        ).with_columns(
            pl.lit(None, pl.String).alias("fullname"),
            pl.lit(None, pl.Boolean).alias("verified"),
            pl.lit(CHECKED).alias("checked_at"),
        )
    )
    mapping = load_mapping(HAND_MAPPING).on(DAY)
    fact, origin, _ = attribute_models(snapshot_of(models, tmp_path), mapping, types)
    countries, orgs = compute_shares(fact, origin, mapping=mapping)
    # Origin, exact: u1 1 + 1/3 + 1, u2 1 + 1/3, Qwen 1 + 1/3 + 1; whole 2 + 1 + 2 = 5 of 6: the
    # spare download to the largest remainder, ties by name ("Qwen" first).
    assert dict(
        orgs.filter(pl.col("attribution") == "origin").select("org", "downloads").rows()
    ) == {
        "Qwen": 3,
        "u1": 2,
        "u2": 1,
    }
    assert by_bucket(countries, "origin") == {"CN": (3, 0), "INTL": (2, 2), "UNKNOWN": (1, 1)}
    assert by_bucket(countries, "uploader") == {"CN": (1, 0), "INTL": (4, 4), "UNKNOWN": (1, 1)}


def test_the_canonical_table_ignores_it(tmp_path):
    """`shares_sha256` stays over the columns it always hashed: a run recomputed without the
    mapping (downloads_by_default null) proves the same table."""
    mapping = load_mapping(HAND_MAPPING).on(DAY)
    snapshot = snapshot_of(MODELS, tmp_path)
    fact, origin, _ = attribute_models(snapshot, mapping, ACCOUNT_TYPES)
    with_it, _, _, _ = compute_all_shares(DAY, snapshot, fact, origin, {}, mapping=mapping)
    without, _, _, _ = compute_all_shares(DAY, snapshot, fact, origin, {})
    assert without["downloads_by_default"].null_count() == without.height
    assert with_it["downloads_by_default"].null_count() == 0
    assert render_share_table(with_it) == render_share_table(without)
    assert "downloads_by_default" not in render_share_table(with_it).decode()


def test_a_bucket_only_an_alternative_reaches_has_none_by_default(tmp_path):
    """share_ranges adds 0-download rows for buckets only a contested row's alternative reaches."""
    mapping = load_mapping(HAND_MAPPING).on(DAY)
    snapshot = snapshot_of(MODELS, tmp_path)
    fact, origin, _ = attribute_models(snapshot, mapping, ACCOUNT_TYPES)
    contested = pl.DataFrame({"org_lower": ["qwen"], "alt_bucket": ["SG"]})
    countries, _, _, _ = compute_all_shares(
        DAY, snapshot, fact, origin, {}, contested, mapping=mapping
    )
    sg = countries.filter(pl.col("bucket") == "SG")
    assert sg.height == 4 and sg["downloads"].to_list() == [0] * 4
    assert sg["downloads_by_default"].to_list() == [0] * 4


@pytest.mark.parametrize("spelling", ["ALICE", "alice"])
def test_the_type_lookup_is_case_insensitive(tmp_path, spelling):
    types = ACCOUNT_TYPES.with_columns(
        pl.when(pl.col("namespace") == "alice")
        .then(pl.lit(spelling))
        .otherwise(pl.col("namespace"))
        .alias("namespace")
    )
    assert by_bucket(shares_of(tmp_path, types), "uploader") == UPLOADER
    assert types.schema == ACCOUNT_TYPE_SCHEMA


def test_the_daily_artifact_says_what_rests_on_the_default(tmp_path):
    from tasks.render_shares import share_table_markdown

    mapping = load_mapping(HAND_MAPPING).on(DAY)
    snapshot = snapshot_of(MODELS, tmp_path)
    fact, origin, _ = attribute_models(snapshot, mapping, ACCOUNT_TYPES)
    countries, _, _, _ = compute_all_shares(DAY, snapshot, fact, origin, {}, mapping=mapping)
    headline = countries.filter(
        (pl.col("definition") == "downloads_30d") & (pl.col("cohort") == "all")
    )
    text = share_table_markdown(headline, "t")
    assert "| INTL | 270 of 330 | 213 of 213 |" in text
    assert "| UNKNOWN | 215 of 215 | 248 of 248 |" in text
    assert "| CN |" not in text.split("Resting on the default")[1]  # nothing of CN rests on it
    old_run = headline.with_columns(pl.lit(None, pl.Int64).alias("downloads_by_default"))
    assert "n/a (computed before it existed)" in share_table_markdown(old_run, "t")
