"""Enrichment and shares on hand-computed fixtures (methodology.md, "Views" and "Buckets")."""

from __future__ import annotations

import random
from datetime import date
from fractions import Fraction
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from hubshare.storage import DataStore
from schemas.frames import WIRE_SCHEMA
from tasks.enrich import MAX_DEPTH, attribute_origin, attribute_uploader, parse_lineage
from tasks.mapping import load_mapping
from tasks.shares import (
    compute_all_shares,
    compute_shares,
    headline_metric,
    render_share_table,
)
from tasks.snapshot import describe_snapshot, finalise_snapshot, snapshot_key
from tests.conftest import HAND_MAPPING

# Hand-computed from tests/fixtures/hand_models.jsonl (see the comments there by model):
# uploader view: CN = Qwen 1000 + deepseek-ai 500; US = meta-llama 800 + cmu-lti 40;
# INTL = bartowski 300 + TheBloke 200 + hobbyist 10; UNKNOWN = randomuser 90 + 70.
EXPECTED_UPLOADER = {"CN": 1500, "US": 840, "INTL": 510, "UNKNOWN": 160}
# origin view: Qwen 1000 + 300 (quantized) + 30 (1/3 of the merge) + 70 (base gone, namespace
# `qwen`) + 10/3 (hobbyist's finetune of the merge) = 1403 1/3, meta-llama 833 1/3,
# mistralai 33 1/3 (absent base, by namespace), deepseek-ai 500 + 200 (quantized copy; the
# distillation stays Chinese: rule 2), cmu-lti 40 (developer org, rule 2). Largest remainder
# gives the spare download to "Qwen" (ties broken by name).
EXPECTED_ORIGIN_ORGS = {
    "Qwen": 1404,
    "meta-llama": 833,
    "mistralai": 33,
    "deepseek-ai": 700,
    "cmu-lti": 40,
}
EXPECTED_ORIGIN = {"CN": 2104, "US": 873, "FR": 33}
TOTAL = 3010
DAY = date(2024, 1, 15)  # the date the hand-made snapshot stands for


def snapshot_of(models: list[dict[str, Any]], tmp_path: Path) -> pl.DataFrame:
    listed = (
        pl.LazyFrame(pl.DataFrame(models, schema=WIRE_SCHEMA, strict=False))
        .with_row_index("_order")
        .with_columns(pl.col("_order").cast(pl.Int64))
    )
    day = date(2024, 7, 1)
    finalise_snapshot(
        listed,
        DataStore.open(tmp_path),
        day,
        lambda counts, sha: describe_snapshot(day, sha, counts, "test", "models"),
    )
    return pl.read_parquet(tmp_path / snapshot_key(day))


def attribute(models: list[dict[str, Any]], tmp_path: Path, mapping: Path = HAND_MAPPING):
    snapshot = snapshot_of(models, tmp_path)
    frame = load_mapping(mapping).on(DAY)
    fact = attribute_uploader(snapshot, frame)
    origin, report = attribute_origin(snapshot, fact, frame)
    return fact, origin, report


def as_dict(frame: pl.DataFrame, attribution: str, key: str = "bucket") -> dict[str, int]:
    return dict(frame.filter(pl.col("attribution") == attribution).select(key, "downloads").rows())


def test_hand_fixture_shares_both_views(hand_models, tmp_path):
    fact, origin, _ = attribute(hand_models, tmp_path)
    countries, orgs = compute_shares(fact, origin)
    assert as_dict(countries, "uploader") == EXPECTED_UPLOADER
    assert as_dict(countries, "origin") == EXPECTED_ORIGIN
    assert as_dict(orgs, "origin", "org") == EXPECTED_ORIGIN_ORGS
    for view in ("uploader", "origin"):
        rows = countries.filter(pl.col("attribution") == view)
        assert rows["downloads"].sum() == TOTAL
        assert rows["share"].sum() == pytest.approx(1.0, abs=1e-12)
    cn_origin = countries.filter((pl.col("attribution") == "origin") & (pl.col("bucket") == "CN"))
    assert cn_origin["share"][0] == pytest.approx(2104 / 3010)


