"""Columns set beside a frame's own in the same chunks.

polars keeps a frame's columns in chunks; a column computed apart (a join's or a streaming
query's result) usually comes in chunks of other lengths. Put beside the frame's columns as it
is, the next operation that needs the frame's chunks aligned (a cast, a select, a filter before
a load) first copies every column into one chunk: at 3M models, the whole facts again.
"""

from __future__ import annotations

from itertools import accumulate, pairwise

import polars as pl


def in_chunks_of(frame: pl.DataFrame, like: pl.Series) -> pl.DataFrame:
    """`frame` in chunks of the lengths of `like`'s (the same height): one copy of `frame`,
    none of the columns it will be set beside."""
    frame = frame.rechunk()
    offsets = [0, *accumulate(like.chunk_lengths())]
    if len(offsets) <= 2:  # `like` is one chunk (or none), as `frame` now is
        return frame
    return pl.concat(
        [frame.slice(start, end - start) for start, end in pairwise(offsets)], rechunk=False
    )
