"""Stage-0 yardsticks (issue 20): the image encoder and the LM scored on their own, before they are joined.

- Zero-shot image-text retrieval (CLIP, Radford et al. 2021, Sec. 3.1): ``RETRIEVAL_SCENES`` held-out scenes
  (captioning's test scenes, ``Split.EVAL``, distinct by ``scene_key`` so every caption fits one image) each
  with one complete caption (``synthetic_caption``); cosine similarity of ``encode_images`` and
  ``encode_texts`` embeddings; recall at 1 of the right caption per image (``eval/retrieval/i2t_r1``) and of the
  right image per caption (``eval/retrieval/t2i_r1``), in percent. Chance: ``100 / N`` (0.39% at N = 256).
- Linear probe (frozen features, CLIP Sec. 3.2): a multinomial logistic regression per attribute of
  ``PROBE_ATTRIBUTES`` (the first object's colour and shape, the object count, whether text is written), fitted
  on ``Split.PROBE`` scenes (none sharing a ``scene_key`` with a test scene), scored on the retrieval's test
  scenes: ``eval/probe/<attribute>`` and their mean ``eval/probe/avg``, in percent. The world draws each
  attribute uniformly, so chance (``PROBE_CHANCE``) is 16.7 (colour), 25 (shape), 33.3 (count), 50 (text),
  31.2 on average; a majority-class guess scores within a few points of it on 256 scenes.
- The LM alone: ``DecoderOnly`` reads a ``Decoder`` as the text path of ``MM1Model`` (what ``textcore`` and
  ``scores.target_loss`` call), so ``language_model_scores`` gives TextCore (``eval/textcore``) and the held-out
  text loss on held-out corpus documents (``eval/lm/loss``, ``Split.CORPUS_EVAL``) without an image encoder.

Images are what training sees (``render_images``: ``(N, 3, R, R)`` float32 in [-1, 1]); texts are ``(N, T)``
int64 ``<bos> ... <eos>`` right-padded with ``<pad>``. The callables run ``batch_size`` at a time under
``torch.inference_mode``; their outputs go to the CPU in float64, where the metrics are computed
deterministically. No MLflow: the functions return metric dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mm1core.config import TrialConfig
from mm1core.data.corpus import SceneKey, corpus_document, scene_key
from mm1core.data.dataset import Sample, encode_document, render_images
from mm1core.data.records import Document
from mm1core.data.scene import Scene
from mm1core.data.tokenizer import TextTokenizer
from mm1core.data.world import COLOURS, SHAPES, Split, item_rng, sample_scene, synthetic_caption
from mm1core.evaluate.scores import Evaluation, target_loss
from mm1core.evaluate.textcore import textcore_score
from mm1core.lm.decoder import Decoder, KVCache

Encoder = Callable[[torch.Tensor], torch.Tensor]  # (N, 3, R, R) images or (N, T) token ids -> (N, D)
RETRIEVAL_SCENES = 256  # held-out scenes of retrieval and of the probe's test set
PROBE_SCENES = 256  # scenes the probe is fitted on


# --------------------------------------------------------------------------------------------- scenes
def heldout_scenes(
    seed: int, split: Split, count: int, exclude: frozenset[SceneKey] = frozenset()
) -> list[tuple[Scene, np.random.Generator]]:
    """The first ``count`` scenes of ``split`` whose ``scene_key`` is new and not in ``exclude``, each with its
    item's random stream past the scene. Item ``i``'s scene is ``sample_scene(item_rng(seed, split, i))``: for
    ``Split.EVAL``, captioning's test scene."""
    scenes, seen, index = [], set(exclude), 0
    while len(scenes) < count:
        rng = item_rng(seed, split, index)
        scene = sample_scene(rng)
        index += 1
        if scene_key(scene) not in seen:
            seen.add(scene_key(scene))
            scenes.append((scene, rng))
    return scenes


def scene_pixels(scenes: Sequence[Scene], resolution: int) -> torch.Tensor:
    """``(N, 3, R, R)`` float32 in [-1, 1], rendered as training renders them."""
    return render_images(Document("", tuple(scenes), "prompt"), resolution)


def caption_ids(captions: Sequence[str], tokenizer: TextTokenizer) -> torch.Tensor:
    """``(N, T)`` int64: ``<bos> caption <eos>`` per row, right-padded with ``<pad>``."""
    rows = [torch.tensor([tokenizer.bos_id, *tokenizer.encode(text), tokenizer.eos_id]) for text in captions]
    return nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=tokenizer.pad_id)