def test_shares_are_the_same_whatever_order_the_frames_come_in(hand_models, tmp_path):
    """A run's frames in model order are matched by position, others by joins: both agree
    (merges included), and so do models the metric does not list."""
    fact, origin, _ = attribute(hand_models, tmp_path)
    in_order = compute_shares(fact, origin)
    shuffled = [frame.sample(fraction=1.0, shuffle=True, seed=3) for frame in (fact, origin)]
    assert fact["model_oid"].to_list() != shuffled[0]["model_oid"].to_list()
    for got, expected in zip(compute_shares(*shuffled), in_order, strict=True):
        assert got.equals(expected)
    fewer = headline_metric(fact).slice(1)  # a metric without the first model
    dropped = fact.slice(0, 1).select("model_oid")
    by_joins = compute_shares(fact.slice(1), origin.join(dropped, on="model_oid", how="anti"))
    for got, expected in zip(compute_shares(fact, origin, fewer), by_joins, strict=True):
        assert got.equals(expected)


def test_share_table_text_is_canonical(hand_models, tmp_path):
    snapshot = snapshot_of(hand_models, tmp_path)
    fact, origin, _ = attribute(hand_models, tmp_path)
    countries, _, _, _ = compute_all_shares(DAY, snapshot, fact, origin, {})
    text = render_share_table(countries.sample(fraction=1.0, shuffle=True, seed=7)).decode()
    assert text.splitlines()[:2] == [
        "definition,cohort,attribution,bucket,downloads,share",
        "downloads_30d,all,origin,CN,2104,0.699003322259",
    ]
    assert render_share_table(countries) == text.encode()


def test_private_models_never_count(hand_models, tmp_path):
    fact, _, _ = attribute(hand_models, tmp_path)
    assert "Qwen/secret" not in fact["model_id"].to_list()
    assert fact.height == 9


def test_merge_weights_are_exact(hand_models, tmp_path):
    _, origin, report = attribute(hand_models, tmp_path)
    hobbyist = origin.filter(pl.col("model_oid") == hand_models[8]["_id"])
    assert sorted(hobbyist["origin_org"]) == ["Qwen", "meta-llama", "mistralai"]
    assert set(zip(hobbyist["weight_num"], hobbyist["weight_den"], strict=True)) == {(1, 3)}
    per_model = origin.group_by("model_oid").agg(
        (pl.col("weight_num") / pl.col("weight_den")).sum().alias("total")
    )
    assert per_model["total"].to_list() == pytest.approx([1.0] * per_model.height)
    assert report.bases_by_namespace == 2 and report.merges == 1 and report.quantized == 2


def model(i: int, mid: str, downloads: int, tags: list[str] | None = None) -> dict[str, Any]:
    return {
        "_id": f"{i:024x}",
        "id": mid,
        "author": mid.split("/")[0],
        "downloads": downloads,
        "tags": tags or [],
        "private": False,
    }


def test_lookup_is_case_insensitive_after_exact(tmp_path):
    fact, _, _ = attribute(
        [model(1, "qwen/lower-case-author", 5), model(2, "QWEN/upper", 7)], tmp_path
    )
    assert fact["uploader_bucket"].to_list() == ["CN", "CN"]


def test_cycle_ends_at_the_model_where_it_closes(tmp_path):
    models = [
        model(1, "a/x", 10, ["base_model:finetune:b/y"]),
        model(2, "b/y", 20, ["base_model:finetune:a/x"]),
    ]
    _, origin, report = attribute(models, tmp_path)
    assert report.cycles >= 1
    assert origin["weight"].sum() == pytest.approx(2.0)
    assert set(origin["origin_org"]) <= {"a", "b"}


