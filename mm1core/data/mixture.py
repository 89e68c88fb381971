"""Which stream each training sequence comes from: MM1's caption / interleaved / text mixture (Sec. 3.3).

The schedule is stratified, so the weights hold exactly in expectation and closely in every stretch of
training, not just on average: the rows are cut into blocks of ``block`` rows; the first ``n`` blocks hold
``round(n * block * W_s)`` rows of the first ``s`` streams together (``W_s`` the cumulative weight), so each
stream's count never drifts more than one row from its share at block boundaries; inside a block the order is
a seeded permutation. A zero weight gives a stream no rows at all. Row ``j``'s stream and its index within that
stream (the how-many-th row of its stream it is) are computed from ``j`` alone, so the schedule is random
access: resuming at row ``j`` needs nothing but ``j``, and it depends only on the weights and the seed - two
trials that differ in model or optimiser settings see the same rows in the same order.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np

from mm1core.data.records import STREAMS

BLOCK = 20  # rows; a batch of 16-32 already holds close to the weights


class MixtureSchedule:
    """``stream_of(row) -> (stream, index within the stream)`` for the weights of ``STREAMS``."""

    def __init__(self, weights: Mapping[str, float], seed: int, block: int = BLOCK) -> None:
        total = sum(weights.get(stream, 0.0) for stream in STREAMS)
        if total <= 0:
            raise ValueError("mixture weights must not all be zero")
        self.weights = {stream: weights.get(stream, 0.0) / total for stream in STREAMS}
        self.cumulative = np.cumsum([self.weights[stream] for stream in STREAMS])  # (S,)
        self.cumulative[-1] = 1.0  # no rounding gap at the end
        self.seed, self.block = seed, block

    def rows_before(self, row_block: int) -> np.ndarray:
        """``(S,)`` rows of each stream in the first ``row_block`` blocks."""
        boundaries = np.floor(row_block * self.block * self.cumulative + 0.5).astype(np.int64)  # (S,)
        return np.diff(boundaries, prepend=0)

    @functools.lru_cache(maxsize=8)  # noqa: B019 - a few blocks at a time; schedules live as long as a trial
    def _block(self, row_block: int) -> tuple[np.ndarray, np.ndarray]:
        """Stream ids and within-stream indices of the rows of one block, in order."""
        before, after = self.rows_before(row_block), self.rows_before(row_block + 1)
        labels = np.repeat(np.arange(len(STREAMS)), after - before)  # (block,)
        labels = np.random.default_rng([self.seed, row_block]).permutation(labels)
        local = np.empty(self.block, dtype=np.int64)
        for stream in range(len(STREAMS)):
            where = labels == stream
            local[where] = before[stream] + np.arange(int(where.sum()))
        return labels, local

    def stream_of(self, row: int) -> tuple[str, int]:
        labels, local = self._block(row // self.block)
        position = row % self.block
        return STREAMS[int(labels[position])], int(local[position])

    def counts(self, rows: int) -> dict[str, int]:
        """Rows of each stream among the first ``rows`` (for checking realised shares)."""
        full, rest = divmod(rows, self.block)
        counts = self.rows_before(full)
        if rest:
            labels, _ = self._block(full)
            counts = counts + np.bincount(labels[:rest], minlength=len(STREAMS))
        return {stream: int(count) for stream, count in zip(STREAMS, counts, strict=True)}