@torch.inference_mode()
def embed(encoder: Encoder, inputs: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``encoder`` over ``inputs`` ``batch_size`` rows at a time: ``(N, D)`` float64 on the CPU."""
    parts = [encoder(inputs[start : start + batch_size]) for start in range(0, len(inputs), batch_size)]
    return torch.cat([part.detach().to("cpu", torch.float64) for part in parts])


# ------------------------------------------------------------------------------------------- retrieval
def recall_at_1(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> tuple[float, float]:
    """``(image->text, text->image)`` recall at 1 in percent of ``N`` pairs (row ``i`` of both is a pair) by
    cosine similarity; a tie goes to the lowest index."""
    images = F.normalize(image_embeddings.double(), dim=-1)  # (N, D)
    texts = F.normalize(text_embeddings.double(), dim=-1)  # (N, D)
    similarity = images @ texts.T  # (N images, N texts)
    pairs = torch.arange(len(similarity))
    image_to_text = (similarity.argmax(dim=1) == pairs).double().mean()
    text_to_image = (similarity.argmax(dim=0) == pairs).double().mean()
    return 100.0 * float(image_to_text), 100.0 * float(text_to_image)


def retrieval_pairs(seed: int, count: int = RETRIEVAL_SCENES) -> tuple[list[Scene], list[str]]:
    """The held-out scenes and one complete caption of each (``synthetic_caption``, drawn from the scene's
    random stream after the scene)."""
    items = heldout_scenes(seed, Split.EVAL, count)
    return [scene for scene, _ in items], [synthetic_caption(scene, rng) for scene, rng in items]


def retrieval_scores(
    encode_images: Encoder,
    encode_texts: Encoder,
    tokenizer: TextTokenizer,
    *,
    seed: int,
    resolution: int,
    count: int = RETRIEVAL_SCENES,
    batch_size: int = 64,
) -> dict[str, float]:
    """``eval/retrieval/i2t_r1`` and ``eval/retrieval/t2i_r1`` on ``count`` held-out scenes (module docstring)."""
    scenes, captions = retrieval_pairs(seed, count)
    images = embed(encode_images, scene_pixels(scenes, resolution), batch_size)
    texts = embed(encode_texts, caption_ids(captions, tokenizer), batch_size)
    image_to_text, text_to_image = recall_at_1(images, texts)
    return {"eval/retrieval/i2t_r1": image_to_text, "eval/retrieval/t2i_r1": text_to_image}


# ------------------------------------------------------------------------------------------- linear probe
@dataclass(frozen=True)
class Attribute:
    """A probed attribute: ``label(scene)`` is one of ``classes``."""

    label: Callable[[Scene], str]
    classes: tuple[str, ...]


PROBE_ATTRIBUTES: dict[str, Attribute] = {
    "colour": Attribute(lambda scene: scene.objects[0].colour, tuple(COLOURS)),
    "shape": Attribute(lambda scene: scene.objects[0].shape, SHAPES),
    "count": Attribute(lambda scene: str(len(scene.objects)), ("1", "2", "3")),  # world.sample_scene: 1-3
    "text": Attribute(lambda scene: "yes" if scene.text is not None else "no", ("no", "yes")),
}
# A uniform guess, in percent: the world draws each attribute uniformly (writing with TEXT_P = 0.5).
PROBE_CHANCE: dict[str, float] = {name: 100.0 / len(attribute.classes) for name, attribute in PROBE_ATTRIBUTES.items()}
PROBE_WEIGHT_DECAY = 1e-3  # L2 on the weights of standardised features, added to the mean cross-entropy
PROBE_STEPS = 300  # L-BFGS iterations, at most


def attribute_labels(scenes: Sequence[Scene], attribute: Attribute) -> torch.Tensor:
    """``(N,)`` int64 class indices."""
    return torch.tensor([attribute.classes.index(attribute.label(scene)) for scene in scenes])


@dataclass(frozen=True)
class LinearProbe:
    """A fitted multinomial logistic regression on standardised features."""

    mean: torch.Tensor  # (D,)
    scale: torch.Tensor  # (D,)
    weight: torch.Tensor  # (D, K)
    bias: torch.Tensor  # (K,)

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """``(N, D)`` -> ``(N,)`` class indices."""
        standard = (features.double() - self.mean) / self.scale
        return (standard @ self.weight + self.bias).argmax(dim=-1)


def fit_probe(
    features: torch.Tensor,
    labels: torch.Tensor,
    classes: int,
    *,
    weight_decay: float = PROBE_WEIGHT_DECAY,
    steps: int = PROBE_STEPS,
) -> LinearProbe:
    """Full-batch L-BFGS (strong Wolfe line search) on ``(N, D)`` features and ``(N,)`` labels, in float64 from
    zero weights: deterministic. Runs with gradients even inside an evaluation's ``inference_mode``."""
    with torch.inference_mode(False), torch.enable_grad():
        features, labels = features.detach().clone().double(), labels.detach().clone().long()
        mean, scale = features.mean(dim=0), features.std(dim=0, correction=0).clamp_min(1e-8)
        standard = (features - mean) / scale  # (N, D)
        weight = torch.zeros(features.shape[1], classes, dtype=torch.float64, requires_grad=True)
        bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS(
            [weight, bias],
            lr=1.0,
            max_iter=steps,
            tolerance_grad=1e-9,
            tolerance_change=1e-12,
            line_search_fn="strong_wolfe",
        )

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(standard @ weight + bias, labels) + 0.5 * weight_decay * weight.square().sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        return LinearProbe(mean, scale, weight.detach(), bias.detach())


def probe_accuracies(
    train_features: torch.Tensor,
    train_scenes: Sequence[Scene],
    test_features: torch.Tensor,
    test_scenes: Sequence[Scene],
) -> dict[str, float]:
    """``eval/probe/<attribute>`` per ``PROBE_ATTRIBUTES`` and ``eval/probe/avg``, in percent."""
    scores = {}
    for name, attribute in PROBE_ATTRIBUTES.items():
        probe = fit_probe(train_features, attribute_labels(train_scenes, attribute), len(attribute.classes))
        hits = probe.predict(test_features) == attribute_labels(test_scenes, attribute)
        scores[f"eval/probe/{name}"] = 100.0 * float(hits.double().mean())
    scores["eval/probe/avg"] = sum(scores.values()) / len(scores)
    return scores


def probe_scenes(seed: int, train_count: int, test_count: int) -> tuple[list[Scene], list[Scene]]:
    """The probe's training scenes (``Split.PROBE``, none sharing a key with a test scene) and its test scenes
    (the retrieval's)."""
    test = [scene for scene, _ in heldout_scenes(seed, Split.EVAL, test_count)]
    keys = frozenset(scene_key(scene) for scene in test)
    return [scene for scene, _ in heldout_scenes(seed, Split.PROBE, train_count, exclude=keys)], test


def linear_probe_scores(
    features: Encoder,
    *,
    seed: int,
    resolution: int,
    train_count: int = PROBE_SCENES,
    test_count: int = RETRIEVAL_SCENES,
    batch_size: int = 64,
) -> dict[str, float]:
    """The linear probe of frozen ``features(images) -> (N, D)`` (module docstring)."""
    train, test = probe_scenes(seed, train_count, test_count)
    train_features = embed(features, scene_pixels(train, resolution), batch_size)
    test_features = embed(features, scene_pixels(test, resolution), batch_size)
    return probe_accuracies(train_features, train, test_features, test)


def mean_patch_features(encoder: nn.Module) -> Encoder:
    """A vision encoder's ``(N, P, C)`` patch features mean-pooled to ``(N, C)``: what the probe reads of a ViT."""
    return lambda images: encoder(images).mean(dim=1)


# ------------------------------------------------------------------------------------------------ LM alone
class DecoderOnly(nn.Module):
    """A ``Decoder`` read as ``MM1Model``'s text-only path: ``(token_ids, images)`` -> logits ``(B, T, V)``, with
    no images (``(0, 3, R, R)``). ``textcore``, ``scores.target_loss`` and ``generate`` call it as they call the
    multimodal model (they use ``decoder``, ``vocab_size`` and this ``forward``)."""

    def __init__(self, decoder: Decoder, vocab_size: int | None = None) -> None:
        super().__init__()
        self.decoder = decoder
        self.vocab_size = vocab_size or decoder.token_embedding.num_embeddings

    def forward(
        self,
        token_ids: torch.Tensor,
        images: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        if images.shape[0]:
            raise ValueError(f"a language model alone reads no images, got {tuple(images.shape)}")
        return self.decoder(self.decoder.embed(token_ids), position_ids, padding_mask, cache)


def heldout_text_samples(seed: int, count: int, tokenizer: TextTokenizer) -> list[Sample]:
    """The first ``count`` held-out corpus documents (``Split.CORPUS_EVAL``) as samples (no images)."""
    documents = [corpus_document(seed, index, split=Split.CORPUS_EVAL) for index in range(count)]
    return [encode_document(document, tokenizer, 1, 1) for document in documents]


def language_model_scores(model: nn.Module, cfg: TrialConfig, tokenizer: TextTokenizer) -> Evaluation:
    """An LM scored alone (``DecoderOnly``, or an ``MM1Model`` read without images): ``eval/lm/loss``, the mean
    next-token loss per target over ``cfg.eval.num_examples`` held-out corpus documents, and ``eval/textcore``
    (with its prediction rows) when ``cfg.eval.textcore`` names sets. Call it in eval mode, under
    ``torch.inference_mode`` (as ``harness.evaluate`` does)."""
    samples = heldout_text_samples(cfg.data.seed, cfg.eval.num_examples, tokenizer)
    result = Evaluation({"eval/lm/loss": target_loss(model, samples, cfg.eval.batch_size, tokenizer.pad_id)})
    if cfg.eval.textcore:
        outcome = textcore_score(model, cfg, tokenizer)
        result.metrics["eval/textcore"] = outcome.score
        result.predictions += outcome.predictions
    return result
