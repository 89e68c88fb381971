"""The data stream resumes from a real Lightning checkpoint exactly where it stopped (packed rows included)."""

from __future__ import annotations

from pathlib import Path

import lightning
import torch

from mm1core.config import TrialConfig
from mm1core.data.datamodule import PretrainingData
from mm1core.data.tokenizer import build_tokenizer
from mm1core.model import build_model
from mm1core.module import MM1Module
from tests.mm1core.flavours import TINY

CONFIG = {**TINY, "data": {"seq_len": 160}, "train": {**TINY["train"], "max_steps": 6, "batch_size": 2}}


class Recorder(lightning.Callback):
    def __init__(self) -> None:
        self.rows: list[list[int]] = []

    def on_train_batch_start(self, trainer, module, batch, batch_index) -> None:  # noqa: ANN001
        self.rows += [row[row != 0].tolist() for row in batch["token_ids"]]


def fit(steps: int, checkpoint: Path | None = None, save: Path | None = None) -> list[list[int]]:
    config = TrialConfig.model_validate(CONFIG)
    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    module = MM1Module(build_model(config.model, tokenizer.vocab_size), config.train)
    recorder = Recorder()
    trainer = lightning.Trainer(
        max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False, callbacks=[recorder]
    )
    trainer.fit(module, datamodule=PretrainingData(config, tokenizer), ckpt_path=checkpoint)
    if save is not None:
        trainer.save_checkpoint(save)
    return recorder.rows


def test_resumed_trial_sees_the_rows_an_uninterrupted_one_sees(tmp_path: Path) -> None:
    uninterrupted = fit(6)
    head = fit(3, save=tmp_path / "step3.ckpt")
    tail = fit(6, checkpoint=tmp_path / "step3.ckpt")
    assert len(uninterrupted) == 12 and len(head) == len(tail) == 6
    assert head + tail == uninterrupted
