"""The embedded world: determinism, disjoint splits, resolution independence, a closed vocabulary."""

from __future__ import annotations

import numpy as np
import pytest

from mm1core.data import world
from mm1core.data.datamodule import max_sample_tokens
from mm1core.data.tokenizer import build_tokenizer
from mm1core.evaluate.captioning import CAPTION_TOKENS

MIXTURE = {"caption": 0.45, "interleaved": 0.45, "text": 0.10}


def test_same_seed_gives_the_same_bytes() -> None:
    for index in range(20):
        first = world.pretraining_document(7, index, MIXTURE, 3)
        second = world.pretraining_document(7, index, MIXTURE, 3)
        assert first == second
        for scene_a, scene_b in zip(first.images, second.images, strict=True):
            assert world.render(scene_a, 32).tobytes() == world.render(scene_b, 32).tobytes()


def test_another_seed_gives_other_items() -> None:
    texts = [world.pretraining_document(0, i, MIXTURE, 3).text for i in range(20)]
    assert texts != [world.pretraining_document(1, i, MIXTURE, 3).text for i in range(20)]


def test_splits_never_share_a_scene() -> None:
    def scenes(split: world.Split) -> set[bytes]:
        return {world.render(world.captioning_item(0, split, i)[0], 32).tobytes() for i in range(300)}

    train, evaluation, support = scenes(world.Split.TRAIN), scenes(world.Split.EVAL), scenes(world.Split.SUPPORT)
    assert not train & evaluation and not train & support and not evaluation & support


def test_render_is_resolution_independent() -> None:
    scene = world.sample_scene(np.random.default_rng(3))
    small = world.render(scene, 32).astype(np.float32)
    large = world.render(scene, 128).astype(np.float32).reshape(32, 4, 32, 4, 3).mean(axis=(1, 3))
    assert world.render(scene, 64).shape == (64, 64, 3)
    assert np.abs(small - large).mean() < 3.0


def test_every_object_is_drawn_in_its_colour() -> None:
    scene = world.Scene((world.WorldObject("red", "square", "large", "center", 0.5, 0.5),), background=230)
    image = world.render(scene, 64)
    assert tuple(image[32, 32]) == world.COLOURS["red"] and tuple(image[2, 2]) == (230, 230, 230)


@pytest.mark.parametrize("kind", world.SAMPLE_KINDS)
def test_documents_of_each_kind(kind: str) -> None:
    mixture = {name: float(name == kind) for name in world.SAMPLE_KINDS}
    documents = [world.pretraining_document(0, i, mixture, 4) for i in range(50)]
    assert {document.kind for document in documents} == {kind}
    for document in documents:
        assert document.text.count(world.IMAGE) == len(document.images) <= 4


def test_interleaved_documents_include_the_few_shot_pattern() -> None:
    mixture = {"caption": 0.0, "interleaved": 1.0, "text": 0.0}
    documents = [world.pretraining_document(0, i, mixture, 3) for i in range(50)]
    photo_lines = [d for d in documents if d.text.startswith(f"{world.IMAGE} a photo of")]
    assert photo_lines and all(d.text.count(f"{world.IMAGE} a photo of") == len(d.images) >= 2 for d in photo_lines)


def test_mixture_weights_set_the_shares() -> None:
    kinds = [world.pretraining_document(0, i, MIXTURE, 3).kind for i in range(2000)]
    assert abs(kinds.count("caption") / 2000 - 0.45) < 0.04 and abs(kinds.count("text") / 2000 - 0.10) < 0.03


@pytest.mark.parametrize("max_images", [1, 3, 16])
def test_vocabulary_is_closed_and_lengths_are_bounded(max_images: int) -> None:
    tokenizer = build_tokenizer()
    for index in range(600):
        document = world.pretraining_document(0, index, MIXTURE, max_images)
        ids = tokenizer.encode(document.text)
        assert tokenizer.unk_id not in ids, document.text
        assert len(ids) + 2 + len(document.images) * 7 <= max_sample_tokens(max_images, 8)  # 8 tokens an image


def test_reference_captions_fit_the_caption_bound() -> None:
    tokenizer = build_tokenizer()
    for index in range(300):
        _, references = world.captioning_item(0, world.Split.EVAL, index)
        assert len(references) == 5
        assert max(len(tokenizer.encode(caption)) for caption in references) <= CAPTION_TOKENS
