"""One trial's configuration: the resolved, validated, serialisable description of a training run.

The sweep layer (``orchestrator``) only composes these; ``mm1 train trial.yaml`` reads one directly.
Every omitted field takes its default. Torch-free, so validating thousands of trials is fast.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import json
import math
import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from mm1core.connectors import CONNECTORS
from mm1core.data import DATA_SOURCES
from mm1core.data.records import STREAMS
from mm1core.lm import DECODERS, LMPreset
from mm1core.lm.config import MoEConfig
from mm1core.lm.presets import FROM_CHECKPOINT  # the same name for encoders: shape and style from the checkpoint
from mm1core.registry import Registry
from mm1core.vision import ENCODERS, ViTPreset


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in a YAML must never silently fall back to a default."""

    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------------------------- paths
_PATHS_RELATIVE_TO: contextvars.ContextVar[Path | None] = contextvars.ContextVar("paths_relative_to", default=None)


@contextlib.contextmanager
def paths_relative_to(directory: str | Path) -> Iterator[Path]:
    """Inside, a relative path in a config resolves against ``directory`` (the folder of the spec or trial file
    being read) rather than the working directory, so a sweep file finds its data wherever ``mm1`` is run."""
    folder = Path(directory).expanduser().resolve()
    token = _PATHS_RELATIVE_TO.set(folder)
    try:
        yield folder
    finally:
        _PATHS_RELATIVE_TO.reset(token)


def local_path(text: str) -> Path:
    """``text`` as an absolute path: ``~`` expanded, a relative path joined onto the ``paths_relative_to``
    folder (else the working directory), symlinks resolved. Absolute, so a trial running in Ray's working
    directory finds the same file. ``ValueError`` (one line) for text no file system can look up."""
    if "\0" in text:
        raise ValueError(f"{text!r}: a path cannot contain a NUL character")
    try:
        path = Path(text).expanduser()
    except RuntimeError as error:  # an unknown ~user
        raise ValueError(f"{printable(text)}: {error}") from None
    if not path.is_absolute():
        path = (_PATHS_RELATIVE_TO.get() or Path.cwd()) / path
    try:
        path = path.resolve()
        path.exists()  # raises for a name too long or a folder that may not be searched; absent is fine here
    except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop
        reason = getattr(error, "strerror", None) or str(error)
        raise ValueError(f"{printable(str(path))}: not a usable path ({reason})") from None
    return path


