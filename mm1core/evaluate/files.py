"""Benchmarks on disk (``eval.tasks`` entries of type ``coco-captions`` and ``vqav2``), evaluated as MM1 did
(Sec. 3.1): few-shot prompts, greedy answers, CIDEr-D or VQAv2 accuracy.

- ``coco-captions``: a COCO-captions JSON, ``{"images": [{"id", "file_name"}], "annotations": [{"image_id",
  "caption"}]}``; one item per image with a caption, all its captions the references; prompt ``<image> A photo
  of``, a demonstration showing the image's first caption. Images are ``file_name`` under ``FileTask.images``,
  or by default under the first of the JSON's folder, ``images/`` beside it, or COCO's layout
  (``annotations/captions_val2017.json`` beside ``val2017/``) that holds the first image.
- ``vqav2``: a questions JSON ``{"questions": [{"question_id", "image_id", "question"}]}`` and an annotations JSON
  ``{"annotations": [{"question_id", "answers": [{"answer"}], "multiple_choice_answer"?}]}``; one item per
  annotated question, its (ten) answers the references, scored by the official rules (answers as released);
  prompt ``<image> Question: {question} Short answer:``, a demonstration showing ``multiple_choice_answer`` (else
  the most common answer). The image of ``image_id`` is the file in the image folder whose name, less its
  extension, *ends with the id's digits* (after a non-digit or leading zeros): COCO's
  ``COCO_val2014_000000000042.jpg``, ``000000000042.jpg``, ``42.png`` or ``img_42.jpg`` all match id 42; only
  ``.jpg .jpeg .png .webp .bmp .gif .tif .tiff`` files count, and of two files for one id the first by name wins.
  The folder is ``FileTask.images``, or by default the first of the questions JSON's folder, ``images/`` beside
  it, or the folders named by the JSON's ``data_subtype`` (``val2014``) beside it or one level up that holds an
  image of the set.

Test items are the first ``eval.num_examples`` of a permutation of the file's items seeded by ``data.seed``; the
support pool the demonstrations come from is every other item whose image no test item shows (so no test
image is ever a demonstration). An item whose image is missing or cannot be decoded is skipped as a test item
and passed over as a demonstration (the next of the permutation takes its place); both are logged.
"""

from __future__ import annotations

import json
import re
from abc import abstractmethod
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mm1core.config import FileTask, TrialConfig
from mm1core.data.formats import coco_image_roots
from mm1core.data.images import decode
from mm1core.data.records import IMAGE, BadRecord, EncodedImage
from mm1core.data.world import Split
from mm1core.evaluate.metrics import cider_d, vqa_score
from mm1core.evaluate.tasks import LOGGER, Example, FewShotTask, demonstration_order

CAPTION_QUERY = f"{IMAGE} A photo of"  # MM1's captioning prompt
VQA_QUERY = IMAGE + " Question: {question} Short answer:"  # MM1's VQA prompt
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
REPORTED_SKIPS = 5  # unreadable images logged one by one per task; the rest only counted
_TRAILING_DIGITS = re.compile(r"(\d+)$")


@dataclass(frozen=True)
class FileItem:
    """One benchmark item: its image file (``None``: none found), the image's id, the prompt line up to the
    answer, the answer a demonstration shows, the references and the item's id in the predictions table."""

    image: Path | None
    image_id: Any
    query: str
    answer: str
    references: tuple[str, ...]
    item: Any


def one_line(text: str) -> str:
    """Whitespace runs (newlines too) as one space, and no ``<image>``: a prompt line stays one line."""
    return " ".join(text.replace(IMAGE, " ").split())


def read_image(path: Path) -> EncodedImage:
    try:
        return EncodedImage(path.read_bytes(), str(path))
    except OSError as error:
        raise BadRecord(f"{path}: {error.strerror or error}") from error


def read_json(path: str, *keys: str) -> dict[str, Any]:
    """The JSON object in ``path``, which must hold a list under each of ``keys``."""
    with open(path, encoding="utf-8") as file:
        content = json.load(file)
    for key in keys:
        if not isinstance(content, dict) or not isinstance(content.get(key), list):
            raise ValueError(f"{path}: expected a JSON object with a list {key!r}")
    return content


