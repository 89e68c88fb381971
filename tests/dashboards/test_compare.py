"""``mm1 compare`` through the real CLI on runs made with the real MLflow API."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dashboards import DashboardError
from dashboards.compare import compare_table, default_metrics, format_compare
from dashboards.runs import Store, latest_per_trial, parse_param, varied_params
from tests.conftest import run_mm1
from tests.dashboards.conftest import FakeStore

SCORES = {  # (connector, tokens) -> per-seed 4-shot averages
    ("avg-pool", 4): [30.0, 34.0],
    ("avg-pool", 16): [40.0, 42.0],
    ("c-abstractor", 4): [31.0, 33.0],
    ("c-abstractor", 16): [45.0, 47.0],
}


def connector_trials() -> list[dict]:
    trials = []
    for (connector, tokens), scores in SCORES.items():
        for seed, score in enumerate(scores):
            params = {
                "model.connector.type": connector,
                "model.connector.num_tokens": tokens,
                "train.seed": seed,
                "train.lr": 0.003,
                "model.connector.params": 1000 + tokens,
            }
            metrics = {"eval/avg/0shot": score / 2, "eval/avg/4shot": score, "eval/textcore": 50.0, "train/loss": 1.0}
            trials.append({"params": params, "metrics": metrics, "name": f"{connector}/{tokens}tok/s{seed}"})
    return trials


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    fake_store = FakeStore(tmp_path_factory.mktemp("compare"))
    fake_store.add_sweep("ablations", "connector", connector_trials())
    fake_store.add_sweep("ablations", "other", [{"params": {"train.lr": 0.1}, "metrics": {"eval/avg/4shot": 1.0}}])
    fake_store.add_sweep("ablations", "broken", [{"params": {"train.lr": 0.1}, "status": "FAILED"}])
    return Store(fake_store.uri)


def test_frame_types_params_and_finds_the_swept_axes(store: Store) -> None:
    frame = store.trials("ablations", "connector")
    assert len(frame) == 8 and set(frame["status"]) == {"FINISHED"}
    assert frame["model.connector.num_tokens"].dtype.kind == "i" and frame["train.lr"].dtype.kind == "f"
    assert varied_params(frame) == ["model.connector.num_tokens", "model.connector.type"]
    assert [parse_param(t) for t in ("True", "3", "0.5", "nan", "[1, 2]", "None")][:3] == [True, 3, 0.5]
    assert parse_param("nan") == "nan" and parse_param("[1, 2]") == "[1, 2]" and parse_param("None") is None


def test_failed_runs_are_left_out_and_a_sweep_with_none_finished_is_an_error(store: Store) -> None:
    assert len(store.trials("ablations")) == 9  # 8 connector + 1 other, not the failed one
    with pytest.raises(DashboardError, match="no finished trial runs in sweep 'broken'"):
        store.trials("ablations", "broken")


def test_table_averages_seeds_with_std_and_counts(store: Store) -> None:
    frame = latest_per_trial(store.trials("ablations", "connector"))
    table = compare_table(frame, ["model.connector.type", "model.connector.num_tokens"], default_metrics(frame))
    assert list(table.columns[:3]) == ["model.connector.type", "model.connector.num_tokens", "runs"]
    row = table[(table["model.connector.type"] == "c-abstractor") & (table["model.connector.num_tokens"] == 16)]
    assert row["eval/avg/4shot"].item() == pytest.approx(46.0)
    assert row["eval/avg/4shot std"].item() == pytest.approx(pd.Series([45.0, 47.0]).std())
    assert row["runs"].item() == 2
    assert default_metrics(frame) == ["eval/avg/0shot", "eval/avg/4shot", "eval/textcore", "train/loss"]
    assert "46.000 ± 1.414" in format_compare(table)


def test_one_key_pools_the_other_axis(store: Store) -> None:
    frame = store.trials("ablations", "connector")
    table = compare_table(frame, ["model.connector.type"], ["eval/avg/4shot"])
    means = dict(zip(table["model.connector.type"], table["eval/avg/4shot"], strict=True))
    assert means == pytest.approx({"avg-pool": 36.5, "c-abstractor": 39.0})
    assert table["runs"].tolist() == [4, 4]


@pytest.mark.parametrize(
    ("by", "metric", "expected"),
    [
        ("model.connector.typ", None, "--by: no param 'model.connector.typ' in these runs (did you mean"),
        ("", None, "--by: name at least one param"),
        ("model.connector.type", "eval/avg/8shot", "--metric: no run logged 'eval/avg/8shot'"),
    ],
)
def test_bad_keys_and_metrics_are_named(store: Store, by: str, metric: str | None, expected: str) -> None:
    frame = store.trials("ablations", "connector")
    with pytest.raises(DashboardError) as caught:
        compare_table(frame, [k for k in by.split(",") if k], [metric] if metric else default_metrics(frame))
    assert str(caught.value).startswith(expected)


def test_cli_prints_the_pivot_and_writes_csv(store: Store, tmp_path: Path) -> None:
    csv = tmp_path / "table.csv"
    args = ["compare", "--experiment", "ablations", "--tracking-uri", store.uri, "--by", "model.connector.type"]
    result = run_mm1(*args, "--sweep", "connector", "--metric", "eval/avg/4shot", "--csv", str(csv), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "c-abstractor" in result.stdout and "39.000 ± 8.165" in result.stdout
    table = pd.read_csv(csv)
    assert table["eval/avg/4shot"].tolist() == pytest.approx([36.5, 39.0]) and table["runs"].tolist() == [4, 4]
    only = run_mm1(*args, "--sweep", "other", cwd=tmp_path)
    assert only.returncode == 2 and "--by: no param 'model.connector.type'" in only.stderr

    missing = run_mm1("compare", "--experiment", "nope", "--tracking-uri", store.uri, "--by", "x", cwd=tmp_path)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines()[-1].startswith("mm1: error: --experiment: no experiment 'nope'")
    nostore = run_mm1(
        "compare", "--experiment", "e", "--tracking-uri", f"sqlite:///{tmp_path}/none.db", "--by", "x", cwd=tmp_path
    )
    assert nostore.returncode == 2 and "does not exist" in nostore.stderr
    assert not (tmp_path / "none.db").exists()  # reading never creates a store
