"""Evaluation fixtures: a model whose answers vary with the prompt, and small benchmarks written to disk."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from mm1core.config import TrialConfig
from mm1core.data.tokenizer import Tokenizer
from mm1core.model import MM1Model, build_model
from tests.mm1core.flavours import TINY


def trial(**evaluation: Any) -> TrialConfig:
    """The tiny trial with ``eval`` fields replaced."""
    return TrialConfig.model_validate({**TINY, "eval": {**TINY["eval"], **evaluation}})


@pytest.fixture
def chaotic_model(tiny_config: TrialConfig, tokenizer: Tokenizer) -> MM1Model:
    """The tiny model with large random weights: untrained, yet its answers differ from prompt to prompt (the
    default initialisation repeats the last prompt token whatever the image)."""
    torch.manual_seed(0)
    model = build_model(tiny_config.model, tokenizer.vocab_size).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.normal_(0.0, 0.1)
    return model


def write_image(path: Path, seed: int, size: tuple[int, int] = (40, 30)) -> None:
    """A small random picture, PNG or JPEG by the suffix."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


@dataclass
class Benchmark:
    """A benchmark fixture: the ``FileTask`` mapping, what the test wrote, and which images cannot be read."""

    spec: dict[str, Any]
    files: dict[int, Path]  # image id -> file (also for the broken ones)
    unreadable: set[int]  # image ids whose file is missing or not an image
    records: list[dict[str, Any]]  # per item: item id, image id, question or None, answer, references


COCO_IMAGES = 12
COCO_CAPTIONS = ("a red circle.", "A red circle on the left", "two shapes")


@pytest.fixture
def coco(tmp_path: Path) -> Benchmark:
    """12 images (PNG and JPEG) with 3 captions each; image 5 is no image, image 9's file is missing."""
    folder = tmp_path / "coco"
    (folder / "images").mkdir(parents=True)
    images, annotations, files, records = [], [], {}, []
    for image_id in range(1, COCO_IMAGES + 1):
        name = f"{image_id:012d}.{'png' if image_id % 2 else 'jpg'}"
        files[image_id] = folder / "images" / name
        if image_id == 5:
            files[image_id].write_bytes(b"this is not an image")
        elif image_id != 9:
            write_image(files[image_id], image_id)
        images.append({"id": image_id, "file_name": name})
        captions = [f"{caption} {image_id}" for caption in COCO_CAPTIONS]
        annotations += [{"image_id": image_id, "id": 10 * image_id + i, "caption": c} for i, c in enumerate(captions)]
        records.append({"item": image_id, "image": image_id, "question": None, "references": captions})
    path = folder / "captions.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    spec = {"type": "coco-captions", "path": str(path), "images": str(folder / "images"), "name": "coco"}
    return Benchmark(spec, files, {5, 9}, records)


VQA_IMAGES = 8
VQA_QUESTIONS = (("what colour is the circle?", "red"), ("how many shapes are there?", "2"))


@pytest.fixture
def vqav2(tmp_path: Path) -> Benchmark:
    """8 COCO-named images under ``val2014/`` (found by the JSON's ``data_subtype``), 2 questions each with ten
    answers (7 canonical); image 4 is no image."""
    folder = tmp_path / "vqa"
    (folder / "val2014").mkdir(parents=True)
    questions, annotations, files, records = [], [], {}, []
    for image_id in range(100, 100 + VQA_IMAGES):
        files[image_id] = folder / "val2014" / f"COCO_val2014_{image_id:012d}.jpg"
        if image_id == 104:
            files[image_id].write_bytes(b"\xff\xd8 truncated")
        else:
            write_image(files[image_id], image_id)
        for number, (question, answer) in enumerate(VQA_QUESTIONS):
            question_id = 10 * image_id + number
            answers = [answer] * 7 + ["blue", "Two", "yellow"]
            questions.append({"question_id": question_id, "image_id": image_id, "question": question.capitalize()})
            annotations.append(
                {
                    "question_id": question_id,
                    "image_id": image_id,
                    "multiple_choice_answer": answer,
                    "answers": [{"answer": a, "answer_id": i + 1} for i, a in enumerate(answers)],
                }
            )
            records.append({"item": question_id, "image": image_id, "question": question, "references": answers})
    questions_path, annotations_path = folder / "questions.json", folder / "annotations.json"
    questions_path.write_text(json.dumps({"data_subtype": "val2014", "questions": questions}))
    annotations_path.write_text(json.dumps({"annotations": annotations}))
    spec = {"type": "vqav2", "path": str(questions_path), "annotations": str(annotations_path)}
    return Benchmark(spec, files, {104}, records)


TEXT_ITEMS = (
    {"context": "red and blue make", "choices": ["purple", "green", "orange"], "answer": 0},
    {"context": "a square has", "choices": ["three", "four"], "answer": 1},
    {"context": "two plus three is", "choices": ["four", "five", "six", "seven"], "answer": 1},
    {"context": "", "choices": ["yes", "no"], "answer": 0},
    {"context": "one, two,", "choices": ["three", "four", "ten"], "answer": 0},
)


@pytest.fixture
def textcore_file(tmp_path: Path) -> Path:
    """Five multiple-choice lines and three malformed ones (bad JSON, answer out of range, one choice)."""
    path = tmp_path / "mc.jsonl"
    lines = [json.dumps(item) for item in TEXT_ITEMS]
    lines[2:2] = ["{not json", json.dumps({"context": "x", "choices": ["a", "b"], "answer": 2})]
    lines.append(json.dumps({"context": "x", "choices": ["a"], "answer": 0}))
    path.write_text("\n".join(lines) + "\n")
    return path
