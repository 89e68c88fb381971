"""TextCore: multiple choice by log-likelihood over the embedded text set and jsonl files."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from mm1core.data import world
from mm1core.data.tokenizer import ByteTokenizer, Tokenizer
from mm1core.evaluate.textcore import (
    choice_ids,
    choice_sequences,
    parse_item,
    read_text_set,
    sequence_logprobs,
    text_sets,
    textcore_score,
)
from mm1core.model import MM1Model
from tests.mm1core.evaluate.conftest import TEXT_ITEMS, trial
from tests.mm1core.evaluate.oracle import OracleModel, canonical


def test_choice_tokens_follow_the_context(tokenizer: Tokenizer) -> None:
    context, choice = choice_ids(tokenizer, "red and blue make", "purple")
    assert context == tokenizer.encode("red and blue make") and choice == tokenizer.encode("purple")
    bytes_tokenizer = ByteTokenizer()
    context, choice = choice_ids(bytes_tokenizer, "red and blue make", "purple")
    assert bytes_tokenizer.decode(choice) == " purple"  # the space belongs to the choice, as in running text
    assert choice_ids(bytes_tokenizer, "", "yes")[1] == bytes_tokenizer.encode("yes")


def test_long_contexts_are_cut_from_the_left(tokenizer: Tokenizer) -> None:
    item = world.TextItem("red " * 50 + "and blue make", ("purple", "green"), 0)
    [(ids, count), _] = choice_sequences(item, tokenizer, max_len=10)
    assert len(ids) == 10 and ids[0] == tokenizer.bos_id and count == 1
    assert tokenizer.decode(ids[1:]) == "red red red red red and blue make purple"


def test_jsonl_sets_skip_malformed_lines(textcore_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert parse_item(json.dumps(TEXT_ITEMS[0])) == world.TextItem(
        "red and blue make", ("purple", "green", "orange"), 0, "file"
    )
    assert parse_item(json.dumps({**TEXT_ITEMS[0], "answer": True})) is None
    with caplog.at_level(logging.WARNING, logger="mm1core.evaluate"):
        items = read_text_set(str(textcore_file), 64, seed=0)
    assert [item.context for item in items] == [item["context"] for item in TEXT_ITEMS]
    assert "3 of 8 lines" in caplog.text


def test_a_sample_of_a_long_file_is_seeded_and_in_file_order(textcore_file: Path) -> None:
    sample = read_text_set(str(textcore_file), 3, seed=0)
    contexts = [item["context"] for item in TEXT_ITEMS]
    assert sample == read_text_set(str(textcore_file), 3, seed=0) and len(sample) == 3
    assert [contexts.index(item.context) for item in sample] == sorted(contexts.index(item.context) for item in sample)


def test_sets_are_the_world_and_each_file(textcore_file: Path) -> None:
    sets = text_sets(trial(textcore=["world", str(textcore_file)], num_examples=7))
    assert [name for name, _ in sets] == ["world", "mc"]
    assert sets[0][1] == [world.text_eval_item(0, index) for index in range(7)] and len(sets[1][1]) == 5


def test_log_likelihoods_sum_the_choice_tokens(tiny_model: MM1Model, tokenizer: Tokenizer) -> None:
    ids = [tokenizer.bos_id, *tokenizer.encode("red and blue make purple")]
    [total] = sequence_logprobs(tiny_model, [(ids, 2)], tokenizer.pad_id, batch_size=1)
    with torch.no_grad():
        logprobs = tiny_model(torch.tensor([ids]), torch.zeros(0, 3, 32, 32))[0].log_softmax(-1)
    expected = logprobs[-3, ids[-2]] + logprobs[-2, ids[-1]]
    assert total == pytest.approx(float(expected), abs=1e-4)


def test_batch_of_one_and_of_sixteen_score_the_same(
    textcore_file: Path, chaotic_model: MM1Model, tokenizer: Tokenizer
) -> None:
    results = [
        textcore_score(
            chaotic_model, trial(textcore=["world", str(textcore_file)], num_examples=16, batch_size=batch), tokenizer
        )
        for batch in (1, 16)
    ]
    assert results[0] == results[1]
    assert 0.0 < results[0].score < 100.0


def test_an_oracle_scores_100(textcore_file: Path, tiny_model: MM1Model, tokenizer: Tokenizer) -> None:
    cfg = trial(textcore=["world", str(textcore_file)], num_examples=12, batch_size=5, predictions=2)
    items = [item for _, set_items in text_sets(cfg) for item in set_items]
    right = {canonical(tokenizer, f"{item.context} {item.choices[item.answer]}") for item in items}
    result = textcore_score(OracleModel(tiny_model, tokenizer, right_texts=right), cfg, tokenizer)
    assert result.score == 100.0
    assert [(row["task"], row["item"]) for row in result.predictions] == [
        ("textcore/world", 0),
        ("textcore/world", 1),
        ("textcore/mc", 0),
        ("textcore/mc", 1),
    ]
    assert result.predictions[2]["prediction"] == "purple" == result.predictions[2]["references"][0]
