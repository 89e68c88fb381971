"""Expansion arithmetic and order, trial_key stability, weight-decay resolution."""

from __future__ import annotations

import pytest

from orchestrator.expand import expand
from orchestrator.spec import SpecError, parse_spec

ACCEPT = {
    "name": "accept-foundation",
    "base": {"model": {"connector": {"type": "avg-pool", "num_tokens": 16}}, "train": {"max_steps": 5}},
    "grid": {"model.connector.num_tokens": [4, 16], "train.lr": [1.0e-3, 3.0e-3, 1.0e-2]},
    "seeds": [0, 1],
    "exclude": [],
}


def test_grid_times_seeds():
    assert len(expand(parse_spec(ACCEPT))) == 12


def test_order_is_nested_loops_with_seeds_innermost():
    trials = expand(parse_spec(ACCEPT))
    firsts = [(t.varied["model.connector.num_tokens"], t.varied["train.lr"], t.varied["train.seed"]) for t in trials]
    assert firsts[:4] == [(4, 1e-3, 0), (4, 1e-3, 1), (4, 3e-3, 0), (4, 3e-3, 1)]
    assert firsts[-1] == (16, 1e-2, 1)
    assert [t.index for t in trials] == list(range(12))


def test_zip_varies_together_and_crosses_grid():
    spec = {
        "name": "z",
        "grid": {"model.connector.num_tokens": [4, 16]},
        "zip": {"model.decoder.name": ["lm-tiny", "lm-small", "lm-base-toy"], "train.lr": [3e-3, 2e-3, 1e-3]},
    }
    trials = expand(parse_spec(spec))
    assert len(trials) == 6
    pairs = {(t.config.model.decoder.name, t.config.train.lr) for t in trials}
    assert pairs == {("lm-tiny", 3e-3), ("lm-small", 2e-3), ("lm-base-toy", 1e-3)}


def test_exclude_drops_trials_matching_every_key():
    spec = dict(ACCEPT, exclude=[{"model.connector.num_tokens": 16, "train.lr": 1.0e-2}, {"train.seed": 1}])
    trials = expand(parse_spec(spec))
    assert len(trials) == 5  # 12 - 6 (seed 1) - 1 (16 tokens at lr 1e-2, seed 0)
    assert all(t.config.train.seed == 0 for t in trials)
    assert not any(t.config.model.connector.num_tokens == 16 and t.config.train.lr == 1e-2 for t in trials)


def test_excluding_everything_is_an_error():
    with pytest.raises(SpecError, match="every trial is excluded"):
        expand(parse_spec(dict(ACCEPT, exclude=[{"train.max_steps": 5}])))


def test_trial_key_is_stable_and_distinct():
    first = [t.key for t in expand(parse_spec(ACCEPT))]
    again = [t.key for t in expand(parse_spec(ACCEPT))]
    assert first == again
    assert len(set(first)) == len(first)
    assert all(len(k) == 12 and int(k, 16) >= 0 for k in first)


def test_trial_key_ignores_spelling_but_not_values():
    """Writing a default explicitly, or 'auto' vs its value, is the same trial; a real change is not."""
    plain = expand(parse_spec({"name": "a", "base": {"train": {"lr": 1e-3}}}))[0]
    explicit = expand(parse_spec({"name": "b", "base": {"train": {"lr": 1e-3, "weight_decay": 1e-4}}}))[0]
    other = expand(parse_spec({"name": "c", "base": {"train": {"lr": 2e-3}}}))[0]
    assert plain.key == explicit.key
    assert plain.key != other.key


def test_weight_decay_auto_is_a_tenth_of_lr():
    trials = expand(parse_spec(ACCEPT))
    for trial in trials:
        assert trial.config.train.weight_decay == pytest.approx(0.1 * trial.config.train.lr)


def test_repeated_grid_value_is_reported():
    with pytest.raises(SpecError, match="same config"):
        expand(parse_spec({"name": "dup", "grid": {"train.lr": [1e-3, 0.001]}}))


def test_base_seed_is_used_when_seeds_not_given():
    trials = expand(parse_spec({"name": "s", "base": {"train": {"seed": 7}}}))
    assert [t.config.train.seed for t in trials] == [7]


def test_combination_errors_name_the_trial():
    spec = {
        "name": "combo",
        "grid": {"model.encoder.resolution": [32, 64], "model.connector.num_tokens": [16, 64]},
    }
    with pytest.raises(SpecError) as caught:
        expand(parse_spec(spec))
    message = str(caught.value)
    assert "model.encoder.resolution=32, model.connector.num_tokens=64" in message
    assert "model.connector.num_tokens" in message and "8x8" in message


def test_impossible_token_count_is_an_error():
    with pytest.raises(SpecError, match="avg-pool cannot give 5 tokens: not a square number"):
        expand(parse_spec({"name": "x", "grid": {"model.connector.num_tokens": [4, 5]}}))


def test_run_names_are_the_varied_values_and_the_seed():
    spec = {
        "name": "names",
        "grid": {
            "model.connector.type": ["avg-pool", "c-abstractor"],
            "model.connector.num_tokens": [4, 16],
            "model.encoder.resolution": [32, 64],
            "train.lr": [3e-3],
            "data.synthetic_captions": [True, False],
        },
        "seeds": [0, 1],
    }
    labels = [t.label for t in expand(parse_spec(spec))]
    assert labels[0] == "avg-pool/4tok/32px/lr0.003/synthetic_captions/s0"
    assert labels[3] == "avg-pool/4tok/32px/lr0.003/no-synthetic_captions/s1"
    assert len(set(labels)) == len(labels)
    assert expand(parse_spec({"name": "one"}))[0].label == "s0"


