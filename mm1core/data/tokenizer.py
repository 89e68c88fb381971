"""Tokenizers behind one interface (torch-free): the embedded world's words, raw bytes, or a local Hugging Face one.

Every tokenizer maps ``<image>`` to one ``image_id`` (the dataset expands it into the connector's token count,
MM1 Sec. 3.2) and has ``<pad>``, ``<bos>`` and ``<eos>`` ids; ``encode`` adds no ``<bos>``/``<eos>`` itself.

- ``world`` (``Tokenizer``): words of the world's closed vocabulary. Text is lower-cased and split into words,
  punctuation marks and newlines. Ids are stable: the specials first, in ``SPECIAL_TOKENS`` order, then the
  world's words sorted.
- ``bytes`` (``ByteTokenizer``): ``<pad> <bos> <eos> <image>`` then the 256 byte values; any language, no
  unknown tokens, long sequences.
- a path (``HFTokenizer``): a ``tokenizer.json`` (or a directory holding one) read with the ``tokenizers``
  library, imported only when such a tokenizer is built.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from mm1core.data.world import VOCABULARY

PAD, BOS, EOS, IMAGE, UNK, NEWLINE = "<pad>", "<bos>", "<eos>", "<image>", "<unk>", "\n"
SPECIAL_TOKENS = (PAD, BOS, EOS, IMAGE, UNK, NEWLINE)
PUNCTUATION = (".", ",", "?", ":", "!", ";")
IMAGE_TOKEN_ID = SPECIAL_TOKENS.index(IMAGE)  # of the world and byte tokenizers; a HF tokenizer has its own

_PIECE = re.compile(r"<[a-z]+>|\n|[a-z]+|[0-9]+|[^\sa-z0-9]")


@runtime_checkable
class TextTokenizer(Protocol):
    """What the data pipeline, the model and the evaluation need of a tokenizer."""

    pad_id: int
    bos_id: int
    eos_id: int
    image_id: int
    newline_id: int  # generation of a caption or a short answer stops at it

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``: each ``<image>`` becomes ``image_id``; no ``<bos>``/``<eos>`` added."""
        ...

    def decode(self, ids: Sequence[int]) -> str: ...


# ------------------------------------------------------------------------------------------------- world
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


# ------------------------------------------------------------------------------------------------- bytes
class ByteTokenizer:
    """UTF-8 bytes: ids ``0..3`` are ``<pad> <bos> <eos> <image>``, id ``4 + b`` is byte ``b``.

    ``decode(encode(text)) == text`` for any text; ids that do not form valid UTF-8 (a generation cut inside a
    character) decode to U+FFFD rather than failing.
    """

    specials: tuple[str, ...] = (PAD, BOS, EOS, IMAGE)
    offset = len(specials)

    def __init__(self) -> None:
        self.pad_id, self.bos_id, self.eos_id, self.image_id = range(self.offset)
        self.newline_id = self.offset + ord(NEWLINE)

    @property
    def vocab_size(self) -> int:
        return self.offset + 256

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for number, piece in enumerate(text.split(IMAGE)):
            if number:
                ids.append(self.image_id)
            ids.extend(self.offset + byte for byte in piece.encode("utf-8"))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        text, pending = [], bytearray()  # bytes are decoded together: a character may span several ids
        for index in ids:
            if index >= self.offset:
                pending.append(index - self.offset)
                continue
            text.append(pending.decode("utf-8", errors="replace"))
            pending.clear()
            text.append(self.specials[index])
        text.append(pending.decode("utf-8", errors="replace"))
        return "".join(text)


