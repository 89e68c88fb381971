"""Samples and batches: image-token expansion, the loss mask, padding, image order."""

from __future__ import annotations

import numpy as np
import torch

from mm1core.config import TrialConfig
from mm1core.data.datamodule import PretrainingData, build_data
from mm1core.data.dataset import collate, encode_document, truncate
from mm1core.data.records import STREAMS, Document
from mm1core.data.tokenizer import Tokenizer
from mm1core.data.world import sample_scene


class Rows:
    """The first training rows of a tiny trial with ``num_image_tokens`` tokens an image."""

    def __init__(self, tokenizer: Tokenizer, num_image_tokens: int = 4) -> None:
        config = TrialConfig.model_validate(
            {"model": {"connector": {"num_tokens": num_image_tokens}}, "train": {"max_steps": 4, "batch_size": 16}}
        )
        data = PretrainingData(config, tokenizer)
        self.plans, self.dataset = list(data.planner), data.dataset

    def __getitem__(self, index: int):
        return self.dataset[self.plans[index]]


def dataset(tokenizer: Tokenizer, num_image_tokens: int = 4) -> Rows:
    return Rows(tokenizer, num_image_tokens)


def test_image_placeholders_expand_to_token_runs(tokenizer: Tokenizer) -> None:
    scenes = (sample_scene(np.random.default_rng(0)), sample_scene(np.random.default_rng(1)))
    sample = encode_document(Document("<image> a red circle. <image> two", scenes, "interleaved"), tokenizer, 4, 32)
    tokens = sample["token_ids"].tolist()
    image = tokenizer.image_id
    assert tokens[0] == tokenizer.bos_id and tokens[-1] == tokenizer.eos_id
    assert tokens[1:5] == [image] * 4 and tokens.count(image) == 8
    assert sample["images"].shape == (2, 3, 32, 32)
    assert -1.0 <= float(sample["images"].min()) and float(sample["images"].max()) <= 1.0


def test_loss_mask_covers_text_targets_only(tokenizer: Tokenizer) -> None:
    batch = collate([dataset(tokenizer)[i] for i in range(16)], tokenizer.pad_id)
    token_ids, loss_mask = batch["token_ids"], batch["loss_mask"]
    assert not loss_mask[token_ids == tokenizer.image_id].any()
    assert not loss_mask[token_ids == tokenizer.pad_id].any()
    assert not loss_mask[:, 0].any()  # <bos>
    text = (token_ids != tokenizer.image_id) & (token_ids != tokenizer.pad_id)
    assert torch.equal(loss_mask, text & (torch.arange(token_ids.shape[1]) > 0))


def test_collate_shapes_and_image_order(tokenizer: Tokenizer) -> None:
    samples = [dataset(tokenizer, num_image_tokens=9)[i] for i in range(8)]
    batch = collate(samples, tokenizer.pad_id)
    longest = max(len(sample["token_ids"]) for sample in samples)
    assert batch["token_ids"].shape == batch["loss_mask"].shape == (8, longest)
    assert batch["image_counts"].tolist() == [len(sample["images"]) for sample in samples]
    assert batch["images"].shape == (int(batch["image_counts"].sum()), 3, 32, 32)
    assert int((batch["token_ids"] == tokenizer.image_id).sum()) == 9 * len(batch["images"])
    torch.testing.assert_close(batch["images"], torch.cat([sample["images"] for sample in samples]))


def test_loader_yields_max_steps_batches(tiny_config: TrialConfig, tokenizer: Tokenizer) -> None:
    batches = list(build_data(tiny_config, tokenizer))
    assert len(batches) == tiny_config.train.max_steps
    assert all(batch["token_ids"].shape[0] == tiny_config.train.batch_size for batch in batches)


def test_rows_carry_their_stream_and_batches_the_realised_mixture(
    tiny_config: TrialConfig, tokenizer: Tokenizer
) -> None:
    batches = list(build_data(tiny_config, tokenizer))
    streams = torch.cat([batch["streams"] for batch in batches])
    assert streams.min() >= 0 and streams.max() < len(STREAMS)
    assert int(sum(batch["skipped"].sum() for batch in batches)) == 0


def test_truncation_never_cuts_an_image_run(tokenizer: Tokenizer) -> None:
    scenes = (sample_scene(np.random.default_rng(0)), sample_scene(np.random.default_rng(1)))
    row = dict(encode_document(Document("<image> a red circle. <image> two", scenes, "interleaved"), tokenizer, 4, 32))
    # <bos>, 4 image tokens, "a red circle ." (4), then the second run starts at position 9
    cut = truncate(row, 11, tokenizer.image_id, 4)
    assert len(cut["token_ids"]) == 9 and len(cut["images"]) == 1
    assert int((cut["token_ids"] == tokenizer.image_id).sum()) == 4
    assert truncate(row, 100, tokenizer.image_id, 4) is row
