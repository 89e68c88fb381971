"""Trained versus untrained: a trial checkpoint's metrics next to the same model at random initialisation.

    .venv/bin/python bench/eval_baseline.py CHECKPOINT [--num-examples N]

CHECKPOINT is a trial's saved model (`mm1 train` prints it; sweep trials carry it in MLflow tag
`mm1.checkpoint`). Both models are evaluated on the same tasks, items and shots (the trial's eval section).
"""

from __future__ import annotations

import argparse

import torch

from mm1core.checkpoint import load_trial_checkpoint
from mm1core.data.tokenizer import build_tokenizer
from mm1core.evaluate.harness import evaluate
from mm1core.model import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--num-examples", type=int, default=None)
    args = parser.parse_args()
    config, trained = load_trial_checkpoint(args.checkpoint)
    if args.num_examples:
        config = config.model_copy(update={"eval": config.eval.model_copy(update={"num_examples": args.num_examples})})
    tokenizer = build_tokenizer(config.data.tokenizer)
    torch.manual_seed(config.train.seed)
    untrained = build_model(config.model, tokenizer.vocab_size, image_token_id=tokenizer.image_id).eval()
    scores = {
        name: evaluate(model, config, tokenizer).metrics
        for name, model in (("random init", untrained), ("trained", trained))
    }
    print(f"{'metric':28s} {'random init':>12s} {'trained':>12s}")
    for metric in sorted(scores["trained"]):
        print(f"{metric:28s} {scores['random init'][metric]:12.3f} {scores['trained'][metric]:12.3f}")


if __name__ == "__main__":
    main()