def printable(text: str) -> str:
    """``text`` with line breaks, tabs and other unprintable characters escaped (``\\n``): a value quoted in an
    error message keeps it one line."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def _registered(registry: Registry[Any], name: str) -> str:
    if name not in registry:
        raise ValueError(registry.unknown_message(name))
    return name


# ---------------------------------------------------------------------------------------------- model


def _component_name(registry: Registry[Any], name: str) -> str:
    if name == FROM_CHECKPOINT or name in registry:
        return name
    raise ValueError(f"{registry.unknown_message(name)}, {FROM_CHECKPOINT} (with a checkpoint)")


def _checkpoint_path(path: str | None) -> str | None:
    return None if path is None else str(local_path(path))


class EncoderConfig(StrictModel):
    """The image encoder (MM1 Sec. 3.2): a ViT preset, the resolution its weights are made for, and optionally
    pretrained weights from a local path (a Hugging Face CLIP / SigLIP directory or an OpenCLIP file)."""

    name: str = "vit-tiny"
    resolution: int = Field(32, gt=0)
    freeze: bool = False
    checkpoint: str | None = None

    _check_name = field_validator("name")(lambda v: _component_name(ENCODERS, v))
    _absolute = field_validator("checkpoint")(_checkpoint_path)

    @model_validator(mode="after")
    def _consistent(self) -> EncoderConfig:
        if self.checkpoint is not None:
            from mm1core.vision.checkpoints import checkpoint_problem

            problem = checkpoint_problem(self.checkpoint, self.name)
            if problem:
                raise ValueError(f"checkpoint: {problem}")
        elif self.name == FROM_CHECKPOINT:
            raise ValueError(f"checkpoint: name {FROM_CHECKPOINT} needs a checkpoint path")
        patch = self.preset().patch
        if self.resolution % patch:
            raise ValueError(f"resolution: {self.resolution} is not divisible by {self.name}'s patch size {patch}")
        return self

    def preset(self) -> ViTPreset:
        """The encoder's shape: the registered preset, or the checkpoint's."""
        if self.name != FROM_CHECKPOINT:
            return ENCODERS.get(self.name)
        from mm1core.vision.checkpoints import preset_from_checkpoint

        return preset_from_checkpoint(str(self.checkpoint))[0]


class ConnectorConfig(StrictModel):
    type: str = "avg-pool"
    num_tokens: int = Field(16, gt=0)
    freeze: bool = False

    _check_type = field_validator("type")(lambda v: _registered(CONNECTORS, v))


class DecoderConfig(StrictModel):
    """The decoder-only LM (MM1 Sec. 3): a preset or a local Hugging Face Llama-style directory, dense or MoE."""

    name: str = "lm-tiny"
    checkpoint: str | None = None
    moe: MoEConfig | None = None
    freeze: bool = False  # SFT (MM1 Sec. 5) trains every component; freeze one to ablate that

    _check_name = field_validator("name")(lambda v: _component_name(DECODERS, v))
    _absolute = field_validator("checkpoint")(_checkpoint_path)

    @model_validator(mode="after")
    def _consistent(self) -> DecoderConfig:
        if self.checkpoint is not None:
            from mm1core.lm.checkpoints import checkpoint_problem

            problem = checkpoint_problem(self.checkpoint, self.name)
            if problem:
                raise ValueError(f"checkpoint: {problem}")
            if self.moe is not None:
                raise ValueError("moe: a dense checkpoint cannot be loaded into a MoE decoder")
        elif self.name == FROM_CHECKPOINT:
            raise ValueError(f"checkpoint: name {FROM_CHECKPOINT} needs a checkpoint path")
        if self.moe is not None and self.moe.every_k_layers > self.preset().depth:
            raise ValueError(
                f"moe.every_k_layers: {self.moe.every_k_layers} is more than {self.name}'s {self.preset().depth} layers"
            )
        return self

    def preset(self) -> LMPreset:
        """The decoder's shape: the registered preset, or the checkpoint's."""
        if self.name != FROM_CHECKPOINT:
            return DECODERS.get(self.name)
        from mm1core.lm.checkpoints import preset_from_checkpoint

        return preset_from_checkpoint(str(self.checkpoint))

    def non_embedding_params(self) -> int:
        """N of MM1's LR law (Sec. 3.4): every decoder parameter but the embedding and output tables."""
        return self.preset().non_embedding_params(self.moe)

    def checkpoint_vocab_size(self) -> int:
        """The checkpoint's vocabulary size (0 without a checkpoint)."""
        if self.checkpoint is None:
            return 0
        return int(json.loads((Path(self.checkpoint) / "config.json").read_text())["vocab_size"])


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

    mode: Literal["none", "interpolate", "subimage"] = "none"
    resolution: int | None = Field(None, gt=0)
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
    connector: ConnectorConfig = ConnectorConfig()
    decoder: DecoderConfig = DecoderConfig()
    highres: HighresConfig = HighresConfig()

    @model_validator(mode="after")
    def _something_trains(self) -> ModelConfig:
        if self.encoder.freeze and self.connector.freeze and self.decoder.freeze:
            raise ValueError("decoder.freeze: encoder, connector and decoder are all frozen: nothing would train")
        return self

    @model_validator(mode="after")
    def _shapes_possible(self) -> ModelConfig:
        patch = self.encoder.preset().patch
        if self.view_resolution % patch:
            raise ValueError(
                f"highres.resolution: views of {self.view_resolution} px are not divisible by the patch size {patch}"
            )
        grid = self.view_resolution // patch
        problem = CONNECTORS.get(self.connector.type).token_problem(self.connector.num_tokens, grid)
        if problem:
            raise ValueError(
                f"connector.num_tokens: {self.connector.type} cannot give {self.connector.num_tokens} tokens: {problem}"
            )
        return self

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
                encoder.width, lm.width, self.connector.num_tokens
            ),
            "model.decoder.params": lm.non_embedding_params(moe) + embeddings,
            "model.decoder.non_embedding_params": lm.non_embedding_params(moe),
            "model.decoder.active_non_embedding_params": lm.active_non_embedding_params(moe),
        }
        counts["model.total_params"] = sum(
            counts[f"model.{part}.params"] for part in ("encoder", "connector", "decoder")
        )
        return counts


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


