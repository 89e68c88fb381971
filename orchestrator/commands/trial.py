"""``mm1 train TRIAL.yaml`` and ``mm1 eval CHECKPOINT`` (DESIGN.md, "CLI"): one trial, no Ray.

``train`` logs to MLflow straight from this process (one run, no parent); ``eval`` scores a saved checkpoint
again. Torch and Lightning are imported inside the verbs.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mm1core.cli_common import EXIT_OK, BadInput, add_tracking_option, positive_int, resolve_tracking_uri
from mm1core.runnames import ROLE, TRIAL_KEY, TRIAL_ROLE
from orchestrator.commands.sweep import add_set_option, where_to_look

TRIAL_SET_HELP = (
    "set one value of the trial, a YAML scalar (or list, mapping) at a dotted path into the trial config "
    "(train.lr=3e-4); repeatable, applied over the file"
)


def add_commands(verbs: argparse._SubParsersAction) -> None:
    train = verbs.add_parser("train", help="train and evaluate one trial config, without Ray")
    train.add_argument("trial")
    add_tracking_option(train)
    train.add_argument("--experiment", default="mm1")
    train.add_argument("--checkpoint", default=None, help="where to save the model (default .mm1/checkpoints/KEY.pt)")
    add_set_option(train, TRIAL_SET_HELP)
    train.set_defaults(func=cmd_train)

    evaluation = verbs.add_parser("eval", help="evaluate a saved trial checkpoint alone")
    evaluation.add_argument("checkpoint")
    evaluation.add_argument("--tasks", nargs="+", default=None, help="embedded task names (default: the trial's)")
    evaluation.add_argument("--shots", nargs="+", type=int, default=None)
    evaluation.add_argument("--num-examples", type=positive_int, default=None)
    evaluation.add_argument("--json", action="store_true")
    evaluation.set_defaults(func=cmd_eval)


def cmd_train(args: argparse.Namespace) -> int:
    given = load_trial(args.trial, args.sets)
    if given.train.init_from is not None and given.train.init_from.sweep is not None:
        raise BadInput(
            f"{args.trial}: train.init_from.sweep: `mm1 train` starts from a checkpoint path; references to a "
            "sweep's trials are resolved by `mm1 sweep run`"
        )
    check_trial(args.trial, given)
    config = given.resolved()
    from orchestrator.expand import derived_values
    from orchestrator.tracking import MlflowSink, Tracker, trial_params

    tracker = Tracker(resolve_tracking_uri(args.tracking_uri))
    experiment_id = tracker.experiment_id(args.experiment)
    tags = {ROLE: TRIAL_ROLE, TRIAL_KEY: config.trial_key()}
    run_id = tracker.client.create_run(experiment_id, run_name=Path(args.trial).stem, tags=tags).info.run_id
    tracker.log_params(run_id, {**trial_params(config), **derived_values(given, config)})
    print(f"training {args.trial} (trial_key {config.trial_key()}) -> MLflow {tracker.uri}, run {run_id}")
    try:
        from mm1core.train import train_trial

        checkpoint = Path(args.checkpoint or Path(".mm1") / "checkpoints" / f"{config.trial_key()}.pt").resolve()
        result = train_trial(config, sink=MlflowSink(tracker, run_id), progress_bar=True, checkpoint=checkpoint)
    except BaseException as exc:
        tracker.end_run(
            run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED", f"{type(exc).__name__}: {exc}"
        )
        raise
    tracker.log_history(run_id, [(result.steps, {"perf/train_seconds": result.train_seconds})])
    checkpoints = {str(step): path for step, path in result.checkpoints.items()}
    tracker.log_outputs(run_id, result.checkpoint, result.predictions, result.profile, checkpoints)
    tracker.end_run(run_id, "FINISHED")
    for name, value in sorted(result.metrics.items()):
        print(f"  {name:28s} {value:10.4f}")
    print(f"\ncheckpoint: {result.checkpoint}   (mm1 eval {result.checkpoint})")
    where_to_look(tracker.uri, args.experiment)
    return EXIT_OK


def load_trial(path: str, sets: Sequence[str] = ()) -> Any:
    """The trial file's ``TrialConfig`` (not yet resolved), the ``--set`` values applied over the file (a trial
    file is a sweep's ``base`` section), its relative paths made absolute against the file's folder."""
    from pydantic import ValidationError

    from mm1core.config import TrialConfig, describe_errors, printable
    from mm1core.preflight import resolve_files
    from orchestrator.spec import SpecError, apply_sets, parse_sets, read_yaml

    try:
        raw = read_yaml(Path(path))
        if sets:
            raw = apply_sets(raw, parse_sets(sets))
        given, unreadable = resolve_files(TrialConfig.model_validate(raw), Path(path).parent)
    except SpecError as exc:
        raise BadInput("\n".join(f"{path}: {printable(line)}" for line in str(exc).split("\n"))) from None
    except ValidationError as exc:
        raise BadInput("\n".join(f"{path}: {line}" for line in describe_errors(exc, model=TrialConfig))) from None
    if unreadable:
        raise BadInput("\n".join(f"{path}: {where}: {message}" for where, message in unreadable))
    return given


def check_trial(path: str, given: Any) -> None:
    """The trial's preflight (``mm1core.preflight``: files, shapes, lengths, memory against this machine's);
    its problems are ``BadInput``, one line each, before MLflow is touched."""
    from mm1core.preflight import Budget, preflight

    problems = preflight(given, Budget.host()).problems
    if problems:
        raise BadInput("\n".join(f"{path}: {problem}" for problem in problems))


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluates a saved trial checkpoint alone: its own eval settings, or those given here."""
    if not Path(args.checkpoint).is_file():
        raise BadInput(f"{args.checkpoint}: no such checkpoint file")
    from pydantic import ValidationError

    from mm1core.checkpoint import load_trial_checkpoint
    from mm1core.config import TrialConfig, describe_errors

    try:
        config, model = load_trial_checkpoint(args.checkpoint)
        overrides = {
            key: value
            for key, value in (("tasks", args.tasks), ("shots", args.shots), ("num_examples", args.num_examples))
            if value is not None
        }
        config = TrialConfig.model_validate(
            {**config.model_dump(mode="json"), "eval": {**config.eval.model_dump(mode="json"), **overrides}}
        )
    except ValueError as exc:
        lines = describe_errors(exc) if isinstance(exc, ValidationError) else [str(exc)]
        raise BadInput("\n".join(f"{args.checkpoint}: {line}" for line in lines)) from None
    from mm1core.data.tokenizer import build_tokenizer
    from mm1core.evaluate.harness import evaluate

    evaluation = evaluate(model, config, build_tokenizer(config.data.tokenizer))
    if args.json:
        print(json.dumps(evaluation.metrics, indent=1, sort_keys=True))
    else:
        for name, value in sorted(evaluation.metrics.items()):
            print(f"  {name:28s} {value:10.4f}")
    return EXIT_OK
