"""Rebuild ``hub-2024-09-20.jsonl.gz`` from enochlev's ``hf_models.csv`` (see README.md).

Usage::

    uv run python data/samples/build_hub_2024_09_20.py PATH/TO/hf_models.csv [--out FILE]

Deterministic: the same CSV gives the same bytes (lines sorted by ``_id``, compact JSON,
gzip level 9 with mtime 0 and no file name). Standard library only.
"""

from __future__ import annotations

import argparse
import ast
import csv
import gzip
import hashlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

EXPECTED_ROWS = 9_715
EXPECTED_DOWNLOADS = 1_368_390_199
DEFAULT_OUT = Path(__file__).resolve().parent / "hub-2024-09-20.jsonl.gz"


def synthetic_object_id(model_id: str) -> str:
    """First 24 hex chars of sha1(modelId): a stand-in for the Hub's Mongo ``_id``.

    Same rule as ``hubshare.fakehub.synthetic_object_id``.
    """
    return hashlib.sha1(model_id.encode("utf-8"), usedforsecurity=False).hexdigest()[:24]


def iso_z(value: str) -> str:
    """``2023-09-06 14:49:15+00:00`` -> ``2023-09-06T14:49:15.000Z`` (the Hub's format)."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"lastModified without a time zone: {value!r}")
    utc = parsed.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def parse_bool(value: str) -> bool:
    if value not in ("True", "False"):
        raise ValueError(f"private must be 'True' or 'False', got {value!r}")
    return value == "True"


def parse_tags(value: str) -> list[str]:
    tags = ast.literal_eval(value) if value.strip() else []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ValueError(f"tags is not a list of strings: {value[:80]!r}")
    return tags


def to_model(row: dict[str, str]) -> dict[str, Any]:
    model_id = row["modelId"]
    model: dict[str, Any] = {
        "_id": synthetic_object_id(model_id),
        "id": model_id,
        "author": row["author"],
        "downloads": int(row["downloads"]),
        "lastModified": iso_z(row["lastModified"]),
        "tags": parse_tags(row["tags"]),
    }
    if row["pipeline_tag"]:
        model["pipeline_tag"] = row["pipeline_tag"]
    model["private"] = parse_bool(row["private"])
    return model


def build(csv_path: Path) -> tuple[bytes, list[dict[str, Any]]]:
    with csv_path.open(newline="", encoding="utf-8") as fh:
        models = [to_model(row) for row in csv.DictReader(fh)]
    models.sort(key=lambda m: m["_id"])
    ids = [m["_id"] for m in models]
    if len(set(ids)) != len(ids):
        raise ValueError("synthetic _id collision")
    if len({m["id"].lower() for m in models}) != len(models):
        raise ValueError("duplicate modelId (case-insensitive)")
    lines = [json.dumps(m, ensure_ascii=False, separators=(",", ":")) for m in models]
    payload = ("\n".join(lines) + "\n").encode("utf-8")
    return gzip.compress(payload, compresslevel=9, mtime=0), models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path, help="upstream hf_models.csv (commit 0766572)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output .jsonl.gz")
    args = parser.parse_args(argv)

    data, models = build(args.csv)
    downloads = sum(m["downloads"] for m in models)
    if len(models) != EXPECTED_ROWS or downloads != EXPECTED_DOWNLOADS:
        print(
            f"warning: {len(models)} models / {downloads} downloads; expected "
            f"{EXPECTED_ROWS} / {EXPECTED_DOWNLOADS} for the 2024-09-20 file",
            file=sys.stderr,
        )
    args.out.write_bytes(data)
    print(
        f"wrote {args.out}: {len(models)} models, {downloads} downloads, {len(data)} bytes, "
        f"sha256 {hashlib.sha256(data).hexdigest()}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