class FileBenchmark(FewShotTask):
    """A benchmark read from ``spec``'s files: items, the test / support split and readable images."""

    def __init__(self, spec: FileTask) -> None:
        self.spec, self.name = spec, spec.metric_name
        self._loaded: tuple[Path, list[FileItem]] | None = None
        self._splits: dict[tuple[int, int], tuple[list[int], list[int]]] = {}
        self._problems: dict[Any, str | None] = {}  # image id -> why its image cannot be read (None: it can)

    @abstractmethod
    def load(self) -> tuple[Path, list[FileItem]]:
        """The image folder and every item of the benchmark, in file order."""

    def loaded(self) -> tuple[Path, list[FileItem]]:
        """``load()``, read once."""
        if self._loaded is None:
            self._loaded = self.load()
            if not self._loaded[1]:
                raise ValueError(f"{self.name}: {self.spec.path} holds no item to evaluate")
        return self._loaded

    @property
    def items(self) -> list[FileItem]:
        return self.loaded()[1]

    @property
    def image_folder(self) -> Path:
        return self.loaded()[0]

    def split(self, cfg: TrialConfig) -> tuple[list[int], list[int]]:
        """Indices of the test items (seeded permutation order) and of the support pool (file order)."""
        key = (cfg.data.seed, cfg.eval.num_examples)
        if key not in self._splits:
            order = np.random.default_rng([cfg.data.seed, int(Split.EVAL)]).permutation(len(self.items))
            test = order[: cfg.eval.num_examples].tolist()
            shown = {self.items[index].image_id for index in test}
            support = [index for index, item in enumerate(self.items) if item.image_id not in shown]
            self._splits[key] = test, support
        return self._splits[key]

    def image(self, item: FileItem, resolution: int) -> EncodedImage | None:
        """The item's image bytes, or ``None`` when the file is missing or cannot be decoded (logged once)."""
        if self._problems.get(item.image_id) is not None:
            return None
        try:
            if item.image is None:
                raise BadRecord(f"no image file for image id {item.image_id!r} under {self.image_folder}")
            image = read_image(item.image)
            if item.image_id not in self._problems:
                decode(image, resolution)  # checked once per image
        except BadRecord as problem:
            self._problems[item.image_id] = str(problem)
            if sum(why is not None for why in self._problems.values()) <= REPORTED_SKIPS:
                LOGGER.warning("%s: unreadable image, its item skipped: %s", self.name, problem)
            return None
        self._problems[item.image_id] = None
        return image

    def example(self, item: FileItem, image: EncodedImage, index: int) -> Example:
        return Example(image, item.query, item.answer, item.references, index, item.item)

    def test_examples(self, cfg: TrialConfig) -> list[Example]:
        test, _ = self.split(cfg)
        examples = []
        for index, position in enumerate(test):
            item = self.items[position]
            image = self.image(item, cfg.model.image_resolution)
            if image is not None:
                examples.append(self.example(item, image, index))
        if len(examples) < len(test):
            LOGGER.warning(
                "%s: skipped %d of %d test items (unreadable images)", self.name, len(test) - len(examples), len(test)
            )
        return examples

    def demonstrations(self, cfg: TrialConfig, index: int, shots: int) -> list[Example]:
        """The first ``shots`` readable items of test item ``index``'s permutation of the support pool."""
        _, support = self.split(cfg)
        demonstrations: list[Example] = []
        if shots == 0:
            return demonstrations
        for position in demonstration_order(cfg.data.seed, index, len(support)):
            item = self.items[support[position]]
            image = self.image(item, cfg.model.image_resolution)
            if image is not None:
                demonstrations.append(self.example(item, image, position))
                if len(demonstrations) == shots:
                    return demonstrations
        raise ValueError(
            f"{self.name}: a {shots}-shot prompt needs {shots} readable support items (items whose image is no "
            f"test item's), the file has {len(demonstrations)}; lower eval.shots or eval.num_examples"
        )


# ------------------------------------------------------------------------------------------- COCO captions
def demonstration_caption(caption: str) -> str:
    """A caption as it completes ``A photo of``: a capitalised first word lower-cased (``A man`` -> ``a man``,
    ``NYC`` kept), a full stop at the end."""
    first, _, rest = caption.partition(" ")
    if first[1:].islower() or len(first) == 1:
        first = first.lower()
    caption = f"{first} {rest}".strip()
    return caption if caption.endswith((".", "!", "?")) else caption + "."


