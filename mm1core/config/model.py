"""The model section (MM1 Sec. 3.2, Fig. 2): image encoder -> vision-language connector -> decoder LM, and how
images larger than the encoder's native resolution reach it.

Shape checks that need only values (a registered preset's patch size, a connector's token counts) are made
here; those that need a checkpoint's shape are the preflight's (``mm1core.preflight``), which reads the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mm1core.config.base import StrictModel, no_nul
from mm1core.connectors import CONNECTORS
from mm1core.connectors.config import ConnectorConfig, default_connector
from mm1core.lm import DECODERS, LMPreset
from mm1core.lm.config import MoEConfig
from mm1core.lm.presets import FROM_CHECKPOINT  # the same name for encoders: shape and style from the checkpoint
from mm1core.registry import Registry
from mm1core.vision import ENCODERS, ViTPreset


def _component_name(registry: Registry[Any], name: str) -> str:
    if name == FROM_CHECKPOINT or name in registry:
        return name
    raise ValueError(f"{registry.unknown_message(name)}, {FROM_CHECKPOINT} (with a checkpoint)")


class EncoderConfig(StrictModel):
    """The image encoder (MM1 Sec. 3.2): a ViT preset, the resolution its weights are made for, and optionally
    pretrained weights from a local path (a Hugging Face CLIP / SigLIP directory or an OpenCLIP file)."""

    name: str = Field("vit-tiny", description=f"a registered ViT preset (mm1 registry), or {FROM_CHECKPOINT}")
    resolution: int = Field(32, gt=0, description="the resolution the positional embeddings are made for")
    freeze: bool = Field(False, description="keep the encoder's weights fixed (MM1 trains it unfrozen)")
    checkpoint: str | None = Field(
        None, description="local Hugging Face CLIP / SigLIP directory or OpenCLIP .pt/.safetensors file"
    )

    _check_name = field_validator("name")(lambda v: _component_name(ENCODERS, v))
    _path = field_validator("checkpoint")(no_nul)

    @model_validator(mode="after")
    def _consistent(self) -> EncoderConfig:
        if self.name == FROM_CHECKPOINT:
            if self.checkpoint is None:
                raise ValueError(f"checkpoint: name {FROM_CHECKPOINT} needs a checkpoint path")
            return self  # the patch is the checkpoint's: the preflight checks the resolution
        patch = ENCODERS.get(self.name).patch
        if self.resolution % patch:
            raise ValueError(f"resolution: {self.resolution} is not divisible by {self.name}'s patch size {patch}")
        return self

    @property
    def shape_from_file(self) -> bool:
        """Whether the shape is known only by reading the checkpoint."""
        return self.name == FROM_CHECKPOINT

    def preset(self) -> ViTPreset:
        """The encoder's shape: the registered preset, or the checkpoint's (read, and cached, from the file)."""
        if self.name != FROM_CHECKPOINT:
            return ENCODERS.get(self.name)
        from mm1core.vision.checkpoints import preset_from_checkpoint  # reads the file (torch): not at import

        return preset_from_checkpoint(str(self.checkpoint))[0]


class DecoderConfig(StrictModel):
    """The decoder-only LM (MM1 Sec. 3): a preset or a local Hugging Face Llama-style directory, dense or MoE."""

    name: str = Field("lm-tiny", description=f"a registered Llama-style preset (mm1 registry), or {FROM_CHECKPOINT}")
    checkpoint: str | None = Field(None, description="local Hugging Face Llama-style directory")
    moe: MoEConfig | None = Field(None, description="mixture of experts in every k-th layer (GShard / ST-MoE)")
    freeze: bool = Field(False, description="keep the decoder's weights fixed (MM1 trains every component)")

    _check_name = field_validator("name")(lambda v: _component_name(DECODERS, v))
    _path = field_validator("checkpoint")(no_nul)

    @model_validator(mode="after")
    def _consistent(self) -> DecoderConfig:
        if self.checkpoint is not None and self.moe is not None:
            raise ValueError("moe: a dense checkpoint cannot be loaded into a MoE decoder")
        if self.name == FROM_CHECKPOINT:
            if self.checkpoint is None:
                raise ValueError(f"checkpoint: name {FROM_CHECKPOINT} needs a checkpoint path")
            return self  # the depth is the checkpoint's: the preflight checks moe.every_k_layers
        problem = moe_depth_problem(self.moe, self.name, DECODERS.get(self.name).depth)
        if problem:
            raise ValueError(problem)
        return self

    @property
    def shape_from_file(self) -> bool:
        return self.name == FROM_CHECKPOINT

    def preset(self) -> LMPreset:
        """The decoder's shape: the registered preset, or the checkpoint's (read from its config.json)."""
        if self.name != FROM_CHECKPOINT:
            return DECODERS.get(self.name)
        from mm1core.lm.checkpoints import preset_from_checkpoint  # reads the file (torch): not at import

        return preset_from_checkpoint(str(self.checkpoint))

    def non_embedding_params(self) -> int:
        """N of MM1's LR law (Sec. 3.4): every decoder parameter but the embedding and output tables."""
        return self.preset().non_embedding_params(self.moe)

    def checkpoint_vocab_size(self) -> int:
        """The checkpoint's vocabulary size (0 without a checkpoint)."""
        if self.checkpoint is None:
            return 0
        return int(json.loads((Path(self.checkpoint) / "config.json").read_text())["vocab_size"])


