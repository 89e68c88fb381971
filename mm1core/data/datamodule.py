"""Builds a trial's training data loader from its config, by data source (the names of ``mm1core.data.DATA_SOURCES``).

The loader yields exactly ``max_steps`` batches of ``batch_size`` samples (``Batch``, see
``mm1core.data.dataset``), in index order: the data depend on ``data.seed`` only, never on ``train.seed``.
Rendering is cheap, so batches are built in the training process (``num_workers=0``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from torch.utils.data import DataLoader, Dataset

from mm1core.config import TrialConfig
from mm1core.data.dataset import PretrainingDataset, Sample, collate
from mm1core.data.tokenizer import Tokenizer

# The longest text a document of the embedded world can hold, in tokens (checked by the tests).
TEXT_TOKENS_PER_IMAGE = 30  # the longest caption, question or photo line that goes with one image
TEXT_TOKENS_EXTRA = 40  # an interleaved document's own sentences (intro, facts), plus <bos>/<eos>
TEXT_TOKENS_TEXT_ONLY = 140  # the longest text-only document, plus <bos>/<eos>


def max_sample_tokens(max_images: int, num_image_tokens: int) -> int:
    """An upper bound on a pre-training sample's length (image tokens included)."""
    with_images = max_images * (num_image_tokens + TEXT_TOKENS_PER_IMAGE) + TEXT_TOKENS_EXTRA
    return max(with_images, TEXT_TOKENS_TEXT_ONLY)


def synthetic_dataset(cfg: TrialConfig, tokenizer: Tokenizer) -> PretrainingDataset:
    """The embedded world's pre-training mixture, ``max_steps * batch_size`` samples long."""
    return PretrainingDataset(
        tokenizer,
        seed=cfg.data.seed,
        mixture=cfg.data.mixture.model_dump(),
        max_images=cfg.data.max_images,
        num_image_tokens=cfg.model.tokens_per_image,
        resolution=cfg.model.image_resolution,
        length=cfg.train.max_steps * cfg.train.batch_size,
    )


DATASET_BUILDERS: dict[str, Callable[[TrialConfig, Tokenizer], Dataset[Sample]]] = {"synthetic": synthetic_dataset}


def build_data(cfg: TrialConfig, tokenizer: Tokenizer) -> DataLoader:
    """The training loader of ``cfg.data.source`` (``max_steps`` batches)."""
    if cfg.data.source not in DATASET_BUILDERS:
        raise ValueError(f"data source {cfg.data.source!r} has no builder yet (built: {', '.join(DATASET_BUILDERS)})")
    dataset = DATASET_BUILDERS[cfg.data.source](cfg, tokenizer)
    return DataLoader(
        dataset,
        batch_size=cfg.train.batch_size,
        shuffle=False,  # index order: each sample is already an independent random draw
        num_workers=0,
        collate_fn=functools.partial(collate, pad_id=tokenizer.pad_id),
    )