# Union tags (a name or a mapping), left out of error paths: a wrong value gets one error, not one per member.
_SOURCE_NAME, _SOURCE_STREAMS = "source:name", "source:streams"
_TASK_NAME, _TASK_FILE = "task:name", "task:file"
_DECAY_NUMBER, _DECAY_AUTO = "weight_decay:number", "weight_decay:auto"


class SFTMixConfig(StrictModel):
    """Shares of the embedded world's instruction data by kind (``train.stage: sft``)."""

    short: float = Field(1.0, ge=0, description="one question, a short answer")
    conversation: float = Field(1.0, ge=0, description="several question-answer turns about one image")
    detail: float = Field(1.0, ge=0, description="a request for a detailed description")

    @model_validator(mode="after")
    def _some_weight(self) -> SFTMixConfig:
        if self.short + self.conversation + self.detail <= 0:
            raise ValueError("at least one of short, conversation, detail must be > 0")
        return self


class SFTDataConfig(StrictModel):
    """Supervised fine-tuning data (MM1 Sec. 5), used when ``train.stage`` is ``sft``: the embedded world's
    instruction set (``synthetic``) or a LLaVA-style JSON on disk (a list of ``{"image", "conversations": [{"from":
    "human"|"gpt", "value"}]}``) with its images under ``images`` (default: the JSON's folder)."""

    source: str = "synthetic"
    images: str | None = None
    mix: SFTMixConfig = SFTMixConfig()

    @field_validator("source")
    @classmethod
    def _source(cls, source: str) -> str:
        if source == "synthetic":
            return source
        path = local_path(source)
        if not path.is_file():
            raise ValueError(f"{path} is not a file (synthetic, or a LLaVA-style conversations JSON)")
        return str(path)

    @field_validator("images")
    @classmethod
    def _images(cls, images: str | None) -> str | None:
        if images is None:
            return None
        path = local_path(images)
        if not path.is_dir():
            raise ValueError(f"{path} is not a folder")
        return str(path)

    @model_validator(mode="after")
    def _readable(self) -> SFTDataConfig:
        if self.source == "synthetic":
            if self.images is not None:
                raise ValueError("images: only used with a conversations JSON source")
            return self
        from mm1core.data.llava import sft_source_problem

        problem = sft_source_problem(self.source, self.images)
        if problem:
            raise ValueError(f"source: {problem}")
        return self


class DataConfig(StrictModel):
    """Where each pre-training stream comes from and how they are mixed, tokenised and packed (MM1 Sec. 3.3).

    ``source`` is ``synthetic`` (the embedded world for every stream) or a mapping from stream (``caption``,
    ``interleaved``, ``text``) to ``synthetic`` or a local path: caption pairs as WebDataset tar shards
    (a directory, glob or ``{00000..00009}`` pattern) or a COCO-captions JSON; interleaved documents as
    OBELICS-style parquet/jsonl; text as jsonl. Every stream with a non-zero mixture weight needs one.
    """

    source: typing.Annotated[
        typing.Annotated[str, Tag(_SOURCE_NAME)] | typing.Annotated[dict[str, str], Tag(_SOURCE_STREAMS)],
        Discriminator(lambda v: _SOURCE_STREAMS if isinstance(v, dict) else _SOURCE_NAME),
    ] = "synthetic"
    mixture: MixtureConfig = MixtureConfig()
    seed: int = Field(0, ge=0, lt=2**32, description="seed of the embedded world and of the mixture order")
    max_images: int = Field(3, ge=1, le=16, description="images per sequence, at most (MM1: 16)")
    synthetic_captions: bool = Field(False, description="mix VeCap-style rich captions into the caption stream")
    synthetic_share: float = Field(0.5, ge=0, le=1, description="share of caption samples that are synthetic")
    tokenizer: str = Field("world", description="world | bytes | a local Hugging Face tokenizer directory")
    seq_len: int | None = Field(None, gt=0, description="pack documents of a stream into sequences of this length")
    workers: int = Field(0, ge=0, le=32, description="DataLoader worker processes (0: load in the trial)")
    sft: SFTDataConfig = SFTDataConfig()

    @field_validator("source")
    @classmethod
    def _sources(cls, source: str | dict[str, str]) -> str | dict[str, str]:
        if isinstance(source, str):
            return _registered(DATA_SOURCES, source)
        from mm1core.data.formats import source_problem

        resolved = {}
        for stream, where in source.items():
            if stream not in STREAMS:
                raise ValueError(f"{stream}: not a stream (streams: {', '.join(STREAMS)})")
            if where == "synthetic":
                resolved[stream] = where
                continue
            path = str(local_path(where))
            problem = source_problem(stream, path)
            if problem:
                raise ValueError(f"{stream}: {problem}")
            resolved[stream] = path
        return resolved

    @field_validator("tokenizer")
    @classmethod
    def _tokenizer(cls, name: str) -> str:
        from mm1core.data.tokenizer import tokenizer_problem

        if name not in ("world", "bytes"):
            name = str(local_path(name))
        problem = tokenizer_problem(name)
        if problem:
            raise ValueError(problem)
        return name

    @model_validator(mode="after")
    def _every_stream_has_a_source(self) -> DataConfig:
        if isinstance(self.source, dict):
            for stream in STREAMS:
                if getattr(self.mixture, stream) > 0 and stream not in self.source:
                    raise ValueError(
                        f"source.{stream}: missing, but mixture.{stream} is {getattr(self.mixture, stream):g} "
                        "(give a path or synthetic)"
                    )
        return self

    def stream_source(self, stream: str) -> str:
        """``synthetic`` or the resolved path the stream is read from."""
        return self.source if isinstance(self.source, str) else self.source.get(stream, "synthetic")


