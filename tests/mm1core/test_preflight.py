"""The preflight: every problem a trial would hit at start, found from its config and the files it names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mm1core.config import TrialConfig
from mm1core.preflight import GIB, Budget, check_trial, preflight, resolve_files

ROOMY = Budget(24 * GIB, "cpu", "24 GiB for the test")


def problems_of(raw: dict, budget: Budget | None = ROOMY, folder: Path | None = None) -> list[str]:
    config, problems = check_trial(raw, folder, budget)
    assert config is None, f"{raw} passed the preflight"
    return problems


def test_a_config_that_fits_has_no_problem_and_an_estimate() -> None:
    config, problems = check_trial({}, budget=ROOMY)
    assert problems == [] and config is not None
    report = preflight(config, ROOMY)
    assert report.problems == [] and report.estimate is not None
    assert 0 < report.estimate.peak_bytes < ROOMY.bytes and report.estimate.flops_per_step > 0


def test_a_few_shot_prompt_longer_than_the_decoder_is_named_with_the_most_shots_that_fit() -> None:
    # The case: every trial of this sweep failed at start, minutes after `sweep validate` said ok.
    raw = {
        "model": {
            "encoder": {"name": "vit-tiny", "resolution": 128},
            "connector": {"type": "avg-pool", "num_tokens": 256},
        },
        "data": {"max_images": 3},
        "eval": {"shots": [0, 2, 8]},
    }
    assert problems_of(raw) == [
        "eval.shots: a 8-shot prompt of up to 2569 tokens exceeds max_seq_len 1024 (at most 2 shots fit)"
    ]


def test_training_rows_longer_than_the_decoder_are_named() -> None:
    raw = {"model": {"encoder": {"resolution": 128}, "connector": {"num_tokens": 256}}, "data": {"max_images": 4}}
    (problem,) = problems_of(raw)
    assert problem.startswith("data.max_images: 4 images x 256 tokens: samples of up to 1184 tokens exceed")
    assert problems_of({"data": {"seq_len": 4096}}) == ["data.seq_len: 4096 exceeds the decoder's max_seq_len 1024"]


def test_an_sft_trial_is_not_held_to_few_shot_prompts() -> None:
    raw = {"model": {"encoder": {"resolution": 128}, "connector": {"num_tokens": 256}}, "eval": {"shots": [8]}}
    config, problems = check_trial({**raw, "train": {"stage": "sft"}}, budget=ROOMY)
    assert problems == [] and config is not None


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"model": {"encoder": {"resolution": 4096}}}, "model.encoder.resolution"),
        ({"train": {"batch_size": 100_000}}, "train.batch_size"),
        ({"eval": {"batch_size": 200_000}}, "eval.batch_size"),
    ],
    ids=["huge-resolution", "huge-batch", "huge-eval-batch"],
)
def test_a_trial_that_cannot_fit_in_memory_is_named_before_it_starts(raw: dict, field: str) -> None:
    (problem,) = problems_of(raw)
    assert problem.startswith(f"{field}: needs about ") and "more than the 24.00 GiB it will have" in problem


def test_memory_is_shared_by_the_trials_that_run_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MM1_HOST_MEMORY_GB", "8")
    assert Budget.host(1).bytes == 8 * GIB and Budget.host(4).bytes == 2 * GIB
    assert "4 trial(s) at once" in Budget.host(4).source
    monkeypatch.setenv("MM1_GPU_MEMORY_GB", "80")
    assert Budget.gpu(0.25).bytes == 20 * GIB and Budget.gpu(2).bytes == 80 * GIB


def test_files_are_checked_with_the_field_that_names_them(tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    cases = {
        "data.source.caption": {
            "data": {"source": {"caption": str(missing), "interleaved": "synthetic", "text": "synthetic"}}
        },
        "data.tokenizer": {"data": {"tokenizer": str(missing)}},
        "data.sft.source": {"data": {"sft": {"source": str(missing / "llava.json")}}},
        "eval.textcore[1]": {"eval": {"textcore": ["world", str(missing / "mc.jsonl")]}},
        "eval.tasks[0].path": {"eval": {"tasks": [{"type": "coco-captions", "path": str(missing / "c.json")}]}},
        "model.encoder.checkpoint": {"model": {"encoder": {"checkpoint": str(missing)}}},
        "model.decoder.checkpoint": {"model": {"decoder": {"checkpoint": str(missing)}}},
        "train.init_from.path": {"train": {"init_from": str(missing / "trial.pt")}},
    }
    for field, raw in cases.items():
        lines = problems_of(raw)
        assert len(lines) == 1 and lines[0].startswith(f"{field}: "), (field, lines)


def test_relative_paths_resolve_against_the_folder_of_the_file_that_names_them(tmp_path: Path) -> None:
    (tmp_path / "fit.json").write_text(json.dumps({"a": -0.42, "b": -0.55}))
    (tmp_path / "mc.jsonl").write_text(json.dumps({"context": "1 + 1 =", "choices": ["2", "3"], "answer": 0}) + "\n")
    given = TrialConfig.model_validate(
        {"train": {"lr": {"law": "fit.json"}}, "eval": {"textcore": ["world", "mc.jsonl"]}}
    )
    resolved, problems = resolve_files(given, tmp_path)
    assert problems == []
    assert resolved.train.lr.law.a == -0.42  # the coefficients are the config's, not the path
    assert resolved.eval.textcore == ["world", str(tmp_path / "mc.jsonl")]
    absolute = TrialConfig.model_validate(
        {
            "train": {"lr": {"law": {"a": -0.42, "b": -0.55}}},
            "eval": {"textcore": ["world", str(tmp_path / "mc.jsonl")]},
        }
    )
    assert resolve_files(absolute)[0].trial_key() == resolved.trial_key()
    _, elsewhere = resolve_files(given, tmp_path / "other")
    assert [path for path, _ in elsewhere] == ["train.lr.law"]


def test_values_alone_never_touch_the_disk(tmp_path: Path) -> None:
    # A config naming files that do not exist is valid data; only the preflight reads the disk.
    config = TrialConfig.model_validate(
        {"model": {"encoder": {"checkpoint": str(tmp_path / "x")}}, "data": {"tokenizer": "tok/"}}
    )
    assert config.data.tokenizer == "tok/"
