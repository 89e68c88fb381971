"""The word-level tokenizer: stable special ids, round trips, unknown words."""

from __future__ import annotations

from mm1core.data import world
from mm1core.data.tokenizer import IMAGE_TOKEN_ID, SPECIAL_TOKENS, Tokenizer

MIXTURE = {"caption": 0.4, "interleaved": 0.4, "text": 0.2}


def test_specials_come_first(tokenizer: Tokenizer) -> None:
    assert tokenizer.tokens[: len(SPECIAL_TOKENS)] == SPECIAL_TOKENS
    assert (tokenizer.pad_id, tokenizer.image_id) == (0, IMAGE_TOKEN_ID)


def test_round_trip_of_world_text(tokenizer: Tokenizer) -> None:
    for index in range(300):
        text = world.pretraining_document(0, index, MIXTURE, 3).text
        assert tokenizer.decode(tokenizer.encode(text)) == text


def test_lower_cases_and_splits_punctuation(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("<image> A Red circle.\nTwo?")
    assert [tokenizer.tokens[i] for i in ids] == ["<image>", "a", "red", "circle", ".", "\n", "two", "?"]
    assert tokenizer.decode(ids) == "<image> a red circle.\ntwo?"


def test_unknown_words_become_unk(tokenizer: Tokenizer) -> None:
    assert tokenizer.encode("a zebra") == [tokenizer.ids["a"], tokenizer.unk_id]
