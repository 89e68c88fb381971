"""A test-only oracle model: an ``nn.Module`` with ``MM1Model``'s interface whose logits force the right answer.

It answers a generation prompt from a table keyed by the prompt's last line (without its image tokens) and the
digest of its last image; it gives a multiple-choice sequence near-certain tokens when its text is a right
``context choice``. Everything the evaluation code sees is logits, so its prompting, decoding, normalisation
and scoring are all exercised.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from mm1core.data.dataset import render_images
from mm1core.data.records import IMAGE, Document, ImageLike
from mm1core.data.tokenizer import TextTokenizer
from mm1core.lm.decoder import Decoder, KVCache
from mm1core.lm.presets import LMPreset
from mm1core.model import MM1Model

SURE = 30.0  # the forced token's logit; every other logit is 0


def digest(image: torch.Tensor) -> str:
    """A ``(3, R, R)`` image tensor's identity."""
    return hashlib.sha1(image.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def canonical(tokenizer: TextTokenizer, text: str) -> str:
    return tokenizer.decode(tokenizer.encode(text))


def answer_key(tokenizer: TextTokenizer, query: str, image: ImageLike, resolution: int) -> tuple[str, str]:
    """The oracle's key of a test item: its prompt line (``<image> ...`` up to the answer) and its image."""
    pixels = render_images(Document(IMAGE, (image,), "prompt"), resolution)[0]
    return canonical(tokenizer, query.replace(IMAGE, "").strip()), digest(pixels)


def forced(rows: Sequence[int], length: int, vocab_size: int) -> torch.Tensor:
    """``(B, length, V)`` logits, row ``b`` sure of ``rows[b]`` at every position."""
    logits = torch.zeros(len(rows), length, vocab_size)
    logits[torch.arange(len(rows)), :, torch.tensor(rows)] = SURE
    return logits


class ScriptedDecoder(nn.Module):
    """The decoder steps of greedy generation: each call emits every row's next scripted token."""

    def __init__(self, decoder: Decoder, vocab_size: int, newline_id: int) -> None:
        super().__init__()
        self.inner, self.vocab_size, self.newline_id = decoder, vocab_size, newline_id
        self.scripts: list[list[int]] = []
        self.step = 0

    @property
    def preset(self) -> LMPreset:
        return self.inner.preset

    def embed(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.inner.embed(token_ids)

    def new_cache(self) -> KVCache:
        return self.inner.new_cache()

    def next_tokens(self) -> list[int]:
        tokens = [script[self.step] if self.step < len(script) else self.newline_id for script in self.scripts]
        self.step += 1
        return tokens

    def forward(self, embeddings: torch.Tensor, *args: object) -> torch.Tensor:
        return forced(self.next_tokens(), embeddings.shape[1], self.vocab_size)


class OracleModel(nn.Module):
    """Wraps a model (its parameters give the device); see the module docstring.

    ``answers`` maps ``answer_key`` to the answer to emit; ``right_texts`` holds the canonical texts of the
    right ``context choice`` sequences of multiple-choice items.
    """

    def __init__(
        self,
        model: MM1Model,
        tokenizer: TextTokenizer,
        answers: Mapping[tuple[str, str], str] | None = None,
        right_texts: set[str] | None = None,
    ) -> None:
        super().__init__()
        self.model, self.tokenizer = model, tokenizer
        self.vocab_size, self.image_token_id = model.vocab_size, model.image_token_id
        self.decoder = ScriptedDecoder(model.decoder, model.vocab_size, tokenizer.newline_id)
        self.answers, self.right_texts = dict(answers or {}), set(right_texts or ())

    def forward(
        self,
        token_ids: torch.Tensor,
        images: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        if cache is None:
            return self.likelihoods(token_ids)
        return self.start_answers(token_ids, images, padding_mask)

    def start_answers(
        self, token_ids: torch.Tensor, images: torch.Tensor, padding_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """A generation prompt batch (left-padded): scripts every row's answer, returns its first token."""
        is_image = token_ids == self.image_token_id  # (B, T)
        per_image = int(is_image.sum()) // images.shape[0]
        last_images = (is_image.sum(1).cumsum(0) // per_image - 1).tolist()  # (B,): each row's last image
        scripts = []
        for row, last_image in enumerate(last_images):
            ids = token_ids[row][padding_mask[row]].tolist() if padding_mask is not None else token_ids[row].tolist()
            line = (
                ids[len(ids) - ids[::-1].index(self.tokenizer.newline_id) :]
                if self.tokenizer.newline_id in ids
                else ids
            )
            text = self.tokenizer.decode([i for i in line if i not in (self.image_token_id, self.tokenizer.bos_id)])
            answer = self.answers[(text, digest(images[last_image]))]
            scripts.append([*self.tokenizer.encode(answer), self.tokenizer.newline_id])
        self.decoder.scripts, self.decoder.step = scripts, 0
        return forced(self.decoder.next_tokens(), token_ids.shape[1], self.vocab_size)

    def likelihoods(self, token_ids: torch.Tensor) -> torch.Tensor:
        """A right-padded text batch: a right sequence's every next token is near-certain, all else uniform."""
        logits = torch.zeros(*token_ids.shape, self.vocab_size)
        for row, ids in enumerate(token_ids.tolist()):
            length = ids.index(self.tokenizer.pad_id) if self.tokenizer.pad_id in ids else len(ids)
            if self.tokenizer.decode(ids[1:length]) in self.right_texts:
                logits[row, torch.arange(length - 1), torch.tensor(ids[1:length])] = SURE
        return logits
