"""Upper bounds on the token lengths the embedded world makes: training rows, few-shot prompts, conversations.

Torch-free, so the preflight (``mm1core.preflight``) checks a trial's longest row and prompt against its decoder
before anything starts; the tests of the world, the evaluation and the SFT data check that the bounds hold.
"""

from __future__ import annotations

TEXT_TOKENS_PER_IMAGE = 30  # the longest caption, question or photo line that goes with one image
TEXT_TOKENS_EXTRA = 40  # an interleaved document's own sentences (intro, facts), plus <bos>/<eos>
TEXT_TOKENS_TEXT_ONLY = 140  # the longest text-only document, plus <bos>/<eos>
CAPTION_TOKENS = 24  # the longest reference / demonstration caption, in tokens
# The longest embedded conversation's text in tokens of the world tokenizer, <bos>, <eos> and the <image>
# placeholder included; ``max_conversation_tokens`` adds the image's tokens.
SFT_TEXT_TOKENS = 128


def max_sample_tokens(max_images: int, num_image_tokens: int) -> int:
    """An upper bound on an embedded-world document's length (image tokens included)."""
    with_images = max_images * (num_image_tokens + TEXT_TOKENS_PER_IMAGE) + TEXT_TOKENS_EXTRA
    return max(with_images, TEXT_TOKENS_TEXT_ONLY)


def max_prompt_tokens(shots: int, num_image_tokens: int) -> int:
    """An upper bound on a ``shots``-shot prompt of any embedded task (``<bos>``, image tokens and text): a
    captioning line is the longest (the tests check the VQA lines)."""
    return 1 + (shots + 1) * (num_image_tokens + 4) + shots * (CAPTION_TOKENS + 2)


def max_conversation_tokens(num_image_tokens: int) -> int:
    """An upper bound on an encoded embedded conversation (one image of ``num_image_tokens`` tokens)."""
    return SFT_TEXT_TOKENS + num_image_tokens - 1
