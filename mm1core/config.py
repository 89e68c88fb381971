"""One trial's configuration: the resolved, validated, serialisable description of a training run.

The sweep layer (``orchestrator``) only composes these; ``mm1 train trial.yaml`` reads one directly.
Every omitted field takes its default. Torch-free, so validating thousands of trials is fast.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mm1core.connectors import CONNECTORS
from mm1core.data import DATA_SOURCES
from mm1core.lm import DECODERS
from mm1core.registry import Registry
from mm1core.vision import ENCODERS


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in a YAML must never silently fall back to a default."""

    model_config = ConfigDict(extra="forbid")


def _registered(registry: Registry[Any], name: str) -> str:
    if name not in registry:
        raise ValueError(registry.unknown_message(name))
    return name


# ---------------------------------------------------------------------------------------------- model
class EncoderConfig(StrictModel):
    name: str = "vit-tiny"
    resolution: int = Field(32, gt=0)
    freeze: bool = False

    _check_name = field_validator("name")(lambda v: _registered(ENCODERS, v))

    @model_validator(mode="after")
    def _divisible(self) -> EncoderConfig:
        patch = ENCODERS.get(self.name).patch
        if self.resolution % patch:
            raise ValueError(f"resolution {self.resolution} is not divisible by {self.name}'s patch size {patch}")
        return self

    @property
    def grid(self) -> int:
        """Side of the patch grid: resolution / patch."""
        return self.resolution // ENCODERS.get(self.name).patch


class ConnectorConfig(StrictModel):
    type: str = "avg-pool"
    num_tokens: int = Field(16, gt=0)

    _check_type = field_validator("type")(lambda v: _registered(CONNECTORS, v))


class DecoderConfig(StrictModel):
    name: str = "lm-tiny"

    _check_name = field_validator("name")(lambda v: _registered(DECODERS, v))


class ModelConfig(StrictModel):
    encoder: EncoderConfig = EncoderConfig()
    connector: ConnectorConfig = ConnectorConfig()
    decoder: DecoderConfig = DecoderConfig()

    @model_validator(mode="after")
    def _tokens_possible(self) -> ModelConfig:
        problem = CONNECTORS.get(self.connector.type).token_problem(self.connector.num_tokens, self.encoder.grid)
        if problem:
            raise ValueError(
                f"connector.num_tokens: {self.connector.type} cannot give {self.connector.num_tokens} tokens: {problem}"
            )
        return self


# ----------------------------------------------------------------------------------------------- data
class MixtureConfig(StrictModel):
    """Shares of pre-training samples by type (MM1 Sec. 3.3: caption / interleaved / text-only)."""

    caption: float = Field(0.45, ge=0)
    interleaved: float = Field(0.45, ge=0)
    text: float = Field(0.10, ge=0)

    @model_validator(mode="after")
    def _sums_to_one(self) -> MixtureConfig:
        total = self.caption + self.interleaved + self.text
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"mixture ratios must sum to 1, got {total:g}")
        return self


class DataConfig(StrictModel):
    source: str = "synthetic"
    mixture: MixtureConfig = MixtureConfig()
    seed: int = Field(0, ge=0, description="seed of the embedded world (train and eval splits derive from it)")
    max_images: int = Field(3, ge=1, le=16, description="images per interleaved document, at most")

    _check_source = field_validator("source")(lambda v: _registered(DATA_SOURCES, v))


# ---------------------------------------------------------------------------------------------- train
class TrainConfig(StrictModel):
    max_steps: int = Field(300, gt=0)
    batch_size: int = Field(16, gt=0)
    lr: float = Field(1.0e-3, gt=0)
    weight_decay: float | Literal["auto"] = "auto"  # auto = 0.1 * lr (MM1 Sec. 3.4)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    # The image encoder and connector learn at a fraction of the LM's rate (LLaVA-OneVision trains its vision
    # tower at 0.2x). Measured here: trained from scratch at the LM's rate (>= 2e-3), the encoder's output
    # drifts to a constant before the LM learns to read it, and captions never depend on the image.
    vision_lr_scale: float = Field(0.3, gt=0, le=10)
    seed: int = Field(0, ge=0)
    log_every_n_steps: int = Field(10, gt=0)
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed"] = "auto"

    @field_validator("weight_decay")
    @classmethod
    def _non_negative(cls, v: float | str) -> float | str:
        if not isinstance(v, str) and v < 0:
            raise ValueError("weight_decay must be >= 0 or 'auto'")
        return v

    @property
    def resolved_weight_decay(self) -> float:
        return 0.1 * self.lr if self.weight_decay == "auto" else float(self.weight_decay)


