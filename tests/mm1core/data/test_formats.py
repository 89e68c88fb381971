"""Readers of a user's data: each format read back, path specs, bad records, validation messages."""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mm1core.data import sample_data, world
from mm1core.data.formats import (
    CocoCaptions,
    Concatenated,
    Source,
    WebDatasetCaptions,
    expand_braces,
    open_source,
    source_problem,
)
from mm1core.data.images import to_pixels
from mm1core.data.records import IMAGE, BadRecord, Document, EncodedImage

SEED, COUNT, RESOLUTION = 0, 10, 16  # 10 caption pairs: two shards


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample")
    sample_data.write_sample_data(out, seed=SEED, count=COUNT, resolution=RESOLUTION)
    return out


@pytest.fixture(scope="module")
def bad_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bad")
    sample_data.write_sample_data(out, seed=SEED, count=4, resolution=RESOLUTION, bad=True)
    return out


def documents(source: Source) -> list[Document]:
    return [source.document(index) for index in range(len(source))]


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def png(colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    return sample_data.encode(np.full((8, 8, 3), colour, dtype=np.uint8), "PNG")


# ----------------------------------------------------------------------------------------------- braces
@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("s/{00000..00002}.tar", ["s/00000.tar", "s/00001.tar", "s/00002.tar"]),
        ("{8..11}", ["8", "9", "10", "11"]),
        ("{2..0}", ["2", "1", "0"]),
        ("{a,b}-{0..1}", ["a-0", "a-1", "b-0", "b-1"]),
        ("{007..9}", ["007", "008", "009"]),
        ("plain.tar", ["plain.tar"]),
        ("{literal}/x.tar", ["{literal}/x.tar"]),
    ],
    ids=["padded", "unpadded", "descending", "product", "pad-from-start", "none", "literal"],
)
def test_expand_braces(pattern: str, expected: list[str]) -> None:
    assert expand_braces(pattern) == expected


# ---------------------------------------------------------------------------------------- caption: tars
def test_shards_read_back_as_written(data: Path) -> None:
    source = open_source("caption", str(data / "captions"))
    assert isinstance(source, WebDatasetCaptions)
    pairs = sample_data.caption_pairs(SEED, COUNT, RESOLUTION)
    read = documents(source)
    assert [doc.text for doc in read] == [f"{IMAGE} {caption}" for _, caption in pairs]
    assert [doc.images[0].data for doc in read] == [image for image, _ in pairs]
    assert read[9].images[0].origin == f"{data / 'captions' / 'shard-00001.tar'}:000010001.jpg"
    assert {doc.kind for doc in read} == {"caption"}
    assert "10 pairs in 2 WebDataset shards" in source.describe()


@pytest.mark.parametrize(
    "spec",
    ["captions", "captions/*.tar", "captions/shard-{00000..00001}.tar", "captions/shard-0000{0,1}.tar"],
    ids=["directory", "glob", "brace-range", "brace-list"],
)
def test_shard_specs_name_the_same_pairs(data: Path, spec: str) -> None:
    assert source_problem("caption", str(data / spec)) is None
    source = open_source("caption", str(data / spec))
    assert (
        len(source) == COUNT
        and source.document(COUNT - 1).text == open_source("caption", str(data / "captions")).document(COUNT - 1).text
    )


def test_one_shard(data: Path) -> None:
    assert len(open_source("caption", str(data / "captions" / "shard-00001.tar"))) == COUNT - sample_data.SHARD_SIZE


