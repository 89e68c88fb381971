"""Benchmark: ASHA early stopping on an LR grid (issue target: the same best LR for at most 50% of the compute).

    .venv/bin/python bench/asha.py [--steps 300] [--every 30] [--lrs 1e-4,3e-4,...] [--keep DIR]

Runs one LR grid on the embedded world twice through ``mm1 sweep run`` (the real CLI, Ray Tune, MLflow in a
scratch directory): to the end (``scheduler: fifo``), and with ``scheduler: {type: asha, metric: eval/loss}`` on the
periodic held-out loss. Prints per trial the steps it ran and its held-out loss, the compute each sweep used
(summed trial-steps, MLflow ``perf/steps``), the wall times, and the best LR each chose: the lowest final
``eval/loss`` among the trials that ran to the end.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
LRS = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]


def spec(name: str, scheduler: dict, lrs: list[float], steps: int, every: int) -> dict:
    """The quickstart model (vit-tiny 32 px, avg-pool 4 tokens, lm-tiny) over an LR grid; held-out loss every
    ``every`` steps (loss only: the cheap periodic evaluation), the full evaluation at the end."""
    return {
        "name": name,
        "experiment": "bench-asha",
        "description": f"LR grid, {scheduler['type']}",
        "base": {
            "model": {
                "encoder": {"name": "vit-tiny", "resolution": 32},
                "connector": {"type": "avg-pool", "num_tokens": 4},
                "decoder": {"name": "lm-tiny"},
            },
            "train": {"max_steps": steps, "batch_size": 16},
            "eval": {"shots": [0], "num_examples": 48, "every_n_steps": every, "periodic": "loss"},
        },
        "grid": {"train.lr": lrs},
        "scheduler": scheduler,
        "resources": {"cpus_per_trial": 1},
        "max_concurrent": 2,
    }


def run(workdir: Path, body: dict) -> float:
    path = workdir / f"{body['name']}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "sweep", "run", str(path)],
        cwd=workdir,
        text=True,
        capture_output=True,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"bench/asha: sweep {body['name']} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return wall


def trials(client: MlflowClient, sweep: str) -> list[dict]:
    experiment = client.get_experiment_by_name("bench-asha")
    runs = client.search_runs([experiment.experiment_id], f"tags.`mm1.sweep` = '{sweep}'", max_results=500)
    return sorted(
        (
            {
                "lr": float(run.data.params["train.lr"]),
                "steps": int(run.data.metrics.get("perf/steps", 0)),
                "eval_loss": run.data.metrics.get("eval/loss", float("nan")),
                "stopped": run.data.tags.get("mm1.stopped_early") == "true",
            }
            for run in runs
            if run.data.tags.get("mm1.role") == "trial"
        ),
        key=lambda row: row["lr"],
    )


def best_lr(rows: list[dict]) -> float:
    return min((row for row in rows if not row["stopped"]), key=lambda row: row["eval_loss"])["lr"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=30, help="periodic evaluation and ASHA grace period, in steps")
    parser.add_argument("--reduction-factor", type=float, default=3.0)
    parser.add_argument("--lrs", default=",".join(f"{lr:g}" for lr in LRS))
    parser.add_argument("--keep", type=Path, help="work (and keep the MLflow store) in this directory")
    args = parser.parse_args()
    lrs = [float(text) for text in args.lrs.split(",")]
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="mm1-bench-asha-"))
    workdir.mkdir(parents=True, exist_ok=True)
    asha = {
        "type": "asha",
        "metric": "eval/loss",
        "mode": "min",
        "grace_steps": args.every,
        "reduction_factor": args.reduction_factor,
    }
    print(f"LR grid {lrs}, {args.steps} steps, 2 trials at once; MLflow in {workdir / 'mlflow.db'}", flush=True)
    walls = {
        name: run(workdir, spec(name, scheduler, lrs, args.steps, args.every))
        for name, scheduler in (("grid-fifo", {"type": "fifo"}), ("grid-asha", asha))
    }
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    results = {name: trials(client, name) for name in walls}
    print(f"\n{'lr':>8} | {'fifo steps':>10} {'eval/loss':>9} | {'asha steps':>10} {'eval/loss':>9}")
    for fifo, asha_row in zip(results["grid-fifo"], results["grid-asha"], strict=True):
        stop = " (stopped)" if asha_row["stopped"] else ""
        print(
            f"{fifo['lr']:8.0e} | {fifo['steps']:10d} {fifo['eval_loss']:9.4f} | "
            f"{asha_row['steps']:10d} {asha_row['eval_loss']:9.4f}{stop}"
        )
    compute = {name: sum(row["steps"] for row in rows) for name, rows in results.items()}
    best = {name: best_lr(rows) for name, rows in results.items()}
    share = compute["grid-asha"] / compute["grid-fifo"]
    print(f"\ncompute: fifo {compute['grid-fifo']:,} trial-steps, asha {compute['grid-asha']:,} ({share:.0%})")
    print(f"wall:    fifo {walls['grid-fifo']:.0f} s, asha {walls['grid-asha']:.0f} s (mm1 sweep run end to end)")
    same = best["grid-fifo"] == best["grid-asha"]
    print(f"best LR: fifo {best['grid-fifo']:g}, asha {best['grid-asha']:g} -> {'same' if same else 'DIFFERENT'}")
    verdict = "met" if same and share <= 0.5 else "missed"
    print(f"target (same best LR, <= 50% compute): {verdict}")


if __name__ == "__main__":
    main()