def test_depth_is_capped(tmp_path):
    chain = [model(0, "Qwen/root", 1)]
    chain += [
        model(
            i,
            f"u{i}/m",
            1,
            [f"base_model:finetune:u{i - 1}/m" if i > 1 else "base_model:finetune:Qwen/root"],
        )
        for i in range(1, MAX_DEPTH + 5)
    ]
    _, origin, report = attribute(chain, tmp_path)
    assert report.depth_capped >= 1
    deepest = origin.filter(pl.col("model_oid") == chain[-1]["_id"])
    assert deepest["origin_org"].to_list() != ["Qwen"]  # too deep to reach the root
    shallow = origin.filter(pl.col("model_oid") == chain[3]["_id"])
    assert shallow["origin_org"].to_list() == ["Qwen"]


def test_lineage_tags_are_parsed(tmp_path):
    snapshot = snapshot_of(
        [
            model(
                1,
                "x/q",
                1,
                [
                    "base_model:Org/A",
                    "base_model:quantized:org/a",
                    "base_model:merge:Org/B",
                    "license:mit",
                ],
            )
        ],
        tmp_path,
    )
    row = parse_lineage(snapshot).row(0, named=True)
    assert row["base_lower"] == ["org/a", "org/b"]
    assert row["base_relation"] == "quantized"


def test_paths_to_one_organisation_add_up_exactly(tmp_path):
    models = [
        model(1, "Qwen/a", 1),
        model(2, "Qwen/b", 1),
        model(
            3,
            "someone/merge",
            6,
            [
                "base_model:merge:Qwen/a",
                "base_model:merge:Qwen/b",
                "base_model:merge:meta-llama/absent",
            ],
        ),
    ]
    _, origin, report = attribute(models, tmp_path)
    merged = origin.filter(pl.col("model_oid") == models[2]["_id"])
    assert merged.select("origin_org", "weight_num", "weight_den").rows() == [
        ("Qwen", 2, 3),
        ("meta-llama", 1, 3),
    ]
    assert (report.bases_in_snapshot, report.bases_by_namespace) == (2, 1)


def test_three_model_cycle(tmp_path):
    models = [
        model(1, "a/x", 1, ["base_model:finetune:b/y"]),
        model(2, "b/y", 1, ["base_model:finetune:c/z"]),
        model(3, "c/z", 1, ["base_model:finetune:a/x"]),
    ]
    _, origin, report = attribute(models, tmp_path)
    # a/x -> b/y -> c/z -> a/x closes at c/z, which keeps its uploader.
    assert dict(origin.select("model_oid", "origin_org").rows()) == {
        models[0]["_id"]: "c",
        models[1]["_id"]: "a",
        models[2]["_id"]: "b",
    }
    assert report.cycles == 3