def test_section_valued_axes_name_runs_compactly():
    mixtures = [{"caption": 1.0, "interleaved": 0.0, "text": 0.0}, {"caption": 0.5, "interleaved": 0.5, "text": 0.0}]
    labels = [t.label for t in expand(parse_spec({"name": "m", "grid": {"data.mixture": mixtures}}))]
    assert labels == ["mixture(caption=1,interleaved=0,text=0)/s0", "mixture(caption=0.5,interleaved=0.5,text=0)/s0"]


def test_lr_law_resolves_per_trial_and_is_carried_as_derived_values():
    spec = {
        "name": "scale-up",
        "base": {"train": {"lr": {"law": {"a": -0.4214, "b": -0.5535}}}},
        "grid": {"model.decoder.name": ["lm-nano", "lm-small"]},
    }
    small, large = expand(parse_spec(spec))
    assert small.config.train.lr > large.config.train.lr
    assert small.derived["train.lr"] == small.config.train.lr
    assert small.derived["train.weight_decay"] == pytest.approx(0.1 * small.config.train.lr)
    assert small.derived["train.lr_law.a"] == -0.4214
    assert expand(parse_spec({"name": "plain"}))[0].derived == {}


def test_lr_law_as_a_grid_value_beside_fixed_lrs():
    spec = {"name": "g", "grid": {"train.lr": [1e-3, {"law": {"a": -0.4214, "b": -0.5535}}]}}
    fixed, law = expand(parse_spec(spec))
    assert fixed.config.train.lr == 1e-3 and law.config.train.lr != 1e-3 and law.derived
    bad = {"name": "g", "grid": {"train.lr": [1e-3, {"law": {"a": 1}}]}}
    with pytest.raises(SpecError, match=r"grid.train.lr\[1\].law.b: required field is missing"):
        parse_spec(bad)


def _asha(**scheduler) -> dict:
    return {
        "name": "s",
        "base": {"train": {"max_steps": 100}, "eval": {"every_n_steps": 20, "shots": [0, 4]}},
        "grid": {"train.lr": [1e-3, 3e-3]},
        "scheduler": {"type": "asha", "grace_steps": 20, **scheduler},
    }


@pytest.mark.parametrize(
    "metric, mode", [("eval/loss", "min"), ("train/loss", "min"), ("eval/avg/4shot", "max"), ("eval/vqa/0shot", "max")]
)
def test_asha_accepts_metrics_reported_while_training(metric, mode):
    assert len(expand(parse_spec(_asha(metric=metric, mode=mode)))) == 2


@pytest.mark.parametrize(
    "change, message",
    [
        ({"metric": "eval/loss", "mode": "max"}, "scheduler.mode: max is the wrong direction for eval/loss (use min)"),
        ({"metric": "eval/avg/8shot", "mode": "max"}, "does not report eval/avg/8shot; reported while training:"),
        ({"metric": "eval/bleu", "mode": "max"}, "scheduler.metric: trial lr0.001/s0 does not report eval/bleu"),
        ({"metric": "train/loss", "grace_steps": 100}, "scheduler.grace_steps: 100 is not below trial lr0.001/s0's"),
    ],
)
def test_asha_rejects_metrics_or_grace_it_cannot_use(change, message):
    with pytest.raises(SpecError) as raised:
        expand(parse_spec(_asha(**change)))
    assert message in str(raised.value)
    assert "and 1 more trial(s) alike" in str(raised.value) or "mode" in str(raised.value)


def test_asha_on_an_eval_metric_needs_periodic_evaluation():
    spec = _asha(metric="eval/loss")
    del spec["base"]["eval"]["every_n_steps"]
    with pytest.raises(SpecError, match=r"set eval.every_n_steps: ASHA compares trials on the periodic evaluations"):
        expand(parse_spec(spec))


def test_asha_starts_trials_in_a_seeded_shuffle_unless_told_not_to():
    from orchestrator.run import start_order

    spec = _asha()
    spec["grid"]["train.lr"] = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]
    trials = expand(parse_spec(spec))
    shuffled = start_order(parse_spec(spec), trials)
    assert sorted(t.index for t in shuffled) == list(range(8)) and [t.index for t in shuffled] != list(range(8))
    assert [t.key for t in start_order(parse_spec(spec), trials)] == [t.key for t in shuffled]  # every run alike
    for change in ({"scheduler": {"type": "fifo"}}, {"scheduler": {**spec["scheduler"], "shuffle": False}}):
        assert start_order(parse_spec({**spec, **change}), trials) == trials


def test_sft_trials_report_their_own_eval_metrics_to_a_scheduler() -> None:
    from mm1core.config import TrialConfig
    from orchestrator.expand import scheduler_metrics

    sft = {"train": {"stage": "sft"}, "eval": {"every_n_steps": 10, "tasks": ["caption", "vqa"]}}
    assert scheduler_metrics(TrialConfig.model_validate(sft)) == {
        "train/loss",
        "eval/sft/loss",
        "eval/sft/caption",
        "eval/sft/vqa",
        "eval/sft/avg",
    }
    sft["eval"]["periodic"] = "loss"
    assert scheduler_metrics(TrialConfig.model_validate(sft)) == {"train/loss", "eval/sft/loss"}
