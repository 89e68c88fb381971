"""Few-shot captioning prompts and CIDEr-D scoring."""

from __future__ import annotations

import pytest

from mm1core.config import TrialConfig
from mm1core.data.dataset import encode_document
from mm1core.data.lengths import max_prompt_tokens
from mm1core.data.tokenizer import Tokenizer
from mm1core.evaluate.captioning import caption_prompt, cider_d, demonstration_indices
from mm1core.evaluate.harness import evaluate
from mm1core.model import MM1Model


def test_prompt_has_k_demonstrations_then_the_query() -> None:
    prompt, references = caption_prompt(0, 3, shots=4)
    lines = prompt.text.split("\n")
    assert len(lines) == 5 and all(line.startswith("<image> a photo of ") for line in lines[:4])
    assert lines[-1] == "<image> a photo of" and len(prompt.images) == 5 and len(references) == 5


def test_demonstrations_are_fixed_and_nested() -> None:
    assert demonstration_indices(0, 1, 8) == demonstration_indices(0, 1, 8)
    assert demonstration_indices(0, 1, 8)[:4] == demonstration_indices(0, 1, 4)
    assert demonstration_indices(0, 1, 4) != demonstration_indices(0, 2, 4)


@pytest.mark.parametrize("shots", [0, 4, 8])
def test_prompt_length_bound(shots: int, tokenizer: Tokenizer) -> None:
    for index in range(40):
        sample = encode_document(caption_prompt(0, index, shots)[0], tokenizer, 16, 32, end=False)
        assert len(sample["token_ids"]) <= max_prompt_tokens(shots, 16)


def test_cider_rewards_matching_captions() -> None:
    references = [["a red circle on the left", "a small red circle"], ["a blue square", "a large blue square"]]
    assert cider_d(references, ["a red circle on the left.", "a blue square"]) > cider_d(
        references, ["a blue square", "a red circle"]
    )
    assert cider_d(references, ["", ""]) == 0.0


def test_evaluate_reports_every_metric(tiny_model: MM1Model, tiny_config: TrialConfig, tokenizer: Tokenizer) -> None:
    evaluation = evaluate(tiny_model, tiny_config, tokenizer)
    metrics, tasks = evaluation.metrics, tiny_config.eval.task_names()
    expected = {f"eval/{task}/{k}shot" for task in (*tasks, "avg") for k in tiny_config.eval.shots}
    assert set(metrics) == expected | {"eval/textcore", "eval/loss"}
    for k in tiny_config.eval.shots:
        mean = sum(metrics[f"eval/{task}/{k}shot"] for task in tasks) / len(tasks)
        assert metrics[f"eval/avg/{k}shot"] == pytest.approx(mean) and mean >= 0.0
    assert 0.0 <= metrics["eval/textcore"] <= 100.0 and 0.0 < metrics["eval/loss"] < 10.0
    shown = min(tiny_config.eval.predictions, tiny_config.eval.num_examples)
    assert len(evaluation.predictions) == shown * (len(tasks) * len(tiny_config.eval.shots) + 1)
