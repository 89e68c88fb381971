"""One trial: build data and model from a ``TrialConfig``, fit with Lightning, evaluate, return the metrics.

``train_trial`` is the only entry point the orchestrator calls (``mm1 train``, the Ray trainable); it never
touches Ray or MLflow. Metrics go to a ``MetricSink``: ``train/loss`` and ``train/lr`` for every optimizer step
(``step`` counts steps from 1: the metrics of the s-th step carry ``step=s``), delivered in bursts every
``train.log_every_n_steps`` steps and at the end, each burst followed by ``flush()`` (one device sync per
burst, not per step); then the eval metrics and ``perf/samples_per_s`` with ``step=max_steps``, and ``flush()``.
Several trials can run one after another in one process: seeds are reset and thread counts restored.

Data-parallel (``parallel``: the Lightning strategy and plugins a launcher such as ``orchestrator.distributed``
sets up; this module never imports one): every rank calls ``train_trial`` with the same config; ``train.batch_size``
is the global batch, each rank trains on its slice of it (``mm1core.data.datamodule``). Rank 0 alone reports to its
sink (the ranks' values averaged, their data counts summed, one collective per burst), evaluates, saves the model and
the resume state; the other ranks train, then return an empty result.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import lightning
import torch

from mm1core.checkpoint import save_trial_checkpoint
from mm1core.config import TrainConfig, TrialConfig
from mm1core.data.datamodule import PretrainingData, max_sample_tokens
from mm1core.data.records import STREAMS
from mm1core.data.tokenizer import TextTokenizer, build_tokenizer
from mm1core.evaluate.captioning import max_prompt_tokens
from mm1core.evaluate.harness import Evaluation, evaluate
from mm1core.model import build_model
from mm1core.module import MM1Module


class MetricSink(Protocol):
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

    def flush(self) -> None: ...


class NullSink:
    """A sink that drops everything (``train_trial`` without a sink)."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        pass

    def flush(self) -> None:
        pass


@dataclass
class DataParallel:
    """How ``train_trial`` runs as one of several data-parallel processes: a Lightning DDP ``strategy`` whose
    process group the launcher provides, ``plugins`` (its cluster environment), and ``prepare`` applied to the built
    trainer (a launcher's checks)."""

    strategy: Any
    plugins: list[Any] = field(default_factory=list)
    prepare: Callable[[lightning.Trainer], lightning.Trainer] | None = None


@dataclass
class TrialResult:
    metrics: dict[str, float]  # "train/loss" (mean of the last log interval), every eval metric, "perf/samples_per_s"
    steps: int
    train_seconds: float  # wall time of the fit loop, periodic evaluations excluded
    eval_seconds: float  # the final evaluation
    predictions: list[dict] = field(default_factory=list)  # the final evaluation's sample predictions
    checkpoint: str | None = None  # where the trained model was saved


