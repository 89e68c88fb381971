"""Every model axis through a real sweep (Ray Tune, Lightning, MLflow sqlite): connectors x token counts x
resolutions, dense vs MoE, high resolution; each trial's MLflow params say which variant it trained."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_sweep_trials

pytestmark = pytest.mark.slow

TINY_TRIAL = {
    "train": {"max_steps": 3, "batch_size": 4, "log_every_n_steps": 3},
    "eval": {"shots": [0], "num_examples": 2, "max_new_tokens": 3},
}
CONNECTORS = {
    "name": "connectors",
    "experiment": "axes",
    "base": TINY_TRIAL,
    "grid": {
        "model.connector.type": ["avg-pool", "attn-pool", "c-abstractor"],
        "model.connector.num_tokens": [4, 16],
        "model.encoder.resolution": [32, 64],
    },
    "max_concurrent": 2,
}
VARIANTS = {
    "name": "variants",
    "experiment": "axes",
    "base": TINY_TRIAL,
    "zip": {
        "model.decoder.moe": [None, {"num_experts": 4, "every_k_layers": 1}, None],
        "model.highres": [{"mode": "none"}, {"mode": "none"}, {"mode": "subimage", "resolution": 64, "grid": 2}],
    },
    "max_concurrent": 2,
}


def test_connector_x_tokens_x_resolution_sweep_logs_each_variant(tmp_path: Path) -> None:
    trials = run_sweep_trials(tmp_path, CONNECTORS)
    assert len(trials) == 12 and all(run.info.status == "FINISHED" for run in trials)
    seen = {
        (p["model.connector.type"], int(p["model.connector.num_tokens"]), int(p["model.encoder.resolution"]))
        for p in (run.data.params for run in trials)
    }
    assert len(seen) == 12
    for run in trials:
        params = run.data.params
        parts = ("model.encoder.params", "model.connector.params", "model.decoder.params")
        assert int(params["model.total_params"]) == sum(int(params[part]) for part in parts)
        assert "eval/avg/0shot" in run.data.metrics
    connector_sizes = {
        p["model.connector.type"]: int(p["model.connector.params"]) for p in (r.data.params for r in trials)
    }
    assert len(set(connector_sizes.values())) == 3  # three different architectures, not one under three names


def test_moe_and_highres_variants_train_and_log(tmp_path: Path) -> None:
    trials = run_sweep_trials(tmp_path, VARIANTS)
    assert len(trials) == 3 and all(run.info.status == "FINISHED" for run in trials)
    moe = [run for run in trials if run.data.params.get("model.decoder.moe.num_experts") == "4"]
    assert len(moe) == 1
    assert {"train/moe_load_balance", "train/moe_router_z", "train/moe_dropped_frac"} <= set(moe[0].data.metrics)
    params = moe[0].data.params
    assert int(params["model.decoder.non_embedding_params"]) > int(params["model.decoder.active_non_embedding_params"])
    subimage = [run for run in trials if run.data.params["model.highres.mode"] == "subimage"]
    assert len(subimage) == 1 and subimage[0].data.params["model.highres.resolution"] == "64"
