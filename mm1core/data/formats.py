"""Readers of a user's pre-training data on disk, one ``Source`` per stream (torch-free; MM1 Sec. 3.3).

A ``Source`` is random-access: ``len(source)`` documents, ``source.document(i)`` the ``i``-th as a ``Document``
whose images are ``EncodedImage`` bytes (decoded later, in ``mm1core.data.images``). A record that cannot be
read (a malformed line or row, a missing image file, a shard gone missing) raises ``BadRecord`` naming where
it is; the data pipeline skips and counts it. Formats, by stream (``open_source`` picks one from the path):

- ``caption``: WebDataset tar shards in the img2dataset layout (``KEY.jpg|jpeg|png|webp`` with ``KEY.txt``
  and/or ``KEY.json`` holding ``"caption"``), given as one ``.tar``, a directory of them, a glob
  (``shards/*.tar``) or a brace pattern (``shards/{00000..00003}.tar``); or a COCO-captions JSON
  (``{"images": [{id, file_name}], "annotations": [{image_id, caption}]}``), one document per annotation.
  Text: ``<image> {caption}``.
- ``interleaved``: OBELICS-style ``.parquet`` or ``.jsonl`` rows with equal-length lists ``texts`` and
  ``images``; position ``i`` holds a text or an image (a path relative to the file's folder, bytes, or
  ``{"bytes": ..., "path": ...}``). Text: the pieces in order, ``<image>`` for each image, space-separated.
- ``text``: ``.jsonl`` with ``{"text": ...}`` per line, or ``.txt`` with one document per line.

Interleaved and text formats also accept a directory, glob or brace pattern of files of one format. A literal
``<image>`` inside a user's text would be taken for an image slot, so it is removed from texts.

Indexes (tar members' offsets, line offsets, row-group bounds) are built on first use, once per process that
lacks one: a source pickled into DataLoader workers after its index was built carries it along, and no source
holds an open file between calls, so any source pickles.
"""

from __future__ import annotations

import bisect
import glob
import itertools
import json
import os
import re
import tarfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np

from mm1core.data.records import IMAGE, STREAMS, BadRecord, Document, EncodedImage

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
CAPTION_EXTENSIONS = ("txt", "json")
CHECK_JSON_BYTES = 64 << 20  # validation parses a COCO JSON up to this size, and only sniffs larger ones


class Source(ABC):
    """Random-access documents of one stream (``stream`` is one of ``STREAMS``)."""

    stream: ClassVar[str]

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def document(self, index: int) -> Document:
        """Document ``index`` (``0 <= index < len(self)``, else ``IndexError``); ``BadRecord`` if unreadable."""

    @abstractmethod
    def describe(self) -> str:
        """One line for logs: what is read, from where, how many documents."""

    def _check_index(self, index: int) -> None:
        if not 0 <= index < len(self):
            raise IndexError(f"document {index} of {len(self)}")


# ------------------------------------------------------------------------------------------------- paths
_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"(-?\d+)\.\.(-?\d+)")
_GLOB = re.compile(r"[*?\[]")


MAX_BRACE_RANGE = 1_000_000  # shard counts; a typo'd bound must not exhaust memory


def expand_braces(pattern: str) -> list[str]:
    """``a/{00000..00002}.tar`` -> ``a/00000.tar a/00001.tar a/00002.tar``; ``{x,y}`` lists alternatives.

    Several groups multiply out, left to right; a range keeps the zero-padding of its bounds; groups do not
    nest; braces holding neither ``..`` nor ``,`` stay literal.
    """
    for match in _BRACE.finditer(pattern):
        options = _brace_options(match.group(1))
        if options is not None:
            head, tail = pattern[: match.start()], pattern[match.end() :]
            return [head + option + rest for option in options for rest in expand_braces(tail)]
    return [pattern]


