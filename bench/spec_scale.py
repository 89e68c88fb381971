"""Benchmark: validate and plan a sweep of many trials (the orchestrator's CPU cost before any training).

    .venv/bin/python bench/spec_scale.py [--trials-per-axis 10]

Builds a 3-axis grid (lr x batch size x max_steps) of N^3 trials x 2 seeds, then times spec validation and
expansion (trial configs + trial_keys) in-process, the memory and FLOPs estimate of every trial
(``mm1core.estimate.estimate_trial``, target: well under 1 ms a trial), the whole preflight of every trial
(``orchestrator.preflight.preflight_sweep``: target under 2 s for 2,000 trials), and `mm1 sweep validate --json` and
`mm1 sweep plan --json` end to end (target: each under 2 s for 2,000 trials).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from mm1core.data.tokenizer import build_tokenizer
from mm1core.estimate import estimate_trial
from orchestrator.expand import expand
from orchestrator.preflight import preflight_sweep
from orchestrator.spec import parse_spec


def make_spec(per_axis: int) -> dict:
    return {
        "name": "scale",
        "grid": {
            "train.lr": [round(1e-4 * (i + 1), 6) for i in range(per_axis)],
            "train.batch_size": [8 + i for i in range(per_axis)],
            "train.max_steps": [100 + i for i in range(per_axis)],
        },
        "seeds": [0, 1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials-per-axis", type=int, default=10)
    args = parser.parse_args()
    data = make_spec(args.trials_per_axis)

    started = time.perf_counter()
    spec = parse_spec(data)
    validated = time.perf_counter()
    trials = expand(spec)
    expanded = time.perf_counter()
    print(f"trials: {len(trials)}")
    print(f"validate (in-process): {validated - started:.3f} s")
    print(f"expand + trial_keys (in-process): {expanded - validated:.3f} s")
    vocab = build_tokenizer(trials[0].config.data.tokenizer).vocab_size
    started = time.perf_counter()
    for trial in trials:
        estimate_trial(trial.config, vocab)
    seconds = time.perf_counter() - started
    print(
        f"estimate_trial (in-process): {seconds:.3f} s, {seconds / len(trials) * 1e3:.3f} ms a trial  (target < 1 ms)"
    )
    started = time.perf_counter()
    checked = preflight_sweep(spec, trials)
    seconds = time.perf_counter() - started
    print(
        f"preflight_sweep (in-process: files, shapes, lengths, memory of every trial): {seconds:.3f} s, "
        f"{len(checked.problems)} problem(s)  (target < 2 s for 2,000 trials)"
    )

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scale.yaml"
        path.write_text(yaml.safe_dump(data))
        for verb in ("validate", "plan"):
            started = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-m", "orchestrator.cli", "sweep", verb, "--json", str(path)],
                capture_output=True,
                text=True,
                check=True,
            )
            seconds = time.perf_counter() - started
            shown = out.stdout.strip() if verb == "validate" else f"{len(out.stdout.splitlines())} lines of JSON"
            print(f"`mm1 sweep {verb} --json` end to end: {seconds:.3f} s -> {shown}  (target < 2 s)")


if __name__ == "__main__":
    main()
