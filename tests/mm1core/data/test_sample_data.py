"""The sample data set: what the command writes, determinism, the world's vocabulary, the --bad records."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mm1core.data import sample_data
from mm1core.data.formats import Source, open_source, source_problem
from mm1core.data.records import BadRecord
from mm1core.data.tokenizer import Tokenizer, build_tokenizer

STREAM_FILES = {
    "captions": "caption",
    "coco/captions.json": "caption",
    "interleaved.parquet": "interleaved",
    "interleaved.jsonl": "interleaved",
    "text.jsonl": "text",
    "text.txt": "text",
}


def digests(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def content(source: Source, index: int) -> tuple[str, list[bytes]]:
    """A document's text and image bytes (origins name the folder, which differs)."""
    document = source.document(index)
    return document.text, [image.data for image in document.images]


def test_the_command_writes_every_format_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample_data.main([str(tmp_path / "out"), "--count", "9", "--seed", "3", "--resolution", "24"])
    printed = capsys.readouterr().out
    for name in ("captions/shard-00000.tar", "captions/shard-00001.tar", "coco/captions.json", "text.txt"):
        assert name in printed
    assert "8 caption pairs" in printed and "1 caption pairs" in printed
    assert len(list((tmp_path / "out" / "coco" / "images").glob("*.jpg"))) == 9
    for name, stream in STREAM_FILES.items():
        assert source_problem(stream, str(tmp_path / "out" / name)) is None


def test_the_output_is_deterministic(tmp_path: Path) -> None:
    for run in ("a", "b"):
        sample_data.write_sample_data(tmp_path / run, seed=1, count=3, resolution=16, bad=True)
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    sample_data.write_sample_data(tmp_path / "c", seed=2, count=3, resolution=16, bad=True)
    assert digests(tmp_path / "c") != digests(tmp_path / "a")


def test_texts_stay_in_the_world_vocabulary(tmp_path: Path) -> None:
    sample_data.write_sample_data(tmp_path, count=12, resolution=16)
    tokenizer = build_tokenizer("world")
    assert isinstance(tokenizer, Tokenizer)
    for name, stream in STREAM_FILES.items():
        source = open_source(stream, str(tmp_path / name))
        for index in range(len(source)):
            document = source.document(index)
            assert tokenizer.unk_id not in tokenizer.encode(document.text), document.text
            assert tokenizer.decode(tokenizer.encode(document.text)) == document.text  # canonical world text


def test_bad_adds_records_at_position_one(tmp_path: Path) -> None:
    sample_data.write_sample_data(tmp_path / "good", count=3, resolution=16)
    sample_data.write_sample_data(tmp_path / "bad", count=3, resolution=16, bad=True)
    added = {"interleaved.jsonl": 2, "coco/captions.json": 1}  # a malformed line and a missing image
    for name, stream in STREAM_FILES.items():
        good, bad = (
            open_source(stream, str(tmp_path / "good" / name)),
            open_source(stream, str(tmp_path / "bad" / name)),
        )
        assert len(bad) == len(good) + added.get(name, 1)
        assert content(bad, 0) == content(good, 0) and content(bad, len(bad) - 1) == content(good, len(good) - 1)
    with pytest.raises(BadRecord):
        open_source("text", str(tmp_path / "bad" / "text.jsonl")).document(1)


def test_count_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        sample_data.main([str(tmp_path), "--count", "0"])
