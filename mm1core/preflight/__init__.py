"""One preflight pass: everything a trial would hit at start, found before anything starts.

``preflight(config, budget)`` takes a resolved trial config (paths absolute, LR law read: ``resolve_files``) and
returns every problem, each with the dotted path of the field at fault:

- **files**: checkpoints (readable, of the named preset's shape), data sources (each stream's format), the
  tokenizer, SFT conversations, evaluation files, an ``init_from`` checkpoint and whether its model fits;
- **shapes** a checkpoint decides (its patch size against the resolution and the connector's token count, its
  depth against ``moe.every_k_layers``, its size for an LR law);
- **sequence length**: the longest training row and, for every shot count the stage evaluates, the longest
  few-shot prompt against the decoder's ``max_seq_len``;
- **memory**: the estimated peak of a trial (``mm1core.estimate``) against what it will have (``Budget``).

``mm1 sweep validate|plan|run`` and ``mm1 train`` call it once per trial and print the problems as
``<trial>: <dotted.path>: <what is wrong>`` with exit 2; a trial does not validate again when it starts.
Torch-free unless a config names a file only torch can read (an ``init_from`` checkpoint).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from mm1core.config import TrialConfig, describe_errors
from mm1core.config.model import moe_depth_problem
from mm1core.config.trial import law_problem
from mm1core.data.lengths import max_conversation_tokens, max_prompt_tokens, max_sample_tokens
from mm1core.estimate import TrialEstimate, estimate_trial

if TYPE_CHECKING:  # TEMP until mm1core.estimate lands
    from mm1core.estimate import TrialEstimate
from mm1core.preflight.files import Problems, file_problems, local_path, model_fit_problems, resolve_files
from mm1core.stages import STAGES

__all__ = [
    "GIB",
    "Budget",
    "check_trial",
    "Problem",
    "Report",
    "host_memory_bytes",
    "local_path",
    "model_fit_problems",
    "preflight",
    "resolve_files",
    "vocab_size",
]

GIB = 2**30


@dataclass(frozen=True)
class Problem:
    """One thing a trial would hit at start: the dotted path of the field at fault and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class Budget:
    """The memory one trial will have: ``bytes`` on ``device`` (``cpu``: host memory shared by the trials that run at
    once; ``gpu``: the GPU share of ``resources.gpus_per_trial``), and how that figure was found. ``bytes`` None:
    unknown here (a GPU cluster seen from a machine without one): the estimate is printed, not checked."""

    bytes: int | None
    device: str = "cpu"
    source: str = ""

    @classmethod
    def host(cls, concurrent: int = 1) -> Budget:
        """Host memory divided among ``concurrent`` trials (``MM1_HOST_MEMORY_GB`` overrides the machine's)."""
        total = host_memory_bytes()
        share = total // max(concurrent, 1)
        return cls(share, "cpu", f"{total / GIB:.1f} GiB host memory / {concurrent} trial(s) at once")

    @classmethod
    def gpu(cls, gpus_per_trial: float) -> Budget:
        """``gpus_per_trial`` of the GPU memory ``MM1_GPU_MEMORY_GB`` states, or ``nvidia-smi`` reports here."""
        total = gpu_memory_bytes()
        if total is None:
            return cls(None, "gpu", "GPU memory unknown here (set MM1_GPU_MEMORY_GB to check it)")
        share = int(total * min(gpus_per_trial, 1.0))
        return cls(share, "gpu", f"{total / GIB:.1f} GiB per GPU x {min(gpus_per_trial, 1.0):g} per trial")


@dataclass
class Report:
    """A trial's preflight: its problems and its estimate (peak memory, FLOPs per step)."""

    problems: list[Problem] = field(default_factory=list)
    estimate: TrialEstimate | None = None


def check_trial(
    raw: dict[str, Any], folder: str | Path | None = None, budget: Budget | None = None
) -> tuple[TrialConfig | None, list[str]]:
    """A trial mapping validated (values), its files resolved against ``folder`` and preflighted: the resolved
    config (``train.lr`` a number, ``auto`` replaced) and ``[]``, or ``None`` and one ``path: message`` line per
    problem. What ``mm1 train`` does with a trial file before anything starts."""
    try:
        given = TrialConfig.model_validate(raw)
    except ValidationError as error:
        return None, describe_errors(error, model=TrialConfig)
    given, problems = resolve_files(given, folder)
    if problems:
        return None, [f"{path}: {message}" for path, message in problems]
    report = preflight(given, budget)
    if report.problems:
        return None, [str(problem) for problem in report.problems]
    return given.resolved(), []


def preflight(config: TrialConfig, budget: Budget | None = None) -> Report:
    """Every problem ``config`` (resolved: ``resolve_files``) would hit at start, and its estimate; ``budget``
    None checks no memory."""
    found: Problems = file_problems(config)
    if not found:  # shapes read from files, lengths and memory need the files to be good
        found += shape_problems(config)
    if not found:
        found += sequence_problems(config)
    estimate = None
    if not found:
        estimate = estimate_trial(config, vocab_size(config))
        found += memory_problems(config, estimate, budget)
    return Report([Problem(path, message) for path, message in found], estimate)


