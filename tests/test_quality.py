"""The quality gate: GX suites in schemas/expectations, run by tasks.quality.check_quality."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pycountry
import pytest

from schemas.frames import MODEL_FACT_SCHEMA, MODEL_ORIGIN_SCHEMA, VIEW_SHARE_SCHEMA
from schemas.quality import SUITE_NAMES, known_buckets, load_suite, suite_path
from tasks.quality import (
    QUALITY_REPORT_SCHEMA,
    GateThresholds,
    QualityCheck,
    QualityReport,
    check_quality,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
THRESHOLDS = GateThresholds(previous_row_count=4, max_row_drop=0.05, max_unknown_share=0.5)


# --- clean frames --------------------------------------------------------------------------------


def _model_fact() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "model_oid": ["oid1", "oid2", "oid3", "oid4"],
            "model_id": ["meta/llama", "mistral/7b", "alice/merge", "bob/ft"],
            "uploader": ["meta", "mistral", "alice", "bob"],
            "downloads_30d": [400, 200, 150, 50],
            "downloads_all_time": [9000, None, 100, 100],  # nulls allowed here
            "likes": [10, 5, None, 0],  # and here
            "created_at": [T0] * 4,
            "last_modified": [T0] * 4,
            "pipeline_tag": ["text-generation", None, None, None],
            "library_name": ["transformers", None, None, None],
            "gated": ["false"] * 4,
            "base_relation": [None, None, "merge", "finetune"],
            "base_models": [None, None, "meta/llama mistral/7b", "meta/llama"],
            "uploader_bucket": ["US", "FR", "UNKNOWN", "INTL"],
        },
        schema=MODEL_FACT_SCHEMA,
    )


def _model_origin() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "model_oid": ["oid1", "oid2", "oid3", "oid3", "oid4"],
            "origin_org": ["meta", "mistral", "meta", "mistral", "meta"],
            "origin_bucket": ["US", "FR", "US", "FR", "US"],
            "weight": [1.0, 1.0, 0.5, 0.5, 1.0],
            "weight_num": [1, 1, 1, 1, 1],
            "weight_den": [1, 1, 2, 2, 1],
        },
        schema=MODEL_ORIGIN_SCHEMA,
    )


def _country_share() -> pl.DataFrame:
    # uploader view has an UNKNOWN row (0.1875 <= 0.5); origin view has none (must pass).
    return pl.DataFrame(
        {
            "attribution": ["uploader"] * 4 + ["origin"] * 2,
            "bucket": ["US", "FR", "UNKNOWN", "INTL", "US", "FR"],
            "downloads": [400, 200, 150, 50, 525, 275],
            "share": [0.5, 0.25, 0.1875, 0.0625, 0.65625, 0.34375],
            # no contested rows: low = share; high adds the view's UNKNOWN downloads (150)
            "share_low": [0.5, 0.25, 0.1875, 0.0625, 0.65625, 0.34375],
            "share_high": [0.6875, 0.4375, 0.1875, 0.25, 0.65625, 0.34375],
        },
        schema=VIEW_SHARE_SCHEMA,
    )


def _run(
    model_fact: pl.DataFrame | None = None,
    model_origin: pl.DataFrame | None = None,
    country_share: pl.DataFrame | None = None,
    thresholds: GateThresholds = THRESHOLDS,
) -> QualityReport:
    return check_quality(
        _model_fact() if model_fact is None else model_fact,
        _model_origin() if model_origin is None else model_origin,
        _country_share() if country_share is None else country_share,
        thresholds,
    )


def _set(frame: pl.DataFrame, column: str, row: int, value: Any) -> pl.DataFrame:
    """`frame` with `column` of row `row` replaced by `value` (dtype kept)."""
    values = frame[column].to_list()
    values[row] = value
    return frame.with_columns(pl.Series(column, values, dtype=frame.schema[column]))


def _failed(report: QualityReport) -> set[tuple[str, str, str | None]]:
    return {(c.suite, c.expectation, c.column) for c in report.failures()}


@pytest.fixture(scope="module")
def clean_report() -> QualityReport:
    return _run()


# --- clean data ----------------------------------------------------------------------------------


def test_clean_frames_pass_every_check(clean_report: QualityReport) -> None:
    assert clean_report.success, clean_report.summary()
    assert clean_report.failures() == ()
    assert clean_report.summary() == f"all {len(clean_report.checks)} checks passed"
    suites = {c.suite for c in clean_report.checks}
    assert suites == {
        "model_fact",
        "model_origin",
        "country_share",
        "country_share[uploader]",
        "country_share[origin]",
    }
    # One check per expectation of each suite (per-view suites twice).
    share = load_suite("country_share")["expectations"]
    all_views = [e for e in share if e.get("meta", {}).get("scope") == "all_views"]
    expected = (
        len(load_suite("model_fact")["expectations"])
        + len(load_suite("model_origin")["expectations"])
        + len(all_views)
        + 2 * (len(share) - len(all_views))
    )
    assert len(clean_report.checks) == expected


def test_clean_report_texts_are_short_and_informative(clean_report: QualityReport) -> None:
    by_key = {(c.suite, c.expectation, c.column): c for c in clean_report.checks}
    unknown = [
        c
        for c in clean_report.checks
        if c.suite == "country_share[uploader]" and c.observed.startswith("UNKNOWN share")
    ]
    assert [(c.observed, c.expected) for c in unknown] == [("UNKNOWN share 0.1875", "<= 0.5")]
    no_unknown = [
        c
        for c in clean_report.checks
        if c.suite == "country_share[origin]" and c.observed.startswith("UNKNOWN share")
    ]
    assert [(c.success, c.observed) for c in no_unknown] == [(True, "UNKNOWN share 0")]
    rows = by_key[("model_fact", "expect_table_row_count_to_be_between", None)]
    assert (rows.observed, rows.expected) == (
        "4 rows",
        ">= 4 (previous 4 - HUBSHARE_MAX_ROW_DROP 5%)",
    )
    bucket = by_key[("model_fact", "expect_column_values_to_be_in_set", "uploader_bucket")]
    assert bucket.expected == f"in known_buckets ({len(known_buckets())} codes)"
    weight = by_key[("model_origin", "expect_column_values_to_be_between", "weight")]
    assert weight.expected == "> 0 and <= 1"
    for check in clean_report.checks:
        assert 0 < len(check.observed) <= 80, check
        assert 0 < len(check.expected) <= 80, check


def test_to_frame_has_the_declared_columns(clean_report: QualityReport) -> None:
    frame = clean_report.to_frame()
    assert frame.schema == QUALITY_REPORT_SCHEMA
    assert frame.columns == ["suite", "expectation", "column", "success", "observed", "expected"]
    assert frame.height == len(clean_report.checks)
    assert frame["success"].all()
    empty = QualityReport(()).to_frame()
    assert empty.schema == QUALITY_REPORT_SCHEMA
    assert empty.height == 0


def test_report_helpers_on_hand_made_checks() -> None:
    ok = QualityCheck(
        "model_fact", "expect_column_values_to_be_unique", "model_oid", True, "x", "y"
    )
    bad = QualityCheck(
        "country_share[origin]",
        "expect_column_sum_to_be_between",
        "share",
        False,
        "UNKNOWN share 0.61",
        "<= 0.5",
    )
    report = QualityReport((ok, bad))
    assert report.success is False
    assert report.failures() == (bad,)
    assert report.summary() == (
        "1 of 2 checks failed: country_share[origin] UNKNOWN share 0.61, expected <= 0.5"
    )


# --- one test per failure kind -------------------------------------------------------------------


def test_duplicate_model_oid_fails() -> None:
    report = _run(model_fact=_set(_model_fact(), "model_oid", 1, "oid1"))
    assert report.success is False
    assert _failed(report) == {("model_fact", "expect_column_values_to_be_unique", "model_oid")}
    assert "model_fact model_oid: 2 duplicated rows (50%), e.g. 'oid1'" in report.summary()
    assert report.summary().startswith(f"1 of {len(report.checks)} checks failed: ")


def test_duplicate_model_id_fails(capfd: pytest.CaptureFixture[str]) -> None:
    report = _run(model_fact=_set(_model_fact(), "model_id", 3, "meta/llama"))
    assert _failed(report) == {("model_fact", "expect_column_values_to_be_unique", "model_id")}
    assert "Calculating Metrics" not in capfd.readouterr().err  # GX progress bars are off


def test_null_uploader_fails() -> None:
    report = _run(model_fact=_set(_model_fact(), "uploader", 2, None))
    assert report.success is False
    assert _failed(report) == {("model_fact", "expect_column_values_to_not_be_null", "uploader")}
    assert "model_fact uploader: 1 null (25%), expected no nulls" in report.summary()


def test_negative_downloads_fail() -> None:
    fact = _model_fact()
    fact = _set(
        _set(_set(fact, "downloads_30d", 0, -5), "downloads_all_time", 1, -6), "likes", 2, -7
    )
    report = _run(model_fact=fact, country_share=_set(_country_share(), "downloads", 5, -1))
    assert report.success is False
    assert _failed(report) == {
        ("model_fact", "expect_column_values_to_be_between", "downloads_30d"),
        ("model_fact", "expect_column_values_to_be_between", "downloads_all_time"),
        ("model_fact", "expect_column_values_to_be_between", "likes"),
        ("country_share[origin]", "expect_column_values_to_be_between", "downloads"),
    }
    summary = report.summary()
    assert "model_fact downloads_30d: 1 row out of range (25%), e.g. -5, expected >= 0" in summary
    assert "model_fact likes: 1 row out of range (25%), e.g. -7, expected >= 0" in summary
    assert "country_share[origin] downloads: 1 row out of range (50%), e.g. -1" in summary


def test_bad_origin_weights_fail() -> None:
    origin = _model_origin()
    origin = _set(origin, "weight", 0, 0.0)  # (0, 1]: 0 is out
    origin = _set(origin, "weight", 1, 1.5)
    origin = _set(origin, "weight_num", 0, 3)  # 3/1 > 1
    origin = _set(origin, "weight_num", 2, 0)  # 0/2
    origin = _set(origin, "weight_den", 3, None)  # not-null only: the pair check skips it
    report = _run(model_origin=origin)
    assert _failed(report) == {
        ("model_origin", "expect_column_values_to_be_between", "weight"),
        ("model_origin", "expect_column_values_to_be_between", "weight_num"),
        ("model_origin", "expect_column_values_to_not_be_null", "weight_den"),
        (
            "model_origin",
            "expect_column_pair_values_a_to_be_greater_than_b",
            "weight_den, weight_num",
        ),
    }
    summary = report.summary()
    assert "model_origin weight: 2 rows out of range (40%), e.g. 0, 1.5, expected > 0 and <= 1" in (
        summary
    )
    assert (
        "model_origin weight_den, weight_num: 1 row out of order (20%), e.g. (1, 3), "
        "expected weight_den >= weight_num"
    ) in summary


def test_unknown_bucket_code_fails() -> None:
    fact = _set(_set(_model_fact(), "uploader_bucket", 1, "XX"), "uploader_bucket", 0, "us")
    report = _run(
        model_fact=fact,
        model_origin=_set(_model_origin(), "origin_bucket", 1, "XX"),
        country_share=_set(_country_share(), "bucket", 1, "XX"),
    )
    assert report.success is False
    assert _failed(report) == {
        ("model_fact", "expect_column_values_to_be_in_set", "uploader_bucket"),
        ("model_origin", "expect_column_values_to_be_in_set", "origin_bucket"),
        ("country_share[uploader]", "expect_column_values_to_be_in_set", "bucket"),
    }
    summary = report.summary()
    n = len(known_buckets())
    assert (
        f"model_fact uploader_bucket: 2 rows not in set (50%), e.g. 'us', 'XX', "
        f"expected in known_buckets ({n} codes)"
    ) in summary  # lower case is not a known code either
    assert "model_origin origin_bucket: 1 row not in set (20%), e.g. 'XX'" in summary
    assert "country_share[uploader] bucket: 1 row not in set (25%), e.g. 'XX'" in summary


def test_row_count_below_floor_fails() -> None:
    # 4 rows; previous 5 and at most 5% drop -> floor ceil(4.75) = 5.
    report = _run(thresholds=GateThresholds(5, 0.05, 0.5))
    assert report.success is False
    assert _failed(report) == {("model_fact", "expect_table_row_count_to_be_between", None)}
    # The drop, the setting that allows it, and how to accept a genuine one.
    assert (
        "model_fact table: 4 rows (20% fewer), expected >= 5 (previous 5 - "
        "HUBSHARE_MAX_ROW_DROP 5%) (if the drop is genuine, accept it: "
        "`HUBSHARE_MAX_ROW_DROP=0.21 hubshare run --date <date>`"
    ) in report.summary()
    assert GateThresholds(5, 0.21, 0.5).min_row_count == 4  # what that value lets through


def test_bounds_are_inclusive() -> None:
    # 4 rows, floor ceil(4 * 0.8) = 4; uploader UNKNOWN share 0.1875, ceiling 0.1875.
    report = _run(thresholds=GateThresholds(4, 0.2, 0.1875))
    assert report.success, report.summary()


def test_no_previous_snapshot_has_no_row_floor() -> None:
    first_run = _run(
        model_fact=_model_fact().head(1),
        model_origin=_model_origin().head(1),
        thresholds=GateThresholds(None, 0.05, 0.5),
    )
    assert first_run.success, first_run.summary()
    rows = [c for c in first_run.checks if c.expectation == "expect_table_row_count_to_be_between"]
    assert [(r.observed, r.expected) for r in rows] == [
        ("no previous snapshot (1 row)", "no floor")
    ]


def test_shares_not_summing_to_one_fail() -> None:
    shares = _set(_set(_country_share(), "share", 5, 0.3), "share_low", 5, 0.3)
    report = _run(country_share=shares)  # origin sums to 0.95625
    assert report.success is False
    assert _failed(report) == {
        ("country_share[origin]", "expect_column_sum_to_be_between", "share")
    }
    assert "country_share[origin] share sum 0.95625, expected 1 ± 1e-09" in report.summary()


def test_share_sum_tolerance_is_1e_9() -> None:
    # uploader view off by 5e-10 (passes), origin view off by 1.5e-9 (fails).
    shares = (
        _country_share()
        .with_columns(
            pl.when(pl.col("bucket") == "FR")
            .then(
                pl.col("share")
                + pl.when(pl.col("attribution") == "origin").then(1.5e-9).otherwise(5e-10)
            )
            .otherwise(pl.col("share"))
            .alias("share")
        )
        .with_columns(pl.max_horizontal("share", "share_high").alias("share_high"))
    )
    report = _run(country_share=shares)
    assert _failed(report) == {
        ("country_share[origin]", "expect_column_sum_to_be_between", "share")
    }
    assert "country_share[origin] share sum 1.0000000015, expected 1 ± 1e-09" in report.summary()


def test_unknown_share_above_ceiling_fails() -> None:
    report = _run(thresholds=GateThresholds(4, 0.05, 0.1))  # uploader UNKNOWN share is 0.1875
    assert report.success is False
    assert _failed(report) == {
        ("country_share[uploader]", "expect_column_sum_to_be_between", "share")
    }
    assert "country_share[uploader] UNKNOWN share 0.1875, expected <= 0.1" in report.summary()


def test_missing_view_fails() -> None:
    report = _run(country_share=_country_share().filter(pl.col("attribution") == "uploader"))
    assert report.success is False
    assert _failed(report) == {
        ("country_share", "expect_column_distinct_values_to_contain_set", "attribution")
    }
    assert (
        "country_share attribution: origin missing, expected uploader and origin present"
        in report.summary()
    )
    assert "country_share[origin]" not in {c.suite for c in report.checks}


def test_unexpected_attribution_value_fails() -> None:
    report = _run(country_share=_set(_country_share(), "attribution", 0, "Uploader"))
    failed = _failed(report)
    assert ("country_share", "expect_column_values_to_be_in_set", "attribution") in failed


def test_missing_column_is_a_failed_check_not_a_crash() -> None:
    report = _run(model_fact=_model_fact().drop("uploader_bucket"))
    assert report.success is False
    failed = [c for c in report.failures() if c.column == "uploader_bucket"]
    assert {c.expectation for c in failed} == {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_in_set",
    }
    assert [c.observed for c in failed] == [
        'error: The column "uploader_bucket" in BatchData does not exist.'
    ] * 2


def test_invalid_suite_expectation_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import tasks.quality

    def broken(name: str) -> dict[str, Any]:
        suite = load_suite(name)
        suite["expectations"].append({"type": "expect_no_such_thing", "kwargs": {}})
        return suite

    monkeypatch.setattr(tasks.quality, "load_suite", broken)
    with pytest.raises(ValueError, match="not valid GX"):
        _run()


# --- thresholds ----------------------------------------------------------------------------------


def test_row_floor_is_ceil_without_float_noise() -> None:
    assert GateThresholds(None, 0.05, 0.5).min_row_count == 0
    assert GateThresholds(1000, 0.05, 0.5).min_row_count == 950
    assert GateThresholds(5, 0.05, 0.5).min_row_count == 5
    assert GateThresholds(150, 0.18, 0.5).min_row_count == 123  # 150 * 0.82 = 123.00000000000001


@pytest.mark.parametrize(
    ("previous", "drop", "unknown"), [(-1, 0.05, 0.5), (10, 1.5, 0.5), (10, 0.05, -0.1)]
)
def test_thresholds_reject_nonsense(previous: int, drop: float, unknown: float) -> None:
    with pytest.raises(ValueError):
        GateThresholds(previous, drop, unknown)


# --- suites and reference values -----------------------------------------------------------------

RELIED_ON: dict[str, set[tuple[str, str | None]]] = {
    "model_fact": {
        ("expect_column_values_to_be_unique", "model_oid"),
        ("expect_column_values_to_be_unique", "model_id"),
        ("expect_column_values_to_not_be_null", "model_oid"),
        ("expect_column_values_to_not_be_null", "model_id"),
        ("expect_column_values_to_not_be_null", "uploader"),
        ("expect_column_values_to_not_be_null", "downloads_30d"),
        ("expect_column_values_to_not_be_null", "uploader_bucket"),
        ("expect_column_values_to_be_between", "downloads_30d"),
        ("expect_column_values_to_be_between", "downloads_all_time"),
        ("expect_column_values_to_be_between", "likes"),
        ("expect_column_values_to_be_in_set", "uploader_bucket"),
        ("expect_table_row_count_to_be_between", None),
    },
    "model_origin": {
        ("expect_column_values_to_not_be_null", "model_oid"),
        ("expect_column_values_to_not_be_null", "origin_org"),
        ("expect_column_values_to_not_be_null", "origin_bucket"),
        ("expect_column_values_to_not_be_null", "weight"),
        ("expect_column_values_to_not_be_null", "weight_num"),
        ("expect_column_values_to_not_be_null", "weight_den"),
        ("expect_column_values_to_be_in_set", "origin_bucket"),
        ("expect_column_values_to_be_between", "weight"),
        ("expect_column_values_to_be_between", "weight_num"),
        ("expect_column_values_to_be_between", "weight_den"),
        ("expect_column_pair_values_a_to_be_greater_than_b", None),
    },
    "country_share": {
        ("expect_column_distinct_values_to_contain_set", "attribution"),
        ("expect_column_values_to_be_unique", "bucket"),
        ("expect_column_values_to_be_in_set", "bucket"),
        ("expect_column_values_to_be_between", "downloads"),
        ("expect_column_values_to_be_between", "share"),
        ("expect_column_sum_to_be_between", "share"),
    },
}


def _parameters(node: Any) -> set[str]:
    if isinstance(node, dict):
        if "$PARAMETER" in node:
            return {node["$PARAMETER"]}
        return set().union(*(_parameters(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_parameters(v) for v in node))
    return set()


@pytest.mark.parametrize("name", SUITE_NAMES)
def test_suite_json_loads_and_holds_the_relied_on_expectations(name: str) -> None:
    suite = load_suite(name)
    assert suite["name"] == name
    assert suite["meta"]["notes"]["content"], "meta.notes must say what the suite protects"
    kinds = {(e["type"], e["kwargs"].get("column")) for e in suite["expectations"]}
    assert RELIED_ON[name] <= kinds
    assert _parameters(suite) <= {"known_buckets", "min_row_count", "max_unknown_share"}
    assert load_suite(name) is not suite  # a fresh copy each call


def test_suite_parameters_and_bounds_in_json() -> None:
    fact = load_suite("model_fact")["expectations"]
    in_set = [e for e in fact if e["type"] == "expect_column_values_to_be_in_set"]
    assert in_set[0]["kwargs"]["value_set"] == {"$PARAMETER": "known_buckets"}
    rows = [e for e in fact if e["type"] == "expect_table_row_count_to_be_between"]
    assert rows[0]["kwargs"]["min_value"] == {"$PARAMETER": "min_row_count"}
    share = load_suite("country_share")["expectations"]
    unknown = [e for e in share if "row_condition" in e["kwargs"]]
    assert len(unknown) == 1
    assert unknown[0]["kwargs"]["max_value"] == {"$PARAMETER": "max_unknown_share"}
    assert unknown[0]["kwargs"]["row_condition"]["parameter"] == "UNKNOWN"
    sums = [
        e
        for e in share
        if e["type"] == "expect_column_sum_to_be_between" and "row_condition" not in e["kwargs"]
    ]
    assert sums[0]["kwargs"]["min_value"] == pytest.approx(1 - 1e-9, abs=1e-15)
    assert sums[0]["kwargs"]["max_value"] == pytest.approx(1 + 1e-9, abs=1e-15)


@pytest.mark.parametrize("name", SUITE_NAMES)
def test_suite_json_is_what_gx_writes(name: str) -> None:
    """The files are `ExpectationSuite.to_json_dict()` output: GX parses them without loss."""
    import great_expectations as gx

    gx.get_context(mode="ephemeral")  # an ExpectationSuite needs a current context
    raw = load_suite(name)
    suite = gx.ExpectationSuite(**raw)
    assert len(suite.expectations) == len(raw["expectations"])
    assert json.loads(json.dumps(suite.to_json_dict())) == raw
    on_disk = suite_path(name).read_text(encoding="utf-8")
    assert on_disk == json.dumps(raw, indent=2) + "\n"  # stable, reviewable formatting


def test_importing_the_gate_does_not_import_gx() -> None:
    code = (
        "import sys, tasks.quality, schemas.quality; "
        "assert 'great_expectations' not in sys.modules; assert 'pandas' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_load_suite_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown expectation suite"):
        load_suite("nope")


def test_known_buckets() -> None:
    buckets = known_buckets()
    assert buckets == sorted(set(buckets))
    assert {"US", "FR", "CN", "TW", "INTL", "UNKNOWN"} <= set(buckets)
    assert len(buckets) == len(pycountry.countries) + 2
    assert all(len(b) == 2 and b.isupper() for b in buckets if b not in {"INTL", "UNKNOWN"})
    buckets.append("XX")  # callers get a copy
    assert "XX" not in known_buckets()


def test_a_share_outside_its_range_fails() -> None:
    report = _run(country_share=_set(_country_share(), "share_high", 0, 0.49))
    assert report.success is False
    assert _failed(report) == {
        (
            "country_share[uploader]",
            "expect_column_pair_values_a_to_be_greater_than_b",
            "share_high, share",
        )
    }


# --- the polars pre-check gives GX's report -----------------------------------------------------


def _nan(frame: pl.DataFrame, column: str, row: int) -> pl.DataFrame:
    return _set(frame, column, row, float("nan"))


def _many_buckets(n: int) -> pl.DataFrame:
    """Both views with `n` country buckets each of uneven shares: a sum whose float rounding
    depends on the order of its additions (numpy's pairwise sum, as pandas and so GX add)."""
    codes = [b for b in known_buckets() if b not in ("INTL", "UNKNOWN")][: n - 1] + ["UNKNOWN"]
    downloads = [(7919 * i) % 1013 + 1 for i in range(n)]
    total = sum(downloads)
    shares = [d / total for d in downloads]
    return pl.DataFrame(
        {
            "attribution": ["uploader"] * n + ["origin"] * n,
            "bucket": codes * 2,
            "downloads": downloads * 2,
            "share": shares * 2,
            "share_low": shares * 2,
            "share_high": shares * 2,
        },
        schema=VIEW_SHARE_SCHEMA,
    )


#: Frames the pre-check must not wave through wrongly: nulls, NaNs, duplicated nulls, ties,
#: bounds met exactly, odd dtypes, missing columns and empty frames.
PRECHECK_CASES: dict[str, dict[str, pl.DataFrame]] = {
    "clean": {},
    "duplicated model_oid": {"model_fact": _set(_model_fact(), "model_oid", 1, "oid1")},
    "two null model_ids": {
        "model_fact": _set(_set(_model_fact(), "model_id", 1, None), "model_id", 2, None)
    },
    "null and negative counters": {
        "model_fact": _set(_set(_model_fact(), "downloads_30d", 0, None), "likes", 1, -1)
    },
    "unknown buckets": {"model_fact": _set(_model_fact(), "uploader_bucket", 0, "us")},
    "NaN weight": {"model_origin": _nan(_model_origin(), "weight", 0)},
    "weight 0 and 1": {"model_origin": _set(_model_origin(), "weight", 0, 0.0)},
    "null weight_den": {"model_origin": _set(_model_origin(), "weight_den", 3, None)},
    "float weights as text": {
        "model_origin": _model_origin().with_columns(pl.col("weight").cast(pl.String))
    },
    "NaN share": {"country_share": _nan(_country_share(), "share", 0)},
    "null share_low": {"country_share": _set(_country_share(), "share_low", 1, None)},
    "share_high below share": {"country_share": _set(_country_share(), "share_high", 4, 0.5)},
    "duplicated bucket": {"country_share": _set(_country_share(), "bucket", 1, "US")},
    "missing column": {"model_fact": _model_fact().drop("uploader_bucket", "likes")},
    "empty frames": {"model_fact": _model_fact().head(0), "model_origin": _model_origin().head(0)},
    "fewer rows than the floor": {"model_fact": _model_fact().head(3)},
    "a view missing": {"country_share": _country_share().filter(pl.col("attribution") == "origin")},
    "shares summing past one": {"country_share": _set(_country_share(), "share", 5, 0.35)},
    "UNKNOWN above its ceiling": {"country_share": _set(_country_share(), "share", 2, 0.51)},
    "a null bucket": {"country_share": _set(_country_share(), "bucket", 2, None)},
    "integer shares": {
        "country_share": _country_share().with_columns(
            pl.col("share").round(0).cast(pl.Int64).cast(pl.Float64).alias("share_low")
        )
    },
    "200 buckets": {"country_share": _many_buckets(200)},
}


@pytest.mark.parametrize("case", PRECHECK_CASES)
def test_the_precheck_gives_the_report_gx_gives(case: str) -> None:
    frames = PRECHECK_CASES[case]
    args = (
        frames.get("model_fact", _model_fact()),
        frames.get("model_origin", _model_origin()),
        frames.get("country_share", _country_share()),
        THRESHOLDS,
    )
    assert check_quality(*args).checks == check_quality(*args, precheck=False).checks


def test_the_precheck_proves_every_expectation_of_clean_frames() -> None:
    """On clean frames nothing is left to GX."""
    from tasks.quality import _precheck

    parameters = {"known_buckets": known_buckets(), "min_row_count": 4, "max_unknown_share": 0.5}
    shares = _country_share()
    frames = {
        "model_fact": _model_fact(),
        "model_origin": _model_origin(),
        "country_share": shares,
        "country_share[uploader]": shares.filter(pl.col("attribution") == "uploader"),
        "country_share[origin]": shares.filter(pl.col("attribution") == "origin"),
    }

    def per_frame(name: str) -> list[dict[str, Any]]:
        expectations: list[dict[str, Any]] = load_suite(name.split("[")[0])["expectations"]
        if name.startswith("country_share"):  # whole-frame checks once, the others per view
            all_views = name == "country_share"
            return [e for e in expectations if ("scope" in e.get("meta", {})) is all_views]
        return expectations

    left_to_gx = {
        (name.split("[")[0], e["type"])
        for name, frame in frames.items()
        for e in per_frame(name)
        if _precheck(frame, e, parameters) is None
    }
    assert left_to_gx == set()


def test_a_clean_gate_does_not_import_gx_and_a_failing_one_does() -> None:
    """great_expectations costs seconds to import: only a check the pre-check cannot prove
    passed loads it (the report is GX's either way, as the tests above compare)."""
    code = (
        "import sys; sys.path.insert(0, 'tests'); "
        "from test_quality import _run, _set, _model_fact; "
        "assert _run().success; assert 'great_expectations' not in sys.modules; "
        "assert not _run(_set(_model_fact(), 'likes', 0, -1)).success; "
        "assert 'great_expectations' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
