"""The embedded world's evaluation sets: VQA items with ten human answers, text-only cloze items, and their
separation from training."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from mm1core.data import world

SPLITS = [world.Split.EVAL, world.Split.SUPPORT]


def true_answer(scene: world.Scene, question: str) -> str:
    """The answer to ``question`` worked out from the scene alone (an oracle independent of the generator)."""
    objects = scene.objects
    where = {phrase: position for position, phrase in world.POSITION_PHRASES.items()}
    if question == "how many shapes are there?":
        return str(len(objects))
    if match := re.fullmatch(r"how many (\w+)s are there\?", question):
        return str(sum(obj.shape == match[1] for obj in objects))
    if match := re.fullmatch(r"how many (\w+) shapes are there\?", question):
        return str(sum(obj.colour == match[1] for obj in objects))
    if match := re.fullmatch(r"what colour is the shape (.+)\?", question):
        return next(obj.colour for obj in objects if obj.position == where[match[1]])
    if match := re.fullmatch(r"what colour is the (\w+)\?", question):
        (colour,) = [obj.colour for obj in objects if obj.shape == match[1]]
        return colour
    if match := re.fullmatch(r"where is the (number|word) written\?", question):
        return world.POSITION_ANSWERS[scene.text.position]
    if match := re.fullmatch(r"where is the (?:(\w+) )?(\w+)\?", question):
        (position,) = [o.position for o in objects if o.shape == match[2] and match[1] in (None, o.colour)]
        return world.POSITION_ANSWERS[position]
    if question.startswith("what") and "written" in question:
        return scene.text.text
    raise AssertionError(f"unknown question form: {question}")


@pytest.mark.parametrize("split", SPLITS, ids=lambda split: split.name)
def test_every_question_kind_occurs_and_is_answered_right(split: world.Split) -> None:
    items = [world.vqa_item(0, split, index) for index in range(300)]
    assert Counter(item.kind for item in items).keys() == set(world.VQA_KINDS)
    for item in items:
        assert item.answer == true_answer(item.scene, item.question), item


@pytest.mark.parametrize("kind", world.VQA_KINDS)
def test_vqa_items_have_ten_answers_with_the_canonical_one_the_majority(kind: str) -> None:
    varied = 0
    for index in range(150):
        item = world.vqa_item_of_kind(0, world.Split.EVAL, index, kind)
        counts = Counter(item.answers)
        assert item.kind == kind and len(item.answers) == world.VQA_ANSWERS == 10
        assert counts[item.answer] >= 6 and item.answer == true_answer(item.scene, item.question)
        varied += len(counts) > 1
    assert 30 < varied < 140  # most items have some disagreement, as in VQAv2, but not all


def test_answers_vary_like_human_answers() -> None:
    answers = Counter(a for i in range(400) for a in world.vqa_item_of_kind(0, world.Split.EVAL, i, "counting").answers)
    assert answers["two"] and answers["2"] > 5 * answers["two"]
    positions = Counter(
        a for i in range(400) for a in world.vqa_item_of_kind(0, world.Split.EVAL, i, "position").answers
    )
    assert positions["on the left"] and positions["left"] > 5 * positions["on the left"]


def test_reading_items_always_have_writing() -> None:
    items = [world.vqa_item_of_kind(1, world.Split.EVAL, index, "reading") for index in range(100)]
    assert all(item.scene.text is not None and item.answer == item.scene.text.text for item in items)
    assert {item.scene.text.is_number for item in items} == {True, False}


def test_vqa_item_agrees_with_its_kind() -> None:
    for index in range(50):
        item = world.vqa_item(3, world.Split.EVAL, index)
        assert world.vqa_item_of_kind(3, world.Split.EVAL, index, item.kind) == item


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="counting"):
        world.vqa_item_of_kind(0, world.Split.EVAL, 0, "shape")


def test_vqa_line_is_mm1s_prompt() -> None:
    assert world.vqa_line("how many shapes are there?", "2") == (
        "<image> question: how many shapes are there? short answer: 2"
    )
    assert world.vqa_line("what word is written?").endswith("short answer:")


def test_eval_scenes_never_occur_in_training() -> None:
    mixture = {"caption": 0.5, "interleaved": 0.5, "text": 0.0}
    train = {scene for i in range(300) for scene in world.pretraining_document(0, i, mixture, 3).images}
    train |= {world.captioning_item(0, world.Split.TRAIN, i)[0] for i in range(300)}
    for split in SPLITS:
        held_out = {world.vqa_item(0, split, i).scene for i in range(300)}
        held_out |= {world.captioning_item(0, split, i)[0] for i in range(300)}
        assert not train & held_out


# ------------------------------------------------------------------------------------------------- text
def true_text_answer(item: world.TextItem) -> str:
    context = item.context
    if match := re.fullmatch(r"(\w+) and (\w+) make", context):
        mixes = {frozenset(pair): result for pair, result in world.COLOUR_MIXES.items()}
        return mixes[frozenset((match[1], match[2]))]
    if match := re.fullmatch(r"an? (\w+) has", context):
        return world.NUMBERS[world.SIDES[match[1]]]
    if match := re.fullmatch(r"(\w+) (plus|minus) (\w+) is", context):

        def value(word: str) -> int:
            return int(word) if word.isdigit() else world.NUMBERS.index(word)

        result = value(match[1]) + (1 if match[2] == "plus" else -1) * value(match[3])
        return str(result) if match[1].isdigit() else world.NUMBERS[result]
    if context.startswith("imagine"):
        return world.NUMBERS[len(re.findall(r"\b(?:circle|square|triangle|diamond)\b", context))]
    last = context.rstrip(",").split(", ")[-1]
    return world.NUMBERS[world.NUMBERS.index(last) + 1]


@pytest.mark.parametrize("split", [world.Split.TEXT_EVAL, world.Split.TEXT_SUPPORT], ids=lambda split: split.name)
def test_text_items_are_answerable_multiple_choice(split: world.Split) -> None:
    items = [world.text_eval_item(0, index, split) for index in range(300)]
    assert {item.kind for item in items} == set(world.TEXT_EVAL_KINDS)
    for item in items:
        assert len(item.choices) == 4 and len(set(item.choices)) == 4 and 0 <= item.answer < 4
        assert item.choices[item.answer] == true_text_answer(item), item
    assert len({item.answer for item in items}) == 4  # the right answer is not always in one place


def test_text_items_are_deterministic_and_seeded() -> None:
    assert [world.text_eval_item(0, i) for i in range(20)] == [world.text_eval_item(0, i) for i in range(20)]
    assert [world.text_eval_item(0, i) for i in range(20)] != [world.text_eval_item(1, i) for i in range(20)]