def _brace_options(body: str) -> list[str] | None:
    numbers = _RANGE.fullmatch(body)
    if numbers:
        first, last = numbers.groups()
        padded = any(bound.lstrip("-").startswith("0") and len(bound.lstrip("-")) > 1 for bound in (first, last))
        width = max(len(first), len(last)) if padded else 0
        step = 1 if int(last) >= int(first) else -1
        if abs(int(last) - int(first)) >= MAX_BRACE_RANGE:
            raise ValueError(f"{{{body}}}: a brace range of more than {MAX_BRACE_RANGE} values")
        return [f"{number:0{width}d}" for number in range(int(first), int(last) + step, step)]
    return body.split(",") if "," in body else None


def resolve_files(spec: str, directory_suffixes: Sequence[str] = ()) -> list[str]:
    """The files a path spec names, in order: a brace pattern's expansions (each may be a glob), a glob's
    matches sorted, a directory's files with the first of ``directory_suffixes`` that it has, or the path
    itself. Listed paths that do not exist are kept (the caller reports them)."""
    if (expanded := expand_braces(spec)) != [spec]:
        return [name for item in expanded for name in (_glob_files(item) if _GLOB.search(item) else [item])]
    if _GLOB.search(spec) and not os.path.exists(spec):
        return _glob_files(spec)
    if os.path.isdir(spec):
        for suffix in directory_suffixes:
            found = sorted(str(path) for path in Path(spec).glob(f"*{suffix}") if path.is_file())
            if found:
                return found
        return []
    return [spec]


def _glob_files(pattern: str) -> list[str]:
    return sorted(name for name in glob.glob(pattern, recursive=True) if os.path.isfile(name))


# ----------------------------------------------------------------------------------------------- records
def _clean(text: str) -> str:
    return text.replace(IMAGE, "")


def _join(pieces: Sequence[str]) -> str:
    """Pieces in order, a space between two only where neither brings whitespace of its own."""
    text = ""
    for piece in pieces:
        if text and not text[-1].isspace() and not piece[0].isspace():
            text += " "
        text += piece
    return text.strip()


