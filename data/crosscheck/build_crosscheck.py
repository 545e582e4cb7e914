"""Derive the cross-check tables from the bundled upstream copies (facts only, no code):

- `atom_regions.csv`: hf_org, region of ATOM's `metadata/organization_regions.csv`
  (Interconnects-AI/tracked-models, commit 3cd8020, 2026-08-17, Apache-2.0);
- `epoch_countries.csv`: hf_org, countries (alpha-2, space-separated), organization — every Hub
  namespace that an Epoch AI "Data on AI Models" row links to (CC BY 4.0; exports of Feb 2026
  and Apr 2025), with the countries Epoch gives its organisations ("Multinational" dropped).

Run from the repository root: `uv run python data/crosscheck/build_crosscheck.py`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import pycountry

HERE = Path(__file__).parent
UPSTREAM = HERE.parents[1].parent / "shared" / "data" / "upstream"
EPOCH = (
    ("rauletorresc__llmfit/data/Epoch Database - Notable Models.csv", "Country (of organization)"),
    ("rauletorresc__llmfit/data/large_scale_ai_models.csv", "Country (of organization)"),
    ("simsharmaa__INFSCI1520/all_ai_models.csv", "Country (from Organization)"),
)
NAMES = {"Korea (Republic of)": "KR", "Russia": "RU", "Taiwan": "TW"}


def alpha2(name: str) -> str | None:
    if name in ("", "Multinational"):
        return None
    return NAMES.get(name) or pycountry.countries.lookup(name).alpha_2


def main(out: Path = HERE) -> None:
    atom = pl.read_csv(
        UPSTREAM / "Interconnects-AI__tracked-models/metadata/organization_regions.csv"
    ).select("hf_org", "region")
    atom.sort(pl.col("hf_org").str.to_lowercase()).write_csv(out / "atom_regions.csv")
    rows: dict[str, tuple[set[str], set[str]]] = {}
    for file, column in EPOCH:
        frame = pl.read_csv(UPSTREAM / file, infer_schema_length=0)
        for link, organization, countries in frame.select("Link", "Organization", column).rows():
            for url in (link or "").split(","):
                if "huggingface.co/" not in url:
                    continue
                org = url.split("huggingface.co/", 1)[1].strip().strip("/").split("/")[0]
                if not org or org in ("papers", "spaces", "datasets", "blog", "docs"):
                    continue
                codes, names = rows.setdefault(org, (set(), set()))
                codes.update(c for c in map(alpha2, (countries or "").split(",")) if c)
                names.add(organization or "")
    pl.DataFrame(
        [(org, " ".join(sorted(c)), " | ".join(sorted(n))) for org, (c, n) in rows.items()],
        schema=["hf_org", "countries", "organization"],
        orient="row",
    ).sort(pl.col("hf_org").str.to_lowercase()).write_csv(out / "epoch_countries.csv")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
