"""The objectives registry: every entry builds around a tiny encoder and trains one step on a CPU; unknown names are
rejected with the valid ones listed; a duplicate raises; the text tower presets' closed-form parameter counts."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from mm1core.objectives import OBJECTIVES, TEXT_TOWERS, ObjectiveEntry, build_objective
from mm1core.objectives.text_tower import TextTower
from mm1core.registry import UnknownNameError
from mm1core.vision import ENCODERS
from mm1core.vision.vit import VisionTransformer

NAMES = OBJECTIVES.names()
TOWERS = TEXT_TOWERS.names()


def test_the_yaml_names() -> None:
    assert NAMES == ["contrastive", "sigmoid", "autoregressive"]
    assert [OBJECTIVES.get(name).needs_captions for name in NAMES] == [True, True, False]


@pytest.mark.parametrize("name", NAMES, ids=NAMES)
def test_every_objective_builds_and_steps_on_a_cpu(name: str, tokenizer) -> None:
    torch.manual_seed(0)
    encoder = VisionTransformer(ENCODERS.get("vit-tiny").tiny(), resolution=32)
    entry = OBJECTIVES.get(name)
    options = {"vocab_size": tokenizer.vocab_size, "text_tower": TEXT_TOWERS.get("text-tiny").tiny()}
    objective = build_objective(name, encoder, **(options if entry.needs_captions else {}))
    assert isinstance(objective, entry.load()) and objective.encoder is encoder
    images = torch.randn(4, 3, 32, 32)
    token_ids = torch.randint(3, tokenizer.vocab_size, (4, 7)) if entry.needs_captions else None
    before = [parameter.detach().clone() for parameter in objective.parameters()]
    optimizer = torch.optim.AdamW(objective.parameters(), lr=1e-3)
    loss = objective(images, token_ids)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    for parameter_name, parameter in objective.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), parameter_name
    optimizer.step()
    assert all(not torch.equal(old, new) for old, new in zip(before, objective.parameters(), strict=True))


@pytest.mark.parametrize("name", [n for n in NAMES if OBJECTIVES.get(n).needs_captions])
def test_image_text_objectives_refuse_a_batch_without_captions(name: str) -> None:
    encoder = VisionTransformer(ENCODERS.get("vit-tiny").tiny(), resolution=16)
    objective = build_objective(name, encoder, vocab_size=10, text_tower=TEXT_TOWERS.get("text-tiny").tiny())
    with pytest.raises(ValueError, match="token ids"):
        objective(torch.randn(2, 3, 16, 16))


def test_an_unknown_name_is_rejected_listing_the_valid_ones() -> None:
    encoder = VisionTransformer(ENCODERS.get("vit-tiny").tiny(), resolution=16)
    with pytest.raises(UnknownNameError) as error:
        build_objective("masked", encoder)
    assert str(error.value) == "'masked' is not one of contrastive, sigmoid, autoregressive"
    with pytest.raises(UnknownNameError, match="text-tiny, text-small"):
        build_objective("contrastive", encoder, vocab_size=10, text_tower="text-huge")


def test_registering_a_name_twice_raises() -> None:
    entry = ObjectiveEntry("mm1core.objectives.contrastive:ContrastiveObjective", "again", needs_captions=True)
    with pytest.raises(ValueError, match="already registered"):
        OBJECTIVES.register("contrastive", entry)
    with pytest.raises(ValueError, match="already registered"):
        TEXT_TOWERS.register("text-tiny", TEXT_TOWERS.get("text-tiny"))


@pytest.mark.parametrize("name", TOWERS, ids=TOWERS)
def test_text_tower_parameter_count_is_the_closed_form(name: str) -> None:
    for preset in (TEXT_TOWERS.get(name), TEXT_TOWERS.get(name).tiny()):
        with torch.device("meta"):
            tower = TextTower(preset, vocab_size=219)
        assert sum(parameter.numel() for parameter in tower.parameters()) == preset.params(219)
    assert round(TEXT_TOWERS.get("text-clip-b").params(49408) / 1e6) == 63  # CLIP's 63M text transformer


def test_the_registry_imports_without_torch() -> None:
    code = "import sys, mm1core.objectives; assert 'torch' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
