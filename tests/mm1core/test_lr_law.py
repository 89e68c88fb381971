"""``train.lr: {law: ...}``: MM1's LR law (Sec. 3.4) evaluated at each trial's own decoder size."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from pydantic import ValidationError

from mm1core.config import TrialConfig, describe_errors
from mm1core.preflight import check_trial, resolve_files

PAPER = {"a": -0.4214, "b": -0.5535}


def law_trial(law: object, decoder: str = "lm-tiny") -> TrialConfig:
    """The trial with its law's file (if a path) read, as the preflight's resolution does before expansion."""
    config = TrialConfig.model_validate({"model": {"decoder": {"name": decoder}}, "train": {"lr": {"law": law}}})
    resolved, problems = resolve_files(config)
    assert not problems, problems
    return resolved


def error_lines(law: object) -> list[str]:
    """Validation's and the preflight's problems with the law, one line each."""
    config, problems = check_trial({"model": {"decoder": {"name": "lm-tiny"}}, "train": {"lr": {"law": law}}})
    assert config is None
    return problems


@pytest.mark.parametrize("decoder", ["lm-nano", "lm-tiny", "lm-small"])
def test_law_gives_the_lr_of_the_trials_own_size_and_weight_decay_follows(decoder: str) -> None:
    config = law_trial(PAPER, decoder).resolved()
    n = config.model.decoder.non_embedding_params()
    assert config.train.lr == pytest.approx(math.exp(PAPER["a"] * math.log(n) + PAPER["b"]), rel=1e-12)
    assert config.train.weight_decay == pytest.approx(0.1 * config.train.lr)


def test_larger_decoder_gets_a_smaller_lr_under_a_negative_slope() -> None:
    lrs = [law_trial(PAPER, name).resolved().train.lr for name in ("lm-nano", "lm-tiny", "lm-small")]
    assert lrs == sorted(lrs, reverse=True)


def test_law_from_a_fit_json_equals_the_inline_law(tmp_path: Path) -> None:
    fit = tmp_path / "fit.json"
    fit.write_text(json.dumps({**PAPER, "r2": 0.99, "points": []}))
    from_file, inline = law_trial(str(fit)).resolved(), law_trial(PAPER).resolved()
    assert from_file.train.lr == inline.train.lr
    assert from_file.trial_key() == inline.trial_key()  # the coefficients, not the path, are hashed


def test_a_plain_number_still_works_and_the_law_changes_the_key() -> None:
    plain = TrialConfig.model_validate({"train": {"lr": 1e-3}}).resolved()
    assert plain.train.lr == 1e-3 and plain.train.weight_decay == pytest.approx(1e-4)
    assert plain.trial_key() != law_trial(PAPER).trial_key()


@pytest.mark.parametrize(
    ("law", "expected"),
    [
        ({"a": -0.4}, "train.lr.law.b: required field is missing"),
        ({"a": "steep", "b": 0}, "train.lr.law.a: Input should be a valid number"),
        (3, "train.lr.law: expected {a: ..., b: ...} or the path of a fit.json"),
        ("/nonexistent/fit.json", "train.lr.law: /nonexistent/fit.json does not exist"),
        ({"a": 5, "b": 3}, "train.lr: the law gives eta = "),
    ],
    ids=["missing-b", "not-a-number", "wrong-type", "missing-file", "absurd-lr"],
)
def test_bad_laws_are_one_line_naming_the_field(law: object, expected: str) -> None:
    lines = error_lines(law)
    assert len(lines) == 1 and lines[0].startswith(expected), lines


def test_a_fit_file_without_coefficients_is_named(tmp_path: Path) -> None:
    fit = tmp_path / "fit.json"
    fit.write_text("[1, 2]")
    assert error_lines(str(fit)) == [f"train.lr.law: {fit}: needs numbers 'a' and 'b' (the fit of mm1 fit-lr)"]
    fit.write_text("{not json")
    assert error_lines(str(fit))[0].startswith(f"train.lr.law: {fit}: not a readable JSON file")


def test_lr_errors_stay_on_the_lr_path() -> None:
    for value, expected in (("fast", "train.lr: Input should be a valid number"), (-1, "train.lr: Input should be")):
        with pytest.raises(ValidationError) as caught:
            TrialConfig.model_validate({"train": {"lr": value}})
        assert describe_errors(caught.value)[0].startswith(expected)