def contested_mapping(tmp_path: Path) -> Path:
    """The hand mapping with two contested rows: meta-llama could be British (alt GB), and the
    hobbyist's card could state a US affiliation (alt US)."""
    alternatives = {
        "meta-llama": ("GB", "https://example.org/lab-in-london"),
        "hobbyist": ("US", "https://example.org/paper-affiliation"),
    }
    lines = ["org,country,org_type,org_group,name,source,alt_country,alt_source,notes"]
    for org, country, org_type, name, source, notes in (
        line.split(",") for line in HAND_MAPPING.read_text().splitlines()[1:]
    ):
        alt, alt_source = alternatives.get(org, ("", ""))
        lines.append(",".join([org, country, org_type, "", name, source, alt, alt_source, notes]))
    path = tmp_path / "contested.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_share_ranges_by_hand(hand_models, tmp_path):
    from tasks.mapping import contested_rows

    mapping = load_mapping(contested_mapping(tmp_path)).on(DAY)
    snapshot = snapshot_of(hand_models, tmp_path)
    fact = attribute_uploader(snapshot, mapping)
    origin, _ = attribute_origin(snapshot, fact, mapping)
    countries, _, _, _ = compute_all_shares(
        DAY, snapshot, fact, origin, {}, contested_rows(mapping)
    )
    headline = countries.filter(
        (pl.col("definition") == "downloads_30d") & (pl.col("cohort") == "all")
    )
    ranges = {
        (view, bucket): (downloads, low * TOTAL, high * TOTAL)
        for view, bucket, downloads, low, high in headline.select(
            "attribution", "bucket", "downloads", "share_low", "share_high"
        ).rows()
    }
    # Uploader view (UNKNOWN = 160 may be anyone's): US loses meta-llama's 800 at worst and
    # gains the hobbyist's 10 at best; GB has nothing of its own but could hold meta-llama's 800.
    expected = {
        ("uploader", "CN"): (1500, 1500, 1500 + 160),
        ("uploader", "US"): (840, 840 - 800, 840 + 10 + 160),
        ("uploader", "GB"): (0, 0, 800 + 160),
        ("uploader", "INTL"): (510, 510 - 10, 510 + 160),
        ("uploader", "UNKNOWN"): (160, 160, 160),
        # Origin view: meta-llama's 833 (its models and its share of the merges) may be British;
        # no UNKNOWN downloads and the hobbyist's model goes to its bases.
        ("origin", "CN"): (2104, 2104, 2104),
        ("origin", "US"): (873, 873 - 833, 873),
        ("origin", "GB"): (0, 0, 833),
        ("origin", "FR"): (33, 33, 33),
    }
    assert set(ranges) == set(expected)
    for key, (downloads, low, high) in expected.items():
        assert ranges[key][0] == downloads, key
        assert ranges[key][1:] == (pytest.approx(low), pytest.approx(high)), key
    # The shares themselves do not depend on the alternatives; only their ranges do (and a
    # bucket that only an alternative reaches is listed, with 0 downloads).
    plain = load_mapping(HAND_MAPPING).on(DAY)
    fact_plain = attribute_uploader(snapshot, plain)
    origin_plain, _ = attribute_origin(snapshot, fact_plain, plain)
    without, _, _, _ = compute_all_shares(DAY, snapshot, fact_plain, origin_plain, {})
    assert without.drop("share_low", "share_high").equals(
        countries.filter(pl.col("bucket") != "GB").drop("share_low", "share_high")
    )


