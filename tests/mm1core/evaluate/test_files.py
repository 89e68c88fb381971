"""Benchmarks on disk: COCO captions and VQAv2 read back from small fixtures, unreadable images skipped."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mm1core.data.records import EncodedImage
from mm1core.data.tokenizer import Tokenizer
from mm1core.evaluate.files import CocoCaptionsTask, VQAv2Task, demonstration_caption, image_files
from mm1core.evaluate.metrics import cider_d
from mm1core.evaluate.tasks import build_tasks
from mm1core.model import MM1Model
from tests.mm1core.evaluate.conftest import Benchmark, trial, write_image
from tests.mm1core.evaluate.oracle import OracleModel, answer_key

BENCHMARKS = ("coco", "vqav2")


def file_task(benchmark: Benchmark, **evaluation: object) -> CocoCaptionsTask | VQAv2Task:
    [task] = build_tasks(trial(tasks=[benchmark.spec], **evaluation))
    assert isinstance(task, (CocoCaptionsTask, VQAv2Task))
    return task


def origin_ids(benchmark: Benchmark, images: tuple) -> list[int]:
    by_path = {str(path): image_id for image_id, path in benchmark.files.items()}
    assert all(isinstance(image, EncodedImage) for image in images)
    return [by_path[image.origin] for image in images]


@pytest.mark.parametrize("name", BENCHMARKS)
def test_items_and_references_read_back(name: str, request: pytest.FixtureRequest) -> None:
    benchmark: Benchmark = request.getfixturevalue(name)
    task = file_task(benchmark)
    assert task.name == ("coco" if name == "coco" else "questions")  # FileTask.name, else the file's stem
    assert [(item.item, item.image_id, list(item.references)) for item in task.items] == [
        (record["item"], record["image"], record["references"]) for record in benchmark.records
    ]
    assert all(item.image == benchmark.files[item.image_id] for item in task.items if item.image_id != 9)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_unreadable_images_are_skipped_and_logged(
    name: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    benchmark: Benchmark = request.getfixturevalue(name)
    cfg = trial(num_examples=len(benchmark.records))  # every item a test item
    task = file_task(benchmark)
    with caplog.at_level(logging.WARNING, logger="mm1core.evaluate"):
        tests = task.test_examples(cfg)
    readable = [record["item"] for record in benchmark.records if record["image"] not in benchmark.unreadable]
    assert sorted(test.item for test in tests) == sorted(readable)
    skipped = len(benchmark.records) - len(readable)
    assert f"skipped {skipped} of {len(benchmark.records)} test items" in caplog.text
    assert "unreadable image" in caplog.text


@pytest.mark.parametrize("name", BENCHMARKS)
@pytest.mark.parametrize("shots", [0, 1, 3])
def test_prompts_hold_k_demonstrations_never_a_test_image(
    name: str, shots: int, request: pytest.FixtureRequest
) -> None:
    benchmark: Benchmark = request.getfixturevalue(name)
    cfg = trial(num_examples=3)
    task = file_task(benchmark)
    test_positions, support = task.split(cfg)
    test_images = {task.items[position].image_id for position in test_positions}
    prompts = task.prompts(cfg, shots)
    assert prompts
    for test, prompt in prompts:
        lines = prompt.text.split("\n")
        assert len(lines) == shots + 1 and len(prompt.images) == shots + 1
        assert lines[-1] == test.query and all(line.startswith("<image> ") for line in lines)
        demo_images = origin_ids(benchmark, prompt.images[:-1])
        assert not set(demo_images) & (test_images | benchmark.unreadable)
    assert not test_images & {task.items[position].image_id for position in support}


@pytest.mark.parametrize("name", BENCHMARKS)
def test_demonstrations_are_nested_and_fixed(name: str, request: pytest.FixtureRequest) -> None:
    benchmark: Benchmark = request.getfixturevalue(name)
    cfg = trial(num_examples=3)
    one, three = file_task(benchmark).prompts(cfg, 1), file_task(benchmark).prompts(cfg, 3)
    for (_, short), (_, long) in zip(one, three, strict=True):
        assert origin_ids(benchmark, short.images[:1]) == origin_ids(benchmark, long.images[:1])
    assert [prompt.text for _, prompt in one] == [prompt.text for _, prompt in file_task(benchmark).prompts(cfg, 1)]


def test_too_few_readable_demonstrations_is_an_error(coco: Benchmark) -> None:
    cfg = trial(num_examples=8)  # 4 images left, 2 of them unreadable at most
    task = file_task(coco)
    readable_support = [i for i in task.split(cfg)[1] if task.items[i].image_id not in coco.unreadable]
    task.prompts(cfg, len(readable_support))
    with pytest.raises(ValueError, match="readable support items"):
        task.prompts(cfg, len(readable_support) + 1)


def test_prompts_are_mm1s(coco: Benchmark, vqav2: Benchmark) -> None:
    cfg = trial(num_examples=1)
    [(_, caption)] = file_task(coco).prompts(cfg, 1)
    assert caption.text.startswith("<image> A photo of ") and caption.text.endswith("\n<image> A photo of")
    [(test, question)] = file_task(vqav2).prompts(cfg, 0)
    assert question.text in {
        f"<image> Question: {q.capitalize()} Short answer:"
        for q in ("what colour is the circle?", "how many shapes are there?")
    }


def test_demonstration_captions_complete_the_prompt() -> None:
    assert demonstration_caption("A man riding a horse") == "a man riding a horse."
    assert demonstration_caption("NYC at night.") == "NYC at night."


def test_image_files_match_ids_by_trailing_digits(tmp_path: Path) -> None:
    for name in ("COCO_val2014_000000000042.jpg", "7.png", "img_13.jpeg", "0013.png", "notes.txt", "cover.jpg"):
        (tmp_path / name).write_bytes(b"")
    files = image_files(tmp_path)
    assert {image_id: path.name for image_id, path in files.items()} == {
        42: "COCO_val2014_000000000042.jpg",
        7: "7.png",
        13: "0013.png",  # the first by name of two files for one id
    }


def test_vqa_images_beside_the_json_by_id(tmp_path: Path, vqav2: Benchmark) -> None:
    """Plain ``<id>.png`` files in ``images/`` next to the questions JSON are found without ``FileTask.images``."""
    images = Path(vqav2.spec["path"]).parent / "images"
    images.mkdir()
    for path in vqav2.files.values():
        path.rename(images / f"{int(path.stem.rsplit('_', 1)[1])}.png")
    task = file_task(vqav2)
    assert task.image_folder == images
    assert all(item.image is not None and item.image.parent == images for item in task.items)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_batch_of_one_and_of_sixteen_score_the_same(
    name: str, request: pytest.FixtureRequest, chaotic_model: MM1Model, tokenizer: Tokenizer
) -> None:
    benchmark: Benchmark = request.getfixturevalue(name)
    results = [
        file_task(benchmark).score(chaotic_model, trial(num_examples=6, batch_size=batch, predictions=6), tokenizer, 1)
        for batch in (1, 16)
    ]
    assert results[0] == results[1]
    assert len({row["prediction"] for row in results[0].predictions}) > 3


def file_oracle(model: MM1Model, tokenizer: Tokenizer, benchmark: Benchmark) -> OracleModel:
    """The first reference (captions) or the majority answer of every readable item, from what the test wrote."""
    answers = {}
    for record in benchmark.records:
        if record["image"] in benchmark.unreadable:
            continue
        image = EncodedImage(benchmark.files[record["image"]].read_bytes(), "fixture")
        if record["question"] is None:
            query, answer = "<image> A photo of", record["references"][0]
        else:
            query = f"<image> Question: {record['question'].capitalize()} Short answer:"
            answer = max(record["references"], key=record["references"].count)
        answers[answer_key(tokenizer, query, image, 32)] = answer
    return OracleModel(model, tokenizer, answers)


@pytest.mark.parametrize("shots", [0, 2])
def test_an_oracle_scores_100_on_vqav2(
    shots: int, vqav2: Benchmark, tiny_model: MM1Model, tokenizer: Tokenizer
) -> None:
    cfg = trial(num_examples=6)
    result = file_task(vqav2).score(file_oracle(tiny_model, tokenizer, vqav2), cfg, tokenizer, shots)
    assert result.score == 100.0


def test_an_oracle_repeating_a_reference_scores_its_cider(
    coco: Benchmark, tiny_model: MM1Model, tokenizer: Tokenizer
) -> None:
    cfg = trial(num_examples=6, max_new_tokens=12, predictions=6)
    result = file_task(coco).score(file_oracle(tiny_model, tokenizer, coco), cfg, tokenizer, 1)
    references = [row["references"] for row in result.predictions]
    assert [row["prediction"] for row in result.predictions] == [
        tokenizer.decode(tokenizer.encode(r[0])) for r in references
    ]
    assert result.score == pytest.approx(cider_d(references, [r[0] for r in references]))


def test_no_readable_test_item_is_an_error(
    coco: Benchmark, tmp_path: Path, tiny_model: MM1Model, tokenizer: Tokenizer
) -> None:
    write_image(tmp_path / "unrelated.png", 0)
    [task] = build_tasks(trial(tasks=[{**coco.spec, "images": str(tmp_path)}]))
    with pytest.raises(ValueError, match="no test item"):
        task.score(tiny_model, trial(num_examples=3), tokenizer, 0)
