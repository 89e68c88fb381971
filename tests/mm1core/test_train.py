"""One trial end to end (a few steps): the sink's stream, the result, repeatability, the length check."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import torch

from mm1core.config import TrialConfig
from mm1core.train import TrialResult, resolve_precision, train_trial
from tests.mm1core.flavours import TINY


class RecordingSink:
    def __init__(self) -> None:
        self.rows: list[tuple[int, dict[str, float]]] = []
        self.flushes: list[int] = []  # rows delivered before each flush

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.rows.append((step, dict(metrics)))

    def flush(self) -> None:
        self.flushes.append(len(self.rows))


@pytest.fixture(scope="module")
def trial() -> tuple[TrialResult, RecordingSink]:
    sink = RecordingSink()
    return train_trial(TrialConfig.model_validate(TINY), sink=sink, progress_bar=False, threads=1), sink


def test_sink_gets_every_step_in_bursts(trial: tuple[TrialResult, RecordingSink]) -> None:
    result, sink = trial
    steps = [step for step, metrics in sink.rows if "train/loss" in metrics]
    assert steps == list(range(1, TINY["train"]["max_steps"] + 1))
    assert all(set(metrics) == {"train/loss", "train/lr"} for _, metrics in step_rows(sink))
    assert sink.flushes == [3, 6, 8, 9]  # every 2 steps (+ the data mixture so far), the rest at the end, the final


def step_rows(sink: RecordingSink) -> list[tuple[int, dict[str, float]]]:
    return [(step, metrics) for step, metrics in sink.rows if "train/loss" in metrics]


def test_realised_data_shares_and_skips_are_logged(trial: tuple[TrialResult, RecordingSink]) -> None:
    _, sink = trial
    data = [metrics for _, metrics in sink.rows if "data/skipped" in metrics]
    assert len(data) == 3 and data[-1]["data/skipped"] == 0.0
    shares = [data[-1][f"data/share/{stream}"] for stream in ("caption", "interleaved", "text")]
    assert sum(shares) == pytest.approx(1.0)
    rows = TINY["train"]["max_steps"] * TINY["train"]["batch_size"]  # 20 rows of the 45/45/10 default mixture
    assert all(share * rows == pytest.approx(round(share * rows)) for share in shares)


def test_final_metrics(trial: tuple[TrialResult, RecordingSink]) -> None:
    result, sink = trial
    step, final = sink.rows[-1]
    assert step == TINY["train"]["max_steps"]
    tasks = ("caption", "vqa", "reading", "counting", "avg")
    expected = {f"eval/{task}/{k}shot" for task in tasks for k in (0, 1)} | {"eval/textcore", "eval/loss"}
    assert set(final) == expected | {"perf/samples_per_s"}
    assert set(result.metrics) == set(final) | {"train/loss"}
    assert result.steps == 5 and result.train_seconds > 0 and result.eval_seconds > 0
    losses = [metrics["train/loss"] for _, metrics in step_rows(sink)]
    assert result.metrics["train/loss"] == pytest.approx(sum(losses[-2:]) / 2)


def test_learning_rate_warms_up(trial: tuple[TrialResult, RecordingSink]) -> None:
    _, sink = trial
    rates = [metrics["train/lr"] for _, metrics in step_rows(sink)]
    assert rates[0] == pytest.approx(TINY["train"]["lr"])  # 5% of 5 steps: no warmup step
    assert rates[-1] < rates[0]


def test_trials_in_one_process_repeat_exactly(trial: tuple[TrialResult, RecordingSink]) -> None:
    _, first = trial
    threads = torch.get_num_threads()
    torch.manual_seed(123)  # state a previous trial might leave behind
    second = RecordingSink()
    train_trial(TrialConfig.model_validate(TINY), sink=second, progress_bar=False, threads=1)
    assert [row for row in second.rows[:5]] == first.rows[:5]
    assert torch.get_num_threads() == threads


def test_precision_auto_is_fp32_on_cpu() -> None:
    expected = "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"
    assert resolve_precision("auto") == expected and resolve_precision("16-mixed") == "16-mixed"


def test_periodic_evaluation_logs_learning_curves() -> None:
    config = TrialConfig.model_validate({**TINY, "eval": {**TINY["eval"], "every_n_steps": 2, "shots": [0]}})
    sink = RecordingSink()
    result = train_trial(config, sink=sink, progress_bar=False, threads=1)
    evaluated = [step for step, metrics in sink.rows if "eval/avg/0shot" in metrics]
    assert evaluated == [2, 4, 5]  # every 2 steps, then the final evaluation at the last step
    assert result.train_seconds > 0


def test_periodic_loss_evaluation_logs_the_heldout_loss_alone() -> None:
    eval_config = {**TINY["eval"], "every_n_steps": 2, "periodic": "loss", "shots": [0]}
    config = TrialConfig.model_validate({**TINY, "eval": eval_config})
    sink = RecordingSink()
    train_trial(config, sink=sink, progress_bar=False, threads=1)
    evaluated = {step: sorted(m for m in metrics if m.startswith("eval/")) for step, metrics in sink.rows}
    assert evaluated[2] == evaluated[4] == ["eval/loss"]  # during training: the loss alone
    assert "eval/avg/0shot" in evaluated[5] and "eval/loss" in evaluated[5]  # the final evaluation is full


def test_checkpoint_round_trip(tmp_path) -> None:  # noqa: ANN001
    from mm1core.checkpoint import load_trial_checkpoint

    config = TrialConfig.model_validate(TINY)
    result = train_trial(config, progress_bar=False, threads=1, checkpoint=tmp_path / "trial.pt")
    loaded_config, model = load_trial_checkpoint(result.checkpoint)
    assert loaded_config == config
    assert {row["task"] for row in result.predictions} >= {"caption"}
    assert sum(parameter.numel() for parameter in model.parameters()) > 0