def moe_depth_problem(moe: MoEConfig | None, name: str, depth: int) -> str | None:
    """``moe.every_k_layers`` beyond the decoder's depth (no layer would be MoE)."""
    if moe is not None and moe.every_k_layers > depth:
        return f"moe.every_k_layers: {moe.every_k_layers} is more than {name}'s {depth} layers"
    return None


class HighresConfig(StrictModel):
    """Images larger than the encoder's native resolution (MM1 Sec. 3.2 and 5, Fig. 7b).

    - ``none``: images are rendered at ``encoder.resolution``;
    - ``interpolate``: images at ``resolution``; the encoder's positional embeddings (made for
      ``encoder.resolution``) are bicubically interpolated to the larger patch grid;
    - ``subimage``: SPHINX / MM1 sub-image decomposition: an image at ``resolution`` is encoded as one global
      view downsampled to ``resolution / grid`` plus ``grid x grid`` crops of that size, each an independent
      image (MM1: 1344 px -> 672 px views, five views x 144 tokens = 720 tokens); views larger than
      ``encoder.resolution`` interpolate the positional embeddings too.
    """

    mode: Literal["none", "interpolate", "subimage"] = Field("none", description="none | interpolate | subimage")
    resolution: int | None = Field(None, gt=0, description="interpolate / subimage: the images' resolution")
    grid: int = Field(2, ge=1, le=4, description="subimage: crops per side")

    @model_validator(mode="after")
    def _resolution_given(self) -> HighresConfig:
        if self.mode == "none" and self.resolution is not None:
            raise ValueError("resolution: only used with mode interpolate or subimage")
        if self.mode != "none" and self.resolution is None:
            raise ValueError(f"resolution: mode {self.mode} needs the image resolution")
        if self.mode == "subimage" and self.resolution is not None and self.resolution % self.grid:
            raise ValueError(f"resolution: {self.resolution} is not divisible into {self.grid}x{self.grid} crops")
        return self


class ModelConfig(StrictModel):
    encoder: EncoderConfig = EncoderConfig()
    connector: ConnectorConfig = Field(default_factory=default_connector)
    decoder: DecoderConfig = DecoderConfig()
    highres: HighresConfig = HighresConfig()

    @model_validator(mode="after")
    def _something_trains(self) -> ModelConfig:
        if self.encoder.freeze and self.connector.freeze and self.decoder.freeze:
            raise ValueError("decoder.freeze: encoder, connector and decoder are all frozen: nothing would train")
        return self

    @model_validator(mode="after")
    def _shapes_possible(self) -> ModelConfig:
        if self.encoder.shape_from_file:
            return self  # the preflight checks it with the checkpoint's patch size
        problem = next(iter(self.shape_problems(self.encoder.preset())), None)
        if problem:
            raise ValueError(f"{problem[0]}: {problem[1]}")
        return self

    def shape_problems(self, encoder: ViTPreset) -> list[tuple[str, str]]:
        """``(field, message)`` for each view or token count ``encoder`` (this model's preset, or its
        checkpoint's) cannot make; fields are relative to ``model``."""
        patch = encoder.patch
        if self.encoder.shape_from_file and self.encoder.resolution % patch:
            return [("encoder.resolution", f"{self.encoder.resolution} is not divisible by the patch size {patch}")]
        if self.view_resolution % patch:
            message = f"views of {self.view_resolution} px are not divisible by the patch size {patch}"
            return [("highres.resolution", message)]
        grid = self.view_resolution // patch
        return [(f"connector.{field}", message) for field, message in self.connector.problems(encoder.width, grid)]

    @property
    def image_resolution(self) -> int:
        """Side of the images the data pipeline renders."""
        return self.highres.resolution or self.encoder.resolution

    @property
    def view_resolution(self) -> int:
        """Side of each view the encoder sees (one view per image, or the global view and crops)."""
        if self.highres.mode == "subimage":
            return self.image_resolution // self.highres.grid
        return self.image_resolution

    @property
    def views_per_image(self) -> int:
        return 1 + self.highres.grid**2 if self.highres.mode == "subimage" else 1

    @property
    def tokens_per_image(self) -> int:
        """Image tokens one ``<image>`` expands to: ``num_tokens`` per view."""
        return self.views_per_image * self.connector.num_tokens

    def parameter_counts(self, vocab_size: int) -> dict[str, int]:
        """Closed-form parameter counts (torch-free), logged with every trial: per component, the decoder's
        non-embedding N (MM1 Sec. 3.4) and, for MoE, its share active per token. ``vocab_size`` is the
        tokenizer's (a checkpoint's larger vocabulary wins)."""
        encoder, lm, moe = self.encoder.preset(), self.decoder.preset(), self.decoder.moe
        vocab_size = max(vocab_size, self.decoder.checkpoint_vocab_size())
        embeddings = vocab_size * lm.width * (1 if lm.tie_embeddings else 2)
        counts = {
            "model.encoder.params": encoder.params(self.encoder.resolution),
            "model.connector.params": CONNECTORS.get(self.connector.type).params(
                self.connector, encoder.width, lm.width
            ),
            "model.decoder.params": lm.non_embedding_params(moe) + embeddings,
            "model.decoder.non_embedding_params": lm.non_embedding_params(moe),
            "model.decoder.active_non_embedding_params": lm.active_non_embedding_params(moe),
        }
        counts["model.total_params"] = sum(
            counts[f"model.{part}.params"] for part in ("encoder", "connector", "decoder")
        )
        return counts
