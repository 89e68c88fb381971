"""Starting a trial from another's weights (``train.init_from``), saving models along the way
(``train.save_at_steps``) and the per-component freeze switches: real training on the tiny flavour."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from mm1core.checkpoint import load_initial_weights, read_trial_checkpoint
from mm1core.config import TrialConfig, describe_errors
from mm1core.data.tokenizer import build_tokenizer
from mm1core.model import build_model
from mm1core.preflight import preflight
from mm1core.train import initial_model, step_checkpoint_path, train_trial
from tests.mm1core.flavours import TINY


def _config(**train: object) -> TrialConfig:
    tree = copy.deepcopy(TINY)
    tree["train"].update(train)
    tree["eval"].update({"shots": [0], "tasks": ["caption"], "textcore": []})
    return TrialConfig.model_validate(tree)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrialConfig, object, Path]:
    folder = tmp_path_factory.mktemp("pretrained")
    config = _config(max_steps=6, save_at_steps=[2, 4])
    result = train_trial(config, progress_bar=False, threads=1, checkpoint=folder / "trial.pt")
    return config, result, folder


def test_models_are_saved_at_the_asked_steps(pretrained) -> None:  # noqa: ANN001
    config, result, folder = pretrained
    assert result.checkpoints == {
        2: str(folder / "trial-step2.pt"),
        4: str(folder / "trial-step4.pt"),
        6: str(folder / "trial.pt"),
    }
    assert step_checkpoint_path(folder / "trial.pt", 2) == folder / "trial-step2.pt"
    early, late = (read_trial_checkpoint(folder / f"trial-step{s}.pt")["model"] for s in (2, 4))
    final = read_trial_checkpoint(folder / "trial.pt")["model"]
    name = "decoder.embed.weight" if "decoder.embed.weight" in final else next(iter(final))
    assert not torch.equal(early[name], late[name]) and not torch.equal(late[name], final[name])  # models of their step


def test_a_trial_started_from_a_checkpoint_has_its_weights_at_step_0(pretrained) -> None:  # noqa: ANN001
    _, _, folder = pretrained
    source = folder / "trial-step4.pt"
    config = _config(init_from=str(source))
    assert config.train.init_from is not None and config.train.init_from.path == str(source)
    model = initial_model(config, build_tokenizer(config.data.tokenizer))
    saved = read_trial_checkpoint(source)["model"]
    own = model.state_dict()
    assert set(own) == set(saved)
    assert all(torch.equal(own[name], saved[name]) for name in saved)
    fresh = build_model(config.model, build_tokenizer().vocab_size).state_dict()
    assert any(not torch.equal(fresh[name], saved[name]) for name in saved)  # the load did something


def test_a_model_of_another_shape_is_refused_naming_the_tensors(pretrained) -> None:  # noqa: ANN001
    _, _, folder = pretrained
    connector = {"type": "c-abstractor", "num_tokens": 4}
    other = TrialConfig.model_validate({**TINY, "model": {**TINY["model"], "connector": connector}})
    model = build_model(other.model, build_tokenizer().vocab_size)
    with pytest.raises(ValueError, match=r"its model differs from this trial's: .*missing from the file \(connector\."):
        load_initial_weights(model, folder / "trial.pt")


def test_a_missing_or_foreign_checkpoint_is_a_preflight_problem(tmp_path: Path) -> None:
    missing = preflight(_config(init_from=str(tmp_path / "nope.pt"))).problems
    assert [str(p) for p in missing] == [f"train.init_from.path: {tmp_path / 'nope.pt'} does not exist"]
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    (problem,) = preflight(_config(init_from=str(foreign))).problems
    assert problem.path == "train.init_from.path" and "not an mm1 trial checkpoint" in problem.message


def test_a_checkpoint_whose_model_differs_is_named_field_by_field(pretrained) -> None:  # noqa: ANN001
    _, result, _ = pretrained
    tree = _config(init_from=result.checkpoint).model_dump(mode="json")
    tree["model"]["connector"] = {"type": "c-abstractor", "num_tokens": 4}
    problems = preflight(TrialConfig.model_validate(tree)).problems
    assert problems and all(p.path.startswith("model.connector") for p in problems)
    assert any("'c-abstractor' here, but 'avg-pool' in the train.init_from checkpoint" in p.message for p in problems)
    tree["model"]["highres"] = {"mode": "interpolate", "resolution": 64}  # changes no weight: allowed
    tree["model"]["connector"] = _config().model.connector.model_dump(mode="json")
    assert preflight(TrialConfig.model_validate(tree)).problems == []


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"init_from": {"where": {"model.connector.type": "avg-pool"}}}, "give a sweep reference"),
        ({"init_from": {"path": "x.pt", "step": 3}}, "where, experiment and step select among a sweep's runs"),
        ({"save_at_steps": [3, 9], "max_steps": 5}, "save_at_steps: 9 is beyond max_steps 5"),
        ({"save_at_steps": [0]}, "steps must be > 0"),
        ({"stage": "finetune"}, "stage"),
    ],
)
def test_bad_stage_settings_are_refused(train: dict, message: str) -> None:
    with pytest.raises(ValidationError) as error:
        _config(**train)
    assert any(message in line for line in describe_errors(error.value)), describe_errors(error.value)


def test_freezing_everything_is_refused() -> None:
    frozen = {"freeze": True}
    model = {
        "encoder": {**TINY["model"]["encoder"], **frozen},
        "connector": {**TINY["model"]["connector"], **frozen},
        "decoder": frozen,
    }
    with pytest.raises(ValidationError, match="nothing would train"):
        TrialConfig.model_validate({**TINY, "model": model})


def test_a_frozen_component_keeps_its_weights(tmp_path: Path) -> None:
    tree = copy.deepcopy(TINY)
    tree["model"]["connector"]["freeze"] = True
    tree["model"]["decoder"] = {"freeze": True}
    tree["eval"].update({"shots": [0], "tasks": ["caption"], "textcore": []})
    config = TrialConfig.model_validate(tree)
    torch.manual_seed(0)
    before = build_model(config.model, build_tokenizer().vocab_size).state_dict()
    train_trial(config, progress_bar=False, threads=1, checkpoint=tmp_path / "frozen.pt")
    after = read_trial_checkpoint(tmp_path / "frozen.pt")["model"]
    for name in after:
        same = torch.equal(before[name], after[name])
        if name.startswith(("connector.", "decoder.")):
            assert same, f"{name} changed although frozen"
    assert any(not torch.equal(before[n], after[n]) for n in after if n.startswith("encoder.")), "encoder never trained"


def test_new_fields_at_their_defaults_keep_earlier_trial_keys() -> None:
    # Keys of trials run before stages existed; a default stage, no init_from, no freeze must not change them.
    assert TrialConfig().trial_key() == "ae51d175291e"
    assert _config(save_at_steps=[2]).trial_key() == _config().trial_key()  # extra saved copies: same trial
    assert _config(stage="sft").trial_key() != _config().trial_key()
