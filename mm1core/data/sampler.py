"""The order of training sequences: which stream each row comes from, and which documents it holds.

Without packing (``data.seq_len`` unset) row ``j`` is one document, the next one of the stream the mixture
schedule gives it. With packing, a row holds consecutive documents of one stream, as many as fit in
``seq_len`` tokens and ``max_images`` images; a document that does not fit opens that stream's next row, so
nothing is dropped (a single document longer than ``seq_len`` is truncated when the row is built). Packing
reads each document's length, so it is sequential: the planner's state (the next row, each stream's next
document) is small and goes into the trial's Lightning checkpoint (``state_dict``), and resuming from it
gives the same rows as an uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import Sampler

from mm1core.data.mixture import MixtureSchedule
from mm1core.data.records import STREAMS, BadRecord

MAX_CONSECUTIVE_BAD = 1000


@dataclass(frozen=True)
class RowPlan:
    """Row ``row``: documents ``documents`` of ``stream``; ``skipped`` unreadable ones left out while planning."""

    row: int
    stream: str
    documents: tuple[int, ...]
    skipped: int = 0


@dataclass
class PlannerState:
    row: int = 0
    cursors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STREAMS, 0))


class RowPlanner(Sampler[RowPlan]):
    """Yields ``rows`` row plans from ``state`` on. ``document_size(stream, k) -> (tokens, images)`` is needed
    for packing only (it may raise ``BadRecord``)."""

    def __init__(
        self,
        schedule: MixtureSchedule,
        rows: int,
        *,
        seq_len: int | None = None,
        max_images: int = 16,
        document_size: Callable[[str, int], tuple[int, int]] | None = None,
    ) -> None:
        if seq_len is not None and document_size is None:
            raise ValueError("packing needs document_size")
        self.schedule, self.rows, self.seq_len, self.max_images = schedule, rows, seq_len, max_images
        self.document_size = document_size
        self.state = PlannerState()
        self.snapshots: dict[int, dict[str, Any]] = {}  # row -> state before it, for checkpoints

    def __len__(self) -> int:
        return max(0, self.rows - self.state.row)

    def __iter__(self) -> Iterator[RowPlan]:
        while self.state.row < self.rows:
            self.snapshots[self.state.row] = self.state_dict()
            if len(self.snapshots) > 4096:  # keep the recent past: prefetching runs a few batches ahead
                del self.snapshots[min(self.snapshots)]
            yield self.next_plan()

    def next_plan(self) -> RowPlan:
        row = self.state.row
        stream, index = self.schedule.stream_of(row)
        self.state.row += 1
        if self.seq_len is None:
            return RowPlan(row, stream, (index,))
        return self._pack(row, stream)

    def _pack(self, row: int, stream: str) -> RowPlan:
        assert self.seq_len is not None and self.document_size is not None
        tokens = images = skipped = 0
        documents: list[int] = []
        cursor = self.state.cursors[stream]
        while True:
            try:
                size, count = self.document_size(stream, cursor)
            except BadRecord:
                skipped, cursor = skipped + 1, cursor + 1
                if skipped > MAX_CONSECUTIVE_BAD:
                    raise RuntimeError(
                        f"{stream}: {skipped} unreadable documents in a row; is the data broken?"
                    ) from None
                continue
            fits = tokens + size <= self.seq_len and images + count <= self.max_images
            if documents and not fits:
                break
            documents.append(cursor)
            tokens, images, cursor = tokens + size, images + count, cursor + 1
            if tokens >= self.seq_len or images >= self.max_images:
                break
        self.state.cursors[stream] = cursor
        return RowPlan(row, stream, tuple(documents), skipped)

    def state_dict(self) -> dict[str, Any]:
        return {"row": self.state.row, "cursors": dict(self.state.cursors)}

    def state_before(self, row: int) -> dict[str, Any]:
        """The state with ``row`` next (a row planned in this process, or the current one)."""
        return self.snapshots.get(row, self.state_dict())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state = PlannerState(int(state["row"]), {s: int(state["cursors"].get(s, 0)) for s in STREAMS})


class RankShard(Sampler[RowPlan]):
    """Rank ``rank`` of ``world`` data-parallel ranks: rows ``[rank * b, (rank + 1) * b)`` of each global batch of
    ``batch_size`` rows, ``b = batch_size / world``, so the ranks' batches together are the single process's batch.

    Every rank runs the whole plan (packing is sequential) and keeps its own rows, so the planner's state, and with it
    a checkpoint's data position, is the same on every rank.
    """

    def __init__(self, planner: RowPlanner, batch_size: int, rank: int, world: int) -> None:
        if batch_size % world:
            raise ValueError(f"train.batch_size {batch_size} is not divisible by the {world} data-parallel workers")
        self.planner, self.batch_size, self.rank, self.world = planner, batch_size, rank, world

    def __len__(self) -> int:
        return len(self.planner) // self.world  # the planner stops at a global batch boundary

    def __iter__(self) -> Iterator[RowPlan]:
        share = self.batch_size // self.world
        for plan in self.planner:
            if (plan.row % self.batch_size) // share == self.rank:
                yield plan