class SinkCallback(lightning.Callback):
    """Buffers each step's detached losses and learning rate; delivers them to the sink in bursts.

    With each burst go the realised data mixture so far (``data/share/<stream>``) and ``data/skipped``.
    ``train/loss`` is the next-token loss (comparable between dense and MoE trials); a MoE decoder adds
    ``train/moe_load_balance``, ``train/moe_router_z``, ``train/moe_dropped_frac`` and the least and most used
    experts' shares of the routed tokens (``train/moe_expert_share_min``/``_max``; 1/num_experts when even).
    """

    def __init__(self, sink: MetricSink, every_n_steps: int) -> None:
        self.sink, self.every_n_steps = sink, every_n_steps
        self.pending: list[tuple[int, dict[str, torch.Tensor], float]] = []  # (step, values on device, lr)
        self.losses: list[float] = []  # every delivered next-token loss, in step order
        self.rows = torch.zeros(len(STREAMS), dtype=torch.long)  # training rows seen, per stream
        self.skipped = 0  # unreadable records skipped so far
        self.step_lr = 0.0
        self.started = self.ended = 0.0
        self.strategy: Any = None  # the trainer's, for the reductions over data-parallel ranks

    def setup(self, trainer: lightning.Trainer, module: lightning.LightningModule, stage: str) -> None:
        self.strategy = trainer.strategy if trainer.world_size > 1 else None
        if not trainer.is_global_zero:
            self.sink = NullSink()  # rank 0 reports for every rank

    def on_train_start(self, trainer: lightning.Trainer, module: lightning.LightningModule) -> None:
        self.started = time.perf_counter()

    def on_train_batch_start(self, trainer: lightning.Trainer, module: lightning.LightningModule, *args: Any) -> None:
        self.step_lr = trainer.optimizers[0].param_groups[0]["lr"]  # the rate this step uses

    def on_train_batch_end(
        self, trainer: lightning.Trainer, module: lightning.LightningModule, outputs: Any, *args: Any
    ) -> None:
        values = {name: value for name, value in outputs.items() if name != "loss"}
        self.pending.append((trainer.global_step, values, self.step_lr))
        batch = args[0]
        self.rows += torch.bincount(batch["streams"].clamp(min=0), minlength=len(STREAMS)).cpu()
        self.skipped += int(batch["skipped"].sum())
        if len(self.pending) >= self.every_n_steps:
            self.deliver()

    def on_train_end(self, trainer: lightning.Trainer, module: lightning.LightningModule) -> None:
        self.deliver()  # its device sync also makes the timing honest
        self.ended = time.perf_counter()

    def deliver(self) -> None:
        if not self.pending:
            return
        names = list(self.pending[0][1])
        stacked = torch.stack([torch.stack([values[n] for n in names]) for _, values, _ in self.pending]).float()
        if self.strategy is not None:  # every rank delivers at the same steps: this collective pairs up
            stacked = self.strategy.reduce(stacked, reduce_op="mean")  # the loss is already the batch's on each
        rows = stacked.cpu().tolist()  # (steps, names): one device sync
        for (step, _, lr), row in zip(self.pending, rows, strict=True):
            metrics = {_metric_name(name): value for name, value in zip(names, row, strict=True)}
            self.sink.log_metrics({**metrics, "train/lr": lr}, step=step)
            self.losses.append(metrics["train/loss"])
        self.sink.log_metrics(self.data_metrics(), step=self.pending[-1][0])
        self.pending = []
        self.sink.flush()

    def data_metrics(self) -> dict[str, float]:
        """The realised mixture so far (``data/share/<stream>``, rows of each stream / rows) and ``data/skipped``,
        counted over every data-parallel rank."""
        counts = torch.cat([self.rows, torch.tensor([self.skipped])]).double()  # (streams + 1,)
        if self.strategy is not None:
            counts = self.strategy.reduce(counts.to(self.strategy.root_device), reduce_op="sum").cpu()
        rows, skipped = counts[:-1].tolist(), counts[-1].item()
        total = max(1.0, sum(rows))
        shares = {f"data/share/{stream}": count / total for stream, count in zip(STREAMS, rows, strict=True)}
        return {**shares, "data/skipped": skipped}


def _metric_name(output: str) -> str:
    return "train/loss" if output == "lm_loss" else f"train/{output}"


def resolve_precision(precision: str) -> str:
    """``auto``: bf16 mixed precision on a CUDA GPU that supports it, else full fp32."""
    if precision != "auto":
        return precision
    return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"


