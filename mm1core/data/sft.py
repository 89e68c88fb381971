"""Supervised fine-tuning data (MM1 Sec. 5): instruction conversations, a chat template, answer-only loss masks.

The chat template writes each turn as ``question: {instruction}`` + newline + ``answer: {response}``, turns one
after another separated by a newline, the whole conversation between ``<bos>`` and ``<eos>``::

    <bos>question: <image> how many shapes are there? answer in one word.
    answer: 2
    question: what colour is the shape on the left? answer in one word.
    answer: red<eos>

Every word is in the embedded world's fixed vocabulary (it has no ``user`` or ``assistant``). The image
placeholder sits in the first instruction: ``<image> `` before the world's instructions; where a LLaVA-style
JSON puts it (LLaVA writes ``<image>\\n`` before the first question), and prepended as ``<image>\\n`` when an
entry has an image but no placeholder. ``chat_prompt(instruction)`` is a single-turn conversation up to where the
answer goes (``question: ...\\nanswer:``), the open prompt evaluation generates from.

Loss targets (``loss_mask``) are the response tokens of every turn, the space before them, and the token that
ends each response (the newline before the next question, or the final ``<eos>``): the model learns to answer
and to stop, never to write questions, markers, image tokens or ``<bos>``. Each piece of the template is encoded
on its own, so the mask is exact for any tokenizer (world, bytes, Hugging Face).

Sources (``data.sft.source``): ``synthetic``, the world's instruction items (``world.instruction_item``: short
questions, conversations of 2-4 turns, detailed descriptions, mixed by ``data.sft.mix``), or a LLaVA-style JSON
list (``LlavaConversations``). ``SFTData`` is the training loader, like ``datamodule.PretrainingData``: exactly
``max_steps * batch_size`` rows in an order fixed by ``data.seed`` and ``train.seed``, sharded over data-parallel
ranks, resumable.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import lightning
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mm1core.config import TrialConfig
from mm1core.data.dataset import (
    LOGGER,
    REPORTED_SKIPS,
    SUBSTITUTE_STRIDE,
    Sample,
    collate,
    render_images,
    truncate,
)
from mm1core.data.llava import entry_problem, image_folder, image_path, read_entries
from mm1core.data.records import IMAGE, BadRecord, Document, EncodedImage, ImageLike
from mm1core.data.sampler import MAX_CONSECUTIVE_BAD
from mm1core.data.tokenizer import TextTokenizer
from mm1core.data.world import Split, instruction_item

QUESTION_MARKER = "question:"  # opens every instruction
ANSWER_MARKER = "answer:"  # opens every response
TURN_SEPARATOR = "\n"  # ends a question line, and a response that another turn follows
HELDOUT_MAX = 256  # a JSON source's conversations held out for eval/sft/loss, at most
HELDOUT_EVERY = 10  # ... and at most one in this many


def chat_prompt(instruction: str) -> str:
    """A single-turn conversation up to where the answer goes: ``question: {instruction}\\nanswer:``."""
    return f"{QUESTION_MARKER} {instruction}{TURN_SEPARATOR}{ANSWER_MARKER}"


@dataclass(frozen=True)
class Conversation:
    """``turns`` of ``(instruction, response)``; the instructions hold one ``<image>`` per entry of ``images``, in
    order. ``kind``: the world's instruction kind (``short``, ``conversation``, ``detail``) or ``llava``."""

    turns: tuple[tuple[str, str], ...]
    images: tuple[ImageLike, ...]
    kind: str

    def pieces(self) -> list[tuple[str, bool]]:
        """The template's text pieces in order, each with whether its tokens are loss targets."""
        pieces: list[tuple[str, bool]] = []
        for number, (instruction, response) in enumerate(self.turns):
            if number:
                pieces.append((TURN_SEPARATOR, True))  # ends the previous response
            pieces += [(chat_prompt(instruction), False), (f" {response}", True)]
        return pieces

    @property
    def text(self) -> str:
        """The conversation in the template, without ``<bos>``/``<eos>``."""
        return "".join(piece for piece, _ in self.pieces())


def encode_conversation(
    conversation: Conversation, tokenizer: TextTokenizer, num_image_tokens: int, resolution: int
) -> Sample:
    """``<bos>`` + the template's ids + ``<eos>``, each ``<image>`` repeated ``num_image_tokens`` times as in
    ``dataset.encode_document``; ``loss_mask`` is True on the responses and what ends them (module docstring)."""
    ids, targets = [tokenizer.bos_id], [False]
    for piece, target in conversation.pieces():
        piece_ids = tokenizer.encode(piece)
        ids += piece_ids
        targets += [target] * len(piece_ids)
    ids, targets = np.array([*ids, tokenizer.eos_id]), np.array([*targets, True])
    is_image = ids == tokenizer.image_id
    if int(is_image.sum()) != len(conversation.images):
        raise ValueError(f"{int(is_image.sum())} <image> placeholders but {len(conversation.images)} images")
    repeats = np.where(is_image, num_image_tokens, 1)
    token_ids = torch.from_numpy(np.repeat(ids, repeats))  # (T,)
    loss_mask = torch.from_numpy(np.repeat(targets & ~is_image, repeats))  # (T,)
    images = render_images(Document(conversation.text, conversation.images, "sft"), resolution)
    return Sample(token_ids=token_ids, loss_mask=loss_mask, images=images)


