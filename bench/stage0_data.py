"""Benchmark: the stage-0 data and yardsticks (issue 20) on this machine's CPU.

    .venv/bin/python bench/stage0_data.py [--documents 5000] [--scenes 256] [--resolution 64]

Prints the text corpus's speed (building the held-out set once, then documents/s and tokens/s of the world
tokenizer) and the time of each stage-0 metric on ``--scenes`` held-out scenes: retrieval (rendering, a random
ViT ``vit-tiny`` mean-pooled and a bag-of-words text encoder, R@1 both ways), the linear probe (rendering two
splits, the same ViT, four L-BFGS fits) and the fits alone on precomputed features.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import TypeVar

import torch

from mm1core.data import corpus
from mm1core.data.tokenizer import build_tokenizer
from mm1core.evaluate import stage0
from mm1core.vision.vit import build_encoder

T = TypeVar("T")


def timed(function: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def corpus_speed(documents: int) -> None:
    corpus.held_out.cache_clear()
    _, held_seconds = timed(lambda: corpus.held_out(0))
    stream, tokenizer = corpus.CorpusStream(0), build_tokenizer()
    texts, seconds = timed(lambda: [stream.document(index).text for index in range(documents)])
    tokens = sum(len(tokenizer.encode(text)) for text in texts)
    print(f"held-out set: {held_seconds * 1000:.0f} ms ({len(corpus.held_out(0).scenes)} scenes, once per seed)")
    speed = f"{documents / seconds:,.0f} documents/s, {tokens / seconds:,.0f} tokens/s"
    print(f"corpus: {speed} ({tokens / documents:.0f} tokens per document)")


def bag_of_words(vocab_size: int, width: int) -> stage0.Encoder:
    table = torch.randn(vocab_size, width, generator=torch.Generator().manual_seed(0))
    return lambda token_ids: table[token_ids].mean(dim=1)


def metric_times(scenes: int, resolution: int) -> None:
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    encoder = build_encoder("vit-tiny", resolution).eval()
    images = stage0.mean_patch_features(encoder)
    texts = bag_of_words(tokenizer.vocab_size, encoder.width)
    retrieval, seconds = timed(
        lambda: stage0.retrieval_scores(images, texts, tokenizer, seed=0, resolution=resolution, count=scenes)
    )
    print(f"retrieval on {scenes} scenes at {resolution} px: {seconds:.2f} s {retrieval}")
    probe, seconds = timed(
        lambda: stage0.linear_probe_scores(images, seed=0, resolution=resolution, train_count=scenes, test_count=scenes)
    )
    print(f"linear probe, {scenes} + {scenes} scenes: {seconds:.2f} s {probe}")
    train, test = stage0.probe_scenes(0, scenes, scenes)
    train_features = stage0.embed(images, stage0.scene_pixels(train, resolution), 64)
    test_features = stage0.embed(images, stage0.scene_pixels(test, resolution), 64)
    _, seconds = timed(lambda: stage0.probe_accuracies(train_features, train, test_features, test))
    print(f"  of which the four fits on {encoder.width}-wide features: {seconds:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=5000)
    parser.add_argument("--scenes", type=int, default=stage0.RETRIEVAL_SCENES)
    parser.add_argument("--resolution", type=int, default=64)
    args = parser.parse_args()
    corpus_speed(args.documents)
    metric_times(args.scenes, args.resolution)


if __name__ == "__main__":
    main()
