"""Running a sweep with Ray Tune: one Tune trial per ``Trial``, MLflow written by the driver.

Trials FINISHED in MLflow under the same sweep and ``trial_key`` are skipped, so a re-run (or
``--resume``) pays only for what is missing.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.tune import Callback

from mm1core.runnames import DRIVER, NODE_TAG, RESUMED, STOPPED_EARLY, TRIAL_KEY
from orchestrator.expand import Trial
from orchestrator.payload import (
    CHECKPOINT,
    CHECKPOINTS,
    ERROR,
    FINAL,
    HISTORY,
    NODE,
    PREDICTIONS,
    PROFILE,
    STEP,
    WORKER_GROUP,
)
from orchestrator.spec import SweepSpec
from orchestrator.tracking import Tracker
from orchestrator.trainable import tune_trial

Printer = Callable[[str], None]
RESUMED_METRIC = "train/resumed_from_step"  # what mm1core.train reports when a trial resumes from its state
STEPS_METRIC = "perf/steps"  # optimizer steps a trial ran (fewer than train.max_steps when stopped early)


@dataclass
class SweepOutcome:
    experiment_id: str
    parent_run_id: str
    ran_keys: set[str]
    skipped: int
    failed: list[str] = field(default_factory=list)  # labels of failed trials
    stopped: list[str] = field(default_factory=list)  # labels of trials the scheduler stopped early
    wall_seconds: float = 0.0
    concurrency: int | None = None  # trials at once (None: as many as resources allow)


def finished_keys(tracker: Tracker, experiment_id: str, sweep: str) -> set[str]:
    runs = tracker.trial_runs(experiment_id, sweep)
    return {run.data.tags.get(TRIAL_KEY, "") for run in runs if run.info.status == "FINISHED"}


class SweepBusy(RuntimeError):
    """The sweep's driver is alive on this machine: a second one would run the same trials twice."""