# ------------------------------------------------------------------------------------------ the embedded world
class WorldConversations:
    """The world's instruction items of ``split`` as conversations, the image before the first instruction."""

    def __init__(self, seed: int, mix: Mapping[str, float], split: Split = Split.SFT) -> None:
        self.seed, self.mix, self.split = seed, dict(mix), split

    def conversation(self, index: int) -> Conversation:
        item = instruction_item(self.seed, index, self.mix, self.split)
        (first, response), *rest = item.turns
        return Conversation(((f"{IMAGE} {first}", response), *rest), (item.scene,), item.kind)


# ------------------------------------------------------------------------------------------- LLaVA-style JSON
class LlavaConversations:
    """A LLaVA-style JSON list of ``{"id", "image"?, "conversations": [{"from": "human"|"gpt", "value"}]}``;
    images are read (as bytes) only when a conversation is asked for: a missing file raises ``BadRecord``, as
    undecodable bytes do when the sample is built."""

    def __init__(self, path: str, images: str | None = None) -> None:
        self.path, self.folder = path, image_folder(path, images)
        self.entries = read_entries(path)
        for index, entry in enumerate(self.entries):
            problem = entry_problem(entry)
            if problem:
                raise ValueError(f"{path}: item {index}: {problem}")

    @property
    def size(self) -> int:
        return len(self.entries)

    def conversation(self, index: int) -> Conversation:
        entry = self.entries[index]
        values = [turn["value"] for turn in entry["conversations"]]
        images: tuple[ImageLike, ...] = ()
        if "image" in entry:
            if not any(IMAGE in value for value in values):
                values[0] = f"{IMAGE}\n{values[0]}"  # as LLaVA's preprocessing does
            images = (self._image(entry["image"]),)
        return Conversation(tuple(zip(values[::2], values[1::2], strict=True)), images, "llava")

    def _image(self, name: str) -> EncodedImage:
        path = image_path(self.folder, name)
        try:
            return EncodedImage(path.read_bytes(), str(path))
        except OSError as error:
            raise BadRecord(f"{path}: {error.strerror or error}") from error

    def split(self, seed: int) -> tuple[list[int], list[int]]:
        """Indices of the training entries (file order) and of the held-out ones (``eval/sft/loss``): the first
        ``min(HELDOUT_MAX, len // HELDOUT_EVERY)`` of a permutation seeded by ``seed``."""
        held = min(HELDOUT_MAX, self.size // HELDOUT_EVERY)
        order = np.random.default_rng([seed, int(Split.SFT_EVAL)]).permutation(self.size)
        heldout = sorted(order[:held].tolist())
        kept = set(heldout)
        return [index for index in range(self.size) if index not in kept], heldout


ConversationSource = WorldConversations | LlavaConversations


def build_conversations(cfg: TrialConfig) -> ConversationSource:
    """The training conversations of ``cfg.data.sft``: the embedded world's or a LLaVA-style JSON's."""
    sft = cfg.data.sft
    if sft.source == "synthetic":
        return WorldConversations(cfg.data.seed, sft.mix.model_dump())
    return LlavaConversations(sft.source, sft.images)


def heldout_conversations(cfg: TrialConfig) -> list[Conversation]:
    """``cfg.eval.num_examples`` conversations never trained on: items of ``Split.SFT_EVAL`` of the world, or a
    JSON source's held-out entries (fewer, or none, for a small file); unreadable ones are left out."""
    count, source = cfg.eval.num_examples, build_conversations(cfg)
    if isinstance(source, WorldConversations):
        heldout = WorldConversations(cfg.data.seed, source.mix, Split.SFT_EVAL)
        return [heldout.conversation(index) for index in range(count)]
    conversations = []
    for index in source.split(cfg.data.seed)[1][:count]:
        try:
            conversations.append(source.conversation(index))
        except BadRecord as problem:
            LOGGER.warning("held-out conversation skipped: %s", problem)
    return conversations


# ----------------------------------------------------------------------------------------------- the loader
WORLD_ROWS_PER_SEED = 10**9  # the world's conversations a train.seed owns: seeds never share one


class ConversationOrder:
    """Which conversation row ``row`` trains on: for the unbounded world, conversation ``shuffle * 10^9 + row``
    (each ``shuffle`` seed its own conversations); for a file, its training entries cycled in epochs, each epoch
    a permutation seeded by ``(seed, shuffle, epoch)``.

    ``shuffle`` is the trial's ``train.seed``: a trial fine-tuned from a checkpoint starts from fixed weights, so
    without it every seed of an SFT sweep would repeat the same run exactly."""

    def __init__(self, seed: int, indices: Sequence[int] | None, shuffle: int = 0) -> None:
        self.seed, self.shuffle, self.indices = seed, shuffle, None if indices is None else list(indices)
        if self.indices is not None and not self.indices:
            raise ValueError("no conversation to train on")

        self.epoch, self.permutation = -1, np.zeros(0, dtype=np.int64)  # the last epoch's, as rows run in order

    def __call__(self, row: int) -> int:
        if self.indices is None:
            return self.shuffle * WORLD_ROWS_PER_SEED + row
        epoch, position = divmod(row, len(self.indices))
        if epoch != self.epoch:
            self.epoch = epoch
            rng = np.random.default_rng([self.seed, self.shuffle, int(Split.SFT), epoch])
            self.permutation = rng.permutation(len(self.indices))
        return self.indices[int(self.permutation[position])]


class RowSampler(Sampler[int]):
    """Rows ``position .. rows - 1``; under data parallelism only rank ``rank``'s rows ``[rank * b, (rank + 1) *
    b)`` of each global batch of ``batch_size`` (``b = batch_size / world``), as ``sampler.RankShard`` shards."""

    def __init__(self, rows: int, batch_size: int) -> None:
        self.rows, self.batch_size, self.position = rows, batch_size, 0
        self.rank, self.world = 0, 1

    def shard(self, rank: int, world: int) -> None:
        if self.batch_size % world:
            raise ValueError(f"train.batch_size {self.batch_size} is not divisible by {world} data-parallel workers")
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        return max(0, self.rows - self.position) // self.world

    def __iter__(self) -> Iterator[int]:
        share = self.batch_size // self.world
        while self.position < self.rows:
            row, self.position = self.position, self.position + 1
            if (row % self.batch_size) // share == self.rank:
                yield row


class ConversationDataset(Dataset[Sample]):
    """Row ``j``: conversation ``order(j)`` encoded and truncated to ``max_tokens``. One whose image cannot be
    read (``BadRecord``) is replaced by another (``+ SUBSTITUTE_STRIDE`` in the order's index space) and counted
    in the sample's ``skipped``; the first reasons are logged."""

    def __init__(
        self,
        source: ConversationSource,
        order: ConversationOrder,
        tokenizer: TextTokenizer,
        *,
        num_image_tokens: int,
        resolution: int,
        max_tokens: int,
    ) -> None:
        self.source, self.order, self.tokenizer = source, order, tokenizer
        self.num_image_tokens, self.resolution, self.max_tokens = num_image_tokens, resolution, max_tokens
        self.reported = 0

    def __getitem__(self, row: int) -> Sample:  # type: ignore[override]
        for attempt in range(MAX_CONSECUTIVE_BAD):
            try:
                conversation = self.source.conversation(self.order(row + attempt * SUBSTITUTE_STRIDE))
                sample = encode_conversation(conversation, self.tokenizer, self.num_image_tokens, self.resolution)
            except BadRecord as problem:
                self._report(problem)
                continue
            sample = truncate(dict(sample), self.max_tokens, self.tokenizer.image_id, self.num_image_tokens)
            return Sample(**sample, skipped=attempt)  # type: ignore[typeddict-item]
        raise RuntimeError(f"{MAX_CONSECUTIVE_BAD} unreadable conversations in a row; is the data broken?")

    def _report(self, problem: BadRecord) -> None:
        if self.reported < REPORTED_SKIPS:
            LOGGER.warning("skipped a bad conversation: %s", problem)
            self.reported += 1


class SFTData(lightning.LightningDataModule):
    """The training loader of an SFT trial (``train.stage: sft``): ``max_steps`` batches of ``batch_size``
    conversations, in an order fixed by ``data.seed`` and ``train.seed`` (``ConversationOrder``); ``state_dict``
    is the row after the last trained step, so a resumed trial continues with the next conversation."""

    def __init__(self, cfg: TrialConfig, tokenizer: TextTokenizer) -> None:
        super().__init__()
        self.cfg, self.tokenizer = cfg, tokenizer
        self.source = build_conversations(cfg)
        indices = None if isinstance(self.source, WorldConversations) else self.source.split(cfg.data.seed)[0]
        self.dataset = ConversationDataset(
            self.source,
            ConversationOrder(cfg.data.seed, indices, shuffle=cfg.train.seed),
            tokenizer,
            num_image_tokens=cfg.model.tokens_per_image,
            resolution=cfg.model.image_resolution,
            max_tokens=cfg.data.seq_len or cfg.model.decoder.preset().max_seq_len,
        )
        self.sampler = RowSampler(cfg.train.max_steps * cfg.train.batch_size, cfg.train.batch_size)

    def train_dataloader(self) -> DataLoader:
        workers, batch_size = self.cfg.data.workers, self.cfg.train.batch_size
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        self.sampler.shard(rank, world)
        return DataLoader(
            self.dataset,
            batch_size=batch_size // world,
            sampler=self.sampler,
            num_workers=workers,
            persistent_workers=False,
            prefetch_factor=4 if workers else None,
            collate_fn=functools.partial(collate, pad_id=self.tokenizer.pad_id),
        )

    def state_dict(self) -> dict[str, Any]:
        trained_rows = self.trainer.global_step * self.cfg.train.batch_size if self.trainer else self.sampler.position
        return {"row": trained_rows}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.position = int(state["row"])