def _read_file(path: Path, origin: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BadRecord(f"{origin}: image file {str(path)!r} does not exist") from None
    except OSError as error:
        raise BadRecord(f"{origin}: image file {str(path)!r}: {error}") from error


def _image_item(item: Any, origin: str, folder: Path) -> EncodedImage:
    """An interleaved row's image: bytes, a path (relative to ``folder``) or ``{"bytes": ..., "path": ...}``."""
    if isinstance(item, dict):
        if item.get("bytes") is not None:
            return _image_item(item["bytes"], str(item.get("path") or origin), folder)
        item = item.get("path")
    if isinstance(item, (bytes, bytearray, memoryview)):
        return EncodedImage(bytes(item), origin)
    if isinstance(item, str) and item:
        if item.startswith(("http://", "https://")):
            raise BadRecord(f"{origin}: image URLs are not downloaded ({item}); fetch them first, e.g. img2dataset")
        path = folder / item
        return EncodedImage(_read_file(path, origin), str(path))
    raise BadRecord(f"{origin}: an image must be bytes, a path or {{bytes, path}}, not {type(item).__name__}")


def caption_document(caption: str, image: EncodedImage, origin: str) -> Document:
    """``<image> {caption}``; an empty caption is a bad record."""
    caption = _clean(caption).strip()
    if not caption:
        raise BadRecord(f"{origin}: empty caption")
    return Document(f"{IMAGE} {caption}", (image,), "caption")


def _is_empty(item: Any) -> bool:
    return item is None or (isinstance(item, dict) and item.get("bytes") is None and not item.get("path"))


def interleaved_document(texts: Any, images: Any, origin: str, folder: Path) -> Document:
    """An OBELICS-style row as a document: ``texts[i]`` or ``images[i]`` fills position ``i``."""
    if not isinstance(texts, list) or not isinstance(images, list):
        raise BadRecord(f"{origin}: 'texts' and 'images' must be lists")
    if len(texts) != len(images):
        raise BadRecord(f"{origin}: {len(texts)} texts but {len(images)} images (they pair up by position)")
    pieces, encoded = [], []
    for position, (text, image) in enumerate(zip(texts, images, strict=True)):
        if text is not None and not _is_empty(image):
            raise BadRecord(f"{origin}: position {position} holds both a text and an image")
        if not _is_empty(image):
            encoded.append(_image_item(image, f"{origin} image {position}", folder))
            pieces.append(IMAGE)
        elif text is not None:
            if not isinstance(text, str):
                raise BadRecord(f"{origin}: text {position} is a {type(text).__name__}, not a string")
            if _clean(text).strip():
                pieces.append(_clean(text))
    if not pieces:
        raise BadRecord(f"{origin}: empty document")
    return Document(_join(pieces), tuple(encoded), "interleaved")


# ---------------------------------------------------------------------------------------- caption: tars
class _Member(NamedTuple):
    name: str
    offset: int  # of the member's data in the shard
    size: int


class _Pair(NamedTuple):
    shard: int  # index into the source's shard list
    key: str
    image: _Member | None
    text: _Member | None  # KEY.txt
    meta: _Member | None  # KEY.json


class WebDatasetCaptions(Source):
    """Image-caption pairs from WebDataset tar shards in the img2dataset layout, random-access.

    Why not the ``webdataset`` package: its pipeline streams shards sequentially, while the mixture sampler
    asks for item ``i`` of each stream, to hit exact shares and to resume a run mid-epoch. So the index lists
    each pair's shard and its members' byte offsets (one pass over the tar headers, stdlib ``tarfile``), and a
    pair is two ``seek`` + ``read`` calls. Shards must be plain ``.tar`` (a compressed stream has no offsets).
    A shard missing or unreadable when the index is built is skipped and counted in ``describe()``.
    """

    stream = "caption"

    def __init__(self, shards: Sequence[str], spec: str | None = None) -> None:
        self.shards = [str(shard) for shard in shards]
        self.spec = spec or (self.shards[0] if len(self.shards) == 1 else f"{len(self.shards)} shards")
        self.skipped_shards: list[str] = []

    @cached_property
    def pairs(self) -> list[_Pair]:
        pairs = []
        for number, shard in enumerate(self.shards):
            try:
                pairs.extend(_shard_pairs(number, shard))
            except (OSError, tarfile.TarError) as error:
                self.skipped_shards.append(f"{shard} ({type(error).__name__}: {error})")
        return pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def document(self, index: int) -> Document:
        self._check_index(index)
        pair = self.pairs[index]
        shard = self.shards[pair.shard]
        origin = f"{shard}:{pair.key}"
        if pair.image is None:
            raise BadRecord(f"{origin}: no image ({'|'.join(IMAGE_EXTENSIONS)}) member")
        try:
            with open(shard, "rb") as file:
                data = _read_member(file, pair.image, shard)
                caption = _member_caption(file, pair, shard)
        except FileNotFoundError:
            raise BadRecord(f"{shard}: the shard is missing (it was there when the index was built)") from None
        except OSError as error:
            raise BadRecord(f"{origin}: {error}") from error
        return caption_document(caption, EncodedImage(data, f"{shard}:{pair.image.name}"), origin)

    def describe(self) -> str:
        skipped = f", {len(self.skipped_shards)} unreadable shards skipped" if self.skipped_shards else ""
        return f"caption: {len(self)} pairs in {len(self.shards)} WebDataset shards {self.spec}{skipped}"


def _shard_pairs(number: int, shard: str) -> list[_Pair]:
    """The shard's pairs in order of their first member; keys split at the first dot of the base name."""
    members: dict[str, dict[str, _Member]] = {}
    with tarfile.open(shard, mode="r:") as archive:
        for info in archive:
            if not info.isfile():
                continue
            folder, _, base = info.name.rpartition("/")
            stem, dot, extension = base.partition(".")
            extension = extension.lower()
            if dot and extension in IMAGE_EXTENSIONS + CAPTION_EXTENSIONS:
                key = f"{folder}/{stem}" if folder else stem
                members.setdefault(key, {})[extension] = _Member(info.name, info.offset_data, info.size)
    pairs = []
    for key, found in members.items():
        image = next((found[extension] for extension in IMAGE_EXTENSIONS if extension in found), None)
        pairs.append(_Pair(number, key, image, found.get("txt"), found.get("json")))
    return pairs


def _read_member(file: Any, member: _Member, shard: str) -> bytes:
    file.seek(member.offset)
    data = file.read(member.size)
    if len(data) != member.size:
        raise BadRecord(f"{shard}:{member.name}: the shard ends inside this member (truncated shard)")
    return data


def _member_caption(file: Any, pair: _Pair, shard: str) -> str:
    """``KEY.txt`` if present, else ``KEY.json``'s ``"caption"``."""
    origin = f"{shard}:{pair.key}"
    try:
        if pair.text is not None:
            return _read_member(file, pair.text, shard).decode("utf-8")
        if pair.meta is not None:
            caption = json.loads(_read_member(file, pair.meta, shard)).get("caption")
            if isinstance(caption, str):
                return caption
            raise BadRecord(f"{origin}: {pair.meta.name} has no string 'caption'")
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as error:
        raise BadRecord(f"{origin}: unreadable caption ({type(error).__name__}: {error})") from error
    raise BadRecord(f"{origin}: no caption (.txt or .json with 'caption')")


def _check_tar(files: Sequence[str]) -> str | None:
    if not tarfile.is_tarfile(files[0]):
        return f"{files[0]!r} is not a tar archive"
    try:
        with tarfile.open(files[0], mode="r:"):
            return None
    except tarfile.TarError:
        return f"{files[0]!r} is a compressed tar; random access needs plain .tar shards"


# ---------------------------------------------------------------------------------------- caption: COCO
class CocoCaptions(Source):
    """COCO-captions JSON: one ``<image> {caption}`` document per annotation.

    Images are looked for under ``image_root``; by default under the first of: the JSON's folder, ``images/``
    next to it, or COCO's own layout (``annotations/captions_train2017.json`` beside ``train2017/``) that holds
    the first annotated image.
    """

    stream = "caption"

    def __init__(self, path: str, image_root: str | None = None) -> None:
        self.path, self.image_root = str(path), image_root

    @cached_property
    def _index(self) -> tuple[Path, list[tuple[str | None, Any]]]:
        """The image root and, per annotation, its image's file name (``None`` if unknown) and caption."""
        content = _coco_json(self.path)
        files = {image.get("id"): image.get("file_name") for image in content["images"] if isinstance(image, dict)}
        annotations = [
            (files.get(note.get("image_id")), note.get("caption")) if isinstance(note, dict) else (None, None)
            for note in content["annotations"]
        ]
        first = next((name for name, _ in annotations if isinstance(name, str)), "")
        roots = [Path(self.image_root)] if self.image_root else coco_image_roots(self.path)
        return next((root for root in roots if (root / first).is_file()), roots[0]), annotations

    def __len__(self) -> int:
        return len(self._index[1])

    def document(self, index: int) -> Document:
        self._check_index(index)
        root, annotations = self._index
        file_name, caption = annotations[index]
        origin = f"{self.path} annotation {index}"
        if not isinstance(file_name, str) or not isinstance(caption, str):
            raise BadRecord(f"{origin}: needs a known image_id and a string caption")
        path = root / file_name
        return caption_document(caption, EncodedImage(_read_file(path, origin), str(path)), origin)

    def describe(self) -> str:
        return f"caption: {len(self)} COCO captions in {self.path} (images under {self._index[0]})"


def coco_image_roots(path: str) -> list[Path]:
    folder = Path(path).parent
    roots = [folder, folder / "images"]
    if Path(path).stem.startswith("captions_"):  # COCO: annotations/captions_val2017.json, val2017/
        roots.append(folder.parent / Path(path).stem.removeprefix("captions_"))
    return roots


def _coco_json(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as file:
        content = json.load(file)
    if not isinstance(content, dict) or not all(isinstance(content.get(k), list) for k in ("images", "annotations")):
        raise ValueError("a COCO-captions JSON is an object with the lists 'images' and 'annotations'")
    return content


def _check_coco(files: Sequence[str]) -> str | None:
    if len(files) != 1:
        return f"one COCO-captions JSON at a time, not {len(files)}"
    path = files[0]
    if os.path.getsize(path) > CHECK_JSON_BYTES:  # too big to parse at validation: sniff its start only
        with open(path, "rb") as file:
            start = file.read(1024).lstrip()
        return None if start.startswith(b"{") else f"{path!r} is not a JSON object"
    try:
        content = _coco_json(path)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return f"{path!r} is not readable COCO-captions JSON ({type(error).__name__}: {error})"
    first = next((image.get("file_name") for image in content["images"] if isinstance(image, dict)), None)
    roots = coco_image_roots(path)
    if isinstance(first, str) and not any((root / first).is_file() for root in roots):
        return f"image {first!r} of {path!r} is under none of {', '.join(map(str, roots))}"
    return None


# ------------------------------------------------------------------------------------------------ lines
class _Lines(Source):
    """One document per non-blank line of a file; the index holds each line's byte offset and number."""

    kind: ClassVar[str]

    def __init__(self, path: str) -> None:
        self.path = str(path)

    @cached_property
    def lines(self) -> np.ndarray:
        """``(N, 2)`` int64: byte offset and 1-based line number of each non-blank line."""
        found, offset = [], 0
        with open(self.path, "rb") as file:
            for number, line in enumerate(file, start=1):
                if line.strip():
                    found.append((offset, number))
                offset += len(line)
        return np.array(found, dtype=np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self.lines)

    def line(self, index: int) -> tuple[bytes, str]:
        """Line ``index``'s bytes and its origin (``path:line``)."""
        self._check_index(index)
        offset, number = (int(value) for value in self.lines[index])
        origin = f"{self.path}:{number}"
        try:
            with open(self.path, "rb") as file:
                file.seek(offset)
                return file.readline(), origin
        except OSError as error:
            raise BadRecord(f"{origin}: {error}") from error

    def record(self, index: int) -> tuple[dict[str, Any], str]:
        """Line ``index`` parsed as a JSON object, and its origin."""
        line, origin = self.line(index)
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise BadRecord(f"{origin}: malformed JSON line ({error})") from error
        if not isinstance(record, dict):
            raise BadRecord(f"{origin}: a line must hold a JSON object, not {type(record).__name__}")
        return record, origin

    def describe(self) -> str:
        return f"{self.stream}: {len(self)} {self.kind} in {self.path}"


class JsonlText(_Lines):
    """Text-only documents: ``{"text": ...}`` per line."""

    stream, kind = "text", "documents (jsonl)"

    def document(self, index: int) -> Document:
        record, origin = self.record(index)
        text = record.get("text")
        if not isinstance(text, str) or not _clean(text).strip():
            raise BadRecord(f"{origin}: needs a non-empty string 'text'")
        return Document(_clean(text).strip(), (), "text")


class TextLines(_Lines):
    """Text-only documents: one per line of a UTF-8 ``.txt`` file."""

    stream, kind = "text", "documents (lines)"

    def document(self, index: int) -> Document:
        line, origin = self.line(index)
        try:
            text = _clean(line.decode("utf-8")).strip()
        except UnicodeDecodeError as error:
            raise BadRecord(f"{origin}: not UTF-8 ({error})") from error
        if not text:
            raise BadRecord(f"{origin}: empty document")
        return Document(text, (), "text")


class JsonlInterleaved(_Lines):
    """Interleaved documents: ``{"texts": [...], "images": [...]}`` per line; images are paths relative to the
    file's folder (or ``{"path": ...}``)."""

    stream, kind = "interleaved", "documents (jsonl)"

    def document(self, index: int) -> Document:
        record, origin = self.record(index)
        return interleaved_document(record.get("texts"), record.get("images"), origin, Path(self.path).parent)


def _check_jsonl(keys: tuple[str, ...]) -> Callable[[Sequence[str]], str | None]:
    """Validation of a jsonl stream: its first non-blank line parses and has ``keys``."""

    def check(files: Sequence[str]) -> str | None:
        with open(files[0], "rb") as file:
            first = next((line for line in file if line.strip()), None)
        if first is None:
            return None  # an empty file is an empty source, not a wrong one
        try:
            record = json.loads(first)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return f"{files[0]!r}: the first line is not JSON (jsonl holds one JSON object per line)"
        missing = [key for key in keys if not isinstance(record, dict) or key not in record]
        return f"{files[0]!r}: the first line has no {', '.join(map(repr, missing))}" if missing else None

    return check


# ---------------------------------------------------------------------------------- interleaved: parquet
class ParquetInterleaved(Source):
    """Interleaved documents from an OBELICS-style parquet file (columns ``texts`` and ``images``).

    Parquet reads whole row groups, so document ``i`` costs decoding its row group; the last one read is kept.
    Write files with small row groups (a few hundred rows) for random access to stay cheap.
    """

    stream = "interleaved"

    def __init__(self, path: str) -> None:
        self.path = str(path)
        self._cached: tuple[int, Any] | None = None  # (row group, pyarrow table): per process, never pickled

    @cached_property
    def row_group_ends(self) -> list[int]:
        import pyarrow.parquet as pq

        metadata = pq.ParquetFile(self.path).metadata
        return list(itertools.accumulate(metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)))

    def __len__(self) -> int:
        return self.row_group_ends[-1] if self.row_group_ends else 0

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cached": None}

    def document(self, index: int) -> Document:
        self._check_index(index)
        group = bisect.bisect_right(self.row_group_ends, index)
        first = self.row_group_ends[group - 1] if group else 0
        row = self._row_group(group).slice(index - first, 1).to_pylist()[0]
        origin = f"{self.path} row {index}"
        return interleaved_document(row.get("texts"), row.get("images"), origin, Path(self.path).parent)

    def _row_group(self, group: int) -> Any:
        if self._cached is None or self._cached[0] != group:
            import pyarrow.parquet as pq

            try:
                table = pq.ParquetFile(self.path).read_row_group(group, columns=["texts", "images"])
            except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
                raise BadRecord(f"{self.path} row group {group}: {type(error).__name__}: {error}") from error
            self._cached = (group, table)
        return self._cached[1]

    def describe(self) -> str:
        return f"interleaved: {len(self)} documents (parquet) in {self.path}"


def _check_parquet(files: Sequence[str]) -> str | None:
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(files[0]).names
    except (OSError, ValueError) as error:
        return f"{files[0]!r} is not a readable parquet file ({type(error).__name__}: {error})"
    missing = [column for column in ("texts", "images") if column not in names]
    return f"{files[0]!r} has no column {', '.join(map(repr, missing))} (has {', '.join(names)})" if missing else None


# ------------------------------------------------------------------------------------------ several files
class Concatenated(Source):
    """Several sources of one stream read as one, in order."""

    def __init__(self, parts: Sequence[Source], spec: str) -> None:
        self.parts, self.spec = list(parts), spec
        self.stream = self.parts[0].stream  # type: ignore[misc]  # per instance: the parts' stream

    @cached_property
    def ends(self) -> list[int]:
        return list(itertools.accumulate(len(part) for part in self.parts))

    def __len__(self) -> int:
        return self.ends[-1]

    def document(self, index: int) -> Document:
        self._check_index(index)
        part = bisect.bisect_right(self.ends, index)
        return self.parts[part].document(index - (self.ends[part - 1] if part else 0))

    def describe(self) -> str:
        first = self.parts[0].describe()
        return f"{self.stream}: {len(self)} documents in {len(self.parts)} files {self.spec} (first: {first})"


# ------------------------------------------------------------------------------------------------ choice
@dataclass(frozen=True)
class Format:
    """A file format of a stream: how to open files of it, and a cheap check of the first one."""

    name: str
    open: Callable[[list[str], str], Source]  # (files, spec) -> source
    check: Callable[[Sequence[str]], str | None]


def _per_file(reader: Callable[[str], Source]) -> Callable[[list[str], str], Source]:
    def open_files(files: list[str], spec: str) -> Source:
        return reader(files[0]) if len(files) == 1 else Concatenated([reader(file) for file in files], spec)

    return open_files


# stream -> file suffix -> format; a directory is read as the files of the first suffix it has (COCO: never)
FORMATS: dict[str, dict[str, Format]] = {
    "caption": {
        ".tar": Format("webdataset", lambda files, spec: WebDatasetCaptions(files, spec), _check_tar),
        ".json": Format("coco", lambda files, spec: CocoCaptions(files[0]), _check_coco),
    },
    "interleaved": {
        ".parquet": Format("parquet", _per_file(ParquetInterleaved), _check_parquet),
        ".jsonl": Format("jsonl", _per_file(JsonlInterleaved), _check_jsonl(("texts", "images"))),
    },
    "text": {
        ".jsonl": Format("jsonl", _per_file(JsonlText), _check_jsonl(("text",))),
        ".txt": Format("txt", _per_file(TextLines), lambda files: None),
    },
}
DIRECTORY_SUFFIXES = {"caption": (".tar",), "interleaved": (".parquet", ".jsonl"), "text": (".jsonl", ".txt")}


def _choose(stream: str, path: str) -> tuple[Format, list[str]] | str:
    """The format and files of ``path`` for ``stream``, or why there are none."""
    if stream not in FORMATS:
        return f"{stream!r} is not a stream (streams: {', '.join(STREAMS)})"
    files = resolve_files(path, DIRECTORY_SUFFIXES[stream])
    accepted = ", ".join(FORMATS[stream])
    if not files:
        what = "directory" if os.path.isdir(path) else "pattern"
        return f"{what} {path!r} holds no {stream} files ({accepted})"
    missing = [file for file in files if not os.path.isfile(file)]
    if len(files) == 1 and missing:
        return f"{path!r} does not exist" if not os.path.exists(path) else f"{path!r} is not a file"
    if missing:
        return f"{len(missing)} of the {len(files)} files {path!r} lists do not exist (first: {missing[0]!r})"
    suffixes = sorted({Path(file).suffix.lower() for file in files})
    if len(suffixes) > 1:
        return f"{path!r} mixes file formats ({', '.join(suffixes)}); give one format per stream"
    if suffixes[0] not in FORMATS[stream]:
        return f"{path!r}: unknown {stream} format {suffixes[0] or '(no suffix)'!r} (accepted: {accepted})"
    return FORMATS[stream][suffixes[0]], files


def open_source(stream: str, path: str) -> Source:
    """The reader of ``path`` for ``stream`` (see the module docstring); ``ValueError`` if there is none.

    Nothing is indexed yet: that happens on the first ``len()`` or ``document()``.
    """
    chosen = _choose(stream, path)
    if isinstance(chosen, str):
        raise ValueError(chosen)
    data_format, files = chosen
    return data_format.open(files, path)


def source_problem(stream: str, path: str) -> str | None:
    """Why ``path`` cannot be read as ``stream`` data, or ``None``: nothing there, no files matched, an
    unknown format for the stream, or a first file that is not what its suffix says. Cheap: it checks
    existence and format, never indexes a data set (a COCO JSON is parsed when under 64 MiB)."""
    chosen = _choose(stream, path)
    if isinstance(chosen, str):
        return chosen
    data_format, files = chosen
    try:
        return data_format.check(files)
    except OSError as error:
        return f"{path!r}: {type(error).__name__}: {error}"
