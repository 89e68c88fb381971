"""Benchmark: what the platform costs on top of training (issue target: sweep / plain loop <= 1.10, 2 trials at once).

    .venv/bin/python bench/overhead.py [--trials 8] [--steps 120] [--keep DIR]

N short trials (the quickstart model, about 20 s of training each here) run twice:
- **plain loop**: two plain Python processes (2 trials at once, like the sweep), each calling the trial function
  (``orchestrator.trainable.train_payload``: ``mm1core.train.train_trial`` on one thread) on its half of the
  trials one after another; no Ray, no MLflow. Its wall time includes each process's start and imports.
- **sweep**: ``mm1 sweep run`` on the same trials (Ray Tune, MLflow in a scratch sqlite store), end to end: the
  CLI's start, Ray's start, workers, MLflow writes, the summary and the HTML report.
Prints both wall times, the summed training time inside the trials, the per-trial overhead ((sweep - loop) /
trials) and the ratio sweep / loop, where the sweep's time is its "sweep wall time" (what ``mm1 sweep run``
prints: from Ray Tune's start to the last trial's end, so worker start-up, every trial, its MLflow writes); and,
apart, the end-to-end ratio with the once-per-sweep start-up (CLI imports, MLflow, Ray's start) and ending (Ray's
shutdown, the summary table, the HTML report).
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


def run_sweep(spec_path: Path, workdir: Path) -> dict[str, float]:
    """``mm1 sweep run``'s phases in seconds: ``wall`` end to end, ``startup`` until the first trial starts (the
    CLI's imports, MLflow, Ray), ``tune`` (the sweep wall time it prints), ``ending`` after the last trial (Ray's
    shutdown, the summary, the HTML report) and ``trained`` (its summed training time)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "sweep", "run", str(spec_path)],
        cwd=workdir,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    lines: list[tuple[float, str]] = [(time.perf_counter() - started, line) for line in process.stdout]
    wall = time.perf_counter() - started
    if process.wait() != 0:
        sys.exit(f"bench/overhead: the sweep failed (exit {process.returncode}); run it: mm1 sweep run {spec_path}")
    text = "".join(line for _, line in lines)
    tune = re.search(r"sweep wall time ([\d.]+) s .* summed training time ([\d.]+) s", text)
    if tune is None:
        sys.exit("bench/overhead: no 'sweep wall time' line in the sweep's output")
    first_start = next(at for at, line in lines if " start " in line)
    last_done = max(at for at, line in lines if " done " in line)
    return {
        "wall": wall,
        "startup": first_start,
        "tune": float(tune.group(1)),
        "ending": wall - last_done,
        "trained": float(tune.group(2)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12, choices=range(2, len(LRS) + 1), metavar=f"2..{len(LRS)}")
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
    sweep = run_sweep(spec_path, workdir)
    print(
        f"mm1 sweep:   wall {sweep['wall']:6.1f} s end to end = start-up {sweep['startup']:.1f} s (CLI, MLflow, Ray) "
        f"+ trials ... + ending {sweep['ending']:.1f} s (Ray shutdown, summary, report)"
    )
    print(
        f"             sweep wall time (Ray Tune: workers, trials, MLflow) {sweep['tune']:.1f} s; "
        f"summed training {sweep['trained']:.1f} s"
    )
    ratio, end_to_end = sweep["tune"] / loop_wall, sweep["wall"] / loop_wall
    per_trial = (sweep["tune"] - loop_wall) / args.trials
    print(
        f"per-trial overhead {per_trial:+.2f} s; ratio sweep / loop {ratio:.3f} (target <= 1.10: "
        f"{'met' if ratio <= 1.10 else 'missed'}); end to end {end_to_end:.3f}, "
        f"{sweep['startup'] + sweep['ending']:.1f} s of it fixed (start-up and ending, once per sweep)"
    )


if __name__ == "__main__":
    main()