def walk_by_hand(models: list[dict[str, Any]], developers: set[str]) -> dict[str, Any]:
    """The origin rules of methodology.md one model and one path at a time, in plain Python:
    what the polars walk must give. Ids here are unique whatever their case."""
    by_lower = {m["id"].lower(): m for m in models}
    spelling = {m["author"].lower(): m["author"] for m in models}
    mapped = [line.split(",")[0] for line in HAND_MAPPING.read_text().splitlines()[1:]]
    spelling |= {org.lower(): org for org in mapped}  # the mapping's spelling first

    def bases(m: dict[str, Any]) -> list[str]:
        tags = [t.removeprefix("base_model:") for t in m["tags"] if t.startswith("base_model:")]
        return sorted({t.split(":")[-1].lower() for t in tags})

    def follows(m: dict[str, Any]) -> bool:
        quantized = any(t.startswith("base_model:quantized:") for t in m["tags"])
        return quantized or m["author"].lower() not in {d.lower() for d in developers}

    met: dict[str, set[str]] = {"listed": set(), "namespace": set(), "unresolvable": set()}
    capped: set[str] = set()
    cycles: set[str] = set()
    origins: dict[str, dict[str, Fraction]] = {}
    for m in models:
        weights: dict[str, Fraction] = {}

        def add(org: str, weight: Fraction, weights: dict[str, Fraction] = weights) -> None:
            org = spelling.get(org.lower(), org)
            weights[org] = weights.get(org, Fraction(0)) + weight

        def visit(cur: str, parent: str, path: list[str], depth: int, weight: Fraction) -> None:
            node = by_lower.get(cur)
            if cur in path:
                cycles.add(path[0])
                add(parent, weight)
            elif node is not None and bases(node) and follows(node) and depth >= MAX_DEPTH:
                met["listed"].add(cur)
                capped.add(path[0])
                add(node["author"], weight)
            elif node is not None and bases(node) and follows(node):
                met["listed"].add(cur)
                for base in bases(node):
                    visit(base, node["author"], [*path, cur], depth + 1, weight / len(bases(node)))
            elif node is not None:
                met["listed"].add(cur)
                add(node["author"], weight)
            elif "/" in cur:
                met["namespace"].add(cur)
                add(cur.split("/")[0], weight)
            else:
                met["unresolvable"].add(cur)
                add(parent, weight)

        if bases(m) and follows(m):
            for base in bases(m):
                visit(base, m["author"], [m["id"].lower()], 1, Fraction(1, len(bases(m))))
        else:
            add(m["author"], Fraction(1))
        origins[m["_id"]] = weights
    return {"origins": origins, "met": met, "capped": capped, "cycles": cycles}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_walk_gives_what_the_rules_give_by_hand(tmp_path, seed):
    """Random lineages (merges, quantized copies, cycles, chains past the depth cap, bases
    absent with and without a namespace, ids in another case) walked by polars and by hand."""
    rng = random.Random(seed)
    # The hand mapping's developer organisations (companies and academia with a country).
    developers = {"Qwen", "meta-llama", "deepseek-ai", "mistralai", "cmu-lti"}
    namespaces = ["Qwen", "meta-llama", "TheBloke", "bartowski", *(f"u{n}" for n in range(8))]
    ids = [f"{rng.choice(namespaces)}/m{n}" for n in range(300)]
    ids += [f"chain/c{n}" for n in range(MAX_DEPTH + 3)] + ["loop/a", "loop/b"]
    elsewhere = ["ghost/gone", "Qwen/deleted", "bert-base", "gpt2"]
    models = []
    for n, mid in enumerate(ids):
        tags = ["transformers"]
        if mid.startswith("loop/"):
            tags.append("base_model:finetune:" + ("loop/b" if mid == "loop/a" else "LOOP/A"))
        elif mid.startswith("chain/"):
            below = int(mid.removeprefix("chain/c")) - 1
            tags.append(
                f"base_model:finetune:chain/c{below}" if below >= 0 else "base_model:Qwen/x"
            )
        elif rng.random() < 0.6:
            relation = rng.choice(["", "finetune:", "quantized:", "adapter:", "merge:"])
            for _ in range(2 if relation == "merge:" else 1):
                base = rng.choice(ids if rng.random() < 0.85 else elsewhere)
                base = base.upper() if rng.random() < 0.2 else base
                tags.append(f"base_model:{relation}{base}")
        models.append(model(n, mid, n % 7, tags))
    expected = walk_by_hand(models, developers)
    _, origin, report = attribute(models, tmp_path)
    got: dict[str, dict[str, Fraction]] = {}
    for oid, org, num, den in origin.select(
        "model_oid", "origin_org", "weight_num", "weight_den"
    ).iter_rows():
        got.setdefault(oid, {})[org] = Fraction(num, den)
    assert got == expected["origins"]
    assert report.bases_in_snapshot == len(expected["met"]["listed"])
    assert report.bases_by_namespace == len(expected["met"]["namespace"])
    assert report.bases_unresolvable == len(expected["met"]["unresolvable"])
    assert (report.depth_capped, report.cycles) == (
        len(expected["capped"]),
        len(expected["cycles"]),
    )
    assert report.depth_capped and report.cycles and report.bases_unresolvable


def test_facts_keep_their_columns_in_the_snapshots_chunks(hand_models, tmp_path):
    """A snapshot read in row groups comes in chunks: the looked-up columns are cut to the same
    lengths, or the cast to the facts' schema copies every column (550 MB at 3M models)."""
    snapshot = snapshot_of(hand_models, tmp_path)
    chunked = pl.concat([snapshot.slice(0, 4), snapshot.slice(4, 2), snapshot.slice(6)])
    assert chunked.n_chunks() == 3
    frame = load_mapping(HAND_MAPPING).on(DAY)
    fact = attribute_uploader(chunked, frame)
    assert fact.n_chunks("all") == [3] * fact.width
    assert fact.equals(attribute_uploader(snapshot, frame))