# ---------------------------------------------------------------------------------------------- train
_LR_NUMBER, _LR_LAW = "lr:number", "lr:law"  # union tags, left out of error paths
UNION_TAGS = {_LR_NUMBER, _LR_LAW, _SOURCE_NAME, _SOURCE_STREAMS, _TASK_NAME, _TASK_FILE, _DECAY_NUMBER, _DECAY_AUTO}


class LawCoefficients(StrictModel):
    """ln(eta) = a ln(N) + b, N the decoder's non-embedding parameters (MM1 Sec. 3.4: a = -0.4214, b = -0.5535)."""

    a: float = Field(allow_inf_nan=False)
    b: float = Field(allow_inf_nan=False)


class LRLaw(StrictModel):
    """``train.lr: {law: {a: ..., b: ...}}`` or ``{law: path/to/fit.json}`` (what ``mm1 fit-lr`` writes): the peak
    LR follows from the trial's own decoder size, so one sweep file scales a model up with the fitted LR."""

    law: LawCoefficients  # a path is read here: the coefficients are what is logged and hashed

    @field_validator("law", mode="before")
    @classmethod
    def _read_fit(cls, law: Any) -> Any:
        if not isinstance(law, str):
            if not isinstance(law, (dict, LawCoefficients)):
                raise ValueError("expected {a: ..., b: ...} or the path of a fit.json (mm1 fit-lr)")
            return law
        path = local_path(law)
        try:
            fit = json.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"{path} does not exist (a fit.json from mm1 fit-lr, or {{a: ..., b: ...}})") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: JSONDecodeError, a huge number
            raise ValueError(f"{path}: not a readable JSON file ({type(exc).__name__})") from None
        if not isinstance(fit, dict) or not all(isinstance(fit.get(k), (int, float)) for k in ("a", "b")):
            raise ValueError(f"{path}: needs numbers 'a' and 'b' (the fit of mm1 fit-lr)")
        return {"a": fit["a"], "b": fit["b"]}

    def lr(self, non_embedding_params: int) -> float:
        exponent = self.law.a * math.log(non_embedding_params) + self.law.b
        return math.exp(exponent) if exponent < 700 else math.inf


class InitFrom(StrictModel):
    """Where a trial's weights start (MM1 Sec. 5: SFT from pre-trained checkpoints): a reference to another sweep's
    trials, ``{sweep, where, step}``, that the sweep's expansion resolves against MLflow (one trial per matching run),
    or a plain checkpoint ``path`` (a ``.pt`` an mm1 trial saved). Expansion fills in ``run`` (the source run's id)
    and ``path`` (its checkpoint at ``step``)."""

    sweep: str | None = Field(None, min_length=1)
    experiment: str | None = Field(
        None, min_length=1, description="the source sweep's experiment (default: this one's)"
    )
    where: dict[str, Any] = Field(default_factory=dict, description="dotted param path -> value the source must have")
    step: typing.Annotated[int, Field(gt=0)] | Literal["last"] = "last"
    path: str | None = None
    run: str | None = None  # set by expansion: the MLflow run id of the source trial

    @model_validator(mode="before")
    @classmethod
    def _plain_path(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str) else value

    _absolute = field_validator("path")(_checkpoint_path)

    @model_validator(mode="after")
    def _one_source(self) -> InitFrom:
        if self.sweep is None and self.path is None:
            raise ValueError("give a sweep reference {sweep: NAME, where: {...}, step: last|N} or a checkpoint path")
        if self.sweep is None and (self.where or self.experiment or self.step != "last"):
            raise ValueError("where, experiment and step select among a sweep's runs: give sweep too")
        if self.sweep is None and self.run is None:  # a plain path: check it now, not when the trial starts
            from mm1core.checkpoint import checkpoint_file_problem

            problem = checkpoint_file_problem(str(self.path))
            if problem:
                raise ValueError(f"path: {problem}")
        return self