def shape_problems(config: TrialConfig) -> Problems:
    """What only a checkpoint's shape decides (named presets were checked with the values)."""
    model, problems = config.model, []
    if model.encoder.shape_from_file:
        problems += [(f"model.{path}", message) for path, message in model.shape_problems(model.encoder.preset())]
    if model.decoder.shape_from_file:
        problem = moe_depth_problem(model.decoder.moe, "the checkpoint", model.decoder.preset().depth)
        if problem:
            problems.append((f"model.decoder.{problem.split(': ', 1)[0]}", problem.split(": ", 1)[1]))
        problem = law_problem(config)
        if problem:
            problems.append(tuple(problem.split(": ", 1)))  # type: ignore[arg-type]
    return problems


def sequence_problems(config: TrialConfig) -> Problems:
    """The longest training row and every few-shot prompt the stage evaluates against the decoder's length."""
    limit = config.model.decoder.preset().max_seq_len
    num_tokens, data = config.model.tokens_per_image, config.data
    if data.seq_len is not None and data.seq_len > limit:
        return [("data.seq_len", f"{data.seq_len} exceeds the decoder's max_seq_len {limit}")]
    stage = STAGES.get(config.train.stage)
    if not stage.few_shot:  # conversations are truncated to the decoder; evaluation is zero-shot
        conversation = max_conversation_tokens(num_tokens)
        if config.data.sft.source == "synthetic" and conversation > limit:
            return [
                (
                    "model.connector.num_tokens",
                    f"an embedded conversation of up to {conversation} tokens exceeds max_seq_len {limit}",
                )
            ]
        return []
    training = max_sample_tokens(data.max_images, num_tokens)
    if data.seq_len is None and data.source == "synthetic" and training > limit:
        # Rows longer than the decoder are truncated (real data); the embedded world's should all fit.
        return [
            (
                "data.max_images",
                f"{data.max_images} images x {num_tokens} tokens: samples of up to {training} tokens exceed "
                f"max_seq_len {limit}",
            )
        ]
    new_tokens = config.eval.max_new_tokens
    too_long = [k for k in config.eval.shots if max_prompt_tokens(k, num_tokens) + new_tokens > limit]
    if not too_long:
        return []
    k = too_long[0]
    prompt = max_prompt_tokens(k, num_tokens) + new_tokens
    most = next((n for n in range(k - 1, -1, -1) if max_prompt_tokens(n, num_tokens) + new_tokens <= limit), None)
    hint = f" (at most {most} shots fit)" if most is not None else " (not even a 0-shot prompt fits)"
    return [("eval.shots", f"a {k}-shot prompt of up to {prompt} tokens exceeds max_seq_len {limit}{hint}")]


def memory_problems(config: TrialConfig, estimate: TrialEstimate, budget: Budget | None) -> Problems:
    """The estimated peak against the budget, with the largest part named (what to change)."""
    if budget is None or budget.bytes is None or estimate.peak_bytes <= budget.bytes:
        return []
    parts = sorted(estimate.breakdown.items(), key=lambda item: -item[1])
    largest = ", ".join(f"{name} {value / GIB:.2f} GiB" for name, value in parts[:3])
    field_at_fault = memory_field(config, parts[0][0])
    return [
        (
            field_at_fault,
            f"needs about {estimate.peak_bytes / GIB:.2f} GiB at its peak ({largest}), more than the "
            f"{budget.bytes / GIB:.2f} GiB it will have ({budget.source})",
        )
    ]


def memory_field(config: TrialConfig, term: str) -> str:
    """The field that sets the largest term of the estimate (``mm1core.estimate``'s breakdown names): what to
    change first."""
    images = term in ("encoder_activations", "inputs", "eval_activations", "eval_inputs")
    if images and estimate_images_dominate(config):
        return "model.highres.resolution" if config.model.highres.mode != "none" else "model.encoder.resolution"
    if term.startswith("eval"):
        return "eval.batch_size"
    if term in ("parameters", "gradients", "optimizer_state", "autocast_weights", "runtime"):
        return "model.decoder.name"
    return "train.batch_size"


def estimate_images_dominate(config: TrialConfig) -> bool:
    """Whether a row's image patches outnumber its text positions (the resolution, not the batch, is then what
    grows the encoder's activations fastest)."""
    model = config.model
    patches = (model.view_resolution // model.encoder.preset().patch) ** 2 * model.views_per_image
    return patches * config.data.max_images > max_sample_tokens(config.data.max_images, model.tokens_per_image)


def vocab_size(config: TrialConfig) -> int:
    """The tokenizer's vocabulary (a decoder checkpoint's larger table wins in the estimate itself)."""
    from mm1core.data.tokenizer import tokenizer_vocab_size

    return tokenizer_vocab_size(config.data.tokenizer)


def host_memory_bytes() -> int:
    """This machine's memory (``MM1_HOST_MEMORY_GB`` overrides it)."""
    stated = os.environ.get("MM1_HOST_MEMORY_GB")
    if stated:
        return int(float(stated) * GIB)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def gpu_memory_bytes() -> int | None:
    """One GPU's memory: ``MM1_GPU_MEMORY_GB``, else the first GPU ``nvidia-smi`` lists here, else None."""
    stated = os.environ.get("MM1_GPU_MEMORY_GB")
    if stated:
        return int(float(stated) * GIB)
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return int(float(out.split()[0]) * 2**20)
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