# ---------------------------------------------------------------------------------------- Hugging Face
class HFTokenizer:
    """A local Hugging Face fast tokenizer (``tokenizer.json``, or a directory holding one).

    ``<image>`` is added as a special token when the vocabulary lacks it. ``<pad>``, ``<bos>`` and ``<eos>``
    are the ``pad_token``/``bos_token``/``eos_token`` of ``tokenizer_config.json`` or
    ``special_tokens_map.json`` next to it; one that is not named there is added (``<pad>``, ``<bos>``,
    ``<eos>``). ``newline_id`` is the last id of ``encode("\\n")``; a tokenizer that drops newlines gets
    ``"\\n"`` added as a token. The tokenizer's own post-processor (which may add ``<s>``) is not applied.
    """

    def __init__(self, path: str | Path) -> None:
        from tokenizers import AddedToken
        from tokenizers import Tokenizer as Backend

        self.path = _tokenizer_file(Path(path))
        self.backend = Backend.from_file(str(self.path))
        named = _named_special_tokens(self.path.parent)
        wanted = {"pad": named.get("pad") or PAD, "bos": named.get("bos") or BOS, "eos": named.get("eos") or EOS}
        wanted["image"] = IMAGE
        missing = [token for token in dict.fromkeys(wanted.values()) if self.backend.token_to_id(token) is None]
        if missing:
            self.backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in missing])
        self.pad_id, self.bos_id, self.eos_id, self.image_id = (self._id(wanted[role]) for role in wanted)
        if not self.encode(NEWLINE):
            self.backend.add_tokens([AddedToken(NEWLINE, normalized=False)])
        self.newline_id = self.encode(NEWLINE)[-1]

    def _id(self, token: str) -> int:
        index = self.backend.token_to_id(token)
        assert index is not None, token  # added above when missing
        return index

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=False)


def _tokenizer_file(path: Path) -> Path:
    return path / "tokenizer.json" if path.is_dir() else path


def _named_special_tokens(folder: Path) -> dict[str, str]:
    """``{"pad": ..., "bos": ..., "eos": ...}`` as far as the tokenizer's config files name them."""
    named: dict[str, str] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):  # the later file wins
        config = _read_json(folder / name)
        for role in ("pad", "bos", "eos"):
            token = _token_content(config.get(f"{role}_token"))
            if token:
                named[role] = token
    return named


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    content = json.loads(path.read_text(encoding="utf-8"))
    return content if isinstance(content, dict) else {}


def _token_content(token: Any) -> str | None:
    """A config names a token as a string or as ``{"content": ..., ...}`` (an ``AddedToken``)."""
    if isinstance(token, dict):
        token = token.get("content")
    return token if isinstance(token, str) and token else None


# -------------------------------------------------------------------------------------------- building
NAMED_TOKENIZERS: dict[str, Callable[[], TextTokenizer]] = {
    "world": lambda: Tokenizer(VOCABULARY),
    "bytes": ByteTokenizer,
}


def build_tokenizer(name: str = "world") -> TextTokenizer:
    """``world``, ``bytes`` or a local Hugging Face tokenizer path; one shared instance per name (a tokenizer is
    immutable in use)."""
    return _build_tokenizer(name)


@functools.cache  # keyed by the name, whether it was passed or defaulted
def _build_tokenizer(name: str) -> TextTokenizer:
    if name in NAMED_TOKENIZERS:
        return NAMED_TOKENIZERS[name]()
    return HFTokenizer(name)


def tokenizer_vocab_size(name: str) -> int:
    """The vocabulary size of ``build_tokenizer(name)`` (built once per name)."""
    return build_tokenizer(name).vocab_size


def tokenizer_problem(name: str) -> str | None:
    """Why ``build_tokenizer(name)`` would fail, or ``None`` (loads, and caches, a Hugging Face tokenizer)."""
    if name in NAMED_TOKENIZERS:
        return None
    path = Path(name)
    if not path.exists():
        return f"tokenizer {name!r} is not one of {', '.join(NAMED_TOKENIZERS)} nor an existing path"
    if not _tokenizer_file(path).is_file():
        return f"tokenizer directory {name!r} has no tokenizer.json (save a fast tokenizer with save_pretrained)"
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        return f"tokenizer {name!r}: reading a Hugging Face tokenizer needs the `tokenizers` package"
    try:
        build_tokenizer(name)
    except Exception as error:  # a malformed file may fail in json, in the Rust loader, or in our checks
        return f"tokenizer {name!r} cannot be loaded: {type(error).__name__}: {error}"
    return None
