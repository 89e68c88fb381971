"""Instruction-style evaluation of SFT trials: the chat prompts, the eval/sft/* metrics, and pre-training untouched."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from mm1core.config import EMBEDDED_TASKS, TrialConfig
from mm1core.data.dataset import encode_document
from mm1core.data.records import IMAGE
from mm1core.data.tokenizer import Tokenizer
from mm1core.data.world import CAPTION_REQUEST, ONE_WORD, Split, vqa_item
from mm1core.evaluate.harness import evaluate, evaluate_loss
from mm1core.evaluate.instruct import instruction, instruction_prompt
from mm1core.evaluate.tasks import Example, FewShotTask, build_tasks
from mm1core.model import MM1Model
from tests.mm1core.evaluate.conftest import Benchmark
from tests.mm1core.evaluate.oracle import OracleModel, answer_key
from tests.mm1core.flavours import TINY


def sft_trial(**evaluation: Any) -> TrialConfig:
    return TrialConfig.model_validate(
        {**TINY, "train": {**TINY["train"], "stage": "sft"}, "eval": {**TINY["eval"], **evaluation}}
    )


def example(query: str) -> Example:
    return Example(None, query, "", (), 0, 0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("<image> a photo of", CAPTION_REQUEST),
        ("<image> A photo of", CAPTION_REQUEST),
        ("<image> question: how many shapes are there? short answer:", f"how many shapes are there? {ONE_WORD}"),
        ("<image> Question: What colour is the car? Short answer:", f"What colour is the car? {ONE_WORD}"),
    ],
    ids=["world-caption", "coco", "world-vqa", "vqav2"],
)
def test_each_query_becomes_an_instruction(query: str, expected: str) -> None:
    assert instruction(example(query)) == expected


def test_an_unknown_query_is_an_error() -> None:
    with pytest.raises(ValueError, match="neither captioning nor VQA"):
        instruction(example("<image> a drawing of"))


@pytest.mark.parametrize("name", EMBEDDED_TASKS)
def test_prompts_are_chat_turns_of_known_words(name: str, tokenizer: Tokenizer) -> None:
    cfg = sft_trial(num_examples=30)
    [task] = build_tasks(sft_trial(tasks=[name]))
    assert isinstance(task, FewShotTask)
    for test in task.test_examples(cfg):
        prompt = instruction_prompt(test)
        assert prompt.text.startswith(f"question: {IMAGE} ") and prompt.text.endswith(".\nanswer:")
        assert prompt.images == (test.image,)
        ids = encode_document(prompt, tokenizer, 4, 32, end=False)["token_ids"].tolist()
        assert tokenizer.unk_id not in ids, prompt.text
    item = vqa_item(0, Split.EVAL, 0)
    if name == "vqa":
        assert instruction_prompt(task.test_examples(cfg)[0]).text == (
            f"question: {IMAGE} {item.question} {ONE_WORD}\nanswer:"
        )


def test_sft_evaluation_reports_the_sft_metrics_alone(tiny_model: MM1Model, tokenizer: Tokenizer) -> None:
    cfg = sft_trial()
    evaluation = evaluate(tiny_model, cfg, tokenizer)
    tasks = cfg.eval.task_names()
    assert set(evaluation.metrics) == {*(f"eval/sft/{task}" for task in tasks), "eval/sft/avg", "eval/sft/loss"}
    scores = [evaluation.metrics[f"eval/sft/{task}"] for task in tasks]
    assert all(0.0 <= score <= 100.0 for score in scores)
    assert evaluation.metrics["eval/sft/avg"] == pytest.approx(sum(scores) / len(scores))
    assert math.isfinite(evaluation.metrics["eval/sft/loss"]) and 0.0 < evaluation.metrics["eval/sft/loss"] < 10.0
    rows = evaluation.predictions
    assert len(rows) == len(tasks) * min(cfg.eval.predictions, cfg.eval.num_examples)
    assert {row["shots"] for row in rows} == {0} and [row["task"] for row in rows[:: cfg.eval.num_examples]] == tasks
    assert all(row["prompt"].startswith("question: <image> ") for row in rows)
    assert set(evaluate_loss(tiny_model, cfg, tokenizer).metrics) == {"eval/sft/loss"}


def test_file_tasks_are_asked_too(
    coco: Benchmark, vqav2: Benchmark, tiny_model: MM1Model, tokenizer: Tokenizer
) -> None:
    cfg = sft_trial(tasks=[coco.spec, vqav2.spec], shots=[0])
    evaluation = evaluate(tiny_model, cfg, tokenizer)
    assert set(evaluation.metrics) == {"eval/sft/coco", "eval/sft/questions", "eval/sft/avg", "eval/sft/loss"}
    questions = [row["prompt"] for row in evaluation.predictions if row["task"] == "questions"]
    assert questions and all(re.fullmatch(rf"question: <image> .+\? {ONE_WORD}\nanswer:", q) for q in questions)


def test_pretraining_evaluation_keeps_its_names(
    tiny_model: MM1Model, tiny_config: TrialConfig, tokenizer: Tokenizer
) -> None:
    assert set(evaluate_loss(tiny_model, tiny_config, tokenizer).metrics) == {"eval/loss"}


def test_an_assistant_that_answers_right_scores_100(tiny_model: MM1Model, tokenizer: Tokenizer) -> None:
    cfg = sft_trial(tasks=["counting", "caption"])  # vqa item i may be counting item i
    answers = {}
    for task in build_tasks(cfg):
        for test in task.test_examples(cfg):
            answer = test.answer if task.name != "caption" else test.references[0]
            answers[answer_key(tokenizer, "answer:", test.image, cfg.model.image_resolution)] = answer
    evaluation = evaluate(OracleModel(tiny_model, tokenizer, answers), cfg, tokenizer)
    assert evaluation.metrics["eval/sft/counting"] == 100.0
    assert evaluation.metrics["eval/sft/caption"] > 100.0  # CIDEr-D of a reference itself
    assert [row["prediction"] for row in evaluation.predictions[:2]] == [
        test.answer for test in build_tasks(cfg)[0].test_examples(cfg)[:2]
    ]
