"""The multimodal model: splicing, the encoder freeze switch, every registry entry built and stepped once."""

from __future__ import annotations

import pytest
import torch

from mm1core.config import TrialConfig
from mm1core.connectors import CONNECTORS
from mm1core.data.dataset import collate, encode_document
from mm1core.data.tokenizer import Tokenizer
from mm1core.data.world import Document, sample_scene
from mm1core.lm import DECODERS
from mm1core.model import MM1Model, build_model
from mm1core.module import MM1Module
from mm1core.vision import ENCODERS
from tests.mm1core.flavours import TINY


def two_image_batch(tokenizer: Tokenizer, num_tokens: int, resolution: int = 32):
    import numpy as np

    scenes = [sample_scene(np.random.default_rng(seed)) for seed in range(3)]
    documents = [Document("<image> a red circle. <image> two", tuple(scenes[:2]), "interleaved")]
    documents.append(Document("a blue square <image>", (scenes[2],), "caption"))
    return collate([encode_document(d, tokenizer, num_tokens, resolution) for d in documents], tokenizer.pad_id)


def test_splice_puts_connector_outputs_at_image_positions(tiny_model: MM1Model, tokenizer: Tokenizer) -> None:
    batch = two_image_batch(tokenizer, num_tokens=4)
    embeddings = tiny_model.embed(batch["token_ids"], batch["images"])  # (B, T, D)
    image_tokens = tiny_model.connector(tiny_model.encoder(batch["images"]))  # (N, 4, D)
    is_image = batch["token_ids"] == tokenizer.image_id
    torch.testing.assert_close(embeddings[is_image], image_tokens.reshape(-1, image_tokens.shape[-1]))
    torch.testing.assert_close(embeddings[~is_image], tiny_model.decoder.embed(batch["token_ids"])[~is_image])
    torch.testing.assert_close(embeddings[1][is_image[1]], image_tokens[2])  # row 2 holds the third image


def test_text_only_batches_skip_the_encoder(tiny_model: MM1Model, tokenizer: Tokenizer) -> None:
    ids = torch.tensor([[tokenizer.bos_id, tokenizer.ids["red"]]])
    logits = tiny_model(ids, torch.zeros(0, 3, 32, 32))
    assert logits.shape == (1, 2, tokenizer.vocab_size)


def test_freeze_switch_freezes_the_encoder_only(tokenizer: Tokenizer) -> None:
    config = TrialConfig.model_validate({**TINY, "model": {**TINY["model"], "encoder": {"freeze": True}}})
    module = MM1Module(build_model(config.model, tokenizer.vocab_size), config.train)
    assert not any(parameter.requires_grad for parameter in module.model.encoder.parameters())
    encoder_before = [parameter.clone() for parameter in module.model.encoder.parameters()]
    connector_before = [parameter.clone() for parameter in module.model.connector.parameters()]
    take_one_step(module, two_image_batch(tokenizer, num_tokens=4))
    assert all(torch.equal(a, b) for a, b in zip(encoder_before, module.model.encoder.parameters(), strict=True))
    assert not all(
        torch.equal(a, b) for a, b in zip(connector_before, module.model.connector.parameters(), strict=True)
    )


def take_one_step(module: MM1Module, batch) -> float:
    optimizer = module.configure_optimizers()["optimizer"]
    loss = module.training_step(batch, 0)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def registry_cases() -> list[tuple[str, dict]]:
    cases = [(f"encoder={name}", {"encoder": {"name": name, "resolution": 32}}) for name in ENCODERS.names()]
    cases += [(f"connector={name}", {"connector": {"type": name, "num_tokens": 4}}) for name in CONNECTORS.names()]
    cases += [(f"decoder={name}", {"decoder": {"name": name}}) for name in DECODERS.names()]
    return cases


@pytest.mark.parametrize("model_section", [case for _, case in registry_cases()], ids=[i for i, _ in registry_cases()])
def test_every_registry_entry_builds_and_steps(model_section: dict, tokenizer: Tokenizer) -> None:
    config = TrialConfig.model_validate({**TINY, "model": {**TINY["model"], **model_section}})
    torch.manual_seed(0)
    module = MM1Module(build_model(config.model, tokenizer.vocab_size), config.train)
    batch = two_image_batch(tokenizer, config.model.connector.num_tokens, config.model.encoder.resolution)
    before = [parameter.clone() for parameter in module.parameters()]
    assert torch.isfinite(torch.tensor(take_one_step(module, batch)))
    changed = [not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True)]
    assert sum(changed) > 0.9 * len(changed)
