"""The stage-0 text corpus: determinism, the world's vocabulary, the text bound, the evaluation's line formats, the
stream the pipeline opens, and disjointness from the evaluation sets.

Disjointness is checked on the corpus *text*: the first ``CHECKED`` documents are parsed back into the scenes
they describe (``described_keys``), and no parsed scene is the scene of one of the first ``HELD_OUT_ITEMS``
items of captioning, VQA, reading or counting (``scene_key``: what words can say of a scene); so neither is any
(scene, question) pair of a VQA item. No TextCore item about an imagined scene has its scored text in the
corpus; TextCore's fact items (mixing, sides, arithmetic, counting on) do occur: the corpus teaches the facts.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import numpy as np
import pytest

from mm1core.config import EMBEDDED_TASKS
from mm1core.data import corpus
from mm1core.data.dataset import PretrainingDataset
from mm1core.data.lengths import TEXT_TOKENS_TEXT_ONLY
from mm1core.data.records import STREAMS, Document
from mm1core.data.sampler import RowPlan
from mm1core.data.streams import open_stream
from mm1core.data.tokenizer import Tokenizer, build_tokenizer
from mm1core.data.world import (
    COLOURS,
    POSITION_ANSWERS,
    POSITION_PHRASES,
    SHAPES,
    SIZES,
    TEXT_DOCUMENT_TOKENS,
    Split,
    detailed_description,
    sample_scene,
    synthetic_caption,
    text_eval_item,
    token_count,
    vqa_item,
    vqa_item_of_kind,
    vqa_line,
)
from mm1core.evaluate.metrics import normalize_answer
from mm1core.evaluate.tasks import build_task

SEED = 0
CHECKED = 20_000  # corpus documents the disjointness tests read
QUESTION_LINE = re.compile(r"^question: (?P<question>[^?]+\?) short answer: (?P<answer>\S.*)$")
_PHRASE = "|".join(POSITION_PHRASES.values())
_THING = rf"an? (?P<size>{'|'.join(SIZES)}) (?P<colour>{'|'.join(COLOURS)}) (?P<shape>{'|'.join(SHAPES)})"
OBJECT = re.compile(rf"{_THING} is (?P<where>{_PHRASE})|(?P<where2>{_PHRASE}) is {_THING.replace('?P<', '?P<i_')}")
WRITING = re.compile(rf"the (?:word|number) (?P<text>[a-z0-9]+) is written (?P<where>{_PHRASE})")
PLACE = {phrase: position for position, phrase in POSITION_PHRASES.items()}


def parse_description(line: str) -> corpus.SceneKey:
    """The scene key a complete description (``detailed_description`` or ``synthetic_caption``) states."""
    objects = []
    for match in OBJECT.finditer(line):
        if match["where"]:
            objects.append((PLACE[match["where"]], match["size"], match["colour"], match["shape"]))
        else:
            objects.append((PLACE[match["where2"]], match["i_size"], match["i_colour"], match["i_shape"]))
    writing = WRITING.search(line)
    return tuple(objects), None if writing is None else (writing["text"], PLACE[writing["where"]])


def described_blocks(text: str) -> list[tuple[corpus.SceneKey, list[str]]]:
    """``(scene key, question lines)`` per described scene of a corpus document (facts documents have none): a
    description is a line that is neither a question line nor a caption line."""
    blocks: list[tuple[corpus.SceneKey, list[str]]] = []
    for line in text.split("\n"):
        if line.startswith("question: "):
            blocks[-1][1].append(line)
        elif not line.startswith("a photo of ") and OBJECT.search(line):
            blocks.append((parse_description(line), []))
    return blocks


@pytest.fixture(scope="module")
def documents() -> list[Document]:
    stream = corpus.CorpusStream(SEED)
    return [stream.document(index) for index in range(CHECKED)]


@pytest.fixture(scope="module")
def blocks(documents: list[Document]) -> list[tuple[corpus.SceneKey, list[str]]]:
    return [block for document in documents for block in described_blocks(document.text)]


# ------------------------------------------------------------------------------------------- determinism
def test_documents_are_deterministic_and_random_access() -> None:
    forwards = [corpus.corpus_document(SEED, index) for index in range(40)]
    backwards = [corpus.corpus_document(SEED, index) for index in reversed(range(40))]
    assert forwards == backwards[::-1]
    assert forwards == [corpus.CorpusStream(SEED).document(index) for index in range(40)]


def test_seeds_and_splits_give_other_documents() -> None:
    texts = [corpus.corpus_document(SEED, index).text for index in range(50)]
    assert texts != [corpus.corpus_document(SEED + 1, index).text for index in range(50)]
    held = [corpus.corpus_document(SEED, index, split=Split.CORPUS_EVAL).text for index in range(50)]
    assert not set(texts) & set(held)


def test_both_kinds_in_their_shares(documents: list[Document]) -> None:
    described = sum(bool(described_blocks(document.text)) for document in documents[:4000])
    assert abs(described / 4000 - corpus.CORPUS_KINDS["scenes"]) < 0.03
    assert all(document.kind == "text" and not document.images for document in documents)


# ---------------------------------------------------------------------------------------- words and length
def test_every_word_is_the_world_tokenizers(documents: list[Document]) -> None:
    tokenizer: Tokenizer = build_tokenizer()
    for document in documents:
        assert tokenizer.unk_id not in tokenizer.encode(document.text), document.text


def test_documents_fit_the_text_documents_bound(documents: list[Document]) -> None:
    longest = max(token_count(document.text) for document in documents)
    assert longest <= TEXT_DOCUMENT_TOKENS  # so <bos> + text + <eos> fits lengths.TEXT_TOKENS_TEXT_ONLY
    assert TEXT_DOCUMENT_TOKENS + 2 <= TEXT_TOKENS_TEXT_ONLY


# --------------------------------------------------------------------------------------------- formats
def test_question_lines_are_the_evaluation_prompt_line(blocks: list[tuple[corpus.SceneKey, list[str]]]) -> None:
    lines = [line for _, questions in blocks for line in questions]
    assert len(lines) > len(blocks)  # 1-3 per scene
    for line in lines:
        match = QUESTION_LINE.match(line)
        assert match, line
        assert vqa_line(match["question"], match["answer"]) == f"<image> {line}"


def test_answers_follow_from_the_description() -> None:
    """Colour, position and reading answers are stated by the description; counting answers count its objects."""
    rng = np.random.default_rng(3)
    for _ in range(300):
        scene = sample_scene(rng)
        description, *lines = corpus.scene_block(scene, rng).split("\n")
        assert parse_description(description) == corpus.scene_key(scene)
        for line in lines:
            match = QUESTION_LINE.match(line)
            if match is None:
                assert line.startswith("a photo of ") and line.endswith(".")
                continue
            question, answer = match["question"], match["answer"]
            if question.startswith("how many shapes"):
                assert answer == str(len(scene.objects))
            elif question.startswith(("what colour", "what is written", "what word", "what number")):
                assert answer in description.split(" ") or f"{answer}." in description
            elif question.startswith("where"):
                assert POSITION_PHRASES[{v: k for k, v in POSITION_ANSWERS.items()}[answer]] in description


def test_the_description_parser_reads_every_description() -> None:
    rng = np.random.default_rng(4)
    for _ in range(500):
        scene = sample_scene(rng)
        assert parse_description(detailed_description(scene)) == corpus.scene_key(scene)
        assert parse_description(synthetic_caption(scene, rng)) == corpus.scene_key(scene)


# ---------------------------------------------------------------------------------------------- stream
def test_open_stream_opens_the_corpus() -> None:
    stream = open_stream(corpus.CORPUS, "synthetic", seed=5, max_images=3, synthetic_captions=False, share=0.5)
    assert stream.name == corpus.CORPUS
    assert [stream.document(k) for k in range(5)] == [corpus.corpus_document(5, k) for k in range(5)]
    with pytest.raises(ValueError, match="synthetic corpus"):
        open_stream(corpus.CORPUS, "/data/text.jsonl", seed=5, max_images=3, synthetic_captions=False, share=0.5)


def test_the_corpus_fills_the_text_slot_of_the_pretraining_data(tokenizer: Tokenizer) -> None:
    dataset = PretrainingDataset(
        {"text": corpus.CorpusStream(SEED)}, tokenizer, num_image_tokens=4, resolution=32, max_tokens=256
    )
    sample = dataset[RowPlan(0, "text", (0, 1))]
    text = tokenizer.decode([i for i in sample["token_ids"].tolist() if i not in (tokenizer.bos_id, tokenizer.eos_id)])
    assert text == f"{corpus.corpus_document(SEED, 0).text} {corpus.corpus_document(SEED, 1).text}"
    assert sample["images"].shape[0] == 0 and sample["stream"] == STREAMS.index("text")


# ------------------------------------------------------------------------------------------ disjointness
def test_held_out_scenes_are_the_evaluation_tasks_scenes() -> None:
    """``EVAL_SCENES`` names every embedded task and gives the image its test item shows."""
    assert set(corpus.EVAL_SCENES) == set(EMBEDDED_TASKS)
    for name, scene in corpus.EVAL_SCENES.items():
        task = build_task(name)
        for index in (0, 7, 31):
            assert task.example(SEED, Split.EVAL, index).image == scene(SEED, index)


def test_no_evaluation_scene_is_described(blocks: list[tuple[corpus.SceneKey, list[str]]]) -> None:
    held = corpus.held_out(SEED)
    described = Counter(key for key, _ in blocks)
    assert len(blocks) > 14_000 and len(described) > 12_000
    assert not set(described) & held.scenes
    one_shape = {key for key in held.scenes if len(key[0]) == 1 and key[1] is None}
    assert 0 < len(one_shape) < 120  # held-out one-shape scenes without writing (240 exist): the rest is described


def test_no_evaluation_question_is_asked_about_its_scene(blocks: list[tuple[corpus.SceneKey, list[str]]]) -> None:
    """The (scene, normalised question) pairs of the VQA sets never meet the corpus's; their bare question
    strings do (the templates are the format the corpus teaches)."""
    items = [vqa_item(SEED, Split.EVAL, i) for i in range(corpus.HELD_OUT_ITEMS)]
    items += [
        vqa_item_of_kind(SEED, Split.EVAL, i, k) for k in ("reading", "counting") for i in range(corpus.HELD_OUT_ITEMS)
    ]
    evaluated = {(corpus.scene_key(item.scene), normalize_answer(item.question)) for item in items}
    asked = {
        (key, normalize_answer(QUESTION_LINE.match(line)["question"]))
        for key, questions in blocks
        for line in questions
    }
    assert not evaluated & asked
    assert len({question for _, question in evaluated} & {question for _, question in asked}) > 10


def test_no_textcore_scene_item_is_in_the_corpus(documents: list[Document]) -> None:
    text = "\n".join(document.text for document in documents)
    items = [text_eval_item(SEED, index) for index in range(corpus.HELD_OUT_ITEMS)]
    scored: dict[str, list[str]] = defaultdict(list)
    for item in items:
        scored["imagined" if item.context.startswith(corpus.IMAGINED) else item.kind].append(
            f"{item.context} {item.choices[item.answer]}"
        )
    assert scored["imagined"] and not any(cloze in text for cloze in scored["imagined"])
    assert all(cloze in text for cloze in scored["mixing"] + scored["sides"])  # facts, taught by design


def test_without_the_held_out_set_the_checks_would_fail() -> None:
    """The checks above have teeth: an unfiltered corpus describes evaluation scenes and writes TextCore's
    imagined-scene items."""
    held, nothing = corpus.held_out(SEED), corpus.HeldOut(frozenset(), ())
    texts = [corpus.corpus_document(SEED, index, nothing).text for index in range(5000)]
    assert {key for text in texts for key, _ in described_blocks(text)} & held.scenes
    assert any(cloze in text for text in texts for cloze in held.cloze)