def test_shard_members_by_hand(tmp_path: Path) -> None:
    meta = json.dumps({"caption": "a blue square."}).encode()
    shard = write_tar(
        tmp_path / "s.tar",
        {
            "dir/a.png": png(),
            "dir/a.json": meta,  # caption from .json when there is no .txt
            "b.JPEG": png(),  # extensions in any case
            "b.txt": b"<image>a red\tcircle. ",  # a literal <image> is dropped, the text stripped
            "c.webp": png(),
            "c.json": b'{"url": "x"}',
            "d.txt": b"no image",
            "e.jpg": png(),
            "e.txt": b"\xff\xfe",
            "notes.md": b"ignored",
        },
    )
    source = open_source("caption", str(shard))
    assert len(source) == 5
    assert source.document(0).text == "<image> a blue square."
    assert source.document(0).images[0].origin == f"{shard}:dir/a.png"
    assert source.document(1).text == "<image> a red\tcircle."
    for index, reason in ((2, "has no string 'caption'"), (3, "no image"), (4, "unreadable caption")):
        with pytest.raises(BadRecord, match=reason) as error:
            source.document(index)
        assert str(error.value).startswith(f"{shard}:")


def test_a_missing_or_truncated_shard_is_a_bad_record_at_read_time(tmp_path: Path) -> None:
    shard = write_tar(tmp_path / "s.tar", {"a.png": png(), "a.txt": b"a circle.", "b.png": png(), "b.txt": b"two."})
    source = open_source("caption", str(shard))
    assert len(source) == 2
    cut = source.pairs[1].image.offset + 10  # inside b.png
    shard.write_bytes(shard.read_bytes()[:cut])
    assert source.document(0).text == "<image> a circle."
    with pytest.raises(BadRecord, match="truncated shard"):
        source.document(1)
    shard.unlink()
    with pytest.raises(BadRecord, match=f"{shard}: the shard is missing"):
        source.document(0)


def test_an_unreadable_shard_is_skipped_when_indexing(tmp_path: Path) -> None:
    good = write_tar(tmp_path / "0.tar", {"a.png": png(), "a.txt": b"a circle."})
    broken = tmp_path / "1.tar"
    broken.write_bytes(b"not a tar at all" * 64)
    source = open_source("caption", str(tmp_path / "{0..1}.tar"))
    assert len(source) == 1 and source.document(0).images[0].origin == f"{good}:a.png"
    assert "1 unreadable shards skipped" in source.describe()


# ---------------------------------------------------------------------------------------- caption: COCO
def test_coco_reads_one_document_per_annotation(data: Path) -> None:
    source = open_source("caption", str(data / "coco" / "captions.json"))
    assert isinstance(source, CocoCaptions)
    content = json.loads((data / "coco" / "captions.json").read_text())
    assert len(source) == len(content["annotations"]) == COUNT * sample_data.COCO_CAPTIONS_PER_IMAGE
    first = source.document(0)
    assert first.text == f"{IMAGE} {content['annotations'][0]['caption']}"
    image_file = data / "coco" / "images" / content["images"][0]["file_name"]
    assert first.images[0] == EncodedImage(image_file.read_bytes(), str(image_file))
    assert "images under" in source.describe()


