"""The train section: the stage, where the weights start, the optimiser and the LR (MM1 Sec. 3.4), precision."""

from __future__ import annotations

import math
import typing
from typing import Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from mm1core.config.base import (
    DECAY_AUTO,
    DECAY_NUMBER,
    LAW_COEFFICIENTS,
    LAW_FILE,
    LR_LAW,
    LR_NUMBER,
    StrictModel,
    no_nul,
    registered,
)
from mm1core.stages import STAGES


class LawCoefficients(StrictModel):
    """ln(eta) = a ln(N) + b, N the decoder's non-embedding parameters (MM1 Sec. 3.4: a = -0.4214, b = -0.5535)."""

    a: float = Field(allow_inf_nan=False, description="slope of ln(eta) over ln(N)")
    b: float = Field(allow_inf_nan=False, description="intercept")


class LRLaw(StrictModel):
    """``train.lr: {law: {a: ..., b: ...}}`` or ``{law: path/to/fit.json}`` (what ``mm1 fit-lr`` writes): the peak
    LR follows from the trial's own decoder size, so one sweep file scales a model up with the fitted LR. A path
    is read by the preflight's resolution (``mm1core.preflight.resolve_files``): the coefficients, not the path,
    are what is logged and hashed."""

    law: typing.Annotated[
        typing.Annotated[LawCoefficients, Tag(LAW_COEFFICIENTS)] | typing.Annotated[str, Tag(LAW_FILE)],
        Discriminator(lambda v: LAW_FILE if isinstance(v, str) else LAW_COEFFICIENTS),
    ] = Field(description="{a, b}, or the path of a fit.json written by mm1 fit-lr")

    @field_validator("law", mode="before")
    @classmethod
    def _shape(cls, law: Any) -> Any:
        if not isinstance(law, (str, dict, LawCoefficients)):
            raise ValueError("expected {a: ..., b: ...} or the path of a fit.json (mm1 fit-lr)")
        return no_nul(law) if isinstance(law, str) else law

    def lr(self, non_embedding_params: int) -> float:
        if not isinstance(self.law, LawCoefficients):
            raise ValueError(f"train.lr.law: {self.law} has not been read (mm1core.preflight.resolve_files)")
        exponent = self.law.a * math.log(non_embedding_params) + self.law.b
        return math.exp(exponent) if exponent < 700 else math.inf


class InitFrom(StrictModel):
    """Where a trial's weights start (MM1 Sec. 5: SFT from pre-trained checkpoints): a reference to another sweep's
    trials, ``{sweep, where, step}``, that the sweep's expansion resolves against MLflow (one trial per matching run),
    or a plain checkpoint ``path`` (a ``.pt`` an mm1 trial saved). Expansion fills in ``run`` (the source run's id)
    and ``path`` (its checkpoint at ``step``)."""

    sweep: str | None = Field(None, min_length=1, description="the sweep whose trials to start from")
    experiment: str | None = Field(
        None, min_length=1, description="the source sweep's experiment (default: this one's)"
    )
    where: dict[str, Any] = Field(default_factory=dict, description="dotted param path -> value the source must have")
    step: typing.Annotated[int, Field(gt=0)] | Literal["last"] = Field(
        "last", description="the source's final model (last) or one it saved at this step (train.save_at_steps)"
    )
    path: str | None = Field(None, description="a checkpoint an mm1 trial saved (.pt)")
    run: str | None = Field(None, description="set by expansion: the MLflow run id of the source trial")

    @model_validator(mode="before")
    @classmethod
    def _plain_path(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str) else value

    _path = field_validator("path")(no_nul)

    @model_validator(mode="after")
    def _one_source(self) -> InitFrom:
        if self.sweep is None and self.path is None:
            raise ValueError("give a sweep reference {sweep: NAME, where: {...}, step: last|N} or a checkpoint path")
        if self.sweep is None and (self.where or self.experiment or self.step != "last"):
            raise ValueError("where, experiment and step select among a sweep's runs: give sweep too")
        return self


class TrainConfig(StrictModel):
    stage: str = Field("pretrain", description="an entry of the stage registry (mm1core.stages): pretrain | sft")
    init_from: InitFrom | None = Field(
        None, description="start from another trial's weights (else: fresh, or encoder/decoder checkpoints)"
    )
    save_at_steps: list[int] = Field(
        default_factory=list, description="steps at which the model is also saved (<checkpoint>-step<N>.pt)"
    )
    max_steps: int = Field(300, gt=0, description="optimizer steps")
    batch_size: int = Field(16, gt=0, description="rows per optimizer step (per data-parallel worker)")
    lr: typing.Annotated[
        typing.Annotated[float, Field(gt=0, allow_inf_nan=False), Tag(LR_NUMBER)]
        | typing.Annotated[LRLaw, Tag(LR_LAW)],
        Discriminator(lambda v: LR_LAW if isinstance(v, (dict, LRLaw)) else LR_NUMBER),
    ] = Field(1.0e-3, description="the peak LR, or {law: ...} giving it from the decoder's size (MM1 Sec. 3.4)")
    weight_decay: typing.Annotated[
        typing.Annotated[float, Tag(DECAY_NUMBER)] | typing.Annotated[Literal["auto"], Tag(DECAY_AUTO)],
        Discriminator(lambda v: DECAY_AUTO if v == "auto" else DECAY_NUMBER),  # YAML reads 1e-4 as text
    ] = Field("auto", description="AdamW's decoupled weight decay; auto = 0.1 * lr (MM1 Sec. 3.4)")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="linear warm-up as a share of max_steps, then cosine")
    # Measured here: trained from scratch at the LM's rate (>= 2e-3), the encoder's output drifts to a constant
    # before the LM learns to read it, and captions never depend on the image (LLaVA-OneVision trains its vision
    # tower at 0.2x).
    vision_lr_scale: float = Field(
        0.3, gt=0, le=10, description="the image encoder's and connector's LR as a multiple of the LM's"
    )
    seed: int = Field(0, ge=0, lt=2**32, description="model init and data order (vary it with the sweep's seeds)")
    log_every_n_steps: int = Field(10, gt=0, description="steps between logged train/loss values")
    checkpoint_every_n_steps: int | None = Field(
        100, gt=0, description="the training state is saved this often while a trial runs, so a retry resumes"
    )
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed"] = Field(
        "auto", description="auto: bf16-mixed on a CUDA GPU that supports it, else 32-true"
    )
    compile: bool = Field(False, description="torch.compile the model for training (a compile of tens of seconds)")
    profile: bool = Field(False, description="record a PyTorch profiler trace of a few training steps")

    _stage = field_validator("stage")(lambda v: registered(STAGES, v))

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
    def peak_lr(self) -> float:
        """The peak LR as a number: what a resolved config (``TrialConfig.resolved``) always has."""
        if isinstance(self.lr, LRLaw):
            raise ValueError("train.lr is a law: resolve the TrialConfig (TrialConfig.resolved) first")
        return float(self.lr)

    @property
    def resolved_weight_decay(self) -> float:
        return 0.1 * self.peak_lr if self.weight_decay == "auto" else float(self.weight_decay)
