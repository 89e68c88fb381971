"""CIDEr-D and VQAv2 accuracy: parity with the reference code and the official rules' edge cases."""

from __future__ import annotations

import pytest
from pycocoevalcap.cider.cider import Cider

from mm1core.evaluate import captioning
from mm1core.evaluate.metrics import (
    cider_d,
    normalize_answer,
    process_digit_article,
    process_punctuation,
    vqa_accuracy,
    vqa_score,
    words,
)


# ------------------------------------------------------------------------------------------------ CIDEr
def test_cider_equals_pycocoevalcap_on_hand_made_captions() -> None:
    references = [
        ["a red circle on the left", "a small red circle", "a red circle and a blue square"],
        ["a blue square", "a large blue square at the top"],
        ["two shapes", "a green triangle and a yellow diamond", "the number 47"],
    ]
    candidates = ["a red circle", "a large blue square", "the number 47 and a green triangle"]
    expected, _ = Cider().compute_score(dict(enumerate(references)), {i: [c] for i, c in enumerate(candidates)})
    assert cider_d(references, candidates) == pytest.approx(100.0 * expected, abs=1e-9)
    assert cider_d(references, candidates) > 0.0


def test_cider_reads_words_and_numbers_without_punctuation_or_case() -> None:
    assert words("The number 47, on the LEFT.") == "the number 47 on the left"
    references = [["a red circle on the left"], ["a blue square"]]
    assert cider_d(references, ["A red circle, on the left.", "a blue square"]) == cider_d(
        references, ["a red circle on the left", "a blue square"]
    )
    assert cider_d(references, ["", ""]) == 0.0


def test_captioning_re_exports_cider() -> None:
    assert captioning.cider_d is cider_d


# ------------------------------------------------------------------------------------------------- VQA
@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Two", "2"),
        ("none", "0"),
        ("a dog", "dog"),
        ("The Dog.", "dog"),
        ("yes.", "yes"),
        (" yes\n", "yes"),
        ("dont know", "don't know"),
        ("isnt", "isn't"),
        ("2.5", "2.5"),
        ("t-shirt", "t shirt"),
        ("red, blue", "red blue"),
        ("1,000", "1000"),
        ("an apple\tpie", "apple pie"),
    ],
)
def test_answer_normalisation(raw: str, normalised: str) -> None:
    assert normalize_answer(raw) == normalised


def test_punctuation_and_digits_follow_the_official_steps() -> None:
    assert process_punctuation("what?!") == "what  "  # marks not next to a space become spaces
    assert process_punctuation("what ?") == "what "  # ... and those next to one are deleted
    assert process_digit_article("Three  Cats") == "3 cats"


@pytest.mark.parametrize(("prediction", "answer"), [("Two", "2"), ("a dog", "dog"), ("yes.", "yes")])
def test_equivalent_answers_match(prediction: str, answer: str) -> None:
    assert vqa_accuracy(prediction, [answer] * 10) == 1.0


@pytest.mark.parametrize(("humans", "accuracy"), [(10, 1.0), (4, 1.0), (3, 0.9), (2, 0.6), (1, 0.3), (0, 0.0)])
def test_accuracy_by_how_many_humans_agree(humans: int, accuracy: float) -> None:
    answers = ["2"] * humans + ["3"] * (10 - humans)
    assert vqa_accuracy("2", answers) == pytest.approx(accuracy)


def official_accuracy(prediction: str, answers: list[str]) -> float:
    """The loop of the official ``vqaEval.py`` for one question, transcribed (dict answers, ``!=`` to leave one
    annotator out), with its own processing calls."""
    gts = [{"answer": answer, "answer_id": i} for i, answer in enumerate(answers)]
    for datum in gts:
        datum["answer"] = datum["answer"].replace("\n", " ").replace("\t", " ").strip()
    res = normalize_answer(prediction)
    if len({datum["answer"] for datum in gts}) > 1:
        for datum in gts:
            datum["answer"] = process_punctuation(datum["answer"])
    accuracies = []
    for datum in gts:
        others = [item for item in gts if item != datum]
        matching = [item for item in others if item["answer"] == res]
        accuracies.append(min(1, float(len(matching)) / 3))
    return sum(accuracies) / len(accuracies)


@pytest.mark.parametrize(
    ("prediction", "answers"),
    [
        ("2", ["2", "2", "two", "3", "2", "2", "2", "2", "2", "2"]),
        ("red", ["red", "red,", "dark red", "red", "red.", "orange", "red", "red", "red", "red"]),
        ("t-shirt", ["t shirt", "t-shirt", "shirt", "t shirt", "tshirt", "t shirt", "t-shirt", "t", "t", "t"]),
        ("Yes", ["yes"] * 10),
        ("no", ["yes"] * 9 + ["no"]),
    ],
)
def test_accuracy_matches_the_official_loop(prediction: str, answers: list[str]) -> None:
    assert vqa_accuracy(prediction, answers) == pytest.approx(official_accuracy(prediction, answers))


def test_references_as_released_are_not_number_normalised() -> None:
    """The official code processes only the references' punctuation: a released "two" does not match "2"."""
    assert vqa_accuracy("2", ["two"] * 10) == 0.0


def test_score_is_the_mean_in_percent() -> None:
    assert vqa_score([["2"] * 10, ["yes"] * 10], ["two", "no"]) == pytest.approx(50.0)
    with pytest.raises(ValueError):
        vqa_score([["2"] * 10], ["2", "3"])
