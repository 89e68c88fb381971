"""Every kind of bad sweep input gives a message naming the path at fault (and, for names, the choices)."""

from __future__ import annotations

import pytest

from orchestrator.spec import SpecError, parse_spec


def problems(data: dict) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec(data)
    return str(caught.value)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"name": "x", "bogus": 1}, "bogus: unknown key"),
        ({"name": "x", "base": {"model": {"conector": {}}}}, "base.model.conector: unknown key"),
        ({"base": {}}, "name: required field is missing"),
        (
            {"name": "x", "grid": {"model.connector.typo": [1]}},
            "grid.model.connector.typo: model.connector has no field 'typo'",
        ),
        ({"name": "x", "grid": {"model.nope.type": [1]}}, "grid.model.nope.type: model has no field 'nope'"),
        (
            {"name": "x", "grid": {"model.connector.type": ["avg-pool", "cabstractor"]}},
            "grid.model.connector.type[1]: 'cabstractor' is not one of avg-pool",
        ),
        ({"name": "x", "grid": {"train.lr": [1e-3, "fast"]}}, "grid.train.lr[1]: Input should be a valid number"),
        (
            {"name": "x", "grid": {"train.max_steps": [10, -1]}},
            "grid.train.max_steps[1]: Input should be greater than 0",
        ),
        (
            {"name": "x", "base": {"data": {"mixture": {"caption": 0.5, "interleaved": 0.3, "text": 0.1}}}},
            "base.data.mixture: mixture ratios must sum to 1, got 0.9",
        ),
        ({"name": "x", "grid": {"train.lr": []}}, "grid.train.lr: empty list"),
        (
            {"name": "x", "zip": {"train.lr": [1e-3, 2e-3], "train.batch_size": [8]}},
            "zip lists must have equal lengths",
        ),
        (
            {"name": "x", "base": {"model": {"encoder": {"resolution": 33}}}},
            "base.model.encoder.resolution: 33 is not divisible",
        ),
        (
            {"name": "x", "base": {"model": {"decoder": {"name": "gpt-9"}}}},
            "base.model.decoder.name: 'gpt-9' is not one of lm-tiny",
        ),
        ({"name": "x", "scheduler": {"type": "hyperband"}}, "scheduler.type: Input should be 'fifo' or 'asha'"),
        ({"name": "x", "resources": {"gpus_per_trial": 1.5}}, "gpus_per_trial above 1 must be a whole number"),
        ({"name": "x", "seeds": []}, "seeds: at least one seed"),
        ({"name": "x", "exclude": [{"train.nope": 1}]}, "exclude[0].train.nope: train has no field 'nope'"),
        ({"name": "x", "grid": {"train": [1]}}, "grid.train[0]: Input should be a valid dictionary"),
        (
            {"name": "x", "grid": {"model.highres": [{}]}, "zip": {"model.highres.mode": ["none"]}},
            "zip.model.highres.mode: inside grid.model.highres (vary a section or its fields, not both)",
        ),
        ({"name": "x", "max_concurrent": 0}, "max_concurrent: Input should be greater than 0"),
        ({"name": "bad name!"}, "name: String should match pattern"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_spec_names_the_path(data, expected):
    assert expected in problems(data)


def test_every_problem_is_reported_at_once():
    message = problems({"name": "x", "grid": {"train.lr": ["a", "b"], "model.connector.type": ["z"]}})
    assert message.count("\n") == 2


def test_valid_spec_with_every_section():
    spec = parse_spec(
        {
            "name": "full",
            "experiment": "e",
            "description": "d",
            "base": {"train": {"max_steps": 10}},
            "grid": {"train.lr": [1e-3]},
            "zip": {"train.batch_size": [8]},
            "exclude": [],
            "seeds": [0, 1],
            "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0.25},
            "max_concurrent": 2,
            "scheduler": {"type": "asha", "metric": "train/loss", "mode": "min", "grace_steps": 5},
            "failure": {"max_retries": 1},
        }
    )
    assert spec.resources.gpus_per_trial == 0.25
    assert spec.scheduler.type == "asha"