def driver_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def check_not_running(tracker: Tracker, experiment_id: str, sweep: str) -> None:
    """Refuses to start while another live driver on this host runs the sweep (its parent run says which)."""
    parent = tracker.sweep_run(experiment_id, sweep)
    if parent is None or parent.info.status != "RUNNING":
        return
    host, _, pid = parent.data.tags.get(DRIVER, "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and _alive(int(pid)):
        raise SweepBusy(f"sweep {sweep!r} is already running (driver pid {pid} on this machine); wait or stop it")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def earlier_attempts(tracker: Tracker, experiment_id: str, sweep: str, todo: list[Trial]) -> dict[str, Any]:
    """Runs left RUNNING by a dead driver end KILLED; then each unfinished trial's newest run (killed or failed),
    which its next attempt continues instead of opening a second run for the same trial."""
    runs = tracker.trial_runs(experiment_id, sweep)  # newest first
    if tracker.kill_orphans(runs, "the sweep's driver stopped before this trial ended"):
        runs = tracker.trial_runs(experiment_id, sweep)  # as they are now: KILLED, with the reason
    wanted = {trial.key for trial in todo}
    earlier: dict[str, Any] = {}
    for run in runs:
        key = run.data.tags.get(TRIAL_KEY, "")
        if key in wanted and key not in earlier:
            earlier[key] = run
    return earlier


def run_sweep(
    spec: SweepSpec,
    spec_text: str,
    trials: list[Trial],
    tracker: Tracker,
    *,
    address: str | None = None,
    max_concurrent: int | None = None,
    say: Printer = print,
) -> SweepOutcome:
    """Runs the trials not yet FINISHED in MLflow and returns what happened."""
    experiment_id = tracker.experiment_id(spec.experiment, description=spec.description)
    check_not_running(tracker, experiment_id, spec.name)
    done = finished_keys(tracker, experiment_id, spec.name)
    todo = [trial for trial in trials if trial.key not in done]
    outcome = SweepOutcome(experiment_id, "", {t.key for t in todo}, skipped=len(trials) - len(todo))
    if outcome.skipped:
        say(f"{outcome.skipped} of {len(trials)} trials already FINISHED in MLflow: not run again")
    if todo:
        _start_ray(address)  # before the sweep's run is touched: an unreachable cluster writes nothing
    plan = [{"index": t.index, "trial_key": t.key, **t.varied} for t in trials]
    outcome.parent_run_id = parent = tracker.start_sweep_run(experiment_id, spec.name, spec_text, plan)
    tracker.client.set_tag(parent, DRIVER, driver_id())
    earlier = earlier_attempts(tracker, experiment_id, spec.name, todo)
    if not todo:
        say("nothing to run: every trial of this sweep has finished")
        tracker.end_run(parent, "FINISHED")
        return outcome
    started = time.perf_counter()
    logger = TrialLogger(tracker, experiment_id, parent, spec.name, {t.key: t for t in todo}, len(trials), say)
    logger.earlier = earlier
    resumed = [t.label for t in todo if t.key in earlier]
    if resumed:
        say(f"{len(resumed)} unfinished trial(s) continue their earlier MLflow run: {', '.join(resumed)}")
    completed = False
    try:
        outcome.concurrency = max_concurrent or spec.max_concurrent
        _fit(spec, todo, logger, max_concurrent=outcome.concurrency)
        completed = True
    finally:
        logger.close_open_runs()
        outcome.wall_seconds = time.perf_counter() - started
        outcome.failed, outcome.stopped = logger.failed, logger.stopped
        clean = completed and not logger.failed and not logger.open_at_exit
        tracker.end_run(parent, "FINISHED" if clean else "FAILED")
    return outcome


def _start_ray(address: str | None) -> None:
    """Starts a local Ray instance, or joins the cluster at ``address`` (``auto``: the running one)."""
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # our callback is the only logger
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0, no Tune tables: we print our own progress
    # A scheduler's eval metric is in the periodic-evaluation results only; the others carry train metrics, which
    # ASHA skips. (Validation made sure every trial reports the metric: orchestrator.expand.scheduler_metrics.)
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    if address is None:
        # Ray gives a cluster it starts itself token authentication, and logs a warning saying so on every run: that
        # cluster is this process's own, with nothing for the user to act on. (Setting RAY_AUTH_MODE here instead
        # would not do: Ray read its config when ray.tune was imported, and its GCS would then start without a token.)
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    import ray

    if address is not None:
        _check_joinable(address)
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise RayUnavailable(f"cannot start or join Ray at {address or 'a local instance'}: {first_line}") from None
    # Tune's own result files are off (our callback logs to MLflow), so its read-back would warn for nothing.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)


AUTH_MODE, AUTH_TOKEN = "RAY_AUTH_MODE", "RAY_AUTH_TOKEN"  # how Ray 2.60 takes a cluster's token (or ~/.ray/auth_token)
PROBE_TIMEOUT_MS = 5000  # Ray's client gives up on an address where nothing answers after about 11 s all the same


def _check_joinable(address: str) -> None:
    """Asks the cluster at ``HOST:PORT`` once (under a second) whether it lets this process in. Otherwise a cluster
    with token authentication makes ``ray.init`` retry for 20 s, logging ``InvalidAuthToken`` each time, and end in
    "Failed to connect", which does not say why; an address where nothing answers fails here too, after Ray's one
    connection timeout (about 11 s), instead of minutes of retries. ``auto`` and ``ray://`` addresses go to
    ``ray.init`` as they are."""
    if "://" in address or ":" not in address:
        return
    if os.environ.get(AUTH_MODE, "").lower() == "token" and not _token_at_hand():
        raise RayUnavailable(
            f"cannot join Ray at {address}: {AUTH_MODE}=token is set but no token is: set {AUTH_TOKEN} to the "
            "cluster's token (`ray get-auth-token` on its head node prints it)"
        )
    # In a child process: Ray's C++ client may end the process it runs in (a GCS that is still starting, and now and
    # then on a busy machine), and it logs its failure on stderr, which our one line replaces. Such an ending is no
    # answer: asked again, up to PROBE_TRIES times.
    for _ in range(PROBE_TRIES):
        verdict, detail, ended = _probe(address)
        if verdict == "auth":
            raise RayUnavailable(f"cannot join Ray at {address}: {_token_advice()}")
        if verdict == "rpc":
            raise RayUnavailable(f"cannot start or join Ray at {address}: {detail}")
        if verdict in ("ok", "no-client"):
            return
        time.sleep(1.0)
    raise RayUnavailable(f"cannot start or join Ray at {address}: the cluster's GCS did not answer ({ended})")


PROBE_TRIES = 3


def _probe(address: str) -> tuple[str, str, str]:
    """One ``_PROBE`` of ``address`` in a child process: its verdict, detail, and how it ended."""
    try:
        probe = subprocess.run(
            [sys.executable, "-c", _PROBE, address, str(PROBE_TIMEOUT_MS)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "", "", "no answer within 60 s"
    verdict, _, detail = probe.stdout.strip().partition(" ")
    last = (probe.stderr.strip().splitlines() or [""])[-1][-200:]
    return (
        verdict,
        detail,
        f"the probe ended with exit code {probe.returncode}: {last}" if last else f"exit {probe.returncode}",
    )


# Asks the GCS at argv[1] once with Ray's own client (private API, Ray 2.60; a Ray without it joins as before).
_PROBE = """
import sys
try:
    from ray._raylet import InnerGcsClient
    from ray.exceptions import AuthenticationError, RpcError
except ImportError:
    print("no-client"); sys.exit(0)
try:
    InnerGcsClient.standalone(sys.argv[1], None, int(sys.argv[2]))
except AuthenticationError:
    print("auth")
except RpcError as exc:
    print("rpc", (str(exc).strip().splitlines() or [""])[0])
else:
    print("ok")
"""


def _token_at_hand() -> bool:
    """Whether Ray has a token to send: ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``."""
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return bool(os.environ.get(AUTH_TOKEN)) or Path(path or Path.home() / ".ray" / "auth_token").is_file()


def _token_advice() -> str:
    if os.environ.get(AUTH_MODE, "").lower() == "token":
        return (
            f"the cluster refuses this process's auth token: set {AUTH_TOKEN} to the cluster's (`ray get-auth-token` "
            "on its head node prints it)"
        )
    return (
        f"the cluster uses token authentication and needs its auth token: set {AUTH_MODE}=token and {AUTH_TOKEN} "
        "to the cluster's token (`ray get-auth-token` on its head node prints it)"
    )


class RayUnavailable(RuntimeError):
    """Ray could not be started or joined."""


def _fit(spec: SweepSpec, todo: list[Trial], logger: Any, *, max_concurrent: int | None) -> None:
    import ray
    from ray import tune

    from orchestrator.distributed import concurrent_trials, trial_resources

    try:
        payloads = [_payload(spec, trial) for trial in start_order(spec, todo)]
        tuner = tune.Tuner(
            tune.with_resources(tune_trial, trial_resources(spec.resources)),
            param_space={"trial_payload": tune.grid_search(payloads)},
            tune_config=tune.TuneConfig(
                max_concurrent_trials=concurrent_trials(spec.resources, ray.cluster_resources(), max_concurrent),
                # One worker start-up (torch, lightning imports) serves many trials; a data-parallel trial's Tune
                # function only relays, and a fresh one per trial keeps no worker group alive between trials.
                reuse_actors=spec.resources.workers_per_trial == 1,
                trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}",
                scheduler=_scheduler(spec, todo),
            ),
            run_config=tune.RunConfig(
                name=f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                storage_path=str(Path.cwd() / ".mm1" / "ray_results"),
                failure_config=tune.FailureConfig(
                    max_failures=spec.failure.max_retries, fail_fast=spec.failure.fail_fast
                ),
                callbacks=[logger],
                verbose=0,
            ),
        )
        tuner.fit()
    finally:
        ray.shutdown()


def start_order(spec: SweepSpec, todo: list[Trial]) -> list[Trial]:
    """The order trials start in: the plan's, or for an early-stopping scheduler with ``shuffle`` a shuffle seeded by
    the sweep's name (the same on every run of the sweep)."""
    if spec.scheduler.type == "fifo" or not spec.scheduler.shuffle:
        return todo
    order = list(todo)
    random.Random(spec.name).shuffle(order)
    return order


def _payload(spec: SweepSpec, trial: Trial) -> dict[str, Any]:
    """What one Tune trial gets (``orchestrator.trainable.tune_trial`` documents the keys)."""
    checkpoints = Path.cwd() / ".mm1" / "checkpoints" / spec.name
    resources = spec.resources
    payload = {
        "trial": trial.config.model_dump(mode="json"),
        "threads": max(1, int(resources.cpus_per_trial)),
        "key": trial.key,
        "checkpoint": str(checkpoints / f"{trial.key}.pt"),
        "state_dir": str(checkpoints / trial.key),  # resume state while the trial runs (retries, re-runs)
    }
    if resources.workers_per_trial > 1:
        payload.update(
            workers=resources.workers_per_trial,
            cpus_per_worker=resources.cpus_per_trial,
            gpus_per_worker=resources.gpus_per_trial,
        )
    return payload


def _scheduler(spec: SweepSpec, todo: list[Trial]) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if spec.scheduler.type == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr=STEP,
        metric=spec.scheduler.metric,
        mode=spec.scheduler.mode,
        grace_period=spec.scheduler.grace_steps,
        reduction_factor=spec.scheduler.reduction_factor,
        max_t=max(t.config.train.max_steps for t in todo),
        stop_last_trials=False,  # a trial reaching max_t still reports its final evaluation
    )


class TrialLogger(Callback):
    """Tune callback in the driver: creates each trial's MLflow child run and streams its results there."""

    def __init__(
        self,
        tracker: Tracker,
        experiment_id: str,
        parent_id: str,
        sweep: str,
        trials: dict[str, Trial],
        total: int,
        say: Printer,
    ) -> None:
        self.tracker, self.experiment_id, self.parent_id, self.sweep = tracker, experiment_id, parent_id, sweep
        self.trials, self.total, self.say = trials, total, say
        self.run_ids: dict[str, str] = {}  # tune trial id -> MLflow run id
        self.last_said: dict[str, float] = {}
        self.final_seen: set[str] = set()
        self.errors: dict[str, str] = {}  # tune trial id -> the error the trial reported
        self.earlier: dict[str, Any] = {}  # trial_key -> an unfinished run of an earlier attempt, to continue
        self.placed: set[str] = set()  # tune trial ids whose node is tagged
        self.worker_groups: dict[str, str] = {}  # tune trial id -> its data-parallel workers' placement group
        self.steps: dict[str, int] = {}  # tune trial id -> the last training step it reported
        self.failed: list[str] = []
        self.stopped: list[str] = []  # labels of trials the scheduler stopped early
        self.open_at_exit = 0

    def _trial(self, tune_trial: Any) -> Trial:
        return self.trials[tune_trial.config["trial_payload"]["key"]]

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        ours = self._trial(trial)
        self.placed.discard(trial.trial_id)  # a retry may land on another node
        if trial.trial_id in self.run_ids:  # a retry in this sweep: the same run goes on
            run_id = self.run_ids[trial.trial_id]
            self.tracker.reopen_trial_run(self.tracker.client.get_run(run_id))
        elif ours.key in self.earlier:  # an attempt of an earlier, interrupted or failed, sweep run
            self.run_ids[trial.trial_id] = self.tracker.reopen_trial_run(self.earlier.pop(ours.key))
        else:
            self.run_ids[trial.trial_id] = self.tracker.start_trial_run(
                self.experiment_id, self.parent_id, self.sweep, ours
            )
        self.say(f"{_now()} start   [{ours.index + 1}/{self.total}] {ours.label}  (trial_key {ours.key})")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        run_id = self.run_ids[trial.trial_id]
        if result.get(ERROR):
            self.errors[trial.trial_id] = str(result[ERROR])
        if result.get(WORKER_GROUP):
            self.worker_groups[trial.trial_id] = str(result[WORKER_GROUP])
        if result.get(NODE) and trial.trial_id not in self.placed:
            self.placed.add(trial.trial_id)
            self.tracker.client.set_tag(run_id, NODE_TAG, str(result[NODE]))
        history = [(int(step), values) for step, values in result.get(HISTORY, [])]
        if history:
            self.steps[trial.trial_id] = max(self.steps.get(trial.trial_id, 0), max(step for step, _ in history))
        for step, values in history:
            if RESUMED_METRIC in values:
                self.tracker.client.set_tag(run_id, RESUMED, str(step))
                self.say(f"{_now()} resume  [{self._trial(trial).index + 1}/{self.total}] from step {step}")
        if result.get(FINAL):
            self.final_seen.add(trial.trial_id)
            perf = {k: v for k, v in result.items() if k.startswith("perf/") and isinstance(v, (int, float))}
            history.append((int(result[STEP]), perf))
            outputs = result.get(CHECKPOINT), result.get(PREDICTIONS) or [], result.get(PROFILE)
            self.tracker.log_outputs(run_id, *outputs, checkpoints=json.loads(result.get(CHECKPOINTS) or "{}"))
        self.tracker.log_history(run_id, history)
        self._progress(trial, result)

    def _progress(self, trial: Any, result: dict) -> None:
        now = time.monotonic()
        if result.get(FINAL) or result.get(ERROR) or now - self.last_said.get(trial.trial_id, 0.0) < 15:
            return
        self.last_said[trial.trial_id] = now
        ours = self._trial(trial)
        loss = result.get("train/loss")
        loss_text = f"train/loss {loss:.3f}" if isinstance(loss, float) else ""
        self.say(
            f"{_now()} running [{ours.index + 1}/{self.total}] {ours.label}  step {result.get(STEP)}"
            f"/{ours.config.train.max_steps}  {loss_text}"
        )

    def release_workers(self, trial: Any) -> None:
        """Removes a data-parallel trial's worker group, which outlives a trial the scheduler stopped."""
        group = self.worker_groups.pop(trial.trial_id, None)
        if group:
            from orchestrator.distributed import release_workers

            release_workers(group)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.release_workers(trial)
        run_id = self.run_ids.pop(trial.trial_id)
        ours = self._trial(trial)
        steps = self.steps.pop(trial.trial_id, 0)
        if trial.trial_id not in self.final_seen:  # stopped early by the scheduler
            self.tracker.client.set_tag(run_id, STOPPED_EARLY, "true")
            self.stopped.append(ours.label)
        self.tracker.log_history(run_id, [(steps, {STEPS_METRIC: float(steps)})])  # the compute it used
        self.tracker.end_run(run_id, "FINISHED")
        if trial.trial_id in self.final_seen:
            self.say(f"{_now()} done    [{ours.index + 1}/{self.total}] {ours.label}")
        else:
            self.say(f"{_now()} stopped [{ours.index + 1}/{self.total}] {ours.label} at step {steps} by the scheduler")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._fail(trial, retrying=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._fail(trial, retrying=False)

    def _fail(self, trial: Any, retrying: bool) -> None:
        self.release_workers(trial)
        run_id = self.run_ids.get(trial.trial_id) if retrying else self.run_ids.pop(trial.trial_id, None)
        ours = self._trial(trial)
        error = self.errors.pop(trial.trial_id, None) or _error_text(trial)
        if run_id:
            self.tracker.end_run(run_id, "FAILED", error)
        if not retrying:
            self.failed.append(ours.label)
        self.say(
            f"{_now()} {'retry ' if retrying else 'FAILED'}  [{ours.index + 1}/{self.total}] {ours.label}: {error}"
        )

    def close_open_runs(self) -> None:
        """Runs still open when Tune returns (interrupted sweep) end KILLED."""
        self.open_at_exit = len(self.run_ids)
        for run_id in self.run_ids.values():
            self.tracker.end_run(run_id, "KILLED", "the sweep stopped before this trial ended")
        self.run_ids.clear()


def _error_text(trial: Any) -> str:
    """The trial's exception as one line (``Type: message``), unwrapped from Ray's wrappers."""
    error: Any = None
    try:
        error = trial.get_pickled_error() or trial.get_error()
    except Exception:  # noqa: BLE001 - the error file may be gone; the status still says FAILED
        pass
    cause = getattr(error, "cause", None) or error
    if cause is None:
        return "trial failed (no error recorded by Ray)"
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1] if text else ''}".strip()


def _now() -> str:
    return time.strftime("%H:%M:%S")