def sequence_length_problem(cfg: TrialConfig) -> str | None:
    """Why the longest training sample or few-shot prompt may not fit the decoder (``None`` when they fit)."""
    limit, num_tokens = cfg.model.decoder.preset().max_seq_len, cfg.model.tokens_per_image
    if cfg.data.seq_len is not None and cfg.data.seq_len > limit:
        return f"data.seq_len: {cfg.data.seq_len} exceeds the decoder's max_seq_len {limit}"
    training = max_sample_tokens(cfg.data.max_images, num_tokens)
    if cfg.data.seq_len is None and cfg.data.source == "synthetic" and training > limit:
        # Rows longer than the decoder are truncated (real data); the embedded world's should all fit.
        return f"data.max_images x connector.num_tokens: samples of up to {training} tokens exceed max_seq_len {limit}"
    prompt = max_prompt_tokens(max(cfg.eval.shots), num_tokens) + cfg.eval.max_new_tokens
    if prompt > limit:
        return f"eval.shots: a {max(cfg.eval.shots)}-shot prompt of up to {prompt} tokens exceeds max_seq_len {limit}"
    return None


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Runs with ``threads`` intra-op threads (if given), restoring the previous count afterwards."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silences Lightning's per-trial banners (GPU/TPU lines), its few-workers hint and a torch-2.13 pytree
    deprecation it triggers, restoring the logger level and warning filters afterwards."""
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*", category=FutureWarning)
            yield
    finally:
        logger.setLevel(level)


class PeriodicEvaluation(lightning.Callback):
    """Evaluates every ``eval.every_n_steps`` optimizer steps (not at the last: the final evaluation follows), so
    learning curves of the eval metrics exist and ASHA can stop on them. Its time is kept out of the training
    time (``seconds``)."""

    def __init__(self, cfg: TrialConfig, tokenizer: TextTokenizer, recorder: SinkCallback) -> None:
        self.cfg, self.tokenizer, self.recorder = cfg, tokenizer, recorder
        self.seconds = 0.0

    def on_train_batch_end(self, trainer: lightning.Trainer, module: lightning.LightningModule, *args: Any) -> None:
        every, step = self.cfg.eval.every_n_steps, trainer.global_step
        if every is None or step % every or step >= self.cfg.train.max_steps:
            return
        started = time.perf_counter()
        self.recorder.deliver()  # the steps so far first, so the sink sees them in order (on every rank: collective)
        if not trainer.is_global_zero:
            return  # rank 0 evaluates; the others wait for it at the next step's gradient all-reduce
        evaluation = evaluate(module.model, self.cfg, self.tokenizer, autocast=trainer.precision_plugin.forward_context)
        self.recorder.sink.log_metrics(evaluation.metrics, step=step)
        self.recorder.sink.flush()
        self.seconds += time.perf_counter() - started


class TrainingState(lightning.Callback):
    """Saves the whole training state (weights, optimizer, LR schedule, data position) to ``<dir>/last.ckpt``
    every ``train.checkpoint_every_n_steps`` steps, so a retried or re-run trial resumes where it stopped
    instead of paying again. Written atomically: a crash mid-save leaves the previous state intact."""

    FILE = "last.ckpt"

    def __init__(self, directory: Path, every_n_steps: int, max_steps: int, recorder: SinkCallback) -> None:
        self.path, self.every_n_steps, self.max_steps, self.recorder = (
            directory / self.FILE,
            every_n_steps,
            max_steps,
            recorder,
        )

    def resume_path(self) -> Path | None:
        return self.path if self.path.is_file() else None

    def on_train_batch_end(self, trainer: lightning.Trainer, module: lightning.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if step % self.every_n_steps or step >= self.max_steps:
            return
        self.recorder.deliver()  # every step up to the saved one reaches the sink before it can be skipped
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        # The full state (optimizer, data position too); every rank calls it (Lightning's barrier), rank 0 writes.
        trainer.save_checkpoint(partial, weights_only=False)
        if trainer.is_global_zero:
            os.replace(partial, self.path)

    def discard(self) -> None:
        """The trial finished: its final model is saved elsewhere, the resume state is not needed."""
        self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.path.parent.rmdir()


def resumed_step(path: Path) -> int:
    """The optimizer step a Lightning checkpoint was saved at."""
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def build_trainer(
    train: TrainConfig, callbacks: list[lightning.Callback], progress_bar: bool, parallel: DataParallel | None = None
) -> lightning.Trainer:
    """One device; or, with ``parallel``, this process's part of a DDP run (the data module shards the batches
    itself, so Lightning's distributed sampler stays off)."""
    placement: dict[str, Any] = {"devices": 1}
    if parallel is not None:
        placement = {"devices": "auto", "strategy": parallel.strategy, "plugins": parallel.plugins}
    trainer = lightning.Trainer(
        max_steps=train.max_steps,
        accelerator="auto",
        **placement,
        use_distributed_sampler=False,
        precision=resolve_precision(train.precision),  # type: ignore[arg-type]
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress_bar,
        callbacks=callbacks,
    )
    return parallel.prepare(trainer) if parallel is not None and parallel.prepare else trainer


