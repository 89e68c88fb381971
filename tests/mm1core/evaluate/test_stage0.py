"""Stage-0 yardsticks on inputs whose answer is known: retrieval R@1 (identical embeddings 100%, shuffled or random
ones about 100/N), the linear probe (one-hot attribute features 100%, random features near ``PROBE_CHANCE``),
determinism, and the LM scored alone (``DecoderOnly`` equals the multimodal model's text path)."""

from __future__ import annotations

import math

import pytest
import torch

from mm1core.config import TrialConfig
from mm1core.data.corpus import scene_key
from mm1core.data.scene import Scene
from mm1core.data.tokenizer import Tokenizer
from mm1core.data.world import Split
from mm1core.evaluate import stage0
from mm1core.evaluate.scores import target_loss
from mm1core.evaluate.textcore import textcore_score
from mm1core.model import build_model
from mm1core.vision.vit import build_encoder

N = 256


def random_embeddings(seed: int, rows: int = N, width: int = 32) -> torch.Tensor:
    return torch.randn(rows, width, generator=torch.Generator().manual_seed(seed))


def one_hot_attributes(scenes: list[Scene]) -> torch.Tensor:
    """``(N, 15)``: one block of one-hot columns per probed attribute."""
    blocks = []
    for attribute in stage0.PROBE_ATTRIBUTES.values():
        labels = stage0.attribute_labels(scenes, attribute)
        blocks.append(torch.nn.functional.one_hot(labels, len(attribute.classes)).double())
    return torch.cat(blocks, dim=1)


# ------------------------------------------------------------------------------------------- retrieval
def test_identical_embeddings_retrieve_every_pair() -> None:
    embeddings = random_embeddings(0)
    assert stage0.recall_at_1(embeddings, 3.0 * embeddings) == (100.0, 100.0)  # cosine: the scale does not count


def test_shuffled_or_random_embeddings_retrieve_about_one_in_n() -> None:
    embeddings = random_embeddings(1)
    order = torch.randperm(N, generator=torch.Generator().manual_seed(2))
    fixed_points = 100.0 * float((order == torch.arange(N)).double().mean())
    assert stage0.recall_at_1(embeddings, embeddings[order]) == (fixed_points, fixed_points)
    for image_to_text_or_back in stage0.recall_at_1(embeddings, random_embeddings(3)):
        assert image_to_text_or_back < 5 * 100.0 / N  # chance: 100 / N = 0.39%


def test_retrieval_pairs_are_distinct_and_deterministic() -> None:
    scenes, captions = stage0.retrieval_pairs(0, N)
    assert len({scene_key(scene) for scene in scenes}) == len(set(captions)) == N
    assert (scenes, captions) == stage0.retrieval_pairs(0, N)
    assert scenes[:4] == [scene for scene, _ in stage0.heldout_scenes(0, Split.EVAL, 4)]


def oracle_encoders(seed: int, resolution: int, count: int, tokenizer: Tokenizer, shift: int = 0):  # noqa: ANN201
    """Encoders that know the pairs: image ``i`` and caption ``i + shift`` embed as one-hot ``i``; they check
    the inputs they get."""
    scenes, captions = stage0.retrieval_pairs(seed, count)
    by_pixels = {pixels.numpy().tobytes(): i for i, pixels in enumerate(stage0.scene_pixels(scenes, resolution))}
    ids = stage0.caption_ids(captions, tokenizer)
    by_text = {tuple(row.tolist()): (i - shift) % count for i, row in enumerate(ids)}

    def encode_images(images: torch.Tensor) -> torch.Tensor:
        assert images.dtype == torch.float32 and images.shape[1:] == (3, resolution, resolution)
        assert -1.0 <= float(images.min()) and float(images.max()) <= 1.0
        return torch.eye(count)[[by_pixels[image.numpy().tobytes()] for image in images]]

    def encode_texts(token_ids: torch.Tensor) -> torch.Tensor:
        assert token_ids.dtype == torch.int64 and bool((token_ids[:, 0] == tokenizer.bos_id).all())
        return torch.eye(count)[[by_text[tuple(row.tolist())] for row in token_ids]]

    return encode_images, encode_texts


@pytest.mark.parametrize(("shift", "expected"), [(0, 100.0), (1, 0.0)], ids=["paired", "off-by-one"])
def test_retrieval_scores_of_an_oracle(tokenizer: Tokenizer, shift: int, expected: float) -> None:
    images, texts = oracle_encoders(0, 32, 64, tokenizer, shift)
    scores = stage0.retrieval_scores(images, texts, tokenizer, seed=0, resolution=32, count=64, batch_size=24)
    assert scores == {"eval/retrieval/i2t_r1": expected, "eval/retrieval/t2i_r1": expected}


