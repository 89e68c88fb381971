"""Benchmark: a trial's estimated peak memory (``mm1core.estimate``) against the peak it really reaches.

    .venv/bin/python bench/memory_estimate.py [--steps 3] [--device cpu|cuda] [--only NAME ...]

Each toy trial of ``CONFIGS`` runs in a fresh subprocess (``--probe``): it imports everything, reads its resident
memory, then trains ``--steps`` real steps and runs the end-of-trial evaluation through ``mm1core.train.train_trial``
and reports what it reached. On a CPU the measure is the process's peak resident set (``VmHWM``) minus its
resident set right after the imports: torch's CPU tensors bypass Python's allocator, so ``tracemalloc`` cannot see
them; ``ru_maxrss`` would not do either, as Linux carries into it the resident set of the process that forked the
probe (a test runner's hundreds of MiB). glibc's malloc is told to return every block of 64 KiB or more to the
system when it is freed (``MALLOC_MMAP_THRESHOLD_``, which also stops it raising that threshold as it goes), so the
resident set follows the live tensors instead of the allocator's high-water mark. On a GPU the measure is
``torch.cuda.max_memory_allocated``.
The table prints both and their ratio; ``tests/mm1core/test_estimate.py`` holds the ratio to its stated band.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20
# The evaluation kept tiny (one task, two prompts of two new tokens): the trials' training step is what is measured;
# the evaluation's own term is checked by the estimate's closed forms.
TINY_EVAL = {
    "shots": [0],
    "num_examples": 2,
    "max_new_tokens": 2,
    "batch_size": 2,
    "tasks": ["caption"],
    "textcore": [],
}


def toy(resolution: int, connector: dict[str, Any], batch: int, **model: Any) -> dict[str, Any]:
    """A toy trial: vit-tiny at ``resolution`` -> ``connector`` -> lm-tiny, ``batch`` rows, the tiny evaluation."""
    return {
        "model": {"encoder": {"name": "vit-tiny", "resolution": resolution}, "connector": connector, **model},
        "train": {"max_steps": 3, "batch_size": batch, "log_every_n_steps": 1, "checkpoint_every_n_steps": None},
        "eval": TINY_EVAL,
    }


CONFIGS: dict[str, dict[str, Any]] = {
    "avg-pool-32px-b8": toy(32, {"type": "avg-pool", "num_tokens": 16}, 8),
    "attn-pool-64px-b32": toy(64, {"type": "attn-pool", "num_tokens": 16}, 32),
    "c-abstractor-64px-b16": toy(64, {"type": "c-abstractor", "num_tokens": 16}, 16),
    "avg-pool-32px-b32-moe": toy(
        32, {"type": "avg-pool", "num_tokens": 16}, 32, decoder={"moe": {"num_experts": 4, "every_k_layers": 1}}
    ),
    "avg-pool-32px-b8-eval8shot": {
        **toy(32, {"type": "avg-pool", "num_tokens": 16}, 8),
        "eval": {**TINY_EVAL, "shots": [8], "num_examples": 32, "batch_size": 32, "max_new_tokens": 4},
    },
    "avg-pool-64px-b16-subimage": toy(
        32, {"type": "avg-pool", "num_tokens": 4}, 16, highres={"mode": "subimage", "resolution": 64, "grid": 2}
    ),
}


def status_bytes(field: str) -> int:
    """A size from Linux's ``/proc/self/status``: ``VmRSS`` (the resident set now) or ``VmHWM`` (its peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def probe(raw: dict[str, Any], device: str) -> dict[str, Any]:
    """Runs one trial here and returns the memory it reached above the post-import baseline (module docstring)."""
    import torch

    from mm1core.config import TrialConfig
    from mm1core.data.tokenizer import build_tokenizer
    from mm1core.evaluate import generate
    from mm1core.module import MM1Module
    from mm1core.train import train_trial

    cfg = TrialConfig.model_validate(raw)
    vocab = build_tokenizer(cfg.data.tokenizer).vocab_size
    shapes: list[list[int]] = []  # (rows, tokens, images) of each training batch
    prompts: list[int] = [0]  # the longest prompt the evaluation generated from
    training_step, generate_batch = MM1Module.training_step, generate.generate_batch

    def recording_step(module: MM1Module, batch: Any, index: int) -> Any:
        shapes.append([*batch["token_ids"].shape, batch["images"].shape[0]])
        return training_step(module, batch, index)

    def recording_generation(model: Any, samples: Any, **options: Any) -> Any:
        prompts.append(max(len(sample["token_ids"]) for sample in samples))
        return generate_batch(model, samples, **options)

    MM1Module.training_step = recording_step  # type: ignore[method-assign]
    generate.generate_batch = recording_generation
    baseline = status_bytes("VmRSS")
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result = train_trial(cfg, progress_bar=False, threads=1)
    if device == "cuda":
        measured = torch.cuda.max_memory_allocated()
    else:
        measured = status_bytes("VmHWM") - baseline
    return {"measured": measured, "steps": result.steps, "vocab": vocab, "batches": shapes, "prompt": max(prompts)}


