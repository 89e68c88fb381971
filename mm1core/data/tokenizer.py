"""Word-level tokenizer over the embedded world's closed vocabulary (torch-free).

Text is lower-cased and split into words, punctuation marks and newlines; ``<image>`` stands for one image
(the dataset expands it into the connector's token count). Ids are stable: the specials come first, in
``SPECIAL_TOKENS`` order, then the world's words sorted.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence

from mm1core.data.world import VOCABULARY

PAD, BOS, EOS, IMAGE, UNK, NEWLINE = "<pad>", "<bos>", "<eos>", "<image>", "<unk>", "\n"
SPECIAL_TOKENS = (PAD, BOS, EOS, IMAGE, UNK, NEWLINE)
PUNCTUATION = (".", ",", "?", ":", "!", ";")
IMAGE_TOKEN_ID = SPECIAL_TOKENS.index(IMAGE)

_PIECE = re.compile(r"<[a-z]+>|\n|[a-z]+|[0-9]+|[^\sa-z0-9]")


class Tokenizer:
    """Maps text to ids and back; unknown words become ``<unk>``.

    ``decode`` writes canonical text: words separated by one space, punctuation glued to the word before it,
    no space around newlines; ``decode(encode(text)) == text`` for text in that form.
    """

    def __init__(self, words: Iterable[str]) -> None:
        extra = sorted(set(words) - set(SPECIAL_TOKENS) - set(PUNCTUATION))
        self.tokens: tuple[str, ...] = (*SPECIAL_TOKENS, *PUNCTUATION, *extra)
        self.ids: dict[str, int] = {token: index for index, token in enumerate(self.tokens)}
        self.pad_id, self.bos_id, self.eos_id = self.ids[PAD], self.ids[BOS], self.ids[EOS]
        self.image_id, self.unk_id, self.newline_id = self.ids[IMAGE], self.ids[UNK], self.ids[NEWLINE]

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        """``"<image> A red circle."`` -> ids of ``<image> a red circle .`` (no ``<bos>``/``<eos>`` added)."""
        return [self.ids.get(piece, self.unk_id) for piece in _PIECE.findall(text.lower())]

    def decode(self, ids: Sequence[int]) -> str:
        text = ""
        for index in ids:
            token = self.tokens[index]
            glued = token in PUNCTUATION or token == NEWLINE or not text or text.endswith(NEWLINE)
            text += token if glued else " " + token
        return text


@functools.cache
def build_tokenizer() -> Tokenizer:
    """The tokenizer of the embedded world (one shared instance; it is immutable in use)."""
    return Tokenizer(VOCABULARY)