class TrainConfig(StrictModel):
    # pretrain: the data mixture of data.source; sft: instruction conversations of data.sft, loss on answers only
    stage: Literal["pretrain", "sft"] = "pretrain"
    init_from: InitFrom | None = None  # start from another trial's weights (else: fresh or encoder/decoder checkpoints)
    # Optimizer steps at which the trained model is also saved (``<checkpoint>-step<N>.pt``), for init_from's step.
    save_at_steps: list[int] = Field(default_factory=list)
    max_steps: int = Field(300, gt=0)
    batch_size: int = Field(16, gt=0)
    lr: typing.Annotated[
        typing.Annotated[float, Field(gt=0, allow_inf_nan=False), Tag(_LR_NUMBER)]
        | typing.Annotated[LRLaw, Tag(_LR_LAW)],
        Discriminator(lambda v: _LR_LAW if isinstance(v, (dict, LRLaw)) else _LR_NUMBER),
    ] = 1.0e-3  # the peak LR, or a scaling law giving it
    weight_decay: typing.Annotated[
        typing.Annotated[float, Tag(_DECAY_NUMBER)] | typing.Annotated[Literal["auto"], Tag(_DECAY_AUTO)],
        Discriminator(lambda v: _DECAY_AUTO if v == "auto" else _DECAY_NUMBER),  # YAML reads 1e-4 as text
    ] = "auto"  # auto = 0.1 * lr (MM1 Sec. 3.4)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    # The image encoder and connector learn at a fraction of the LM's rate (LLaVA-OneVision trains its vision
    # tower at 0.2x). Measured here: trained from scratch at the LM's rate (>= 2e-3), the encoder's output
    # drifts to a constant before the LM learns to read it, and captions never depend on the image.
    vision_lr_scale: float = Field(0.3, gt=0, le=10)
    seed: int = Field(0, ge=0, lt=2**32)  # Lightning's seed_everything takes 32-bit seeds
    log_every_n_steps: int = Field(10, gt=0)
    # The whole training state is saved every n steps while a trial runs (and removed when it finishes), so a
    # retried or re-run trial resumes from it; null: never (a retry starts from scratch).
    checkpoint_every_n_steps: int | None = Field(100, gt=0)
    # auto: bf16-mixed on a CUDA GPU that supports bf16, else 32-true (mm1core.train.resolve_precision).
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed"] = "auto"
    # torch.compile the encoder, connector and decoder for training (nn.Module.compile: in place, so parameter
    # names and checkpoints are unchanged); evaluation runs eagerly. Pays a compile of tens of seconds up front.
    compile: bool = False
    # Record a PyTorch profiler trace of a few training steps (Chrome trace JSON; TrialResult.profile says where).
    profile: bool = False

    @field_validator("save_at_steps")
    @classmethod
    def _steps(cls, steps: list[int]) -> list[int]:
        if any(step <= 0 for step in steps):
            raise ValueError("steps must be > 0")
        return sorted(set(steps))

    @model_validator(mode="after")
    def _steps_within(self) -> TrainConfig:
        late = [step for step in self.save_at_steps if step > self.max_steps]
        if late:
            raise ValueError(f"save_at_steps: {late[0]} is beyond max_steps {self.max_steps}")
        return self

    @field_validator("weight_decay")
    @classmethod
    def _non_negative(cls, v: float | str) -> float | str:
        if not isinstance(v, str) and not 0 <= v < math.inf:  # NaN fails the comparison too
            raise ValueError(f"weight_decay must be a finite number >= 0 or 'auto', got {v:g}")
        return v

    @property
    def resolved_weight_decay(self) -> float:
        if isinstance(self.lr, LRLaw):
            raise ValueError("train.lr is a law: resolve the TrialConfig (TrialConfig.resolved) first")
        return 0.1 * self.lr if self.weight_decay == "auto" else float(self.weight_decay)


