"""Few-shot VQA on the embedded world, scored with VQAv2 accuracy (MM1 Sec. 3.1: VQAv2, TextVQA-like reading).

Prompt: MM1's ``<image> Question: {question} Short answer:``, written lower-case as the world's interleaved
documents write it (``world.vqa_line``); a demonstration completes its line with the canonical answer (the
majority of its ten). ``vqa`` mixes every question kind; ``reading`` and ``counting`` are one kind each, their
demonstrations of the same kind (as a TextVQA prompt shows TextVQA items).

The world's ten human answers are raw (``two``, ``on the left``, ``the word stop``); VQAv2's released answers
went through the answer normalisation, so the embedded items' references do too (``normalize_answer``) before
the official scoring.
"""

from __future__ import annotations

from mm1core.data.world import Split, VQAItem, vqa_item, vqa_item_of_kind, vqa_line
from mm1core.evaluate.metrics import normalize_answer, vqa_score
from mm1core.evaluate.tasks import Example, WorldTask


def vqa_example(item: VQAItem, index: int) -> Example:
    """The item as a prompt line, its canonical answer, and its ten references as VQAv2 releases them."""
    references = tuple(normalize_answer(answer) for answer in item.answers)
    return Example(item.scene, vqa_line(item.question), item.answer, references, index, index)


class WorldVQATask(WorldTask):
    """``vqa`` (``kind`` None: every kind, as drawn by ``vqa_item``) or one kind's set (``reading``,
    ``counting``)."""

    metric = staticmethod(vqa_score)

    def __init__(self, name: str, kind: str | None = None) -> None:
        super().__init__(name)
        self.kind = kind

    def example(self, seed: int, split: Split, index: int) -> Example:
        if self.kind is None:
            return vqa_example(vqa_item(seed, split, index), index)
        return vqa_example(vqa_item_of_kind(seed, split, index, self.kind), index)