def train_trial(
    cfg: TrialConfig,
    *,
    sink: MetricSink | None = None,
    progress_bar: bool = True,
    threads: int | None = None,
    checkpoint: str | Path | None = None,
    state_dir: str | Path | None = None,
    parallel: DataParallel | None = None,
) -> TrialResult:
    """Trains and evaluates one trial (see the module docstring for what ``sink`` receives); with
    ``checkpoint``, the trained model and its config are saved there (``mm1 eval`` reads it back). With
    ``state_dir``, the training state is saved there periodically and a trial whose state is there resumes from
    it (the sink then sees ``train/resumed_from_step`` once, and steps continue from that one). With ``parallel``,
    this process is one rank of a data-parallel run (module docstring)."""
    problem = sequence_length_problem(cfg)
    if problem:
        raise ValueError(problem)
    sink = sink or NullSink()
    with torch_threads(threads), quiet_lightning():
        lightning.seed_everything(cfg.train.seed, workers=True, verbose=False)
        tokenizer = build_tokenizer(cfg.data.tokenizer)
        module = MM1Module(build_model(cfg.model, tokenizer.vocab_size, image_token_id=tokenizer.image_id), cfg.train)
        recorder = SinkCallback(sink, cfg.train.log_every_n_steps)
        periodic = PeriodicEvaluation(cfg, tokenizer, recorder)
        callbacks: list[lightning.Callback] = [recorder, periodic]
        state = None
        if state_dir is not None and cfg.train.checkpoint_every_n_steps is not None:
            state = TrainingState(Path(state_dir), cfg.train.checkpoint_every_n_steps, cfg.train.max_steps, recorder)
            callbacks.append(state)
        resume = state.resume_path() if state else None  # every rank resumes from the same file
        trainer = build_trainer(cfg.train, callbacks, progress_bar, parallel)
        if resume is not None and trainer.is_global_zero:
            sink.log_metrics({"train/resumed_from_step": float(resumed_step(resume))}, step=resumed_step(resume))
        trainer.fit(module, datamodule=PretrainingData(cfg, tokenizer), ckpt_path=resume, weights_only=True)
        train_seconds = recorder.ended - recorder.started - periodic.seconds
        if not trainer.is_global_zero:  # the other ranks only train
            return TrialResult({}, len(recorder.losses), train_seconds, eval_seconds=0.0)
        eval_started = time.perf_counter()
        model = module.model.to(trainer.strategy.root_device)  # fit's teardown moved it to the CPU
        evaluation = evaluate(model, cfg, tokenizer, autocast=trainer.precision_plugin.forward_context)
        eval_seconds = time.perf_counter() - eval_started
        if checkpoint is not None:
            save_trial_checkpoint(checkpoint, cfg, model)
        if state is not None:
            state.discard()
    result = finish(cfg, sink, recorder, evaluation, eval_seconds, train_seconds)
    result.checkpoint = None if checkpoint is None else str(checkpoint)
    return result


def finish(
    cfg: TrialConfig,
    sink: MetricSink,
    recorder: SinkCallback,
    evaluation: Evaluation,
    eval_seconds: float,
    train_seconds: float,
) -> TrialResult:
    """Sends the final metrics to the sink and assembles the result."""
    steps = len(recorder.losses)
    final = {**evaluation.metrics, "perf/samples_per_s": steps * cfg.train.batch_size / train_seconds}
    sink.log_metrics(final, step=cfg.train.max_steps)
    sink.flush()
    last_interval = recorder.losses[-cfg.train.log_every_n_steps :]
    metrics = {"train/loss": sum(last_interval) / len(last_interval), **final}
    return TrialResult(metrics, steps, train_seconds, eval_seconds, evaluation.predictions)