def run_probe(name: str, raw: dict[str, Any], device: str, timeout: int = 300) -> dict[str, Any]:
    """``probe`` in a fresh subprocess (so no two trials share allocator state); its JSON result."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "PYTHONPATH": str(ROOT)}
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    command = [sys.executable, str(Path(__file__).resolve()), "--probe", json.dumps(raw), "--device", device]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT, check=False)
    if done.returncode:
        raise RuntimeError(f"{name}: the probe failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def estimated(raw: dict[str, Any], vocab: int, device: str, seen: dict[str, Any] | None = None) -> Any:
    """The estimate of ``raw``; with ``seen`` (a probe's result), at the largest batch and prompt it saw."""
    from dataclasses import replace

    from mm1core.config import TrialConfig
    from mm1core.estimate import estimate_shapes, trial_shapes

    cfg = TrialConfig.model_validate(raw)
    shapes = trial_shapes(cfg, vocab, "gpu" if device == "cuda" else "cpu")
    if seen:
        batches, rows = seen["batches"], seen["batches"][0][0]
        tokens, images = max(b[1] for b in batches), max(b[2] for b in batches) / rows
        eval_length = max(seen["prompt"] + cfg.eval.max_new_tokens, shapes.caption_pair)
        shapes = replace(shapes, length=tokens, images=images, eval_length=eval_length)
    return estimate_shapes(cfg, shapes)


def measure(names: list[str], device: str = "cpu", workers: int = 2) -> list[dict[str, Any]]:
    """Estimate and measurement of each named config (probes run ``workers`` at a time)."""
    with ThreadPoolExecutor(workers) as pool:
        probes = list(pool.map(lambda name: run_probe(name, CONFIGS[name], device), names))
    rows = []
    for name, found in zip(names, probes, strict=True):
        estimate = estimated(CONFIGS[name], found["vocab"], device)
        at_seen = estimated(CONFIGS[name], found["vocab"], device, found)
        rows.append({"name": name, "estimate": estimate, "at_seen": at_seen, **found})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--only", nargs="*", default=None, help="config names (default: all)")
    parser.add_argument("--probe", help=argparse.SUPPRESS)  # a trial mapping as JSON: run it here
    args = parser.parse_args()
    if args.probe:
        print(json.dumps(probe(json.loads(args.probe), args.device)))
        return
    from mm1core.config import TrialConfig
    from mm1core.estimate import trial_shapes

    rows = measure(args.only or list(CONFIGS), args.device)
    print(__doc__.splitlines()[0])
    print(
        f"{'config':<28} {'estimate':>9} {'measured':>9} {'ratio':>6} {'at seen':>8} {'ratio':>6}  (MiB)  "
        "largest terms of the estimate"
    )
    for row in rows:
        estimate, measured, at_seen = row["estimate"], row["measured"], row["at_seen"]
        parts = sorted(estimate.breakdown.items(), key=lambda item: -item[1])[:3]
        largest = ", ".join(f"{name} {value / MIB:.0f}" for name, value in parts)
        peak, seen = estimate.peak_bytes, at_seen.peak_bytes
        print(
            f"{row['name']:<28} {peak / MIB:>9.1f} {measured / MIB:>9.1f} {peak / measured:>6.2f} "
            f"{seen / MIB:>8.1f} {seen / measured:>6.2f}  {largest}"
        )
    print("estimate: the largest batch the data can make (rows of the longest document, the most images);")
    print("at seen: the same formulas at the largest batch the measured steps saw (tokens, images / rows) and the")
    print("longest prompt the evaluation generated from, with its answer (the bound: at least a caption pair):")
    for row in rows:
        tokens, images = max(b[1] for b in row["batches"]), max(b[2] for b in row["batches"])
        bound = row["estimate"].images_per_row * row["batches"][0][0]
        cfg = TrialConfig.model_validate(CONFIGS[row["name"]])
        eval_length = trial_shapes(cfg, row["vocab"], "cpu").eval_length
        print(
            f"  {row['name']:<28} {tokens} of {row['estimate'].row_length} tokens, {images} of {bound} images, "
            f"eval rows of {row['prompt'] + cfg.eval.max_new_tokens} of {eval_length} tokens"
        )


if __name__ == "__main__":
    main()
