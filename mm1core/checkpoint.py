"""A trained trial on disk: its resolved config and model weights, enough to rebuild and evaluate it alone
(``mm1 eval CHECKPOINT``) or to start another trial from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mm1core.config import TrialConfig
from mm1core.data.tokenizer import build_tokenizer
from mm1core.model import MM1Model, build_model
from mm1core.weights import UnreadableWeights, load_weights

FORMAT = "mm1-trial/1"


def save_trial_checkpoint(path: str | Path, cfg: TrialConfig, model: MM1Model) -> None:
    """Writes ``{"format", "config", "model"}`` to ``path`` (parent folders created), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    torch.save({"format": FORMAT, "config": cfg.model_dump(mode="json"), "model": state}, partial)
    partial.replace(path)


def read_trial_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents; ``ValueError`` with a one-line reason when it is not one of ours."""
    try:
        content = load_weights(Path(path))  # weights_only: a checkpoint cannot run code
    except UnreadableWeights as error:
        raise ValueError(f"not a checkpoint: the file {error.reason}") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise ValueError(f"not an mm1 trial checkpoint (no '{FORMAT}' format tag)")
    return content


def load_trial_checkpoint(path: str | Path) -> tuple[TrialConfig, MM1Model]:
    """The trial's config and its model with the saved weights (on the CPU, in eval mode)."""
    content = read_trial_checkpoint(path)
    cfg = TrialConfig.model_validate(content["config"])
    tokenizer = build_tokenizer(cfg.data.tokenizer)
    model = build_model(cfg.model, tokenizer.vocab_size, image_token_id=tokenizer.image_id)
    model.load_state_dict(content["model"])
    return cfg, model.eval()
