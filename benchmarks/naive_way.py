"""The two reference processes of `bench_side_by_side.py`.

    python benchmarks/naive_way.py floor URL        # follow the page chain, read the bytes
    python benchmarks/naive_way.py naive URL DB     # list_models -> pandas -> ORM -> group-by

The naive way is what a first script does: every model object through `HfApi.list_models`, a
pandas frame, one ORM object per model committed to SQLite, then a group-by of downloads by the
uploader's country from the same mapping file (no lineage, no gate, no versions).
"""

from __future__ import annotations

import sys
from urllib.parse import urlencode

import httpx

from schemas.frames import EXPAND_FIELDS  # (polars, 0.3 s: the floor stays near-bare)


def floor(url: str) -> None:
    params = [("limit", 1000), ("sort", "createdAt")] + [("expand", f) for f in EXPAND_FIELDS]
    next_url: str | None = f"{url}/api/models?{urlencode(params)}"
    pages = 0
    with httpx.Client(timeout=60) as client:
        while next_url:
            response = client.get(next_url)
            response.raise_for_status()
            _ = response.content
            pages += 1
            link = response.links.get("next")
            next_url = link["url"] if link else None
    print(f"{pages} pages", file=sys.stderr)


def naive(url: str, db: str) -> None:
    import pandas as pd
    from huggingface_hub import HfApi
    from sqlmodel import Field, Session, SQLModel, create_engine

    from hubshare.settings import DEFAULT_MAPPING

    class Model(SQLModel, table=True):
        id: str = Field(primary_key=True)
        author: str | None = None
        downloads: int | None = None
        downloads_all_time: int | None = None
        likes: int | None = None
        pipeline_tag: str | None = None
        library_name: str | None = None

    api = HfApi(endpoint=url)
    fields = list(EXPAND_FIELDS)
    rows = [
        {
            "id": m.id,
            "author": m.author,
            "downloads": m.downloads,
            "downloads_all_time": getattr(m, "downloads_all_time", None),
            "likes": m.likes,
            "pipeline_tag": m.pipeline_tag,
            "library_name": m.library_name,
        }
        for m in api.list_models(expand=fields)  # type: ignore[arg-type]
    ]
    frame = pd.DataFrame(rows)
    engine = create_engine(f"sqlite:///{db}")
    SQLModel.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all(
            Model(**{str(k): v for k, v in row.items()}) for row in frame.to_dict("records")
        )
        session.commit()
    mapping = pd.read_csv(DEFAULT_MAPPING)[["org", "country"]]
    mapping["org"] = mapping["org"].str.lower()
    frame["org"] = frame["author"].str.lower()
    joined = frame.merge(mapping, on="org", how="left").fillna({"country": "UNKNOWN"})
    shares = joined.groupby("country")["downloads"].sum() / joined["downloads"].sum()
    print(shares.sort_values(ascending=False).head(3).to_string(), file=sys.stderr)


if __name__ == "__main__":
    if sys.argv[1] == "floor":
        floor(sys.argv[2])
    else:
        naive(sys.argv[2], sys.argv[3])