def write_coco(path: Path, file_name: str = "1.png", **extra: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [{"id": 1, "file_name": file_name}] + extra.get("images", [])
    annotations = [{"image_id": 1, "caption": "a red circle."}] + extra.get("annotations", [])
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return path


@pytest.mark.parametrize(
    ("json_path", "image_dir"),
    [("c.json", "."), ("c.json", "images"), ("annotations/captions_val2017.json", "val2017")],
    ids=["beside", "images-folder", "coco-layout"],
)
def test_coco_image_root_defaults(tmp_path: Path, json_path: str, image_dir: str) -> None:
    (tmp_path / image_dir).mkdir(exist_ok=True)
    (tmp_path / image_dir / "1.png").write_bytes(png())
    path = write_coco(tmp_path / json_path)
    assert source_problem("caption", str(path)) is None
    assert open_source("caption", str(path)).document(0).images[0].origin == str(tmp_path / image_dir / "1.png")


def test_coco_image_root_given(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "1.png").write_bytes(png())
    source = CocoCaptions(str(write_coco(tmp_path / "c.json")), image_root=str(tmp_path / "elsewhere"))
    assert source.document(0).images[0].origin == str(tmp_path / "elsewhere" / "1.png")


def test_coco_bad_annotations(tmp_path: Path) -> None:
    (tmp_path / "1.png").write_bytes(png())
    notes = [{"image_id": 7, "caption": "a red circle."}, {"image_id": 1, "caption": " "}, {"image_id": 1}]
    images = [{"id": 2, "file_name": "gone.png"}]
    path = write_coco(tmp_path / "c.json", images=images, annotations=[*notes, {"image_id": 2, "caption": "two."}])
    source = open_source("caption", str(path))
    assert len(source) == 5
    reasons = ["known image_id", "empty caption", "known image_id", "gone.png' does not exist"]
    for index, reason in enumerate(reasons, start=1):
        with pytest.raises(BadRecord, match=reason) as error:
            source.document(index)
        assert str(error.value).startswith(f"{path} annotation {index}: ")


# ------------------------------------------------------------------------------------------ interleaved
@pytest.mark.parametrize("name", ["interleaved.parquet", "interleaved.jsonl"])
def test_interleaved_reads_back_the_world_documents(data: Path, name: str) -> None:
    source = open_source("interleaved", str(data / name))
    assert len(source) == COUNT
    for index, document in enumerate(documents(source)):
        expected = world.interleaved_document(sample_data.document_rng(SEED, "interleaved", index), 3)
        assert document.text == expected.text and document.kind == "interleaved"
        assert len(document.images) == len(expected.images) == document.text.count(IMAGE)
        for image, scene in zip(document.images, expected.images, strict=True):
            assert (to_pixels(image, RESOLUTION) == world.render(scene, RESOLUTION)).all()  # PNG: lossless
    if name.endswith(".jsonl"):
        assert source.document(0).images[0].origin == str(data / "interleaved_images" / "00000-0.png")


def test_interleaved_rows_by_hand(tmp_path: Path) -> None:
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.png").write_bytes(png())
    absolute = {"path": str(tmp_path / "pics" / "a.png")}
    rows = [
        {"texts": ["Intro.\n", None, "after <image>the picture", None], "images": [None, "pics/a.png", None, absolute]},
        {"texts": ["text only", None], "images": [None, None]},
        {"texts": ["x", None], "images": [None, "https://example.com/a.jpg"]},
        {"texts": ["x", "y"], "images": [None]},
        {"texts": ["x"], "images": ["pics/a.png"]},
        {"texts": [None], "images": [None]},
        {"texts": [3], "images": [None]},
        {"texts": "x", "images": []},
        {"texts": [None], "images": [7]},
    ]  # fmt: skip
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n\n")  # a blank line is no document
    source = open_source("interleaved", str(path))
    assert len(source) == len(rows)
    first = source.document(0)
    assert first.text == "Intro.\n<image> after the picture <image>"
    assert [image.origin for image in first.images] == [str(tmp_path / "pics" / "a.png")] * 2
    assert source.document(1) == Document("text only", (), "interleaved")
    reasons = ["URLs are not downloaded", "1 images", "both a text and an image", "empty document", "text 0 is a int"]
    reasons += ["must be lists", "must be bytes, a path"]
    for index, reason in enumerate(reasons, start=2):
        with pytest.raises(BadRecord, match=reason) as error:
            source.document(index)
        assert str(error.value).startswith(f"{path}:{index + 1}")


def test_parquet_with_image_structs_and_random_access(tmp_path: Path) -> None:
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("texts", pa.list_(pa.string())), ("images", pa.list_(image_type))])
    rows = [
        {"texts": [f"document {i}.", None], "images": [None, {"bytes": png((i, 0, 0)), "path": f"{i}.png"}]}
        for i in range(10)
    ]
    path = tmp_path / "obelics.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=3)
    source = open_source("interleaved", str(path))
    backwards = [source.document(index) for index in reversed(range(len(source)))][::-1]
    assert backwards == documents(source)
    assert backwards[7].text == "document 7. <image>" and backwards[7].images[0].origin == "7.png"
    assert pickle.loads(pickle.dumps(source)).document(4) == backwards[4]  # the row-group cache is not pickled


