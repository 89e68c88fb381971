"""A trial's training data: its streams, the mixture schedule, the row planner and the loader (MM1 Sec. 3.3).

The loader yields exactly ``max_steps`` batches of ``batch_size`` rows. Which rows, in which order, depends on
the ``data`` section alone (weights, seed, sources, packing), never on ``train.seed`` or the model, so trials
that differ in anything else see identical data. The planner's position is the data module's state, saved in
Lightning checkpoints: a resumed trial continues the same stream.

Under data parallelism (a Lightning trainer with ``world_size`` W > 1) ``train.batch_size`` stays the global batch:
rank r loads rows ``[r * B / W, (r + 1) * B / W)`` of each one (``RankShard``), so the W ranks together train on
exactly the rows one process would.
"""

from __future__ import annotations

import functools
from typing import Any

import lightning
from torch.utils.data import DataLoader

from mm1core.config import TrialConfig
from mm1core.data.dataset import PretrainingDataset, collate
from mm1core.data.mixture import MixtureSchedule
from mm1core.data.records import STREAMS
from mm1core.data.sampler import RankShard, RowPlanner
from mm1core.data.streams import Stream, open_stream
from mm1core.data.tokenizer import TextTokenizer

# The longest text a document of the embedded world can hold, in tokens (checked by the tests).


def build_streams(cfg: TrialConfig) -> dict[str, Stream]:
    """The streams with a non-zero mixture weight."""
    data = cfg.data
    options = {"seed": data.seed, "max_images": data.max_images}
    return {
        stream: open_stream(
            stream,
            data.stream_source(stream),
            **options,
            synthetic_captions=data.synthetic_captions,
            share=data.synthetic_share,
        )
        for stream in STREAMS
        if getattr(data.mixture, stream) > 0
    }


class PretrainingData(lightning.LightningDataModule):
    """The training loader of one trial; ``state_dict`` is the planner's position at the last trained step."""

    def __init__(self, cfg: TrialConfig, tokenizer: TextTokenizer) -> None:
        super().__init__()
        self.cfg, self.tokenizer = cfg, tokenizer
        self.streams = build_streams(cfg)
        self.dataset = PretrainingDataset(
            self.streams,
            tokenizer,
            num_image_tokens=cfg.model.tokens_per_image,
            resolution=cfg.model.image_resolution,
            max_tokens=cfg.data.seq_len or cfg.model.decoder.preset().max_seq_len,
        )
        schedule = MixtureSchedule(cfg.data.mixture.model_dump(), cfg.data.seed)
        self.planner = RowPlanner(
            schedule,
            cfg.train.max_steps * cfg.train.batch_size,
            seq_len=cfg.data.seq_len,
            max_images=cfg.data.max_images,
            document_size=self.document_size,
        )

    def document_size(self, stream: str, index: int) -> tuple[int, int]:
        """``(tokens, images)`` of a stream's document, as it will be encoded (for packing)."""
        document = self.streams[stream].document(index)
        images = len(document.images)
        return len(self.tokenizer.encode(document.text)) + 2 + images * (self.cfg.model.tokens_per_image - 1), images

    def train_dataloader(self) -> DataLoader:
        workers, batch_size = self.cfg.data.workers, self.cfg.train.batch_size
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        sampler = self.planner if world == 1 else RankShard(self.planner, batch_size, rank, world)
        return DataLoader(
            self.dataset,
            batch_size=batch_size // world,
            sampler=sampler,
            num_workers=workers,
            persistent_workers=False,
            prefetch_factor=4 if workers else None,
            collate_fn=functools.partial(collate, pad_id=self.tokenizer.pad_id),
        )

    def state_dict(self) -> dict[str, Any]:
        trained_rows = self.trainer.global_step * self.cfg.train.batch_size if self.trainer else self.planner.state.row
        return {"planner": self.planner.state_before(trained_rows)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.planner.load_state_dict(state["planner"])


def build_data(cfg: TrialConfig, tokenizer: TextTokenizer) -> DataLoader:
    """The training loader alone (``max_steps`` batches), for code that does not need the data module."""
    return PretrainingData(cfg, tokenizer).train_dataloader()
