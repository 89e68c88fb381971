"""Benchmark: what the platform costs on top of training (issue target: sweep / plain loop <= 1.10, 2 trials at once).

    .venv/bin/python bench/overhead.py [--trials 8] [--steps 120] [--keep DIR]

N short trials (the quickstart model, about 20 s of training each here) run twice:
- **plain loop**: two plain Python processes (2 trials at once, like the sweep), each calling the trial function
  (``orchestrator.trainable.train_payload``: ``mm1core.train.train_trial`` on one thread) on its half of the
  trials one after another; no Ray, no MLflow. Its wall time includes each process's start and imports.
- **sweep**: ``mm1 sweep run`` on the same trials (Ray Tune, MLflow in a scratch sqlite store), end to end: the
  CLI's start, Ray's start, workers, MLflow writes, the summary and the HTML report.
Prints both wall times, the summed training time inside the trials, the per-trial overhead ((sweep - loop) /
trials) and the ratio sweep / loop (also for the Tune part alone, as ``mm1 sweep run`` reports it).
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the spawned processes import bench.overhead's functions
LRS = (1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 6e-3, 7e-3, 8e-3, 9e-3, 1e-2, 1.1e-2, 1.2e-2)


def sweep_spec(trials: int, steps: int) -> dict:
    return {
        "name": "overhead",
        "experiment": "bench-overhead",
        "description": "N short quickstart trials",
        "base": {
            "model": {
                "encoder": {"name": "vit-tiny", "resolution": 32},
                "connector": {"type": "avg-pool", "num_tokens": 4},
                "decoder": {"name": "lm-tiny"},
            },
            "train": {"max_steps": steps, "batch_size": 16},
            "eval": {"shots": [0], "num_examples": 16},
        },
        "grid": {"train.lr": list(LRS[:trials])},
        "resources": {"cpus_per_trial": 1},
        "max_concurrent": 2,
    }


def plain_loop(payloads: list[dict], results: multiprocessing.Queue) -> None:
    """One plain process: the trial function on each payload, one after another."""
    from orchestrator.trainable import train_payload

    for payload in payloads:
        result = train_payload(payload, sink=None)
        results.put(result.train_seconds + result.eval_seconds)


def run_plain(spec_path: Path, workdir: Path) -> tuple[float, float]:
    """(wall seconds, summed trial seconds) of the trials in two plain processes."""
    from orchestrator.expand import expand
    from orchestrator.run import _payload
    from orchestrator.spec import load_spec

    spec = load_spec(spec_path)
    payloads = [_payload(spec, trial) for trial in expand(spec)]
    for payload in payloads:  # a scratch place for the models, as the sweep has its own
        payload["checkpoint"] = str(workdir / "plain" / f"{payload['key']}.pt")
        payload["state_dir"] = str(workdir / "plain" / payload["key"])
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    started = time.perf_counter()
    processes = [context.Process(target=plain_loop, args=(payloads[i::2], results)) for i in range(2)]
    for process in processes:
        process.start()
    seconds = [results.get() for _ in payloads]
    for process in processes:
        process.join()
    return time.perf_counter() - started, sum(seconds)


def run_sweep(spec_path: Path, workdir: Path) -> tuple[float, float, float]:
    """(end-to-end wall seconds, the Tune part's wall seconds, summed training seconds) of ``mm1 sweep run``."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "sweep", "run", str(spec_path)],
        cwd=workdir,
        text=True,
        capture_output=True,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"bench/overhead: the sweep failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    tune = re.search(r"sweep wall time ([\d.]+) s .* summed training time ([\d.]+) s", done.stdout)
    if tune is None:
        sys.exit("bench/overhead: no 'sweep wall time' line in the sweep's output")
    return wall, float(tune.group(1)), float(tune.group(2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8, choices=range(2, len(LRS) + 1), metavar=f"2..{len(LRS)}")
    parser.add_argument("--steps", type=int, default=120, help="training steps per trial (120: about 20 s here)")
    parser.add_argument("--keep", type=Path, help="work (and keep the MLflow store) in this directory")
    args = parser.parse_args()
    workdir = (args.keep or Path(tempfile.mkdtemp(prefix="mm1-bench-overhead-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    spec_path = workdir / "overhead.yaml"
    spec_path.write_text(yaml.safe_dump(sweep_spec(args.trials, args.steps), sort_keys=False))
    print(f"{args.trials} trials x {args.steps} steps, 2 at once; work in {workdir}", flush=True)
    loop_wall, loop_trained = run_plain(spec_path, workdir)
    print(f"plain loop:  wall {loop_wall:6.1f} s; summed trial time (training + eval) {loop_trained:.1f} s", flush=True)
    sweep_wall, tune_wall, sweep_trained = run_sweep(spec_path, workdir)
    print(
        f"mm1 sweep:   wall {sweep_wall:6.1f} s end to end ({tune_wall:.1f} s in Tune); "
        f"summed training {sweep_trained:.1f} s"
    )
    per_trial = (sweep_wall - loop_wall) / args.trials
    ratio, tune_ratio = sweep_wall / loop_wall, tune_wall / loop_wall
    print(f"per-trial overhead {per_trial:+.1f} s; ratio sweep / loop {ratio:.3f} end to end, {tune_ratio:.3f} in Tune")
    print(f"target (end to end <= 1.10): {'met' if ratio <= 1.10 else 'missed'}")


if __name__ == "__main__":
    main()
