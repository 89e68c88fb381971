"""One trial: build data and model from a ``TrialConfig``, fit with Lightning, evaluate, return the metrics.

``train_trial`` is the only entry point the orchestrator calls (``mm1 train``, the Ray trainable); it never
touches Ray or MLflow. Metrics go to a ``MetricSink``: ``train/loss`` and ``train/lr`` for every optimizer step
(``step`` counts steps from 1: the metrics of the s-th step carry ``step=s``), delivered in bursts every
``train.log_every_n_steps`` steps and at the end, each burst followed by ``flush()`` (one device sync per
burst, not per step); then the eval metrics and ``perf/samples_per_s`` with ``step=max_steps``, and ``flush()``.
Several trials can run one after another in one process: seeds are reset and thread counts restored.

Performance switches (``train.*``, left out of the trial key): ``precision: auto`` trains in bf16 mixed precision on
a CUDA GPU with bf16, else in fp32; ``compile`` compiles the encoder, connector and decoder with ``torch.compile``
for training (in place: checkpoints keep their parameter names; evaluation runs eagerly); ``profile`` records a
PyTorch profiler trace of a few training steps into ``profile_dir`` (``TrialResult.profile``). Nothing in a training
step reads a device value back to the host: losses, the data mixture and the non-finite-loss check on an accelerator
are read once per burst.

Data-parallel (``parallel``: the Lightning strategy and plugins a launcher such as ``orchestrator.distributed``
sets up; this module never imports one): every rank calls ``train_trial`` with the same config; ``train.batch_size``
is the global batch, each rank trains on its slice of it (``mm1core.data.datamodule``). Rank 0 alone reports to its
sink (the ranks' values averaged, their data counts summed, one collective per burst), evaluates, saves the model and
the resume state; the other ranks train, then return an empty result.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import lightning
import torch

from mm1core.checkpoint import load_initial_weights, save_trial_checkpoint
from mm1core.config import TrainConfig, TrialConfig
from mm1core.data.records import STREAMS
from mm1core.data.tokenizer import TextTokenizer, build_tokenizer
from mm1core.evaluate.harness import Evaluation, evaluate, evaluate_loss
from mm1core.model import MM1Model, build_model
from mm1core.module import MM1Module, NonFiniteLoss
from mm1core.stages import STAGES


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
    checkpoints: dict[int, str] = field(default_factory=dict)  # train.save_at_steps: step -> the model saved there
    profile: str | None = None  # the Chrome trace JSON of a few training steps (train.profile), rank 0's


class SinkCallback(lightning.Callback):
    """Buffers each step's detached losses and learning rate; delivers them to the sink in bursts.

    With each burst go the realised data mixture so far (``data/share/<stream>``) and ``data/skipped``.
    ``train/loss`` is the next-token loss (comparable between dense and MoE trials); a MoE decoder adds
    ``train/moe_load_balance``, ``train/moe_router_z``, ``train/moe_dropped_frac`` and the least and most used
    experts' shares of the routed tokens (``train/moe_expert_share_min``/``_max``; 1/num_experts when even).

    A burst holding a non-finite training loss delivers the steps before it, then raises ``NonFiniteLoss`` naming
    the first bad step (on an accelerator this replaces ``MM1Module``'s per-step check, which would sync).
    """

    def __init__(self, sink: MetricSink, every_n_steps: int, mixture: bool = True) -> None:
        self.sink, self.every_n_steps = sink, every_n_steps
        self.mixture = mixture  # pre-training rows come from the streams of a mixture; SFT rows from none
        # (step, values on device, the optimised loss on device, lr)
        self.pending: list[tuple[int, dict[str, torch.Tensor], torch.Tensor, float]] = []
        self.pending_counts: list[torch.Tensor] = []  # per step, on device: rows of each stream, then skipped
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
        self.pending.append((trainer.global_step, values, outputs["loss"].detach(), self.step_lr))
        self.pending_counts.append(batch_counts(args[0]))
        if len(self.pending) >= self.every_n_steps:
            self.deliver()

    def on_train_end(self, trainer: lightning.Trainer, module: lightning.LightningModule) -> None:
        self.deliver()  # its device sync also makes the timing honest
        self.ended = time.perf_counter()

    def deliver(self) -> None:
        if not self.pending:
            return
        names = list(self.pending[0][1])
        stacked = torch.stack(
            [torch.stack([*(values[n] for n in names), loss]) for _, values, loss, _ in self.pending]
        ).float()  # (steps, names + 1)
        if self.strategy is not None:  # every rank delivers at the same steps: this collective pairs up
            stacked = self.strategy.reduce(stacked, reduce_op="mean")  # the loss is already the batch's on each
        rows = stacked.cpu().tolist()  # one device sync
        counts = torch.stack(self.pending_counts).sum(0).cpu()  # (streams + 1,)
        self.rows += counts[:-1]
        self.skipped += int(counts[-1])
        pending, self.pending, self.pending_counts = self.pending, [], []
        for (step, _, _, lr), (*row, loss) in zip(pending, rows, strict=True):
            check = loss + row[names.index("lm_loss")]  # as MM1Module's
            if not math.isfinite(check):  # the steps before it are delivered, this one never is
                self.sink.flush()
                raise NonFiniteLoss.at(check, step)
            metrics = {_metric_name(name): value for name, value in zip(names, row, strict=True)}
            self.sink.log_metrics({**metrics, "train/lr": lr}, step=step)
            self.losses.append(metrics["train/loss"])
        self.sink.log_metrics(self.data_metrics(), step=pending[-1][0])
        self.sink.flush()

    def data_metrics(self) -> dict[str, float]:
        """The realised mixture so far (``data/share/<stream>``, rows of each stream / rows) and ``data/skipped``,
        counted over every data-parallel rank."""
        counts = torch.cat([self.rows, torch.tensor([self.skipped])]).double()  # (streams + 1,)
        if self.strategy is not None:
            counts = self.strategy.reduce(counts.to(self.strategy.root_device), reduce_op="sum").cpu()
        rows, skipped = counts[:-1].tolist(), counts[-1].item()
        if not self.mixture:
            return {"data/skipped": skipped}
        total = max(1.0, sum(rows))
        shares = {f"data/share/{stream}": count / total for stream, count in zip(STREAMS, rows, strict=True)}
        return {**shares, "data/skipped": skipped}


def batch_counts(batch: Any) -> torch.Tensor:
    """``(streams + 1,)`` on the batch's device: its rows of each stream, then its skipped records. Computed
    without reading anything back (``bincount`` on a GPU would sync to size its output)."""
    streams = batch["streams"]  # (B,); -1 (an SFT row) counts in no stream
    rows = (streams[:, None] == torch.arange(len(STREAMS), device=streams.device)).sum(0)  # (streams,)
    return torch.cat([rows, batch["skipped"].sum().reshape(1).to(rows.dtype)])


def _metric_name(output: str) -> str:
    return "train/loss" if output == "lm_loss" else f"train/{output}"


def resolve_precision(precision: str) -> str:
    """``auto``: bf16 mixed precision on a CUDA GPU that supports it, else full fp32."""
    if precision != "auto":
        return precision
    return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"


def compile_model(model: MM1Model, backend: str = "inductor") -> None:
    """``torch.compile`` the encoder, connector and decoder in place (``nn.Module.compile``: the parameters keep
    their names, so checkpoints and resume states are those of the eager model). The splice between them reads
    the image-token count back (a graph break), so it stays eager."""
    for part in (model.encoder, model.connector, model.decoder):
        part.compile(backend=backend)


def eager_evaluate(model: MM1Model, cfg: TrialConfig, tokenizer: TextTokenizer, autocast: Any) -> Evaluation:
    """``evaluate`` with any compiled part run eagerly: generation's growing KV cache would recompile each step."""
    with torch.compiler.set_stance("force_eager"):
        return evaluate(model, cfg, tokenizer, autocast=autocast)


def profile_schedule(steps: int, wait: int = 2, warmup: int = 1, active: int = 3) -> tuple[int, int, int]:
    """``(wait, warmup, active)`` steps of the profiler, shrunk to fit ``steps``: the active steps first, then the
    warm-up, then the skipped first steps (which hold one-off costs: compilation, allocator growth)."""
    active = min(active, steps)
    warmup = min(warmup, steps - active)
    return min(wait, steps - active - warmup), warmup, active


class StepProfiler(lightning.Callback):
    """Runs ``torch.profiler`` over the training steps (CPU activity, and CUDA kernels when there is a GPU) on the
    ``profile_schedule`` and writes the recorded steps as a Chrome trace (``chrome://tracing``, Perfetto) to
    ``<directory>/trace.json``; rank 0 only."""

    FILE = "trace.json"

    def __init__(self, directory: Path) -> None:
        self.path = directory / self.FILE
        self.profiler: torch.profiler.profile | None = None
        self.written: Path | None = None

    def on_train_start(self, trainer: lightning.Trainer, module: lightning.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        wait, warmup, active = profile_schedule(trainer.max_steps - trainer.global_step)
        activities = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        self.profiler = torch.profiler.profile(
            activities=activities,
            schedule=torch.profiler.schedule(wait=wait, warmup=warmup, active=active, repeat=1),
            on_trace_ready=self.export,
        )
        self.profiler.start()

    def on_train_batch_end(self, trainer: lightning.Trainer, module: lightning.LightningModule, *args: Any) -> None:
        if self.profiler is not None:
            self.profiler.step()

    def on_train_end(self, trainer: lightning.Trainer, module: lightning.LightningModule) -> None:
        self.close()

    def on_exception(self, trainer: lightning.Trainer, module: lightning.LightningModule, error: BaseException) -> None:
        self.close()

    def close(self) -> None:
        """Stops the profiler (writing the trace if the active steps were cut short)."""
        if self.profiler is not None:
            profiler, self.profiler = self.profiler, None
            profiler.stop()

    def export(self, profiler: torch.profiler.profile) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        profiler.export_chrome_trace(str(self.path))
        self.written = self.path


def profile_directory(profile_dir: str | Path | None, checkpoint: str | Path | None) -> Path:
    """Where a profiled trial writes its trace: ``profile_dir``; else beside the checkpoint, ``<checkpoint
    without suffix>-profile/`` (``.mm1/checkpoints/<sweep>/<key>-profile/``); else a fresh temporary folder."""
    if profile_dir is not None:
        return Path(profile_dir)
    if checkpoint is not None:
        path = Path(checkpoint)
        return path.with_name(f"{path.stem}-profile")
    return Path(tempfile.mkdtemp(prefix="mm1-profile-"))


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
    learning curves of the eval metrics exist and ASHA can stop on them; ``eval.periodic: loss`` evaluates the
    held-out loss alone. Its time is kept out of the training
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
        autocast = trainer.precision_plugin.forward_context
        if self.cfg.eval.periodic == "loss":  # the held-out loss alone: a fraction of a second
            with torch.compiler.set_stance("force_eager"):
                evaluation = evaluate_loss(module.model, self.cfg, self.tokenizer, autocast=autocast)
        else:
            evaluation = eager_evaluate(module.model, self.cfg, self.tokenizer, autocast)
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


class StepCheckpoints(lightning.Callback):
    """Saves the model (as ``save_trial_checkpoint``: config and weights) after each step of ``train.save_at_steps``
    to ``<checkpoint without suffix>-step<N>.pt``, so another trial can start from it (``train.init_from`` with
    ``step: N``, MM1 Fig. 7c); rank 0 writes. The last step's model is the trial's own checkpoint."""

    def __init__(self, cfg: TrialConfig, checkpoint: Path) -> None:
        self.cfg, self.checkpoint = cfg, checkpoint
        self.steps = {step for step in cfg.train.save_at_steps if step < cfg.train.max_steps}

    def path(self, step: int) -> Path:
        return step_checkpoint_path(self.checkpoint, step)

    def on_train_batch_end(self, trainer: lightning.Trainer, module: lightning.LightningModule, *args: Any) -> None:
        if trainer.global_step in self.steps and trainer.is_global_zero:
            save_trial_checkpoint(self.path(trainer.global_step), self.cfg, module.model)

    def saved(self) -> dict[int, str]:
        """Every step checkpoint on disk (a resumed trial's earlier ones included), and the last step's."""
        saved = {step: str(self.path(step)) for step in sorted(self.steps) if self.path(step).is_file()}
        return {**saved, self.cfg.train.max_steps: str(self.checkpoint)}


def step_checkpoint_path(checkpoint: str | Path, step: int) -> Path:
    """Where ``train.save_at_steps`` puts the model of ``step``: beside the trial's checkpoint."""
    path = Path(checkpoint)
    return path.with_name(f"{path.stem}-step{step}{path.suffix}")


def initial_model(cfg: TrialConfig, tokenizer: TextTokenizer) -> MM1Model:
    """The trial's model: fresh (or with encoder/decoder checkpoints), then ``train.init_from``'s weights on top."""
    model = build_model(cfg.model, tokenizer.vocab_size, image_token_id=tokenizer.image_id)
    source = cfg.train.init_from
    if source is not None:
        if source.path is None:
            raise ValueError(
                f"train.init_from: sweep {source.sweep!r} is a reference that `mm1 sweep` resolves; "
                "`mm1 train` needs a checkpoint path"
            )
        load_initial_weights(model, source.path)
    return model


def training_data(cfg: TrialConfig, tokenizer: TextTokenizer) -> lightning.LightningDataModule:
    """The stage's data module (``mm1core.stages``): the pre-training mixture, SFT conversations, ..."""
    return STAGES.get(cfg.train.stage).load("data")(cfg, tokenizer)


def resumed_step(path: Path) -> int:
    """The optimizer step a Lightning checkpoint was saved at."""
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


class StepProgressBar(lightning.pytorch.callbacks.TQDMProgressBar):
    """The training bar in optimizer steps, ``step 120/300``: a trial runs ``max_steps`` in one endless epoch
    (``max_epochs=-1``), so Lightning's own bars, which count batches per epoch, read ``Epoch 0/-2``."""

    def on_train_epoch_start(self, trainer: lightning.Trainer, *_: Any) -> None:
        self.train_progress_bar.reset(total=trainer.max_steps)  # not super's: it counts this epoch's batches
        self._show(trainer)

    def on_train_batch_end(self, trainer: lightning.Trainer, pl_module: lightning.LightningModule, *_: Any) -> None:
        step = trainer.global_step
        if self.refresh_rate and (step % self.refresh_rate == 0 or step == trainer.max_steps):
            self._show(trainer)
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))

    def _show(self, trainer: lightning.Trainer) -> None:
        bar = self.train_progress_bar
        bar.n = trainer.global_step  # a resumed trial starts at its saved step
        bar.set_description(f"step {trainer.global_step}/{trainer.max_steps}", refresh=False)
        bar.refresh()


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
        callbacks=[*callbacks, StepProgressBar()] if progress_bar else callbacks,
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
    profile_dir: str | Path | None = None,
) -> TrialResult:
    """Trains and evaluates one trial (see the module docstring for what ``sink`` receives); with
    ``checkpoint``, the trained model and its config are saved there (``mm1 eval`` reads it back). With
    ``state_dir``, the training state is saved there periodically and a trial whose state is there resumes from
    it (the sink then sees ``train/resumed_from_step`` once, and steps continue from that one). With ``parallel``,
    this process is one rank of a data-parallel run (module docstring). With ``train.profile``, the trace goes to
    ``profile_dir`` (default: ``profile_directory``) and ``TrialResult.profile`` names the file."""
    sink = sink or NullSink()
    with torch_threads(threads), quiet_lightning():
        lightning.seed_everything(cfg.train.seed, workers=True, verbose=False)
        tokenizer = build_tokenizer(cfg.data.tokenizer)
        module = MM1Module(initial_model(cfg, tokenizer), cfg.train)
        if cfg.train.compile:
            compile_model(module.model)
        recorder = SinkCallback(sink, cfg.train.log_every_n_steps, mixture=STAGES.get(cfg.train.stage).logs_mixture)
        periodic = PeriodicEvaluation(cfg, tokenizer, recorder)
        callbacks: list[lightning.Callback] = [recorder, periodic]
        state = None
        if state_dir is not None and cfg.train.checkpoint_every_n_steps is not None:
            state = TrainingState(Path(state_dir), cfg.train.checkpoint_every_n_steps, cfg.train.max_steps, recorder)
            callbacks.append(state)
        profiler = StepProfiler(profile_directory(profile_dir, checkpoint)) if cfg.train.profile else None
        callbacks += [profiler] if profiler else []
        saver = StepCheckpoints(cfg, Path(checkpoint)) if checkpoint is not None and cfg.train.save_at_steps else None
        callbacks += [saver] if saver else []
        resume = state.resume_path() if state else None  # every rank resumes from the same file
        trainer = build_trainer(cfg.train, callbacks, progress_bar, parallel)
        if resume is not None and trainer.is_global_zero:
            sink.log_metrics({"train/resumed_from_step": float(resumed_step(resume))}, step=resumed_step(resume))
        trainer.fit(module, datamodule=training_data(cfg, tokenizer), ckpt_path=resume, weights_only=True)
        train_seconds = recorder.ended - recorder.started - periodic.seconds
        if not trainer.is_global_zero:  # the other ranks only train
            return TrialResult({}, len(recorder.losses), train_seconds, eval_seconds=0.0)
        eval_started = time.perf_counter()
        model = module.model.to(trainer.strategy.root_device)  # fit's teardown moved it to the CPU
        evaluation = eager_evaluate(model, cfg, tokenizer, trainer.precision_plugin.forward_context)
        eval_seconds = time.perf_counter() - eval_started
        if checkpoint is not None:
            save_trial_checkpoint(checkpoint, cfg, model)
        if state is not None:
            state.discard()
    result = finish(cfg, sink, recorder, evaluation, eval_seconds, train_seconds)
    result.checkpoint = None if checkpoint is None else str(checkpoint)
    result.checkpoints = saver.saved() if saver else {}
    result.profile = str(profiler.written) if profiler and profiler.written else None
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
