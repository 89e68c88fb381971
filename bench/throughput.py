"""Benchmark: the Lightning trial's training throughput against a hand-written PyTorch loop (target: >= 0.95).

    .venv/bin/python bench/throughput.py [--steps 30] [--warmup 5] [--repeats 3] [--threads 1] [--config quickstart]

Both train the same model (``build_model``, same seed) on the same loader (``PretrainingData``) with the same AdamW
parameter groups and warmup-cosine schedule (``mm1core.module``), at the same thread count and precision. The
Lightning side is what ``train_trial`` runs (``build_trainer``, ``MM1Module``, the ``SinkCallback`` delivering
losses in bursts), periodic evaluation off; the loop reads its loss back once at the end. Warm-up steps are not
timed; the two alternate, ``--repeats`` times each, and the medians are compared. Prints samples/s of each, the
ratio, and each variant's peak memory: the process's peak RSS (``getrusage``, its high-water mark reset before each
run through ``/proc/self/clear_refs`` where Linux allows) and, on a GPU, ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning
import torch

from mm1core.config import TrialConfig
from mm1core.data.datamodule import PretrainingData
from mm1core.data.tokenizer import build_tokenizer
from mm1core.model import build_model
from mm1core.module import BETAS, MM1Module, next_token_loss, parameter_groups, warmup_cosine
from mm1core.train import NullSink, SinkCallback, build_trainer, quiet_lightning, resolve_precision

CONFIGS = {  # as bench/data_loading.py
    "quickstart": {
        "model": {"encoder": {"name": "vit-tiny", "resolution": 32}, "connector": {"num_tokens": 16}},
        "train": {"batch_size": 16},
    },
    "largest-toy": {
        "model": {
            "encoder": {"name": "vit-base-toy", "resolution": 128},
            "connector": {"type": "c-abstractor", "num_tokens": 16},
            "decoder": {"name": "lm-base-toy"},
        },
        "train": {"batch_size": 16},
    },
}


class StepTimer(lightning.Callback):
    """Wall time from the end of the ``warmup``-th step to the end of training (after the sink's last sync)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.started, self.ended = warmup, 0.0, 0.0

    def on_train_batch_end(self, trainer: lightning.Trainer, *args: Any) -> None:
        if trainer.global_step == self.warmup:
            self.started = time.perf_counter()

    def on_train_end(self, trainer: lightning.Trainer, module: lightning.LightningModule) -> None:
        self.ended = time.perf_counter()


def lightning_seconds(cfg: TrialConfig, warmup: int) -> float:
    """Seconds of the timed steps, trained as ``train_trial`` trains."""
    lightning.seed_everything(cfg.train.seed, workers=True, verbose=False)
    tokenizer = build_tokenizer(cfg.data.tokenizer)
    module = MM1Module(build_model(cfg.model, tokenizer.vocab_size, image_token_id=tokenizer.image_id), cfg.train)
    timer = StepTimer(warmup)
    callbacks = [SinkCallback(NullSink(), cfg.train.log_every_n_steps), timer]  # the sink's delivery runs first
    trainer = build_trainer(cfg.train, callbacks, progress_bar=False)
    trainer.fit(module, datamodule=PretrainingData(cfg, tokenizer))
    return timer.ended - timer.started


def plain_seconds(cfg: TrialConfig, warmup: int) -> float:
    """Seconds of the timed steps of a minimal loop: forward, loss, backward, AdamW step, schedule step."""
    lightning.seed_everything(cfg.train.seed, workers=True, verbose=False)
    tokenizer = build_tokenizer(cfg.data.tokenizer)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model(cfg.model, tokenizer.vocab_size, image_token_id=tokenizer.image_id).to(device).train()
    train = cfg.train
    optimizer = torch.optim.AdamW(
        parameter_groups(model, train.lr, train.resolved_weight_decay, train.vision_lr_scale), lr=train.lr, betas=BETAS
    )
    warmup_steps = int(train.warmup_ratio * train.max_steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, warmup_steps, train.max_steps)
    )
    bf16 = resolve_precision(train.precision) == "bf16-mixed"
    started, loss = 0.0, torch.zeros(())
    for step, batch in enumerate(PretrainingData(cfg, tokenizer).train_dataloader(), start=1):
        batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(batch["token_ids"], batch["images"])
        loss = next_token_loss(logits, batch["token_ids"], batch["loss_mask"])
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step == warmup:
            loss.item()  # drain the queue before the clock starts
            started = time.perf_counter()
    loss.item()
    return time.perf_counter() - started


def reset_peak_memory() -> bool:
    """Resets the peak RSS that ``getrusage`` reports (Linux ``clear_refs`` 5) and CUDA's peak; ``False`` when the
    RSS mark cannot be reset (the figure is then the process's peak so far)."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_memory() -> str:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    gpu = f", GPU {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB" if torch.cuda.is_available() else ""
    return f"peak RSS {rss:.0f} MiB{gpu}"


def measure(run: Callable[[TrialConfig, int], float], cfg: TrialConfig, warmup: int, steps: int) -> tuple[float, str]:
    """(samples/s, peak memory) of one run."""
    reset = reset_peak_memory()
    seconds = run(cfg, warmup)
    memory = peak_memory() + ("" if reset else " (process peak: not resettable here)")
    return steps * cfg.train.batch_size / seconds, memory


def compare(name: str, raw: dict[str, Any], args: argparse.Namespace) -> float:
    """Prints the medians of both variants and their ratio; returns the ratio."""
    warmup = max(1, args.warmup)
    total = warmup + args.steps
    cfg = TrialConfig.model_validate({**raw, "train": {**raw["train"], "max_steps": total}}).resolved()
    variants = {"lightning": lightning_seconds, "plain": plain_seconds}
    rates: dict[str, list[float]] = {variant: [] for variant in variants}
    memory: dict[str, str] = {}
    for repeat in range(args.repeats):
        order = list(variants) if repeat % 2 == 0 else list(reversed(variants))  # alternate who goes first
        for variant in order:
            rate, memory[variant] = measure(variants[variant], cfg, warmup, args.steps)
            rates[variant].append(rate)
    medians = {variant: statistics.median(values) for variant, values in rates.items()}
    print(f"{name} (batch {cfg.train.batch_size}, {args.steps} timed steps after {warmup}, {args.repeats} repeats):")
    for variant, median in medians.items():
        spread = ", ".join(f"{rate:.1f}" for rate in rates[variant])
        print(f"  {variant:9s} {median:8.1f} samples/s (runs: {spread}); {memory[variant]}")
    ratio = medians["lightning"] / medians["plain"]
    print(f"  ratio lightning / plain = {ratio:.3f} (target >= 0.95)")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (at least 1)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each variant, alternating; medians compared")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a trial's CPU)")
    parser.add_argument("--config", choices=[*CONFIGS, "all"], default="quickstart")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {args.threads} thread(s)"
    print(f"device: {device}; torch {torch.__version__}, lightning {lightning.__version__}")
    names = list(CONFIGS) if args.config == "all" else [args.config]
    with quiet_lightning():
        for name in names:
            compare(name, CONFIGS[name], args)


if __name__ == "__main__":
    main()
