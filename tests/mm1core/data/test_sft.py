"""SFT data: the chat template and its answer-only loss mask, the world's instruction items, LLaVA-style JSON
sources and the SFT loader (order, sharding, resume, unreadable images)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from mm1core.config import TrialConfig
from mm1core.data import world
from mm1core.data.dataset import encode_document
from mm1core.data.images import to_pixels
from mm1core.data.lengths import max_conversation_tokens
from mm1core.data.llava import sft_source_problem
from mm1core.data.records import IMAGE, Document, EncodedImage
from mm1core.data.sft import (
    Conversation,
    LlavaConversations,
    SFTData,
    WorldConversations,
    chat_prompt,
    encode_conversation,
)
from mm1core.data.tokenizer import ByteTokenizer, Tokenizer, build_tokenizer
from mm1core.lm import DECODERS
from mm1core.preflight import preflight
from tests.mm1core.flavours import TINY

MIX = {"short": 1.0, "conversation": 1.0, "detail": 1.0}
SCENE = world.sample_scene(world.item_rng(0, world.Split.TRAIN, 0))
HAND_MADE = Conversation(
    ((f"{IMAGE} how many shapes are there?", "2"), ("what colour is the circle?", "red")), (SCENE,), "conversation"
)


def sft_trial(**data: Any) -> TrialConfig:
    """The tiny trial at stage sft, ``data`` fields replaced."""
    return TrialConfig.model_validate(
        {**TINY, "train": {**TINY["train"], "stage": "sft"}, "data": {**TINY.get("data", {}), **data}}
    )


def world_conversations(count: int, seed: int = 0, mix: dict[str, float] = MIX) -> list[Conversation]:
    source = WorldConversations(seed, mix)
    return [source.conversation(index) for index in range(count)]


# ------------------------------------------------------------------------------------------ template and mask
def test_mask_marks_exactly_the_answers_and_what_ends_them(tokenizer: Tokenizer) -> None:
    sample = encode_conversation(HAND_MADE, tokenizer, num_image_tokens=3, resolution=16)
    tokens = [tokenizer.tokens[i] for i in sample["token_ids"].tolist()]
    question = ["question", ":"]
    expected = (
        [("<bos>", False), *((t, False) for t in question), *[("<image>", False)] * 3]
        + [(t, False) for t in ("how", "many", "shapes", "are", "there", "?", "\n", "answer", ":")]
        + [("2", True), ("\n", True)]
        + [(t, False) for t in (*question, "what", "colour", "is", "the", "circle", "?", "\n", "answer", ":")]
        + [("red", True), ("<eos>", True)]
    )
    assert list(zip(tokens, sample["loss_mask"].tolist(), strict=True)) == expected
    assert sample["images"].shape == (1, 3, 16, 16)


def test_mask_is_exact_with_the_byte_tokenizer() -> None:
    tokenizer = ByteTokenizer()
    sample = encode_conversation(HAND_MADE, tokenizer, num_image_tokens=5, resolution=16)
    ids, mask = sample["token_ids"], sample["loss_mask"]
    assert tokenizer.decode(ids[mask].tolist()) == " 2\n red<eos>"
    assert tokenizer.decode(ids[~mask].tolist()) == (
        "<bos>question: " + "<image>" * 5 + " how many shapes are there?\nanswer:"
        "question: what colour is the circle?\nanswer:"
    )


@pytest.mark.parametrize("tokenizer", [build_tokenizer("world"), ByteTokenizer()], ids=["world", "bytes"])
def test_chat_prompt_is_the_conversation_up_to_its_answer(tokenizer: Any) -> None:
    instruction = f"{IMAGE} what shape is on the left? {world.ONE_WORD}"
    conversation = Conversation(((instruction, "circle"),), (SCENE,), "short")
    assert conversation.text == chat_prompt(instruction) + " circle"
    prompt = encode_document(Document(chat_prompt(instruction), (SCENE,), "prompt"), tokenizer, 4, 16, end=False)
    full = encode_conversation(conversation, tokenizer, 4, 16)
    first_target = int(full["loss_mask"].int().argmax())
    assert torch.equal(full["token_ids"][:first_target], prompt["token_ids"])


def test_placeholders_must_match_the_images(tokenizer: Tokenizer) -> None:
    with pytest.raises(ValueError, match="1 <image> placeholders but 0 images"):
        encode_conversation(Conversation(HAND_MADE.turns, (), "short"), tokenizer, 4, 16)


# ---------------------------------------------------------------------------------- the world's instruction data
def test_embedded_conversations_use_only_known_words_and_fit_the_bound(tokenizer: Tokenizer) -> None:
    for conversation in world_conversations(200):
        sample = encode_conversation(conversation, tokenizer, 16, 8)
        assert tokenizer.unk_id not in sample["token_ids"].tolist(), conversation.text
        assert len(sample["token_ids"]) <= max_conversation_tokens(16), conversation.text
        assert conversation.text.count(IMAGE) == 1 and conversation.turns[0][0].startswith(IMAGE)
        assert int(sample["loss_mask"].sum()) >= 2  # an answer and its end
    assert max_conversation_tokens(144) <= DECODERS.get("lm-tiny").max_seq_len


POSITION_OF_PHRASE = {phrase: position for position, phrase in world.POSITION_PHRASES.items()}


def expected_answer(scene: world.Scene, question: str) -> str:
    """The right one-word answer to a world question, worked out from the scene alone."""
    objects = scene.objects

    def only(match: Any) -> world.WorldObject:
        [obj] = [o for o in objects if match(o)]
        return obj

    rules: list[tuple[str, Any]] = [
        (r"how many shapes are there\?", lambda: str(len(objects))),
        (r"how many (\w+) shapes are there\?", lambda c: str(sum(o.colour == c for o in objects))),
        (r"how many (\w+)s are there\?", lambda s: str(sum(o.shape == s for o in objects))),
        (r"what colour is the shape (.+)\?", lambda p: only(lambda o: o.position == POSITION_OF_PHRASE[p]).colour),
        (r"what colour is the (\w+)\?", lambda s: only(lambda o: o.shape == s).colour),
        (r"what shape is the (\w+) shape\?", lambda c: only(lambda o: o.colour == c).shape),
        (r"what shape is (.+)\?", lambda p: only(lambda o: o.position == POSITION_OF_PHRASE[p]).shape),
        (r"where is the (?:word|number) written\?", lambda: world.POSITION_ANSWERS[scene.text.position]),
        (r"where is the (\w+)\?", lambda s: world.POSITION_ANSWERS[only(lambda o: o.shape == s).position]),
        (
            r"where is the (\w+) (\w+)\?",
            lambda c, s: world.POSITION_ANSWERS[only(lambda o: (o.colour, o.shape) == (c, s)).position],
        ),
        (r"what (?:number |word )?is written.*\?", lambda: scene.text.text),
    ]
    for pattern, answer in rules:
        match = re.fullmatch(pattern, question)
        if match:
            return answer(*match.groups())
    raise AssertionError(f"no rule for {question!r}")


def check_turn(scene: world.Scene, instruction: str, response: str) -> None:
    instruction = instruction.removeprefix(f"{IMAGE} ")
    if instruction == world.CAPTION_REQUEST:
        assert response.endswith(".")
        for obj in scene.objects:
            assert f"{obj.colour} {obj.shape}" in response
        written = re.search(r"the (?:word|number) (\w+)", response)
        assert written is None or written[1] == scene.text.text
    elif instruction in world.DETAIL_REQUESTS:
        count = len(scene.objects)
        assert response.startswith(f"there {'is' if count == 1 else 'are'} {world.count_phrase(count)} in this")
        for obj in scene.objects:
            assert f"{obj.size} {obj.colour} {obj.shape} is {world.POSITION_PHRASES[obj.position]}." in response
        if scene.text is None:
            assert "no word and no number is written." in response
        else:
            written = f"{world.text_phrase(scene.text)} is written {world.POSITION_PHRASES[scene.text.position]}."
            assert written in response
    else:
        question = instruction.removesuffix(f" {world.ONE_WORD}")
        assert question != instruction and response == expected_answer(scene, question), instruction


def test_answers_are_right_for_the_scene() -> None:
    for conversation in world_conversations(300, seed=3):
        [scene] = conversation.images
        for instruction, response in conversation.turns:
            check_turn(scene, instruction, response)


def test_the_answer_checker_catches_a_wrong_answer() -> None:
    conversation = next(c for c in world_conversations(50) if "how many shapes" in c.turns[0][0])
    [scene] = conversation.images
    with pytest.raises(AssertionError):
        check_turn(scene, conversation.turns[0][0], str(len(scene.objects) + 1))


def test_detail_describes_more_than_a_synthetic_caption(tokenizer: Tokenizer) -> None:
    details = [c for c in world_conversations(300) if c.kind == "detail"]
    for conversation in details:
        [scene] = conversation.images
        caption = world.synthetic_caption(scene, world.item_rng(0, world.Split.TRAIN, 0))
        assert len(tokenizer.encode(conversation.turns[0][1])) >= len(tokenizer.encode(caption))


def test_items_are_deterministic_and_their_kinds_follow_the_mix() -> None:
    assert world_conversations(20) == world_conversations(20)
    assert world_conversations(20) != world_conversations(20, seed=1)
    kinds = Counter(c.kind for c in world_conversations(800, mix={"short": 0.0, "conversation": 1.0, "detail": 3.0}))
    assert set(kinds) == {"conversation", "detail"} and 0.68 < kinds["detail"] / 800 < 0.82
    for conversation in world_conversations(200):
        turns = len(conversation.turns)
        assert turns == 1 if conversation.kind != "conversation" else 2 <= turns <= 4
        assert len({instruction for instruction, _ in conversation.turns}) == turns


def test_heldout_items_are_not_training_items() -> None:
    training = {c.text for c in world_conversations(300)}
    heldout = WorldConversations(0, MIX, world.Split.SFT_EVAL)
    scenes = {world.render(c.images[0], 16).tobytes() for c in world_conversations(300)}
    held = [heldout.conversation(index) for index in range(300)]
    assert not {world.render(c.images[0], 16).tobytes() for c in held} & scenes
    assert len({c.text for c in held} & training) < 30  # only common short questions may repeat


# --------------------------------------------------------------------------------------------- LLaVA-style JSON
def write_png(path: Path, colour: tuple[int, int, int]) -> None:
    Image.new("RGB", (12, 10), colour).save(path)


def llava_entries(folder: Path) -> list[dict[str, Any]]:
    """Four entries: the placeholder first, none (prepended), text-only, an absolute image path."""
    (folder / "images").mkdir(parents=True)
    write_png(folder / "images" / "a.png", (255, 0, 0))
    write_png(folder / "images" / "b.png", (0, 0, 255))
    write_png(folder / "c.png", (0, 255, 0))
    human, gpt = "from", "value"
    return [
        {
            "id": "0",
            "image": "images/a.png",
            "conversations": [
                {human: "human", gpt: "<image>\nWhat colour is it?"},
                {human: "gpt", gpt: "Red."},
                {human: "human", gpt: "Is it round?"},
                {human: "gpt", gpt: "No."},
            ],
        },
        {
            "id": "1",
            "image": "images/b.png",
            "conversations": [{human: "human", gpt: "Describe it."}, {human: "gpt", gpt: "A blue picture."}],
        },
        {"id": "2", "conversations": [{human: "human", gpt: "Say hi."}, {human: "gpt", gpt: "hi"}]},
        {
            "id": "3",
            "image": str(folder / "c.png"),
            "conversations": [{human: "human", gpt: "Colour? <image>"}, {human: "gpt", gpt: "green"}],
        },
    ]


@pytest.fixture
def llava_file(tmp_path: Path) -> Path:
    path = tmp_path / "llava.json"
    path.write_text(json.dumps(llava_entries(tmp_path)))
    return path


def test_llava_conversations_are_read_with_their_images(llava_file: Path) -> None:
    source = LlavaConversations(str(llava_file))
    assert source.size == 4 and sft_source_problem(str(llava_file), None) is None
    first, prepended, text_only, absolute = (source.conversation(index) for index in range(4))
    assert first.turns == (("<image>\nWhat colour is it?", "Red."), ("Is it round?", "No."))
    assert prepended.turns == (("<image>\nDescribe it.", "A blue picture."),)
    assert text_only.turns == (("Say hi.", "hi"),) and text_only.images == ()
    assert absolute.turns[0][0] == "Colour? <image>"
    pixels = [to_pixels(c.images[0], 8) for c in (first, prepended, absolute)]
    assert [tuple(int(v) for v in p[4, 4]) for p in pixels] == [(255, 0, 0), (0, 0, 255), (0, 255, 0)]
    assert all(isinstance(c.images[0], EncodedImage) for c in (first, prepended, absolute))
    sample = encode_conversation(first, ByteTokenizer(), 4, 8)
    assert ByteTokenizer().decode(sample["token_ids"][sample["loss_mask"]].tolist()) == " Red.\n No.<eos>"


def test_images_resolve_under_the_images_folder(tmp_path: Path) -> None:
    entries = llava_entries(tmp_path / "data")
    entries[0]["image"] = "a.png"  # relative to the images folder, not the JSON's
    path = tmp_path / "llava.json"
    path.write_text(json.dumps(entries[:1]))
    assert "a.png not found under" in sft_source_problem(str(path), None)
    assert sft_source_problem(str(path), str(tmp_path / "data" / "images")) is None
    source = LlavaConversations(str(path), str(tmp_path / "data" / "images"))
    assert to_pixels(source.conversation(0).images[0], 8)[0, 0].tolist() == [255, 0, 0]


def turns(*pairs: tuple[Any, Any]) -> list[Any]:
    return [{"from": role, "value": value} for role, value in pairs]


BROKEN: dict[str, tuple[Any, str]] = {
    "not-a-list": ({"conversations": []}, "expected a JSON list of conversations, got a dict"),
    "empty": ([], "holds no conversation"),
    "not-an-object": ([["human", "hi"]], "item 0: not an object"),
    "no-conversations": ([{"id": 1}], "item 0: conversations: missing"),
    "gpt-first": ([{"conversations": turns(("gpt", "a"), ("human", "b"))}], "item 0: conversations[0].from: 'gpt'"),
    "not-alternating": (
        [
            {"conversations": turns(("human", "a"), ("gpt", "b"))},
            {"conversations": turns(("human", "a"), ("human", "b"))},
        ],
        "item 1: conversations[1].from: 'human', expected 'gpt'",
    ),
    "no-value": ([{"conversations": [{"from": "human"}, {"from": "gpt", "value": "b"}]}], "conversations[0]: not an"),
    "unanswered": ([{"conversations": turns(("human", "a"))}], "item 0: conversations[0]: a human turn without"),
    "placeholder-without-image": ([{"conversations": turns(("human", "<image> a"), ("gpt", "b"))}], "without an image"),
    "two-placeholders": (
        [{"image": "a.png", "conversations": turns(("human", "<image> <image>"), ("gpt", "b"))}],
        "conversations[0].value: more than one <image>",
    ),
    "placeholder-in-answer": (
        [{"image": "a.png", "conversations": turns(("human", "a"), ("gpt", "<image>"))}],
        "conversations[1].value: <image> in a gpt turn",
    ),
    "image-not-text": ([{"image": 3, "conversations": turns(("human", "a"), ("gpt", "b"))}], "item 0: image: not a"),
    "missing-image": (
        [
            {"image": "here.png", "conversations": turns(("human", "a"), ("gpt", "b"))},
            {"image": "gone.png", "conversations": turns(("human", "a"), ("gpt", "b"))},
            {"image": "lost.png", "conversations": turns(("human", "a"), ("gpt", "b"))},
        ],
        "item 1: image gone.png not found under",
    ),
}


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_source_problems_name_the_file_item_and_field(case: str, tmp_path: Path) -> None:
    content, expected = BROKEN[case]
    write_png(tmp_path / "here.png", (1, 2, 3))
    write_png(tmp_path / "a.png", (1, 2, 3))
    path = tmp_path / "sft.json"
    path.write_text(json.dumps(content))
    problem = sft_source_problem(str(path), None)
    assert problem is not None and "\n" not in problem and problem.startswith(f"{path}: ")
    assert expected in problem, problem


def test_unreadable_json_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "sft.json"
    path.write_text("[{not json")
    problem = sft_source_problem(str(path), None)
    assert problem.startswith(f"{path}: not a readable JSON file") and "\n" not in problem


def test_the_preflight_rejects_a_broken_source(tmp_path: Path) -> None:
    path = tmp_path / "sft.json"
    path.write_text(json.dumps(BROKEN["gpt-first"][0]))
    (problem,) = preflight(sft_trial(sft={"source": str(path)})).problems
    assert problem.path == "data.sft.source" and re.search(r"item 0: conversations\[0\].from", problem.message)


# ----------------------------------------------------------------------------------------------------- the loader
def rows(data: SFTData) -> list[list[int]]:
    return [row[row != 0].tolist() for batch in data.train_dataloader() for row in batch["token_ids"]]


def test_loader_yields_max_steps_batches_of_conversations(tokenizer: Tokenizer) -> None:
    cfg = sft_trial()
    batches = list(SFTData(cfg, tokenizer).train_dataloader())
    assert len(batches) == cfg.train.max_steps
    for batch in batches:
        assert batch["token_ids"].shape[0] == cfg.train.batch_size
        assert batch["images"].shape == (cfg.train.batch_size, 3, 32, 32) and batch["image_counts"].tolist() == [1] * 4
        assert (batch["streams"] == -1).all() and (batch["skipped"] == 0).all()
        targets = batch["token_ids"][batch["loss_mask"]]
        assert not torch.isin(targets, torch.tensor([tokenizer.image_id, tokenizer.bos_id, tokenizer.pad_id])).any()
    first = batches[0]["token_ids"][0]
    expected = encode_conversation(WorldConversations(0, MIX).conversation(0), tokenizer, 4, 32)["token_ids"]
    assert torch.equal(first[: len(expected)], expected)


def test_order_depends_on_the_data_and_train_seeds(tokenizer: Tokenizer) -> None:
    # A fine-tuned checkpoint has no random init: train.seed must vary the data, or SFT seeds repeat one run.
    base = rows(SFTData(sft_trial(), tokenizer))
    assert rows(SFTData(sft_trial(), tokenizer)) == base
    other_train_seed = TrialConfig.model_validate(
        {**sft_trial().model_dump(), "train": {**sft_trial().train.model_dump(), "seed": 7}}
    )
    assert rows(SFTData(other_train_seed, tokenizer)) != base
    assert rows(SFTData(sft_trial(seed=1), tokenizer)) != base


def test_resume_continues_at_the_next_row(tokenizer: Tokenizer) -> None:
    cfg = sft_trial()
    uninterrupted = rows(SFTData(cfg, tokenizer))
    first = SFTData(cfg, tokenizer)
    first.trainer = SimpleNamespace(global_step=2)  # what Lightning has trained when it saves
    state = first.state_dict()
    assert state == {"row": 2 * cfg.train.batch_size}
    resumed = SFTData(cfg, tokenizer)
    resumed.load_state_dict(state)
    assert rows(resumed) == uninterrupted[8:]


def test_ranks_together_load_the_single_process_batches(tokenizer: Tokenizer) -> None:
    cfg = sft_trial()
    single = rows(SFTData(cfg, tokenizer))
    shards = []
    for rank in range(2):
        data = SFTData(cfg, tokenizer)
        data.trainer = SimpleNamespace(global_rank=rank, world_size=2, global_step=0)
        shards.append(rows(data))
    interleaved = [
        row for step in range(cfg.train.max_steps) for shard in shards for row in shard[2 * step : 2 * step + 2]
    ]
    assert interleaved == single


def test_a_file_source_cycles_in_seeded_epochs_and_skips_bad_images(llava_file: Path) -> None:
    tokenizer = ByteTokenizer()  # every word of the file survives, to be found in the rows
    cfg = sft_trial(sft={"source": str(llava_file)})
    texts = [tokenizer.decode(row) for row in rows(SFTData(cfg, tokenizer))]
    assert len(texts) == 20 and sum("Describe it." in text for text in texts) >= 2
    (llava_file.parent / "images" / "b.png").write_bytes(b"not an image")
    data = SFTData(cfg, tokenizer)
    batches = list(data.train_dataloader())
    assert len(batches) == cfg.train.max_steps
    assert int(sum(batch["skipped"].sum() for batch in batches)) > 0  # b.png's conversation is in 5 of 20 rows
    texts = [tokenizer.decode(row[row != 0].tolist()) for batch in batches for row in batch["token_ids"]]
    assert len(texts) == 20 and not any("Describe it." in text for text in texts)
    orders = [data.dataset.order(row) for row in range(8)]
    assert sorted(orders[:4]) == sorted(orders[4:]) == [0, 1, 2, 3] and orders[:4] != orders[4:]


def test_a_large_file_holds_conversations_out(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png", (9, 9, 9))
    entry = {"image": "a.png", "conversations": turns(("human", "what is it?"), ("gpt", "a square"))}
    path = tmp_path / "many.json"
    path.write_text(json.dumps([entry] * 30))
    train, heldout = LlavaConversations(str(path)).split(0)
    assert len(heldout) == 3 and sorted(train + heldout) == list(range(30)) and not set(train) & set(heldout)
    assert np.all(np.diff(train) > 0)