# ------------------------------------------------------------------------------------------------- text
@pytest.mark.parametrize("name", ["text.jsonl", "text.txt"])
def test_text_reads_back_the_world_documents(data: Path, name: str) -> None:
    source = open_source("text", str(data / name))
    expected = [world.text_document(sample_data.document_rng(SEED, "text", i), 3).text for i in range(COUNT)]
    assert documents(source) == [Document(text, (), "text") for text in expected]


def test_text_lines_by_hand(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": " one. "}\n\n  \n{"text": ""}\n{"text": 5}\n[1]\n{"text": "two <image>."}\n')
    source = open_source("text", str(path))
    assert len(source) == 5
    assert [source.document(0).text, source.document(4).text] == ["one.", "two ."]
    for index, (line, reason) in enumerate([(4, "non-empty string"), (5, "non-empty string"), (6, "JSON object")], 1):
        with pytest.raises(BadRecord, match=f"^{path}:{line}: .*{reason}"):
            source.document(index)


def test_several_files_read_as_one(tmp_path: Path) -> None:
    for name, texts in (("a.jsonl", ["one.", "two."]), ("b.jsonl", ["three."]), ("c.txt", ["ignored"])):
        (tmp_path / name).write_text("".join(json.dumps({"text": text}) + "\n" for text in texts))
    for spec in (str(tmp_path), str(tmp_path / "*.jsonl"), str(tmp_path / "{a,b}.jsonl")):
        source = open_source("text", spec)
        assert isinstance(source, Concatenated)
        assert [doc.text for doc in documents(source)] == ["one.", "two.", "three."]
        assert "3 documents in 2 files" in source.describe()
    with pytest.raises(IndexError):
        source.document(3)


# -------------------------------------------------------------------------------------------- bad records
BAD = [
    ("caption", "captions", 1, "captions/shard-00000.tar:000000001.jpg: cannot decode"),
    ("caption", "coco/captions.json", 1, "coco/captions.json annotation 1: image file"),
    ("interleaved", "interleaved.jsonl", 1, "interleaved.jsonl:2: malformed JSON line"),
    ("interleaved", "interleaved.jsonl", 2, "interleaved.jsonl:3 image 0: image file"),
    ("interleaved", "interleaved.parquet", 1, "interleaved.parquet row 1 image 0: "),
    ("text", "text.jsonl", 1, "text.jsonl:2: malformed JSON line"),
    ("text", "text.txt", 1, "text.txt:2: not UTF-8"),
]


@pytest.mark.parametrize(("stream", "name", "index", "message"), BAD, ids=[f"{b[1]}-{b[2]}" for b in BAD])
def test_each_corruption_is_a_bad_record_naming_its_origin(
    bad_data: Path, stream: str, name: str, index: int, message: str
) -> None:
    source = open_source(stream, str(bad_data / name))
    with pytest.raises(BadRecord) as error:
        [to_pixels(image, RESOLUTION) for image in source.document(index).images]
    assert str(error.value).startswith(f"{bad_data}/{message}")
    for good in (0, len(source) - 1):  # the records around it still read
        [to_pixels(image, RESOLUTION) for image in source.document(good).images]


# -------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("stream", "name"),
    [
        ("caption", "captions"),
        ("caption", "coco/captions.json"),
        ("interleaved", "interleaved.parquet"),
        ("interleaved", "interleaved.jsonl"),
        ("text", "text.jsonl"),
        ("text", "text.txt"),
    ],
)
def test_sample_data_validates(data: Path, stream: str, name: str) -> None:
    assert source_problem(stream, str(data / name)) is None


