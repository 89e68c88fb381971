"""Shared helpers: run the real ``mm1`` CLI in a subprocess, in a scratch working directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ORCHESTRATOR = Path(__file__).resolve().parent / "orchestrator"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests of tests/orchestrator start local Ray clusters that each want both cores: ``serial`` marks
    them so ``make test`` runs them one at a time, after everything else has run on two processes."""
    for item in items:
        if item.get_closest_marker("slow") and ORCHESTRATOR in Path(item.fspath).parents:
            item.add_marker(pytest.mark.serial)


def run_mm1(
    *args: str, cwd: Path, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``mm1 ARGS`` with this interpreter, as a user would call it, capturing output."""
    # A user's shell, not this process's: an in-process ray.init (tests/orchestrator/test_distributed.py) leaves
    # RAY_AUTH_MODE=token behind, which a subprocess must not inherit.
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_ADDRESS", "RAY_AUTH"))}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_sweep_trials(workdir: Path, spec: dict) -> list:
    """Writes ``spec``, runs it with ``mm1 sweep run`` (which must succeed) into ``workdir/mlflow.db`` and returns
    the sweep's trial runs from MLflow."""
    from mlflow.tracking import MlflowClient

    path = workdir / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = run_mm1("sweep", "run", str(path), cwd=workdir)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(spec["experiment"])
    runs = client.search_runs([experiment.experiment_id], f"tags.`mm1.sweep` = '{spec['name']}'", max_results=200)
    return [run for run in runs if run.data.tags.get("mm1.role") == "trial"]


@pytest.fixture
def write_yaml(tmp_path: Path):
    def write(data: dict | str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
        return path

    return write