# ----------------------------------------------------------------------------------------------- eval
EMBEDDED_TASKS = ("caption", "vqa", "reading", "counting")  # the embedded world's sets (mm1core.evaluate)


class FileTask(StrictModel):
    """A benchmark the user holds on disk: COCO-captions JSON (+ image folder) or VQAv2 questions + annotations."""

    type: Literal["coco-captions", "vqav2"]
    path: str = Field(description="captions JSON (coco-captions) or questions JSON (vqav2)")
    annotations: str | None = Field(None, description="vqav2: the annotations JSON with the ten answers")
    images: str | None = Field(None, description="image folder (default: next to the JSON)")
    name: str | None = Field(None, description="metric name, eval/<name>/<k>shot (default: the file's stem)")

    @field_validator("path", "annotations", "images")
    @classmethod
    def _exists(cls, value: str | None) -> str | None:
        if value is None:
            return None
        path = local_path(value)
        if not path.exists():
            raise ValueError(f"{path} does not exist")
        return str(path)

    @model_validator(mode="after")
    def _annotations_for_vqa(self) -> FileTask:
        if self.type == "vqav2" and self.annotations is None:
            raise ValueError("annotations: a vqav2 task needs the annotations JSON (the ten answers per question)")
        return self

    @property
    def metric_name(self) -> str:
        return self.name or Path(self.path).stem


