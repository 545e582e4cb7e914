"""A run's frames lined up by position instead of joined on 3M ids.

A run's model frames (snapshot, facts, origins, metrics) list the same models in model_oid
order, so a model's row in one is found by position in another (`model_row_of`); a join would
hash every id and copy the rows it matches, the frames' largest cost at Hub scale.

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


def model_row_of(ids: pl.Series, models: pl.Series) -> pl.Series | None:
    """Each of `ids`' row in `models`, without a join: when `ids` come in runs of one model
    each, in the order of `models` (as attribution writes origins beside facts), the runs are
    the models. None when they do not, for a join to do it."""
    starts = ids.ne_missing(ids.shift(1))
    if not ids.filter(starts).equals(models):
        return None
    return starts.cast(pl.UInt32).cum_sum() - 1