def make_problem_files(root: Path) -> None:
    (root / "garbage.tar").write_bytes(b"no tar" * 200)
    (root / "broken.json").write_text('{"images": [')
    (root / "list.json").write_text("[]")
    pq.write_table(pa.table({"text": ["a"]}), root / "nocolumn.parquet")
    (root / "garbage.parquet").write_bytes(b"PAR1 nope")
    (root / "bad.jsonl").write_text("text,words\n")
    (root / "nokey.jsonl").write_text('\n{"content": "a"}\n')
    (root / "data.csv").write_text("a,b\n")
    (root / "empty").mkdir()
    (root / "lines.txt").write_text("a\n")


PROBLEMS = [
    ("caption", "nowhere.tar", "'{root}/nowhere.tar' does not exist"),
    ("caption", "none-*.tar", "pattern '{root}/none-*.tar' holds no caption files"),
    ("caption", "empty", "directory '{root}/empty' holds no caption files (.tar, .json)"),
    ("caption", "shard-{0..3}.tar", "4 of the 4 files '{root}/shard-{{0..3}}.tar' lists do not exist"),
    ("caption", "garbage.tar", "'{root}/garbage.tar' is not a tar archive"),
    ("caption", "broken.json", "'{root}/broken.json' is not readable COCO-captions JSON (JSONDecodeError"),
    ("caption", "list.json", "is not readable COCO-captions JSON (ValueError: a COCO-captions JSON is an object"),
    ("caption", "data.csv", "'{root}/data.csv': unknown caption format '.csv' (accepted: .tar, .json)"),
    ("interleaved", "nocolumn.parquet", "has no column 'texts', 'images' (has text)"),
    ("interleaved", "garbage.parquet", "'{root}/garbage.parquet' is not a readable parquet file"),
    ("interleaved", "bad.jsonl", "'{root}/bad.jsonl': the first line is not JSON"),
    ("text", "nokey.jsonl", "'{root}/nokey.jsonl': the first line has no 'text'"),
    ("text", "*", "mixes file formats"),
    ("text", "data.csv", "unknown text format '.csv' (accepted: .jsonl, .txt)"),
    ("image", "data.csv", "'image' is not a stream (streams: caption, interleaved, text)"),
]


@pytest.mark.parametrize(("stream", "name", "message"), PROBLEMS, ids=[f"{p[0]}-{p[1]}" for p in PROBLEMS])
def test_source_problem_messages(tmp_path: Path, stream: str, name: str, message: str) -> None:
    make_problem_files(tmp_path)
    problem = source_problem(stream, str(tmp_path / name))
    assert problem is not None and message.format(root=tmp_path) in problem


@pytest.mark.parametrize("name", ["nowhere.tar", "none-*.tar", "empty", "data.csv"])
def test_open_source_refuses_what_it_cannot_choose_a_reader_for(tmp_path: Path, name: str) -> None:
    make_problem_files(tmp_path)
    with pytest.raises(ValueError, match=str(tmp_path)):
        open_source("caption", str(tmp_path / name))


def test_a_brace_pattern_with_some_shards_missing(data: Path) -> None:
    problem = source_problem("caption", str(data / "captions" / "shard-{00000..00002}.tar"))
    assert problem == (
        f"1 of the 3 files {str(data / 'captions' / 'shard-{00000..00002}.tar')!r} lists do not exist "
        f"(first: {str(data / 'captions' / 'shard-00002.tar')!r})"
    )


def test_sources_pickle_with_their_index(data: Path) -> None:
    source = open_source("caption", str(data / "captions"))
    assert len(source) == COUNT  # builds the index
    copy = pickle.loads(pickle.dumps(source))
    assert "pairs" in vars(copy) and copy.document(3) == source.document(3)


def test_readers_do_not_import_torch() -> None:
    modules = "mm1core.data.formats, mm1core.data.images, mm1core.data.sample_data, mm1core.data.tokenizer"
    code = f"import sys, {modules}; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