class EvalConfig(StrictModel):
    """Zero- and few-shot evaluation (MM1 Sec. 3.1): greedy, MM1's prompts, CIDEr / VQAv2 accuracy / TextCore."""

    shots: list[int] = Field(default_factory=lambda: [0, 4, 8])
    num_examples: int = Field(64, gt=0, description="held-out items per task")
    max_new_tokens: int = Field(20, gt=0)
    batch_size: int = Field(32, gt=0)
    tasks: list[
        typing.Annotated[
            typing.Annotated[str, Tag(_TASK_NAME)] | typing.Annotated[FileTask, Tag(_TASK_FILE)],
            Discriminator(lambda v: _TASK_FILE if isinstance(v, (dict, FileTask)) else _TASK_NAME),
        ]
    ] = Field(default_factory=lambda: list(EMBEDDED_TASKS))
    textcore: list[str] = Field(
        default_factory=lambda: ["world"],
        description="world (the embedded text set) and/or multiple-choice jsonl",
    )
    every_n_steps: int | None = Field(None, gt=0, description="also evaluate during training (learning curves, ASHA)")
    periodic: Literal["full", "loss"] = Field(
        "full", description="what every_n_steps evaluates: everything, or only the held-out loss (cheap; for ASHA)"
    )
    predictions: int = Field(16, ge=0, description="sample predictions per task logged as an artifact")

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, tasks: list[str | FileTask]) -> list[str | FileTask]:
        for task in tasks:
            if isinstance(task, str) and task not in EMBEDDED_TASKS:
                raise ValueError(f"{task!r} is not one of {', '.join(EMBEDDED_TASKS)} (or a file task mapping)")
        names = [task if isinstance(task, str) else task.metric_name for task in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be distinct, got {', '.join(names)}")
        return tasks

    @field_validator("textcore")
    @classmethod
    def _textcore(cls, sets: list[str]) -> list[str]:
        resolved = []
        for entry in sets:
            if entry == "world":
                resolved.append(entry)
                continue
            path = local_path(entry)
            if not path.is_file():
                raise ValueError(f"{path} is not a file (a jsonl of context / choices / answer)")
            resolved.append(str(path))
        return resolved

    def task_names(self) -> list[str]:
        return [task if isinstance(task, str) else task.metric_name for task in self.tasks]

    @field_validator("shots")
    @classmethod
    def _shots(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("shots must list at least one k (e.g. [0, 4, 8])")
        if any(k < 0 for k in v):
            raise ValueError("shots must be >= 0")
        return sorted(set(v))


# ---------------------------------------------------------------------------------------------- trial
# Fields that change how a trial runs, not what it learns: left out of trial_key, so changing them never re-runs
# a finished trial.
UNHASHED = (
    ("train", "checkpoint_every_n_steps"),
    ("train", "compile"),  # the same model and updates, up to kernel-level rounding
    ("train", "profile"),  # only observes the steps
    ("train", "save_at_steps"),  # extra copies of the weights along the way
)
HASHED_WHEN_SET = (
    "train.stage",
    "train.init_from",
    "data.sft",
    "model.connector.freeze",
    "model.decoder.freeze",
)


@functools.cache
def _default_tree() -> dict[str, Any]:
    """The default trial config as JSON (what ``HASHED_WHEN_SET`` fields are compared with); callers never mutate
    it."""
    return TrialConfig().model_dump(mode="json")


def _walk(tree: dict[str, Any], path: str) -> dict[str, Any]:
    """The mapping holding ``path``'s last key."""
    for key in path.split(".")[:-1]:
        tree = tree[key]
    return tree


class TrialConfig(StrictModel):
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()

    @model_validator(mode="after")
    def _law_gives_usable_lr(self) -> TrialConfig:
        if isinstance(self.train.lr, LRLaw):
            n = self.model.decoder.non_embedding_params()
            lr = self.train.lr.lr(n)
            if not 0 < lr <= 10:
                raise ValueError(f"train.lr: the law gives eta = {lr:g} at N = {n} (model.decoder); check a and b")
        return self

    def resolved(self) -> TrialConfig:
        """A copy with every ``auto`` and LR law replaced by its value, as logged and hashed."""
        train = self.train
        if isinstance(train.lr, LRLaw):
            train = train.model_copy(update={"lr": train.lr.lr(self.model.decoder.non_embedding_params())})
        train = train.model_copy(update={"weight_decay": train.resolved_weight_decay})
        return self.model_copy(update={"train": train})

    def flat_params(self) -> dict[str, Any]:
        """Every leaf under its dotted path (``model.connector.type``), lists as JSON text."""
        return flatten(self.model_dump(mode="json"))

    def trial_key(self) -> str:
        """Stable 12-hex-digit hash of the resolved config: equal configs, equal keys, across runs. Fields added
        after trials were first run count only when set (``HASHED_WHEN_SET``), so those trials keep their keys;
        a resolved ``init_from`` counts by its source run, not by where its file lies."""
        tree = self.resolved().model_dump(mode="json")
        for section, name in UNHASHED:
            tree[section].pop(name)
        defaults = _default_tree()
        for path in HASHED_WHEN_SET:
            parent, name = _walk(tree, path), path.rsplit(".", 1)[-1]
            if parent.get(name) == _walk(defaults, path).get(name):
                parent.pop(name, None)
        source = tree["train"].get("init_from")
        if source and source.get("run"):
            source.pop("path")
        canonical = json.dumps(tree, sort_keys=True, separators=(",", ":"))
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
    """Why ``path`` names no field of ``model`` (``None`` when it does).

    A section (``model.highres``, ``model.decoder.moe``) is a value too: a mapping that replaces the whole
    section (its omitted fields take their defaults, not the base's), or ``null`` for an optional one.
    """
    node: Any = model
    walked: list[str] = []
    for key in path.split("."):
        section = _section(node)
        if section is None:
            return f"{'.'.join(walked)} has no field {key!r}"
        if key not in section.model_fields:
            where = ".".join(walked) or "a trial config"
            return f"{where} has no field {key!r} (fields: {', '.join(section.model_fields)})"
        walked.append(key)
        node = section.model_fields[key].annotation
    return None


def _section(annotation: Any) -> type[BaseModel] | None:
    """The model class of a section annotation (``Section`` or ``Section | None``), else ``None``."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


# ------------------------------------------------------------------------------------------- errors
_NESTED_PATH = re.compile(r"^([a-z_]+(?:\.[a-z_]+)*): ")


def describe_errors(error: ValidationError, prefix: str = "") -> list[str]:
    """One ``path: message`` line per pydantic error; paths are dotted, list items as ``[i]``."""
    return describe_error_items(error.errors(), prefix)


def describe_error_items(items: list[Any], prefix: str = "") -> list[str]:
    lines = []
    for item in items:
        path = prefix
        for part in item["loc"]:
            if part in UNION_TAGS:
                continue
            if isinstance(part, int):
                path += f"[{part}]"
            else:
                path += f".{printable(str(part))}" if path else printable(str(part))
        message = printable(item["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, "))
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
