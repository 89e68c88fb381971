"""Benchmark: how much of a training step the data pipeline costs (issue: loading under 5% of step time).

    .venv/bin/python bench/data_loading.py [--steps 30] [--threads 1]

For the quickstart trial and the largest toy trial (ViT 128x4 at 128 px, LM 256x4), prints the loader alone
(rows/s, ms per batch) and then real training steps fed by the loader with 0, 1 and 2 DataLoader workers:
the time a step waits for its batch, as a share of the whole step. With workers the batches are made while
the previous step trains, so only the wait counts.
"""

from __future__ import annotations

import argparse
import time

import torch

from mm1core.config import TrialConfig
from mm1core.data.datamodule import PretrainingData
from mm1core.data.tokenizer import build_tokenizer
from mm1core.model import build_model
from mm1core.module import MM1Module

CONFIGS = {
    "quickstart": {
        "model": {"encoder": {"name": "vit-tiny", "resolution": 32}, "connector": {"num_tokens": 16}},
        "train": {"batch_size": 16},
    },
    "largest toy": {
        "model": {
            "encoder": {"name": "vit-base-toy", "resolution": 128},
            "connector": {"type": "c-abstractor", "num_tokens": 16},
            "decoder": {"name": "lm-base-toy"},
        },
        "train": {"batch_size": 16},
    },
}


def loader_only(config: TrialConfig, steps: int) -> float:
    """Seconds per batch of the loader alone, in this process."""
    batches = iter(PretrainingData(config, build_tokenizer()).train_dataloader())
    next(batches)
    started = time.perf_counter()
    for _ in range(steps):
        next(batches)
    return (time.perf_counter() - started) / steps


def fed_training(config: TrialConfig, steps: int, workers: int) -> tuple[float, float]:
    """(seconds waiting for data, seconds per whole step) averaged over ``steps`` training steps."""
    config = config.model_copy(update={"data": config.data.model_copy(update={"workers": workers})})
    tokenizer = build_tokenizer()
    module = MM1Module(build_model(config.model, tokenizer.vocab_size), config.train)
    optimizer = module.configure_optimizers()["optimizer"]
    batches = iter(PretrainingData(config, tokenizer).train_dataloader())
    waited = total = 0.0
    for step in range(steps + 2):
        started = time.perf_counter()
        batch = next(batches)
        fetched = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        module.training_step(batch, step)["loss"].backward()
        optimizer.step()
        if step >= 2:  # the first batches include starting the workers
            waited, total = waited + fetched - started, total + time.perf_counter() - started
    return waited / steps, total / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training (a trial's CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name, raw in CONFIGS.items():
        config = TrialConfig.model_validate({**raw, "train": {**raw["train"], "max_steps": args.steps + 10}})
        per_batch = loader_only(config, args.steps)
        rows = config.train.batch_size / per_batch
        print(f"{name}: loader alone {per_batch * 1e3:.1f} ms/batch ({rows:.0f} rows/s)")
        for workers in (0, 1, 2):
            waited, step = fed_training(config, args.steps, workers)
            print(
                f"  workers={workers}: step {step * 1e3:.0f} ms, waiting for data {waited * 1e3:.1f} ms "
                f"= {100 * waited / step:.1f}% of the step"
            )


if __name__ == "__main__":
    main()
