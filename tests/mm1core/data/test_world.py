"""The embedded world: determinism, disjoint splits, rendering (shapes and legible writing), captions, documents
and a closed vocabulary. The evaluation sets (VQA, text cloze) are tested in ``test_world_eval.py``."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from mm1core.data import world
from mm1core.data.lengths import CAPTION_TOKENS, max_sample_tokens
from mm1core.data.tokenizer import build_tokenizer

MIXTURE = {"caption": 0.45, "interleaved": 0.45, "text": 0.10}
SYNTHETIC = {"caption": {"synthetic": True}}


def scene_with_text(text: str, position: str = "top") -> world.Scene:
    """One red circle in the middle and ``text`` written at ``position`` (placed as ``sample_text`` would)."""
    written = world.sample_text(np.random.default_rng(0), [position])
    cells = world.GLYPH_WIDTH * len(text) - 1  # centre the new text where the sampled one was centred
    shift = (world.GLYPH_WIDTH * len(written.text) - 1 - cells) // 2 * world.GLYPH_CELL
    written = dataclasses.replace(written, text=text, x=written.x + shift)
    circle = world.WorldObject("red", "circle", "large", "center", 0.5, 0.5)
    return world.Scene((circle,), background=230, text=written)


def texted_scenes(count: int) -> list[world.Scene]:
    return [world.sample_scene(np.random.default_rng(seed), text_p=1.0) for seed in range(count)]


# ----------------------------------------------------------------------------------------- determinism
def test_same_seed_gives_the_same_bytes() -> None:
    for index in range(20):
        first = world.pretraining_document(7, index, MIXTURE, 3)
        second = world.pretraining_document(7, index, MIXTURE, 3)
        assert first == second
        for scene_a, scene_b in zip(first.images, second.images, strict=True):
            assert world.render(scene_a, 64).tobytes() == world.render(scene_b, 64).tobytes()


def test_another_seed_gives_other_items() -> None:
    texts = [world.pretraining_document(0, i, MIXTURE, 3).text for i in range(20)]
    assert texts != [world.pretraining_document(1, i, MIXTURE, 3).text for i in range(20)]


def test_items_are_random_access() -> None:
    forwards = [world.pretraining_document(0, i, MIXTURE, 3, options=SYNTHETIC) for i in range(30)]
    backwards = [world.pretraining_document(0, i, MIXTURE, 3, options=SYNTHETIC) for i in reversed(range(30))]
    assert forwards == backwards[::-1]


def test_splits_never_share_a_scene() -> None:
    def scenes(split: world.Split) -> set[bytes]:
        return {world.render(world.captioning_item(0, split, i)[0], 32).tobytes() for i in range(300)}

    train, evaluation, support = scenes(world.Split.TRAIN), scenes(world.Split.EVAL), scenes(world.Split.SUPPORT)
    assert not train & evaluation and not train & support and not evaluation & support


# ----------------------------------------------------------------------------------------------- scenes
def test_about_half_the_scenes_have_writing_in_a_free_slot() -> None:
    scenes = [world.sample_scene(np.random.default_rng(seed)) for seed in range(400)]
    written = [scene for scene in scenes if scene.text is not None]
    assert 0.4 < len(written) / len(scenes) < 0.6
    assert {scene.text.is_number for scene in written} == {True, False}
    for scene in written:
        assert scene.text.position not in {obj.position for obj in scene.objects}
        assert scene.text.text in world.LEXICON or 0 <= int(scene.text.text) < 100


# ----------------------------------------------------------------------------------------------- render
@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_render_is_resolution_independent(resolution: int) -> None:
    for scene in texted_scenes(5):
        image = world.render(scene, resolution).astype(np.float32)
        large = world.render(scene, 256).astype(np.float32)
        factor = 256 // resolution
        pooled = large.reshape(resolution, factor, resolution, factor, 3).mean(axis=(1, 3))
        assert image.shape == (resolution, resolution, 3)
        assert np.abs(image - pooled).mean() < 3.0


def test_every_object_is_drawn_in_its_colour() -> None:
    scene = world.Scene((world.WorldObject("red", "square", "large", "center", 0.5, 0.5),), background=230)
    image = world.render(scene, 64)
    assert tuple(image[32, 32]) == world.COLOURS["red"] and tuple(image[2, 2]) == (230, 230, 230)


def test_writing_never_touches_an_object() -> None:
    for scene in texted_scenes(200):
        with_text, without = world.render(scene, 128), world.render(dataclasses.replace(scene, text=None), 128)
        inked = (with_text != without).any(axis=-1)
        assert inked.any() and (without[inked] == scene.background).all()


@pytest.mark.parametrize("text", ["stop", "cat", "go", "7", "42"])
def test_writing_is_drawn_in_the_font_at_64_px(text: str) -> None:
    scene = scene_with_text(text)
    image = world.render(scene, 64)[..., 0]
    row, col = round(scene.text.y * 64), round(scene.text.x * 64)
    bitmap = world.text_bitmap(text)
    crop = image[row : row + bitmap.shape[0], col : col + bitmap.shape[1]]
    np.testing.assert_array_equal(crop == world.INK[0], bitmap == 1.0)  # one crisp pixel per glyph cell


def word_difference(first: str, second: str, resolution: int) -> float:
    """Mean squared pixel difference between two scenes that differ only in their writing."""
    images = [world.render(scene_with_text(text), resolution).astype(np.float64) for text in (first, second)]
    return float(((images[0] - images[1]) ** 2).mean())


SAME_LENGTH = [("cat", "dog"), ("cat", "hat"), ("sun", "box"), ("go", "up"), ("no", "12"), ("12", "47")]


@pytest.mark.parametrize("first, second", SAME_LENGTH, ids="-".join)
def test_writing_is_legible_at_64_px_but_not_at_32(first: str, second: str) -> None:
    """Words of one length (the length itself stays visible as the width of a grey smudge at 32 px)."""
    at_32, at_64, at_128 = (word_difference(first, second, resolution) for resolution in (32, 64, 128))
    assert at_64 > 40.0 and at_128 == pytest.approx(at_64)  # strokes resolved: full-contrast differences
    assert at_32 < 0.4 * at_64  # half-pixel strokes blur into grey: most of the difference is gone


def test_strokes_are_resolved_at_64_px_but_not_at_32() -> None:
    contrast = 230 - world.INK[0]
    for resolution, resolved in ((32, False), (64, True), (128, True)):
        scene = scene_with_text("stop")
        image = world.render(scene, resolution)[..., 0].astype(np.float64)
        inked = image != world.render(dataclasses.replace(scene, text=None), resolution)[..., 0]
        full = (image[inked] < 230 - 0.9 * contrast).mean()  # share of inked pixels that are fully dark
        assert (full > 0.95) if resolved else (full < 0.3)


# ----------------------------------------------------------------------------------------------- captions
def test_synthetic_captions_mention_every_object_and_the_writing() -> None:
    for seed in range(200):
        rng = np.random.default_rng(seed)
        scene = world.sample_scene(rng)
        caption = world.synthetic_caption(scene, rng)
        assert world.count_phrase(len(scene.objects)) in caption
        for obj in scene.objects:
            thing = f"{obj.size} {obj.colour} {obj.shape}"
            where = world.POSITION_PHRASES[obj.position]
            assert f"{thing} is {where}" in caption or f"{where} is {world.with_article(thing)}" in caption
        if scene.text is not None:
            assert f"{world.text_phrase(scene.text)} is written {world.POSITION_PHRASES[scene.text.position]}" in (
                caption
            )
        else:
            assert "written" not in caption


@pytest.mark.parametrize("synthetic", [False, True], ids=["web", "synthetic"])
def test_caption_documents(synthetic: bool) -> None:
    documents = [world.caption_document(world.item_rng(0, world.Split.TRAIN, i), 1, synthetic) for i in range(200)]
    assert all(d.text.startswith(world.IMAGE + " ") and len(d.images) == 1 for d in documents)
    lengths = [len(d.text.split()) for d in documents]
    assert (min(lengths) >= 10) if synthetic else (sum(lengths) / len(lengths) < 16)


def test_web_captions_are_noisy() -> None:
    captions = [world.caption_document(world.item_rng(0, world.Split.TRAIN, i), 1).text for i in range(300)]
    assert any(caption.endswith(tuple(world.VAGUE_CAPTIONS)) for caption in captions)
    assert any(" the word " in caption or " the number " in caption for caption in captions)


def test_reference_captions_fit_the_caption_bound() -> None:
    tokenizer = build_tokenizer()
    mentions = 0
    for index in range(300):
        scene, references = world.captioning_item(0, world.Split.EVAL, index)
        assert len(references) == 5
        assert max(len(tokenizer.encode(caption)) for caption in references) <= CAPTION_TOKENS
        mentions += scene.text is not None and any(scene.text.text in caption.split() for caption in references)
    assert mentions > 50  # references often mention the writing: reading it pays in captioning


# ----------------------------------------------------------------------------------------------- documents
@pytest.mark.parametrize("kind", world.SAMPLE_KINDS)
def test_documents_of_each_kind(kind: str) -> None:
    mixture = {name: float(name == kind) for name in world.SAMPLE_KINDS}
    documents = [world.pretraining_document(0, i, mixture, 4) for i in range(50)]
    assert {document.kind for document in documents} == {kind}
    for document in documents:
        assert document.text.count(world.IMAGE) == len(document.images) <= 4


def test_interleaved_documents_include_the_few_shot_patterns() -> None:
    mixture = {"caption": 0.0, "interleaved": 1.0, "text": 0.0}
    documents = [world.pretraining_document(0, i, mixture, 3) for i in range(60)]
    photo_lines = [d for d in documents if d.text.startswith(f"{world.IMAGE} a photo of")]
    assert photo_lines and all(d.text.count(f"{world.IMAGE} a photo of") == len(d.images) >= 2 for d in photo_lines)
    vqa = [d for d in documents if d.text.startswith(f"{world.IMAGE} question:")]
    line = re.compile(r"<image> question: [a-z ]+\? short answer: [a-z0-9 ]+")
    assert vqa and all(all(line.fullmatch(text) for text in d.text.split("\n")) for d in vqa)
    assert all(d.text.count("\n") + 1 == len(d.images) for d in vqa)


def test_text_documents_hold_arithmetic_with_digits_and_words() -> None:
    mixture = {"caption": 0.0, "interleaved": 0.0, "text": 1.0}
    text = " ".join(world.pretraining_document(0, i, mixture, 1).text for i in range(200))
    assert re.search(r"\b\d+ (plus|minus) \d+ is \d+\.", text) and re.search(r"\b[a-z]+ minus [a-z]+ is [a-z]+\.", text)
    for first, operator, second, result in re.findall(r"\b(\d+) (plus|minus) (\d+) is (\d+)\.", text):
        assert int(first) + (1 if operator == "plus" else -1) * int(second) == int(result)


def test_mixture_weights_set_the_shares() -> None:
    kinds = [world.pretraining_document(0, i, MIXTURE, 3).kind for i in range(2000)]
    assert abs(kinds.count("caption") / 2000 - 0.45) < 0.04 and abs(kinds.count("text") / 2000 - 0.10) < 0.03


def test_every_stream_has_a_sampler() -> None:
    rng = np.random.default_rng(0)
    assert set(world.DOCUMENT_SAMPLERS) == set(world.SAMPLE_KINDS)
    assert world.DOCUMENT_SAMPLERS["caption"](rng, 2, synthetic=True).kind == "caption"


# ---------------------------------------------------------------------------------------------- vocabulary
@pytest.mark.parametrize("max_images", [1, 3, 16])
def test_vocabulary_is_closed_and_lengths_are_bounded(max_images: int) -> None:
    tokenizer = build_tokenizer()
    for index in range(400):
        for options in (None, SYNTHETIC):
            document = world.pretraining_document(0, index, MIXTURE, max_images, options=options)
            ids = tokenizer.encode(document.text)
            assert tokenizer.unk_id not in ids, document.text
            assert len(ids) + 2 + len(document.images) * 7 <= max_sample_tokens(max_images, 8)  # 8 tokens an image


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_generator_writes_only_vocabulary_words(seed: int) -> None:
    known = set(world.VOCABULARY)
    texts: list[str] = [*world.LEXICON, *(str(value) for value in range(100))]
    for index in range(150):
        rng = world.item_rng(seed, world.Split.TRAIN, index)
        scene = world.sample_scene(rng)
        texts += [world.web_caption(scene, rng), world.synthetic_caption(scene, rng)]
        texts += world.captioning_item(seed, world.Split.EVAL, index)[1]
        texts += [world.interleaved_document(rng, 4).text, world.text_document(rng, 1).text]
        vqa = world.vqa_item(seed, world.Split.EVAL, index)
        texts += [vqa.question, *vqa.answers]
        item = world.text_eval_item(seed, index)
        texts += [item.context, *item.choices]
    words = {word for text in texts for word in re.findall(r"[a-z]+|[0-9]+", text.replace(world.IMAGE, ""))}
    assert words <= known, sorted(words - known)
    assert set(build_tokenizer().tokens) >= known