# ----------------------------------------------------------------------------------------------- probe
@pytest.fixture(scope="module")
def probe_scenes() -> tuple[list[Scene], list[Scene]]:
    return stage0.probe_scenes(0, N, N)


def test_probe_scenes_share_no_key(probe_scenes: tuple[list[Scene], list[Scene]]) -> None:
    train, test = probe_scenes
    assert len(train) == len(test) == N
    assert not {scene_key(scene) for scene in train} & {scene_key(scene) for scene in test}


def test_probe_of_one_hot_attributes_is_perfect(probe_scenes: tuple[list[Scene], list[Scene]]) -> None:
    train, test = probe_scenes
    scores = stage0.probe_accuracies(one_hot_attributes(train), train, one_hot_attributes(test), test)
    assert scores == {f"eval/probe/{name}": 100.0 for name in [*stage0.PROBE_ATTRIBUTES, "avg"]}


def test_probe_of_random_features_is_near_chance(probe_scenes: tuple[list[Scene], list[Scene]]) -> None:
    train, test = probe_scenes
    scores = stage0.probe_accuracies(random_embeddings(4, width=64), train, random_embeddings(5, width=64), test)
    for name, chance in stage0.PROBE_CHANCE.items():
        sigma = 100.0 * math.sqrt(chance / 100 * (1 - chance / 100) / N)  # of a chance-level accuracy
        assert abs(scores[f"eval/probe/{name}"] - chance) < 4 * sigma, (name, scores)
    assert abs(scores["eval/probe/avg"] - sum(stage0.PROBE_CHANCE.values()) / 4) < 5


def test_probe_is_deterministic_and_runs_under_inference_mode(probe_scenes: tuple[list[Scene], list[Scene]]) -> None:
    train, test = probe_scenes
    width = one_hot_attributes(train).shape[1]  # some signal, some noise: scores between chance and 100
    train_features = one_hot_attributes(train) + random_embeddings(6, width=width)
    test_features = one_hot_attributes(test) + random_embeddings(7, width=width)
    first = stage0.probe_accuracies(train_features, train, test_features, test)
    with torch.inference_mode():
        second = stage0.probe_accuracies(train_features, train, test_features, test)
    assert first == second
    assert all(stage0.PROBE_CHANCE[name] + 5 < first[f"eval/probe/{name}"] < 100 for name in stage0.PROBE_CHANCE)


def test_linear_probe_scores_read_the_scenes_features() -> None:
    """Features that tell the scenes' attributes (looked up by their pixels) are probed perfectly."""
    train, test = stage0.probe_scenes(1, 64, 64)
    known = {}
    for scenes in (train, test):
        for pixels, row in zip(stage0.scene_pixels(scenes, 32), one_hot_attributes(scenes), strict=True):
            known[pixels.numpy().tobytes()] = row

    def features(images: torch.Tensor) -> torch.Tensor:
        return torch.stack([known[image.numpy().tobytes()] for image in images])

    scores = stage0.linear_probe_scores(features, seed=1, resolution=32, train_count=64, test_count=64, batch_size=20)
    assert scores["eval/probe/avg"] == 100.0


def test_mean_patch_features_of_a_vision_encoder() -> None:
    torch.manual_seed(0)
    encoder = build_encoder("vit-tiny", 32).eval()
    features = stage0.embed(
        stage0.mean_patch_features(encoder), stage0.scene_pixels(stage0.probe_scenes(0, 4, 4)[1], 32), 3
    )
    assert features.shape == (4, encoder.width) and features.dtype == torch.float64


# ------------------------------------------------------------------------------------------------ LM alone
def test_decoder_only_is_the_multimodal_models_text_path(tiny_config: TrialConfig, tokenizer: Tokenizer) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config.model, tokenizer.vocab_size).eval()
    alone = stage0.DecoderOnly(model.decoder, model.vocab_size).eval()
    cfg = tiny_config.model_copy(update={"eval": tiny_config.eval.model_copy(update={"num_examples": 8})})
    with torch.inference_mode():
        scores = stage0.language_model_scores(alone, cfg, tokenizer)
        samples = stage0.heldout_text_samples(cfg.data.seed, 8, tokenizer)
        assert scores.metrics["eval/lm/loss"] == pytest.approx(target_loss(model, samples, 4, tokenizer.pad_id))
        assert scores.metrics["eval/textcore"] == textcore_score(model, cfg, tokenizer).score
    assert 0 < scores.metrics["eval/lm/loss"] < 2 * math.log(tokenizer.vocab_size)
    assert scores.predictions and scores.predictions[0]["task"] == "textcore/world"


def test_decoder_only_reads_no_images(tiny_config: TrialConfig, tokenizer: Tokenizer) -> None:
    alone = stage0.DecoderOnly(build_model(tiny_config.model, tokenizer.vocab_size).decoder)
    with pytest.raises(ValueError, match="no images"):
        alone(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 3, 32, 32))