class CocoCaptionsTask(FileBenchmark):
    """``coco-captions``: CIDEr-D against every caption of the image (see the module docstring)."""

    metric = staticmethod(cider_d)

    def load(self) -> tuple[Path, list[FileItem]]:
        content = read_json(self.spec.path, "images", "annotations")
        captions: dict[Any, list[str]] = {}
        for note in content["annotations"]:
            if isinstance(note, dict) and isinstance(note.get("caption"), str) and one_line(note["caption"]):
                captions.setdefault(note.get("image_id"), []).append(one_line(note["caption"]))
        images = [
            image
            for image in content["images"]
            if isinstance(image, dict) and isinstance(image.get("file_name"), str) and image.get("id") in captions
        ]
        names = [Path(image["file_name"]) for image in images]
        folder = self._folder_of(names)
        return folder, [
            FileItem(
                folder / name,
                image["id"],
                CAPTION_QUERY,
                demonstration_caption(captions[image["id"]][0]),
                tuple(captions[image["id"]]),
                image["id"],
            )
            for image, name in zip(images, names, strict=True)
        ]

    def _folder_of(self, names: list[Path]) -> Path:
        if self.spec.images is not None:
            return Path(self.spec.images)
        roots = coco_image_roots(self.spec.path)
        return next((root for root in roots if names and (root / names[0]).is_file()), roots[0])


# ------------------------------------------------------------------------------------------------- VQAv2
def image_files(folder: Path) -> dict[int, Path]:
    """Image id -> file, for the image files of ``folder`` whose name (less its extension) ends with digits."""
    files: dict[int, Path] = {}
    if not folder.is_dir():
        return files
    for path in sorted(folder.iterdir()):
        match = _TRAILING_DIGITS.search(path.stem)
        if match and path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            files.setdefault(int(match[1]), path)
    return files


def demonstration_answer(annotation: dict[str, Any], answers: list[str]) -> str:
    """``multiple_choice_answer`` (VQAv2's most frequent answer) if given, else the most common answer."""
    chosen = annotation.get("multiple_choice_answer")
    if not (isinstance(chosen, str) and one_line(chosen)):
        chosen = Counter(answers).most_common(1)[0][0]
    return one_line(chosen)


class VQAv2Task(FileBenchmark):
    """``vqav2``: VQAv2 accuracy against the annotators' answers (see the module docstring)."""

    metric = staticmethod(vqa_score)

    def load(self) -> tuple[Path, list[FileItem]]:
        content = read_json(self.spec.path, "questions")
        annotations = {
            note.get("question_id"): note
            for note in read_json(str(self.spec.annotations), "annotations")["annotations"]
            if isinstance(note, dict)
        }
        pairs = [
            (question, annotations[question.get("question_id")])
            for question in content["questions"]
            if isinstance(question, dict)
            and isinstance(question.get("question"), str)
            and isinstance(question.get("image_id"), int)
            and question.get("question_id") in annotations
        ]
        folder, files = self._find_images(content.get("data_subtype"), {question["image_id"] for question, _ in pairs})
        items = [item for question, note in pairs if (item := self._item(question, note, files)).references]
        if len(items) < len(content["questions"]):
            left_out = len(content["questions"]) - len(items)
            LOGGER.warning("%s: %d questions without annotated answers left out", self.name, left_out)
        return folder, items

    def _item(self, question: dict[str, Any], annotation: dict[str, Any], files: dict[int, Path]) -> FileItem:
        """Answers as released (``vqa_accuracy`` processes their whitespace and punctuation)."""
        answers = [
            answer["answer"]
            for answer in annotation.get("answers") or []
            if isinstance(answer, dict) and isinstance(answer.get("answer"), str)
        ]
        query = VQA_QUERY.format(question=one_line(question["question"]))
        answer = demonstration_answer(annotation, answers) if answers else ""
        image_id = question["image_id"]
        return FileItem(files.get(image_id), image_id, query, answer, tuple(answers), question["question_id"])

    def _find_images(self, subtype: Any, ids: set[int]) -> tuple[Path, dict[int, Path]]:
        """The image folder (``FileTask.images`` or the first default holding an image of ``ids``) and its files."""
        if self.spec.images is not None:
            return Path(self.spec.images), image_files(Path(self.spec.images))
        folder = Path(self.spec.path).parent
        candidates = [folder, folder / "images"]
        if isinstance(subtype, str) and subtype:
            candidates += [folder / subtype, folder.parent / subtype]
        for candidate in candidates:
            files = image_files(candidate)
            if ids & files.keys():
                return candidate, files
        return candidates[0], {}
