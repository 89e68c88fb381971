"""Tokenizers: the world's words (stable special ids, round trips, unknown words), bytes, Hugging Face."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mm1core.data import world
from mm1core.data.tokenizer import (
    IMAGE_TOKEN_ID,
    NAMED_TOKENIZERS,
    SPECIAL_TOKENS,
    ByteTokenizer,
    HFTokenizer,
    TextTokenizer,
    Tokenizer,
    build_tokenizer,
    tokenizer_problem,
)

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


# --------------------------------------------------------------------------------------- the interface
def test_every_named_tokenizer_has_the_interface() -> None:
    for name in NAMED_TOKENIZERS:
        tokenizer = build_tokenizer(name)
        assert isinstance(tokenizer, TextTokenizer)
        assert build_tokenizer(name) is tokenizer  # one shared instance
        ids = tokenizer.encode("<image> a red circle.\ntwo")
        assert ids[0] == tokenizer.image_id and tokenizer.newline_id in ids
        assert len({tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, tokenizer.image_id}) == 4
        assert max(ids) < tokenizer.vocab_size
    assert build_tokenizer() is build_tokenizer("world")


# ------------------------------------------------------------------------------------------------ bytes
@pytest.mark.parametrize(
    "text",
    ["<image> a red circle.\n<image> two", "Zürich, 東京 & Ελλάδα 🙂", "", "<image><image>", "<bos> is just text"],
    ids=["world", "unicode", "empty", "images-only", "other-specials"],
)
def test_bytes_round_trip(text: str) -> None:
    tokenizer = ByteTokenizer()
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert ids.count(tokenizer.image_id) == text.count("<image>")


def test_bytes_ids() -> None:
    tokenizer = ByteTokenizer()
    assert (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, tokenizer.image_id) == (0, 1, 2, IMAGE_TOKEN_ID)
    assert tokenizer.vocab_size == 260 and tokenizer.newline_id == 4 + ord("\n")
    assert tokenizer.encode("a<image>") == [4 + ord("a"), tokenizer.image_id]
    cut = tokenizer.encode("é")[:1]  # a generation stopped inside a character
    assert tokenizer.decode([*cut, tokenizer.eos_id]) == "\ufffd<eos>"


# ----------------------------------------------------------------------------------------- Hugging Face
SENTENCES = ["a red circle on the left.", "two blue squares\nand a small triangle.", "three plus four is seven."]


def byte_level_bpe(folder: Path) -> Path:
    """A GPT-2-style byte-level BPE trained on a few sentences, saved as ``folder/tokenizer.json``."""
    tokenizers = pytest.importorskip("tokenizers")
    backend = tokenizers.Tokenizer(tokenizers.models.BPE())
    backend.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = tokenizers.decoders.ByteLevel()
    alphabet = tokenizers.pre_tokenizers.ByteLevel.alphabet()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=alphabet, special_tokens=["<|endoftext|>"], show_progress=False
    )
    backend.train_from_iterator(SENTENCES, trainer)
    folder.mkdir(exist_ok=True)
    backend.save(str(folder / "tokenizer.json"))
    return folder


def word_level(folder: Path) -> Path:
    """A word-level tokenizer whose pre-tokenizer drops newlines."""
    tokenizers = pytest.importorskip("tokenizers")
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(unk_token="[UNK]"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    special = ["[UNK]", "[PAD]", "[EOS]"]
    backend.train_from_iterator(SENTENCES, tokenizers.trainers.WordLevelTrainer(special_tokens=special))
    folder.mkdir(exist_ok=True)
    backend.save(str(folder / "tokenizer.json"))
    return folder


def test_hf_byte_level_round_trip_with_added_specials(tmp_path: Path) -> None:
    folder = byte_level_bpe(tmp_path / "bpe")
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>", "bos_token": None}))
    tokenizer = HFTokenizer(folder)
    assert isinstance(tokenizer, TextTokenizer)
    backend = tokenizer.backend
    assert tokenizer.eos_id == backend.token_to_id("<|endoftext|>") == 0
    assert tokenizer.pad_id == backend.token_to_id("<pad>") and tokenizer.bos_id == backend.token_to_id("<bos>")
    assert tokenizer.image_id == backend.token_to_id("<image>")
    assert tokenizer.vocab_size == backend.get_vocab_size() and tokenizer.vocab_size > tokenizer.image_id
    text = "<image> a red circle.\nZürich<image>two"
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert ids[0] == tokenizer.image_id and ids.count(tokenizer.image_id) == 2
    assert tokenizer.newline_id == tokenizer.encode("\n")[-1] and tokenizer.newline_id in ids
    assert tokenizer.encode("a red") == backend.encode("a red", add_special_tokens=False).ids


def test_hf_specials_named_in_config_files(tmp_path: Path) -> None:
    folder = word_level(tmp_path / "words")
    specials = {"pad_token": "[PAD]", "eos_token": {"content": "[EOS]", "lstrip": False}}
    (folder / "special_tokens_map.json").write_text(json.dumps(specials))
    tokenizer = HFTokenizer(folder / "tokenizer.json")  # the file itself, not its folder
    backend = tokenizer.backend
    assert (tokenizer.pad_id, tokenizer.eos_id) == (backend.token_to_id("[PAD]"), backend.token_to_id("[EOS]"))
    assert tokenizer.bos_id == backend.token_to_id("<bos>")  # not named: added
    assert tokenizer.newline_id == backend.token_to_id("\n")  # the pre-tokenizer drops newlines: added
    ids = tokenizer.encode("<image> a red zebra.\ntwo")
    assert ids[0] == tokenizer.image_id and tokenizer.newline_id in ids
    assert backend.token_to_id("[UNK]") in ids
    assert tokenizer.decode(tokenizer.encode("a red circle")) == "a red circle"


def test_build_and_validate_an_hf_tokenizer_by_path(tmp_path: Path) -> None:
    folder = str(byte_level_bpe(tmp_path / "bpe"))
    assert tokenizer_problem(folder) is None
    tokenizer = build_tokenizer(folder)
    assert isinstance(tokenizer, HFTokenizer) and build_tokenizer(folder) is tokenizer


def test_tokenizer_problems(tmp_path: Path) -> None:
    assert tokenizer_problem("world") is None and tokenizer_problem("bytes") is None
    assert "is not one of world, bytes nor an existing path" in tokenizer_problem(str(tmp_path / "nowhere"))
    assert "has no tokenizer.json" in tokenizer_problem(str(tmp_path))
    (tmp_path / "tokenizer.json").write_text("{not json")
    pytest.importorskip("tokenizers")
    assert "cannot be loaded" in tokenizer_problem(str(tmp_path))
