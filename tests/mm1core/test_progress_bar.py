"""``mm1 train``'s progress bar counts optimizer steps (``step N/max_steps``), not epochs: a trial is one endless
epoch (``max_epochs=-1``), where Lightning's own bars read ``Epoch 0/-2``."""

from __future__ import annotations

import lightning
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from mm1core.config import TrainConfig
from mm1core.train import StepProgressBar, build_trainer


class Line(lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        (x,) = batch
        return ((x * self.weight - 1.0) ** 2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_the_bar_reads_steps_of_max_steps(capsys: pytest.CaptureFixture[str]) -> None:
    trainer = build_trainer(TrainConfig(max_steps=5), callbacks=[], progress_bar=True)
    assert isinstance(trainer.progress_bar_callback, StepProgressBar)
    data = DataLoader(TensorDataset(torch.ones(100, 1)), batch_size=2)  # 50 batches: more than max_steps
    trainer.fit(Line(), train_dataloaders=data)
    shown = capsys.readouterr()
    text = (shown.out + shown.err).replace("\r", "\n")
    assert "step 5/5" in text and "5/5" in text
    assert "Epoch" not in text


def test_no_bar_without_progress() -> None:
    trainer = build_trainer(TrainConfig(max_steps=5), callbacks=[], progress_bar=False)
    assert trainer.progress_bar_callback is None
