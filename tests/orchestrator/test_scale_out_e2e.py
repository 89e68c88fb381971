"""Scale-out on existing engines: a sweep joins a running two-node Ray cluster (Ray's own test-cluster utility,
both nodes on this machine) and logs to a real ``mlflow server`` on 127.0.0.1 with a sqlite backend."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import run_mm1

pytestmark = pytest.mark.slow

SPEC = {
    "name": "scale-out",
    "experiment": "scale-out",
    "base": {
        "model": {"decoder": {"name": "lm-nano"}},
        "train": {"max_steps": 20, "batch_size": 4, "log_every_n_steps": 5},
        "eval": {"shots": [0], "num_examples": 2, "max_new_tokens": 2},
    },
    "grid": {"train.lr": [1e-3, 3e-3]},  # two trials at once, one CPU each: one per node of the two-node cluster
    "resources": {"cpus_per_trial": 1},
    "max_concurrent": 2,
}


def write_spec(workdir: Path) -> Path:
    path = workdir / "scale-out.yaml"
    path.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    return path


@pytest.fixture
def two_node_cluster() -> Iterator[object]:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()


def test_sweep_joins_a_running_cluster_and_trials_land_on_both_nodes(two_node_cluster, tmp_path: Path) -> None:
    # The cluster uses token authentication (its token in ~/.ray/auth_token): a user joining it sets the mode.
    auth = {"RAY_AUTH_MODE": "token"}
    result = run_mm1(
        "sweep", "run", str(write_spec(tmp_path)), "--address", two_node_cluster.address, cwd=tmp_path, env=auth
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("scale-out")
    runs = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("mm1.role") == "trial"]
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    nodes = {r.data.tags["mm1.node"] for r in runs}
    cluster_nodes = {node.node_id for node in two_node_cluster.list_all_nodes()}
    assert len(nodes) == 2 and nodes <= cluster_nodes


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    command = [
        str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
        "--artifacts-destination", str(tmp_path / "server-artifacts"), "--workers", "1",
    ]  # fmt: skip
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "mlflow server did not come up"
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def test_sweep_logs_to_a_real_tracking_server(mlflow_server: str, tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    result = run_mm1("sweep", "run", str(spec), "--tracking-uri", mlflow_server, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"MLflow UI:  {mlflow_server}" in result.stdout
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to a local store

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("scale-out")
    runs = client.search_runs([experiment.experiment_id])
    trials = [r for r in runs if r.data.tags.get("mm1.role") == "trial"]
    parent = next(r for r in runs if r.data.tags.get("mm1.role") == "sweep")
    assert len(trials) == 2 and all(r.info.status == "FINISHED" for r in trials)
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in trials)
    assert len(client.get_metric_history(trials[0].info.run_id, "train/loss")) == 20
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"sweep.yaml", "plan.json", "dashboards"} <= artifacts  # uploaded through the server
    assert {a.path for a in client.list_artifacts(trials[0].info.run_id)} >= {"predictions.json"}

    status = run_mm1("sweep", "status", str(spec), "--tracking-uri", mlflow_server, cwd=tmp_path)
    assert status.returncode == 0 and "2 FINISHED" in status.stdout
    table = run_mm1(
        "compare", "--experiment", "scale-out", "--by", "train.lr", "--tracking-uri", mlflow_server, cwd=tmp_path
    )
    assert table.returncode == 0 and table.stdout.count("\n") >= 3, table.stderr[-2000:]