# ----------------------------------------------------------------------------------------------- eval
class EvalConfig(StrictModel):
    shots: list[int] = Field(default_factory=lambda: [0, 4, 8])
    num_examples: int = Field(64, gt=0, description="held-out items per task")
    max_new_tokens: int = Field(20, gt=0)
    batch_size: int = Field(32, gt=0)

    @field_validator("shots")
    @classmethod
    def _shots(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("shots must list at least one k (e.g. [0, 4, 8])")
        if any(k < 0 for k in v):
            raise ValueError("shots must be >= 0")
        return sorted(set(v))


# ---------------------------------------------------------------------------------------------- trial
class TrialConfig(StrictModel):
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()

    def resolved(self) -> TrialConfig:
        """A copy with every ``auto`` replaced by its value, as logged and hashed."""
        train = self.train.model_copy(update={"weight_decay": self.train.resolved_weight_decay})
        return self.model_copy(update={"train": train})

    def flat_params(self) -> dict[str, Any]:
        """Every leaf under its dotted path (``model.connector.type``), lists as JSON text."""
        return flatten(self.model_dump(mode="json"))

    def trial_key(self) -> str:
        """Stable 12-hex-digit hash of the resolved config: equal configs, equal keys, across runs."""
        canonical = json.dumps(self.resolved().model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


# ------------------------------------------------------------------------------------ dotted paths
def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = json.dumps(value) if isinstance(value, list) else value
    return flat


def set_path(tree: dict[str, Any], path: str, value: Any) -> None:
    """Sets ``tree[a][b][c] = value`` for ``path == "a.b.c"``, creating the dicts on the way."""
    *parents, leaf = path.split(".")
    for key in parents:
        node = tree.get(key)
        if not isinstance(node, dict):
            node = tree[key] = {}
        tree = node
    tree[leaf] = value


def path_problem(model: type[BaseModel], path: str) -> str | None:
    """Why ``path`` names no leaf field of ``model`` (``None`` when it does)."""
    node: type[BaseModel] = model
    walked: list[str] = []
    for key in path.split("."):
        if not (isinstance(node, type) and issubclass(node, BaseModel)):
            return f"{'.'.join(walked)} has no field {key!r}"
        if key not in node.model_fields:
            where = ".".join(walked) or "a trial config"
            return f"{where} has no field {key!r} (fields: {', '.join(node.model_fields)})"
        walked.append(key)
        node = node.model_fields[key].annotation  # type: ignore[assignment]
    if isinstance(node, type) and issubclass(node, BaseModel):
        return f"{path} is a section, not a value (fields: {', '.join(node.model_fields)})"
    return None


# ------------------------------------------------------------------------------------------- errors
_NESTED_PATH = re.compile(r"^([a-z_]+(?:\.[a-z_]+)+): ")


def describe_errors(error: ValidationError, prefix: str = "") -> list[str]:
    """One ``path: message`` line per pydantic error; paths are dotted, list items as ``[i]``."""
    return describe_error_items(error.errors(), prefix)


def describe_error_items(items: list[Any], prefix: str = "") -> list[str]:
    lines = []
    for item in items:
        path = prefix
        for part in item["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            else:
                path += f".{part}" if path else str(part)
        message = item["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        nested = _NESTED_PATH.match(message)  # a section's validator naming the field at fault
        if nested:
            path = f"{path}.{nested[1]}" if path else nested[1]
            message = message[nested.end() :]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required field is missing"
        lines.append(f"{path}: {message}" if path else message)
    return lines


def load_trial(raw: dict[str, Any]) -> TrialConfig:
    """Validates a trial mapping; raises ``ValidationError``."""
    return TrialConfig.model_validate(raw)
