"""A trained trial on disk: its resolved config and model weights, enough to rebuild and evaluate it alone
(``mm1 eval CHECKPOINT``) or to start another trial from it."""

from __future__ import annotations

import functools
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


def checkpoint_file_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a readable mm1 trial checkpoint, or ``None`` (for validation; cached per file version)."""
    path = Path(path)
    if not path.is_file():
        return f"{path} does not exist" if not path.exists() else f"{path} is not a file"
    try:
        checkpoint_config(path)
    except ValueError as error:
        return f"{path}: {error}"
    return None


def checkpoint_config(path: str | Path) -> dict[str, Any]:
    """The trial config (as saved, a JSON-like dict) a checkpoint was trained with; ``ValueError`` when it is not
    a checkpoint of ours."""
    path = Path(path)
    stat = path.stat()
    return _config_of(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _config_of(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    return read_trial_checkpoint(path)["config"]


def load_initial_weights(model: MM1Model, path: str | Path) -> int:
    """Copies a trial checkpoint's weights into ``model`` (``train.init_from``); returns the number of tensors.

    The two models must have the same parameters: a trial started from a checkpoint builds the model that
    checkpoint holds (sweep expansion copies its ``model`` section), changing only what leaves the weights'
    shapes alone (``model.highres``, the freeze switches). A mismatch is a ``ValueError`` naming the first
    tensors that differ."""
    state = read_trial_checkpoint(path)["model"]
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    reshaped = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or reshaped:
        parts = []
        if reshaped:
            k = reshaped[0]
            parts.append(
                f"{len(reshaped)} tensor(s) of another shape ({k}: {tuple(state[k].shape)} in the file, "
                f"{tuple(own[k].shape)} here)"
            )
        if missing:
            parts.append(f"{len(missing)} missing from the file ({missing[0]}, ...)")
        if unexpected:
            parts.append(f"{len(unexpected)} not in this model ({unexpected[0]}, ...)")
        raise ValueError(f"{path}: its model differs from this trial's: {'; '.join(parts)}")
    model.load_state_dict(state)
    return len(state)
