"""Benchmark: forward + backward of every stage-0 objective (``mm1core.objectives.OBJECTIVES``) on a tiny flavour.

    .venv/bin/python bench/stage0_objectives.py [--encoder vit-tiny] [--resolution 32] [--batch 64] [--steps 20]
                                                [--warmup 3] [--threads 2] [--full]

Each objective is built around the ``tiny()`` flavour of ``--encoder`` (``--full``: the preset itself) and, for the
image-text ones, the tiny ``text-tiny`` tower over the world tokenizer's vocabulary, on random images and random
16-token captions. A step is forward, backward and zeroing the gradients (no optimizer: the objectives differ in
their losses and heads, not in AdamW). Warm-up steps are not timed; prints the median and the fastest ms/step.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mm1core.data.tokenizer import build_tokenizer
from mm1core.objectives import OBJECTIVES, TEXT_TOWERS, build_objective
from mm1core.objectives.base import Objective
from mm1core.vision import ENCODERS
from mm1core.vision.vit import VisionTransformer

CAPTION_TOKENS = 16


def build(name: str, args: argparse.Namespace, vocab_size: int) -> Objective:
    preset = ENCODERS.get(args.encoder) if args.full else ENCODERS.get(args.encoder).tiny()
    encoder = VisionTransformer(preset, args.resolution)
    if not OBJECTIVES.get(name).needs_captions:
        return build_objective(name, encoder)
    return build_objective(name, encoder, vocab_size=vocab_size, text_tower=TEXT_TOWERS.get("text-tiny").tiny())


def time_steps(objective: Objective, images: torch.Tensor, token_ids: torch.Tensor, steps: int) -> list[float]:
    """Milliseconds of each of ``steps`` forward + backward passes."""
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        objective(images, token_ids).backward()
        objective.zero_grad(set_to_none=True)
        times.append(1000 * (time.perf_counter() - start))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="vit-tiny", choices=ENCODERS.names())
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--full", action="store_true", help="the encoder preset itself, not its tiny flavour")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vocab_size = build_tokenizer().vocab_size
    images = torch.randn(args.batch, 3, args.resolution, args.resolution)
    token_ids = torch.randint(3, vocab_size, (args.batch, CAPTION_TOKENS))
    flavour = args.encoder if args.full else f"{args.encoder} (tiny)"
    print(f"{flavour} at {args.resolution} px, batch {args.batch}, {args.threads} threads, forward + backward")
    for name in OBJECTIVES.names():
        objective = build(name, args, vocab_size)
        time_steps(objective, images, token_ids, args.warmup)
        times = time_steps(objective, images, token_ids, args.steps)
        print(f"  {name:<15} {statistics.median(times):8.1f} ms/step (fastest {min(times):.1f})")


if __name__ == "__main__":
    main()
