"""Few-shot image captioning scored with CIDEr-D (MM1 Sec. 3.1: COCO captioning, prompt ``<image> A photo of``).

A k-shot prompt is k demonstrations ``<image> a photo of <caption>.`` + newline, drawn with a fixed seed
from the support split, followed by the test image and ``<image> a photo of``; the model continues it
greedily up to a newline or ``<eos>``. Test items come from the eval split, never seen in training; each has
several reference captions. Scores are CIDEr-D (Vedantam et al., 2015; ``pycocoevalcap``) in percent.
"""

from __future__ import annotations

from mm1core.data.world import IMAGE, Document, Split, captioning_item
from mm1core.evaluate.metrics import cider_d, words
from mm1core.evaluate.tasks import SUPPORT_POOL, Example, WorldTask, demonstration_indices, few_shot_prompt

__all__ = [
    "CaptionTask",
    "SUPPORT_POOL",
    "caption_prompt",
    "cider_d",
    "demonstration_indices",
    "words",
]

PROMPT = "a photo of"  # MM1's "<image> A photo of"; the world writes (and its tokenizer reads) lower case
REFERENCES = 5  # reference captions per test image


class CaptionTask(WorldTask):
    """``caption``: the world's captioning set, CIDEr-D against ``REFERENCES`` captions per image."""

    metric = staticmethod(cider_d)

    def example(self, seed: int, split: Split, index: int) -> Example:
        """A demonstration shows the first reference caption, with a full stop."""
        scene, references = captioning_item(seed, split, index, REFERENCES if split == Split.EVAL else 1)
        return Example(scene, f"{IMAGE} {PROMPT}", f"{references[0]}.", tuple(references), index, index)


def caption_prompt(seed: int, index: int, shots: int) -> tuple[Document, list[str]]:
    """The ``shots``-shot prompt for eval item ``index`` and that item's reference captions."""
    task = CaptionTask("caption")
    test = task.example(seed, Split.EVAL, index)
    demonstrations = [task.example(seed, Split.SUPPORT, j) for j in demonstration_indices(seed, index, shots)]
    return few_shot_prompt(demonstrations, test), list(test.references)
