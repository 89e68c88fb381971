"""``train.init_from`` references resolved against a real MLflow sqlite store (no Ray): the pre-training runs are
written the way the sweep driver writes them, with real checkpoint files."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from mm1core.checkpoint import save_trial_checkpoint
from mm1core.data.tokenizer import build_tokenizer
from mm1core.model import build_model
from orchestrator.expand import expand
from orchestrator.lineage import MlflowSources
from orchestrator.spec import SpecError, parse_spec
from orchestrator.tracking import Tracker
from tests.conftest import run_mm1

MODEL = {"encoder": {"name": "vit-tiny", "resolution": 32}, "connector": {"num_tokens": 4}}
PRE = {
    "name": "pre",
    "experiment": "lineage",
    "base": {"model": MODEL, "train": {"max_steps": 6, "save_at_steps": [3]}},
    "grid": {"model.connector.type": ["avg-pool", "c-abstractor"]},
    "seeds": [0, 1],
}
SFT = {
    "name": "sft",
    "experiment": "lineage",
    "base": {
        "model": {"highres": {"mode": "interpolate", "resolution": 48}},
        "train": {"stage": "sft", "max_steps": 4, "init_from": {"sweep": "pre"}},
    },
}


def _record(tracker: Tracker, folder: Path, spec: dict, finished: bool = True) -> dict[str, str]:
    """Writes the sweep's trial runs as the driver does, each with its models on disk; trial_key -> run id."""
    experiment = tracker.experiment_id(spec["experiment"])
    parent = tracker.start_sweep_run(experiment, spec["name"], "", [])
    runs = {}
    for trial in expand(parse_spec(spec)):
        run_id = tracker.start_trial_run(experiment, parent, spec["name"], trial)
        model = build_model(trial.config.model, build_tokenizer().vocab_size)
        final, early = folder / f"{trial.key}.pt", folder / f"{trial.key}-step3.pt"
        save_trial_checkpoint(final, trial.config, model)
        save_trial_checkpoint(early, trial.config, model)
        tracker.log_outputs(run_id, str(final), [], checkpoints={"3": str(early), "6": str(final)})
        tracker.end_run(run_id, "FINISHED" if finished else "FAILED")
        runs[trial.key] = run_id
    return runs


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    folder = tmp_path_factory.mktemp("lineage")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    return uri, _record(Tracker(uri), folder, PRE)


def _sft(**changes: object) -> dict:
    spec = copy.deepcopy(SFT)
    for path, value in changes.items():
        node = spec
        *parents, leaf = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return spec


def test_one_trial_per_matching_run_with_its_lineage(store) -> None:  # noqa: ANN001
    uri, runs = store
    trials = expand(parse_spec(_sft()), MlflowSources(uri))
    assert len(trials) == 4  # 2 connectors x 2 seeds of the pre-training sweep
    assert {t.config.train.init_from.run for t in trials} == set(runs.values())
    for trial in trials:
        source = trial.config.train.init_from
        assert Path(source.path).is_file() and source.path.endswith(".pt") and "-step" not in source.path
        # the model is the source's (connector type), with this sweep's own high-res setting on top
        assert trial.config.model.connector.type == trial.varied["init.model.connector.type"]
        assert trial.config.model.highres.mode == "interpolate"
        assert trial.derived["init.step"] == 6
        assert set(trial.varied) == {"init.model.connector.type", "init.train.seed"}
    assert len({t.key for t in trials}) == 4
    again = expand(parse_spec(_sft()), MlflowSources(uri))  # a re-run recognises its finished trials by these keys
    assert [t.key for t in again] == [t.key for t in trials]


def test_where_and_step_pick_the_runs_and_their_saved_models(store) -> None:  # noqa: ANN001
    uri, _ = store
    reference = {"sweep": "pre", "where": {"model.connector.type": "c-abstractor", "train.seed": 1}, "step": 3}
    trials = expand(parse_spec(_sft(**{"base.train.init_from": reference})), MlflowSources(uri))
    assert len(trials) == 1
    assert trials[0].config.model.connector.type == "c-abstractor"
    assert trials[0].config.train.init_from.path.endswith("-step3.pt")
    assert trials[0].derived["init.step"] == 3


def test_a_grid_over_steps_gives_a_trial_per_step_and_source(store) -> None:  # noqa: ANN001
    uri, _ = store
    spec = _sft(**{"base.train.init_from.where": {"train.seed": 0}, "grid": {"train.init_from.step": [3, 6]}})
    trials = expand(parse_spec(spec), MlflowSources(uri))
    assert (
        sorted((t.varied["train.init_from.step"], t.derived["init.step"]) for t in trials)
        == [(3, 3)] * 2 + [(6, 6)] * 2
    )


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        (
            {"sweep": "pre", "where": {"model.connector.type": "attn-pool"}},
            "train.init_from: none of the 4 FINISHED trials of sweep 'pre' in experiment 'lineage' matches where "
            "{model.connector.type: attn-pool} (model.connector.type there: avg-pool, c-abstractor)",
        ),
        ({"sweep": "nope"}, "train.init_from: no FINISHED trial of sweep 'nope' in experiment 'lineage'"),
        ({"sweep": "pre", "step": 4}, "train.init_from.step: run 'avg-pool/s0'"),
        ({"sweep": "pre", "experiment": "other"}, "train.init_from: experiment 'other' not found"),
        ({"sweep": "pre", "where": {"model.connector.kind": "x"}}, "train.init_from.where.model.connector.kind: "),
    ],
)
def test_a_reference_that_resolves_to_nothing_is_a_spec_error(store, reference: dict, message: str) -> None:  # noqa: ANN001
    uri, _ = store
    with pytest.raises(SpecError) as error:
        expand(parse_spec(_sft(**{"base.train.init_from": reference})), MlflowSources(uri))
    assert str(error.value).startswith(message), str(error.value)
    assert "\n" not in str(error.value)


def test_a_missing_store_is_named(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"no MLflow store at sqlite:///.*nothing\.db"):
        expand(parse_spec(_sft()), MlflowSources(f"sqlite:///{tmp_path / 'nothing.db'}"))
    assert not (tmp_path / "nothing.db").exists()  # looking did not create it


def test_the_cli_refuses_a_dangling_reference_with_exit_2_and_writes_nothing(tmp_path: Path, store) -> None:  # noqa: ANN001
    import yaml

    uri, _ = store
    spec = tmp_path / "sft.yaml"
    spec.write_text(yaml.safe_dump(_sft(**{"base.train.init_from.where": {"model.connector.type": "attn-pool"}})))
    for verb in ("run",):  # validate and plan share its expansion (test_one_trial_per_matching_run_...)
        result = run_mm1("sweep", verb, str(spec), "--tracking-uri", uri, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "matches where {model.connector.type: attn-pool}" in lines[0], lines
        assert "Traceback" not in result.stderr
    from mlflow.tracking import MlflowClient

    sweeps = MlflowClient(uri).search_runs(
        [MlflowClient(uri).get_experiment_by_name("lineage").experiment_id], "tags.`mm1.sweep` = 'sft'"
    )
    assert sweeps == []  # no sweep or trial run was opened
    assert not (tmp_path / ".mm1" / "ray_results").exists()
