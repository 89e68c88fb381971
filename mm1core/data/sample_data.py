"""Writes a small on-disk data set in every format ``mm1core.data.formats`` reads, drawn from the embedded world.

    python -m mm1core.data.sample_data OUT_DIR [--seed N] [--count N] [--bad]

``OUT_DIR`` receives (``N`` documents of each kind):

- ``captions/shard-00000.tar ...``: caption pairs in the img2dataset layout (``KEY.jpg``, ``KEY.txt``,
  ``KEY.json``), ``SHARD_SIZE`` pairs per shard;
- ``coco/captions.json`` and ``coco/images/*.jpg``: COCO captions, two per image;
- ``interleaved.parquet`` (PNG bytes) and ``interleaved.jsonl`` (paths into ``interleaved_images/``): the
  same OBELICS-style documents;
- ``text.jsonl`` and ``text.txt``: the same text-only documents.

Texts come from the world's generators, so they stay in the world tokenizer's vocabulary, and read back equal
to the generated documents. ``--bad`` adds corrupt records at document 1 of each file, for skip-and-count
tests: a truncated JPEG in the first shard, a COCO annotation of a missing image, a malformed line and an
image path that does not exist in ``interleaved.jsonl``, truncated PNG bytes in ``interleaved.parquet``, a
malformed line in ``text.jsonl`` and a line that is not UTF-8 in ``text.txt``. The output is deterministic:
the same arguments write the same bytes.
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from mm1core.data import world
from mm1core.data.records import IMAGE, Document

SHARD_SIZE = 8
MAX_IMAGES = 3  # per interleaved document
COCO_CAPTIONS_PER_IMAGE = 2
STREAM_SEEDS = {"caption": 101, "coco": 102, "interleaved": 103, "text": 104}  # apart from the world's splits


@dataclass
class Written:
    """What was written: a path (relative to the output folder) and a description, per file."""

    files: list[tuple[str, str]] = field(default_factory=list)

    def add(self, path: Path, root: Path, description: str) -> None:
        self.files.append((str(path.relative_to(root)), description))


def document_rng(seed: int, kind: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, STREAM_SEEDS[kind], index])


def encode(pixels: np.ndarray, image_format: str) -> bytes:
    """``(H, W, 3)`` uint8 as JPEG or PNG bytes (fixed settings: the same pixels give the same bytes)."""
    buffer = io.BytesIO()
    options = {"quality": 90} if image_format == "JPEG" else {}
    Image.fromarray(pixels).save(buffer, format=image_format, **options)
    return buffer.getvalue()


def with_bad(items: list, bad_item: object, bad: bool) -> list:
    """``items`` with ``bad_item`` at position 1 when ``bad``."""
    return items[:1] + [bad_item] + items[1:] if bad else items


# ------------------------------------------------------------------------------------------------ captions
def caption_pairs(seed: int, count: int, resolution: int) -> list[tuple[bytes, str]]:
    """``count`` (JPEG bytes, web caption) pairs."""
    pairs = []
    for index in range(count):
        rng = document_rng(seed, "caption", index)
        scene = world.sample_scene(rng)
        pairs.append((encode(world.render(scene, resolution), "JPEG"), world.web_caption(scene, rng)))
    return pairs


def add_member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644  # fixed metadata: deterministic shards
    archive.addfile(info, io.BytesIO(data))


def write_shards(out: Path, seed: int, count: int, resolution: int, bad: bool, written: Written) -> None:
    pairs = caption_pairs(seed, count, resolution)
    if bad:
        image, caption = pairs[0]
        pairs = with_bad(pairs, (image[: len(image) // 2], caption), bad)  # a truncated JPEG
    folder = out / "captions"
    folder.mkdir(parents=True, exist_ok=True)
    for shard, start in enumerate(range(0, len(pairs), SHARD_SIZE)):
        path = folder / f"shard-{shard:05d}.tar"
        with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as archive:
            for number, (image, caption) in enumerate(pairs[start : start + SHARD_SIZE]):
                key = f"{shard:05d}{number:04d}"  # img2dataset's key: shard number, then position
                meta = {"key": key, "caption": caption, "status": "success", "width": resolution}
                add_member(archive, f"{key}.jpg", image)
                add_member(archive, f"{key}.txt", caption.encode())
                add_member(archive, f"{key}.json", json.dumps(meta).encode())
        written.add(path, out, f"{len(pairs[start : start + SHARD_SIZE])} caption pairs (img2dataset layout)")


def write_coco(out: Path, seed: int, count: int, resolution: int, bad: bool, written: Written) -> None:
    folder = out / "coco"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in range(count):
        rng = document_rng(seed, "coco", index)
        scene = world.sample_scene(rng)
        file_name = f"{index:012d}.jpg"  # COCO's naming
        (folder / "images" / file_name).write_bytes(encode(world.render(scene, resolution), "JPEG"))
        images.append({"id": index, "file_name": file_name, "width": resolution, "height": resolution})
        for caption in world.reference_captions(scene, rng, COCO_CAPTIONS_PER_IMAGE):
            annotations.append({"id": len(annotations), "image_id": index, "caption": f"{caption}."})
    if bad:
        images.append({"id": count, "file_name": "missing.jpg", "width": resolution, "height": resolution})
        annotations = with_bad(annotations, {"id": len(annotations), "image_id": count, "caption": "a circle."}, bad)
    path = folder / "captions.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations}, indent=1))
    written.add(path, out, f"{len(annotations)} COCO captions of {len(images)} images in coco/images/")


# --------------------------------------------------------------------------------------------- interleaved
def interleaved_slots(document: Document) -> tuple[list[str | None], list[int | None]]:
    """OBELICS-style positions: ``texts[i]`` or ``images[i]`` (an index into ``document.images``) is set.

    Pieces lose their edge spaces (never newlines): the readers join pieces with one space where neither has
    whitespace at the seam, which writes the world's text back exactly.
    """
    texts: list[str | None] = []
    images: list[int | None] = []
    for number, piece in enumerate(document.text.split(IMAGE)):
        if number:
            texts.append(None)
            images.append(number - 1)
        if piece.strip(" "):
            texts.append(piece.strip(" "))
            images.append(None)
    return texts, images


def write_interleaved(out: Path, seed: int, count: int, resolution: int, bad: bool, written: Written) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = out / "interleaved_images"
    folder.mkdir(parents=True, exist_ok=True)
    rows_with_bytes, lines = [], []
    for index in range(count):
        document = world.interleaved_document(document_rng(seed, "interleaved", index), MAX_IMAGES)
        pngs = [encode(world.render(scene, resolution), "PNG") for scene in document.images]
        names = [f"{folder.name}/{index:05d}-{number}.png" for number in range(len(pngs))]
        for name, png in zip(names, pngs, strict=True):
            (out / name).write_bytes(png)
        texts, slots = interleaved_slots(document)
        rows_with_bytes.append({"texts": texts, "images": [None if s is None else pngs[s] for s in slots]})
        lines.append(json.dumps({"texts": texts, "images": [None if s is None else names[s] for s in slots]}))
    if bad:
        png = next(image for image in rows_with_bytes[0]["images"] if image is not None)
        rows_with_bytes = with_bad(rows_with_bytes, {"texts": [None, "a circle."], "images": [png[:40], None]}, bad)
        missing = json.dumps({"texts": [None, "a circle."], "images": [f"{folder.name}/missing.png", None]})
        lines = with_bad(with_bad(lines, missing, bad), '{"texts": ["a circle."], "images": [nul', bad)
    schema = pa.schema([("texts", pa.list_(pa.string())), ("images", pa.list_(pa.binary()))])
    parquet = out / "interleaved.parquet"
    pq.write_table(pa.Table.from_pylist(rows_with_bytes, schema=schema), parquet, row_group_size=4)
    written.add(parquet, out, f"{len(rows_with_bytes)} interleaved documents, PNG bytes, row groups of 4")
    jsonl = out / "interleaved.jsonl"
    jsonl.write_text("".join(f"{line}\n" for line in lines))
    written.add(jsonl, out, f"{len(lines)} interleaved documents, images as paths into {folder.name}/")


# -------------------------------------------------------------------------------------------------- text
def write_text(out: Path, seed: int, count: int, bad: bool, written: Written) -> None:
    texts = [world.text_document(document_rng(seed, "text", index), MAX_IMAGES).text for index in range(count)]
    jsonl_lines = with_bad([json.dumps({"text": text}).encode() for text in texts], b'{"text": "two plus', bad)
    txt_lines = with_bad([text.encode() for text in texts], b"\xff\xfe not utf-8", bad)
    for name, lines in (("text.jsonl", jsonl_lines), ("text.txt", txt_lines)):
        path = out / name
        path.write_bytes(b"".join(line + b"\n" for line in lines))
        written.add(path, out, f"{len(lines)} text-only documents, one per line")


def write_sample_data(out: Path, *, seed: int = 0, count: int = 16, bad: bool = False, resolution: int = 64) -> Written:
    """Writes every format into ``out`` (see the module docstring) and says what it wrote."""
    out.mkdir(parents=True, exist_ok=True)
    written = Written()
    write_shards(out, seed, count, resolution, bad, written)
    write_coco(out, seed, count, resolution, bad, written)
    write_interleaved(out, seed, count, resolution, bad, written)
    write_text(out, seed, count, bad, written)
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mm1core.data.sample_data", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output folder (created if missing)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--count", type=int, default=16, help="documents of each kind")
    parser.add_argument("--resolution", type=int, default=64, help="side of the images, in pixels")
    parser.add_argument("--bad", action="store_true", help="add corrupt records, for skip-and-count tests")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    written = write_sample_data(args.out, seed=args.seed, count=args.count, bad=args.bad, resolution=args.resolution)
    print(f"wrote {args.out}:")
    for path, description in written.files:
        print(f"  {path:<32} {description}")


if __name__ == "__main__":
    main()
