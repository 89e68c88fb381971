"""The multimodal model: splicing, the encoder freeze switch, every registry entry built and stepped once."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mm1core.config import TrialConfig
from mm1core.connectors import CONNECTORS
from mm1core.data.dataset import collate, encode_document
from mm1core.data.tokenizer import IMAGE_TOKEN_ID, Tokenizer
from mm1core.data.world import Document, sample_scene
from mm1core.lm import DECODERS
from mm1core.lm.decoder import Decoder
from mm1core.model import MM1Model, build_model, subimage_views
from mm1core.module import MM1Module, next_token_loss
from mm1core.vision import ENCODERS
from mm1core.vision.vit import VisionTransformer
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
    loss = module.training_step(batch, 0)["loss"]
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def tiny_flavour_model(encoder: str, connector: str, decoder: str, vocab_size: int) -> MM1Model:
    """The registered components in their tiny flavours (same style, CPU-sized), at a 2x2 or 4x4 patch grid."""
    vit = ENCODERS.get(encoder).tiny()
    lm = DECODERS.get(decoder).tiny()
    encoder_module = VisionTransformer(vit, resolution=4 * vit.patch)
    connector_module = CONNECTORS.get(connector).load()(vit.width, lm.width, 4)
    return MM1Model(encoder_module, connector_module, Decoder(lm, vocab_size), IMAGE_TOKEN_ID)


def registry_cases() -> list[tuple[str, tuple[str, str, str]]]:
    cases = [(f"encoder={name}", (name, "avg-pool", "lm-tiny")) for name in ENCODERS.names()]
    cases += [(f"connector={name}", ("vit-tiny", name, "lm-tiny")) for name in CONNECTORS.names()]
    cases += [(f"decoder={name}", ("vit-tiny", "avg-pool", name)) for name in DECODERS.names()]
    return cases


@pytest.mark.parametrize("names", [case for _, case in registry_cases()], ids=[i for i, _ in registry_cases()])
def test_every_registry_entry_builds_and_steps(names: tuple[str, str, str], tokenizer: Tokenizer) -> None:
    torch.manual_seed(0)
    model = tiny_flavour_model(*names, vocab_size=tokenizer.vocab_size)
    module = MM1Module(model, TrialConfig.model_validate(TINY).train)
    batch = two_image_batch(tokenizer, 4, model.encoder.resolution)
    before = [parameter.clone() for parameter in module.parameters()]
    assert torch.isfinite(torch.tensor(take_one_step(module, batch)))
    changed = [not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True)]
    assert sum(changed) > 0.9 * len(changed)


def test_gradients_reach_every_parameter(tiny_model: MM1Model, tokenizer: Tokenizer) -> None:
    batch = two_image_batch(tokenizer, num_tokens=4)
    logits = tiny_model(batch["token_ids"], batch["images"])
    next_token_loss(logits, batch["token_ids"], batch["loss_mask"]).backward()
    missing = [name for name, p in tiny_model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_save_and_load_round_trip(
    tiny_config: TrialConfig, tiny_model: MM1Model, tokenizer: Tokenizer, tmp_path
) -> None:
    batch = two_image_batch(tokenizer, num_tokens=4)
    torch.save(tiny_model.state_dict(), tmp_path / "model.pt")
    torch.manual_seed(123)  # a differently initialised copy
    loaded = build_model(tiny_config.model, tokenizer.vocab_size).eval()
    loaded.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    torch.testing.assert_close(
        loaded(batch["token_ids"], batch["images"]), tiny_model(batch["token_ids"], batch["images"])
    )


def test_sixteen_images_in_one_sequence_and_none_in_another(tokenizer: Tokenizer) -> None:
    """MM1 packs up to 16 images per 4096-token sequence; rows of a batch hold different counts."""
    import numpy as np

    scenes = tuple(sample_scene(np.random.default_rng(seed)) for seed in range(16))
    many = Document(" ".join("<image> a shape." for _ in scenes), scenes, "interleaved")
    text = Document("two red circles.", (), "text")
    batch = collate([encode_document(d, tokenizer, 4, 32) for d in (text, many)], tokenizer.pad_id)
    assert batch["image_counts"].tolist() == [0, 16]
    torch.manual_seed(0)
    model = build_model(TrialConfig.model_validate(TINY).model, tokenizer.vocab_size).eval()
    logits = model(batch["token_ids"], batch["images"])
    alone = model(batch["token_ids"][1:], batch["images"])
    torch.testing.assert_close(logits[1:], alone)  # the padded text row changes nothing in the image row
    assert int(batch["loss_mask"][1][batch["token_ids"][1] == tokenizer.image_id].sum()) == 0  # no loss on images


def test_subimage_views_are_the_global_view_then_the_crops_row_major() -> None:
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    views = subimage_views(images, grid=2).reshape(2, 5, 3, 4, 4)
    torch.testing.assert_close(views[:, 0], F.avg_pool2d(images, 2))  # box-filtered global view
    torch.testing.assert_close(views[:, 1], images[:, :, :4, :4])
    torch.testing.assert_close(views[:, 2], images[:, :, :4, 4:])
    torch.testing.assert_close(views[:, 3], images[:, :, 4:, :4])
    torch.testing.assert_close(views[:, 4], images[:, :, 4:, 4:])


@pytest.mark.parametrize(
    "highres",
    [{"mode": "interpolate", "resolution": 64}, {"mode": "subimage", "resolution": 64, "grid": 2}],
    ids=["interpolate", "subimage"],
)
def test_highres_modes_train_on_larger_images(highres: dict, tokenizer: Tokenizer) -> None:
    config = TrialConfig.model_validate({**TINY, "model": {**TINY["model"], "highres": highres}})
    torch.manual_seed(0)
    module = MM1Module(build_model(config.model, tokenizer.vocab_size), config.train)
    batch = two_image_batch(tokenizer, config.model.tokens_per_image, config.model.image_resolution)
    assert batch["images"].shape[-1] == 64
    assert module.model.encoder.resolution == 32  # the weights stay those of the native resolution
    assert torch.isfinite(torch.tensor(take_one_step(module, batch)))


def test_moe_decoder_adds_its_auxiliary_losses(tokenizer: Tokenizer) -> None:
    moe = {"num_experts": 4, "every_k_layers": 1, "top_k": 2}
    config = TrialConfig.model_validate({**TINY, "model": {**TINY["model"], "decoder": {"moe": moe}}})
    torch.manual_seed(0)
    module = MM1Module(build_model(config.model, tokenizer.vocab_size), config.train)
    outputs = module.training_step(two_image_batch(tokenizer, 4), 0)
    assert {"moe_load_balance", "moe_router_z", "moe_dropped_frac"} <= set(outputs)
    expected = outputs["lm_loss"] + 0.01 * outputs["moe_load_balance"] + 0.001 * outputs["moe_router_z"]
    torch.testing.assert_close(outputs["loss"].detach(), expected)
