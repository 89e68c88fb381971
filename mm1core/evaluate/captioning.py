"""Few-shot image captioning scored with CIDEr-D (MM1 Sec. 3.1: COCO captioning, prompt ``<image> A photo of``).

A k-shot prompt is k demonstrations ``<image> a photo of <caption>.`` + newline, drawn with a fixed seed
from the support split, followed by the test image and ``<image> a photo of``; the model continues it
greedily up to a newline or ``<eos>``. Test items come from the eval split, never seen in training; each has
several reference captions. Scores are CIDEr-D (Vedantam et al., 2015; ``pycocoevalcap``) in percent.
"""

from __future__ import annotations

import re

from pycocoevalcap.cider.cider import Cider

from mm1core.config import TrialConfig
from mm1core.data.dataset import encode_document
from mm1core.data.tokenizer import Tokenizer
from mm1core.data.world import IMAGE, Document, Split, captioning_item, item_rng
from mm1core.evaluate.generate import greedy_generate
from mm1core.model import MM1Model

PROMPT = "a photo of"  # MM1's "<image> A photo of"; the tokenizer lower-cases text anyway
REFERENCES = 5  # reference captions per test image
SUPPORT_POOL = 1024  # support items the demonstrations are drawn from
CAPTION_TOKENS = 24  # the longest reference / demonstration caption, in tokens (checked by the tests)
_WORD = re.compile(r"[a-z]+")


def demonstration_indices(seed: int, index: int, shots: int) -> list[int]:
    """Support items for test item ``index``; the first k of one permutation, so 4-shot demos are in 8-shot's."""
    return item_rng(seed, Split.DEMO_CHOICE, index).permutation(SUPPORT_POOL)[:shots].tolist()


def caption_prompt(seed: int, index: int, shots: int) -> tuple[Document, list[str]]:
    """The ``shots``-shot prompt for eval item ``index`` and that item's reference captions."""
    scene, references = captioning_item(seed, Split.EVAL, index, REFERENCES)
    demos = [captioning_item(seed, Split.SUPPORT, j, 1) for j in demonstration_indices(seed, index, shots)]
    text = "".join(f"{IMAGE} {PROMPT} {captions[0]}.\n" for _, captions in demos) + f"{IMAGE} {PROMPT}"
    return Document(text, (*(demo for demo, _ in demos), scene), "prompt"), references


def max_prompt_tokens(shots: int, num_image_tokens: int) -> int:
    """An upper bound on a ``shots``-shot prompt's length (``<bos>``, image tokens and text)."""
    return 1 + (shots + 1) * (num_image_tokens + 4) + shots * (CAPTION_TOKENS + 2)


def words(text: str) -> str:
    """Lower-case words only, punctuation dropped (what the COCO PTB tokenizer leaves for scoring)."""
    return " ".join(_WORD.findall(text.lower()))


def cider_d(references: list[list[str]], hypotheses: list[str]) -> float:
    """Corpus CIDEr-D of ``hypotheses[i]`` against ``references[i]``, in percent."""
    truths = {index: [words(caption) for caption in captions] for index, captions in enumerate(references)}
    results = {index: [words(hypothesis)] for index, hypothesis in enumerate(hypotheses)}
    score, _ = Cider().compute_score(truths, results)
    return 100.0 * float(score)


def caption_answers(model: MM1Model, cfg: TrialConfig, tokenizer: Tokenizer, prompts: list[Document]) -> list[str]:
    """The model's greedy continuation of each prompt, decoded (the text before the first newline / ``<eos>``)."""
    num_tokens, resolution = cfg.model.tokens_per_image, cfg.model.image_resolution
    samples = [encode_document(prompt, tokenizer, num_tokens, resolution, end=False) for prompt in prompts]
    answers = greedy_generate(
        model,
        samples,
        pad_id=tokenizer.pad_id,
        stop_ids={tokenizer.newline_id, tokenizer.eos_id},
        max_new_tokens=cfg.eval.max_new_tokens,
        batch_size=cfg.eval.batch_size,
    )
    return [tokenizer.decode(answer) for answer in answers]


def caption_score(model: MM1Model, cfg: TrialConfig, tokenizer: Tokenizer, shots: int) -> float:
    """``shots``-shot captioning CIDEr-D on ``cfg.eval.num_examples`` items of the eval split, in percent."""
    items = [caption_prompt(cfg.data.seed, index, shots) for index in range(cfg.eval.num_examples)]
    answers = caption_answers(model, cfg, tokenizer, [prompt for prompt, _ in items])
    return cider_d([references for _, references in items], answers)
