"""Embedded evaluation tasks: the registries, MM1's k-shot prompts, batch-size invariance and an oracle's score."""

from __future__ import annotations

import typing

import pytest

from mm1core.config import EMBEDDED_TASKS, FileTask, TrialConfig
from mm1core.data import world
from mm1core.data.dataset import encode_document
from mm1core.data.lengths import max_prompt_tokens
from mm1core.data.tokenizer import Tokenizer
from mm1core.evaluate.captioning import CaptionTask
from mm1core.evaluate.metrics import cider_d
from mm1core.evaluate.tasks import FILE_TASKS, WORLD_TASKS, FewShotTask, build_tasks, demonstration_indices
from mm1core.evaluate.vqa import WorldVQATask
from mm1core.model import MM1Model
from tests.mm1core.evaluate.conftest import trial
from tests.mm1core.evaluate.oracle import OracleModel, answer_key

VQA_TASKS = ("vqa", "reading", "counting")


def test_registries_cover_the_config_names() -> None:
    assert WORLD_TASKS.names() == list(EMBEDDED_TASKS)
    assert FILE_TASKS.names() == list(typing.get_args(FileTask.model_fields["type"].annotation))


def test_build_tasks_follows_the_config_order() -> None:
    tasks = build_tasks(trial(tasks=["counting", "caption", "vqa"]))
    assert [task.name for task in tasks] == ["counting", "caption", "vqa"]
    assert isinstance(tasks[0], WorldVQATask) and tasks[0].kind == "counting" and isinstance(tasks[1], CaptionTask)


@pytest.mark.parametrize("name", EMBEDDED_TASKS)
@pytest.mark.parametrize("shots", [0, 1, 4, 8])
def test_prompts_hold_k_demonstrations_from_the_support_split(name: str, shots: int) -> None:
    cfg = trial(num_examples=6)
    [task] = build_tasks(trial(tasks=[name]))
    assert isinstance(task, FewShotTask)
    test_scenes = [test.image for test in task.test_examples(cfg)]
    for test, prompt in task.prompts(cfg, shots):
        lines = prompt.text.split("\n")
        assert len(lines) == shots + 1 and len(prompt.images) == shots + 1
        assert all(line.startswith(world.IMAGE) and line.count(world.IMAGE) == 1 for line in lines)
        assert lines[-1] == test.query and prompt.images[-1] == test.image
        support = [
            task.example(cfg.data.seed, world.Split.SUPPORT, j) for j in demonstration_indices(0, test.index, shots)
        ]
        assert list(prompt.images[:-1]) == [demo.image for demo in support]
        assert lines[:-1] == [f"{demo.query} {demo.answer}" for demo in support]
        assert not set(prompt.images[:-1]) & set(test_scenes)  # never a test item, this one or another


def test_prompts_are_mm1s() -> None:
    cfg = trial(num_examples=1)
    [(_, caption)] = build_tasks(trial(tasks=["caption"]))[0].prompts(cfg, 0)
    [(test, question)] = build_tasks(trial(tasks=["vqa"]))[0].prompts(cfg, 0)
    assert caption.text == "<image> a photo of"
    item = world.vqa_item(0, world.Split.EVAL, 0)
    assert question.text == f"<image> question: {item.question} short answer:" and test.answer == item.answer


def test_demonstrations_of_4_shots_are_within_8_shots() -> None:
    cfg = trial(num_examples=3)
    task = build_tasks(trial(tasks=["vqa"]))[0]
    for (_, four), (_, eight) in zip(task.prompts(cfg, 4), task.prompts(cfg, 8), strict=True):
        assert four.images[:4] == eight.images[:4]


@pytest.mark.parametrize("name", EMBEDDED_TASKS)
def test_prompts_fit_the_length_bound(name: str, tokenizer: Tokenizer) -> None:
    cfg = trial(num_examples=40)
    task = build_tasks(trial(tasks=[name]))[0]
    for _, prompt in task.prompts(cfg, 8):
        assert len(encode_document(prompt, tokenizer, 4, 32, end=False)["token_ids"]) <= max_prompt_tokens(8, 4)


@pytest.mark.parametrize("name", EMBEDDED_TASKS)
def test_batch_of_one_and_of_sixteen_score_the_same(name: str, chaotic_model: MM1Model, tokenizer: Tokenizer) -> None:
    results = [
        build_tasks(trial(tasks=[name]))[0].score(
            chaotic_model, trial(num_examples=16, batch_size=batch, predictions=16), tokenizer, 1
        )
        for batch in (1, 16)
    ]
    assert results[0].score == results[1].score
    assert results[0].predictions == results[1].predictions
    assert len({row["prediction"] for row in results[0].predictions}) > 4  # the answers differ


def test_predictions_are_the_first_items(tiny_model: MM1Model, tokenizer: Tokenizer) -> None:
    result = build_tasks(trial(tasks=["vqa"]))[0].score(tiny_model, trial(predictions=2), tokenizer, 1)
    assert [row["item"] for row in result.predictions] == [0, 1]
    row = result.predictions[0]
    assert set(row) == {"task", "shots", "item", "prompt", "prediction", "references"}
    assert row["task"] == "vqa" and row["shots"] == 1 and len(row["references"]) == 10
    assert row["prompt"].count("<image>") == 2


def world_oracle(model: MM1Model, tokenizer: Tokenizer, cfg: TrialConfig, name: str) -> OracleModel:
    """The right answer of every eval item of ``name``, worked out from the world (not from the task)."""
    answers = {}
    for index in range(cfg.eval.num_examples):
        if name == "caption":
            scene, references = world.captioning_item(0, world.Split.EVAL, index, 5)
            query, answer = "<image> a photo of", references[0]
        else:
            kind = None if name == "vqa" else name
            item = (
                world.vqa_item(0, world.Split.EVAL, index)
                if kind is None
                else world.vqa_item_of_kind(0, world.Split.EVAL, index, kind)
            )
            scene, query, answer = item.scene, world.vqa_line(item.question), item.answer
        answers[answer_key(tokenizer, query, scene, cfg.model.image_resolution)] = answer
    return OracleModel(model, tokenizer, answers)


@pytest.mark.parametrize("name", VQA_TASKS)
@pytest.mark.parametrize("shots", [0, 2])
def test_an_oracle_scores_100_on_vqa(name: str, shots: int, tiny_model: MM1Model, tokenizer: Tokenizer) -> None:
    cfg = trial(num_examples=12, batch_size=5)
    task = build_tasks(trial(tasks=[name]))[0]
    assert task.score(world_oracle(tiny_model, tokenizer, cfg, name), cfg, tokenizer, shots).score == 100.0


def test_an_oracle_repeating_a_reference_scores_its_cider(tiny_model: MM1Model, tokenizer: Tokenizer) -> None:
    cfg = trial(num_examples=8, max_new_tokens=30)
    result = CaptionTask("caption").score(world_oracle(tiny_model, tokenizer, cfg, "caption"), cfg, tokenizer, 1)
    references = [world.captioning_item(0, world.Split.EVAL, index, 5)[1] for index in range(8)]
    assert [row["prediction"] for row in result.predictions] == [captions[0] for captions in references]
    assert result.score == pytest.approx(cider_d(references, [captions[0] for captions in references]))
    assert result.score > 100.0
