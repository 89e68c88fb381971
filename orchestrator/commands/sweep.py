"""``mm1 sweep validate|plan|run|status SPEC`` (DESIGN.md, "CLI"): a sweep YAML checked, expanded, run, inspected.

Bad input (a spec that does not validate, a sweep already running) is ``BadInput``, reported before Ray starts or
MLflow is written. Ray, MLflow and pandas are imported inside the verbs that need them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mm1core.cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TRIALS_FAILED,
    BadInput,
    Parser,
    add_tracking_option,
    positive_int,
    resolve_tracking_uri,
)

SET_HELP = (
    "set one value of the sweep's base, a YAML scalar (or list, mapping) at a dotted path into base "
    "(train.lr=3e-4, model.connector.type=avg-pool); repeatable, applied over the file"
)


def add_commands(verbs: argparse._SubParsersAction) -> None:
    sweep = verbs.add_parser("sweep", help="validate, plan, run or inspect a sweep YAML")
    sweep_verbs = sweep.add_subparsers(dest="sweep_verb", required=True, parser_class=Parser)
    for name, func, helptext in (
        ("validate", cmd_validate, "check a sweep (every trial's preflight) and print its trial count"),
        ("plan", cmd_plan, "list the expanded trials: trial_key, varied values, estimated peak memory and FLOPs"),
    ):
        verb = sweep_verbs.add_parser(name, help=helptext)
        verb.add_argument("spec")
        verb.add_argument("--json", action="store_true")
        add_tracking_option(verb)  # where train.init_from references are looked up
        add_set_option(verb)
        verb.set_defaults(func=func)
        if name == "plan":
            verb.add_argument(
                "--resolved", action="store_true", help="print each trial's full resolved config, defaults included"
            )

    run = sweep_verbs.add_parser("run", help="run the trials not yet finished in MLflow")
    run.add_argument("spec")
    add_tracking_option(run)
    run.add_argument("--address", default=None, help="Ray cluster address ('auto' joins a running one)")
    run.add_argument("--max-concurrent", type=positive_int, default=None)
    run.add_argument("--resume", action="store_true", help="complete an interrupted sweep (finished trials skip)")
    add_set_option(run)
    run.set_defaults(func=cmd_run)

    status = sweep_verbs.add_parser("status", help="per-trial state from MLflow")
    status.add_argument("spec")
    add_tracking_option(status)
    status.add_argument("--json", action="store_true")
    add_set_option(status)
    status.set_defaults(func=cmd_status)


def add_set_option(parser: argparse.ArgumentParser, helptext: str = SET_HELP) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", dest="sets", help=helptext)


def load_sweep(path: str, tracking_uri: str | None = None, sets: Sequence[str] = ()) -> tuple[Any, list[Any], str]:
    """The spec (with the ``--set`` values in its base), its trials and its text (the ``--set`` entries appended
    as comments: the text is the sweep's MLflow artifact). Relative paths in it resolve against its folder;
    ``train.init_from`` references are looked up in the MLflow store of ``tracking_uri`` (as ``--tracking-uri``)."""
    from mm1core.config import printable
    from orchestrator.expand import expand
    from orchestrator.lineage import MlflowSources
    from orchestrator.spec import SpecError, load_spec

    try:
        spec = load_spec(path, sets)
        trials = expand(spec, MlflowSources(tracking_uri))
    except SpecError as exc:
        raise BadInput("\n".join(f"{path}: {printable(line)}" for line in str(exc).split("\n"))) from None
    return spec, trials, Path(path).read_text() + "".join(f"\n# --set {entry}" for entry in sets)


def check_trials(path: str, spec: Any, trials: list[Any], concurrent: int | None = None) -> Any:
    """The preflight of every trial (``orchestrator.preflight``: files, shapes, lengths, memory at ``concurrent``
    trials at once); its problems are ``BadInput``, one line each, before anything starts. Returns the
    ``SweepPreflight`` (each trial's estimate, the budget)."""
    from orchestrator.preflight import preflight_sweep

    result = preflight_sweep(spec, trials, concurrent)
    if result.problems:
        raise BadInput("\n".join(f"{path}: {problem}" for problem in result.problems))
    return result


def cmd_validate(args: argparse.Namespace) -> int:
    spec, trials, _ = load_sweep(args.spec, args.tracking_uri, args.sets)
    check_trials(args.spec, spec, trials)
    if args.json:
        print(json.dumps({"trials": len(trials)}))
    else:
        print(f"{args.spec}: valid sweep {spec.name!r} with {len(trials)} trial(s)")
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    spec, trials, _ = load_sweep(args.spec, args.tracking_uri, args.sets)
    checked = check_trials(args.spec, spec, trials)
    estimates = checked.estimates
    if args.json:
        plan = [_plan_entry(t, estimates.get(t.key), args.resolved) for t in trials]
        print(json.dumps(plan, indent=1))
        return EXIT_OK
    if args.resolved:
        _print_resolved(spec, trials)
        return EXIT_OK
    import pandas as pd

    rows = [
        {"#": t.index + 1, "trial_key": t.key, **t.varied, **_shown(t.derived), **_cost(estimates[t.key])}
        for t in trials
    ]
    print(f"sweep {spec.name!r}: {len(trials)} trial(s)")
    print(pd.DataFrame(rows).to_string(index=False))
    print(
        f"\npeak memory: estimated per trial (mm1core.estimate) against {checked.budget.source}; "
        "GFLOP/step: training matmuls of one optimizer step"
    )
    return EXIT_OK


def _cost(estimate: Any) -> dict[str, str]:
    return {
        "peak memory": f"{estimate.peak_bytes / 2**30:.2f} GiB",
        "GFLOP/step": f"{estimate.flops_per_step / 1e9:.3g}",
    }


def _plan_entry(trial: Any, estimate: Any, resolved: bool) -> dict[str, Any]:
    entry = {"index": trial.index, "trial_key": trial.key, "varied": trial.varied, "derived": trial.derived}
    if estimate is not None:
        entry["estimate"] = {
            "peak_bytes": estimate.peak_bytes,
            "flops_per_step": estimate.flops_per_step,
            "breakdown": dict(estimate.breakdown),
        }
    if resolved:
        entry["config"] = trial.config.model_dump(mode="json")
    return entry


def _print_resolved(spec: Any, trials: list[Any]) -> None:
    """Each trial's whole resolved config, defaults included (Hydra's ``--cfg job``), as YAML documents."""
    import yaml

    for trial in trials:
        print(f"--- # trial {trial.index + 1}/{len(trials)} of {spec.name!r}: {trial.key} ({trial.label})")
        print(yaml.safe_dump(trial.config.model_dump(mode="json"), sort_keys=False).rstrip())


def _shown(derived: dict[str, Any]) -> dict[str, Any]:
    """Derived values for the plan table: the LR and weight decay an LR law gives (its a, b are in the YAML)."""
    shown = {f"{path} (law)": f"{value:.3g}" for path, value in derived.items() if path.startswith("train.")}
    if "init.step" in derived:  # the pre-training step of the checkpoint a trial starts from
        shown["init.step"] = derived["init.step"]
    return {path: value for path, value in shown.items() if "lr_law" not in path}


def cmd_run(args: argparse.Namespace) -> int:
    spec, trials, text = load_sweep(args.spec, args.tracking_uri, args.sets)
    check_trials(args.spec, spec, trials, args.max_concurrent)
    from orchestrator.run import RayUnavailable, SweepBusy, run_sweep
    from orchestrator.summary import compute_line, format_table, overhead_line, trial_table
    from orchestrator.tracking import Tracker

    tracker = Tracker(resolve_tracking_uri(args.tracking_uri))
    mode = " (resume)" if args.resume else ""
    print(f"sweep {spec.name!r}{mode}: {len(trials)} trial(s), experiment {spec.experiment!r}, MLflow {tracker.uri}")
    try:
        outcome = run_sweep(spec, text, trials, tracker, address=args.address, max_concurrent=args.max_concurrent)
    except SweepBusy as exc:
        raise BadInput(str(exc)) from None
    except RayUnavailable as exc:
        print(f"mm1: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    table = trial_table(trials, tracker.trial_runs(outcome.experiment_id, spec.name))
    print("\n" + format_table(table))
    if outcome.ran_keys:
        print(overhead_line(table, outcome.ran_keys, outcome.wall_seconds, outcome.concurrency))
        if spec.scheduler.type != "fifo":
            print(compute_line(table, trials, outcome.ran_keys, outcome.stopped))
    report = _sweep_report(tracker.uri, spec.experiment, spec.name)
    where_to_look(tracker.uri, spec.experiment, Path.cwd() / ".mm1" / "checkpoints" / spec.name, report)
    if outcome.failed:
        print(f"{len(outcome.failed)} trial(s) failed: {', '.join(outcome.failed)}", file=sys.stderr)
        return EXIT_TRIALS_FAILED
    return EXIT_OK


def _sweep_report(uri: str, experiment: str, sweep: str) -> Path | None:
    """The sweep's plots and index.html (as ``mm1 plots`` writes them); a sweep never fails for want of a plot."""
    from dashboards import DashboardError
    from dashboards.plots import make_report
    from dashboards.runs import Store

    out = Path(".mm1") / "reports" / sweep
    try:
        return make_report(Store(uri), experiment, sweep, out.resolve()).index
    except DashboardError:
        print("\nplots: none yet (no trial of this sweep has finished)")
        return None
    except Exception as exc:  # noqa: BLE001 - a plot must never change the sweep's exit code
        print(f"\nplots not written: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        return None


def where_to_look(uri: str, experiment: str, checkpoints: Path | None = None, report: Path | None = None) -> None:
    """The closing hint of ``mm1 sweep run`` and ``mm1 train``: the MLflow UI, plots, checkpoints, lessons."""
    venv_mlflow = Path(sys.executable).parent / "mlflow"
    mlflow_bin = venv_mlflow if venv_mlflow.exists() else "mlflow"
    print("\nWhere to look:")
    if uri.startswith("sqlite:") or uri.startswith("file:"):
        print(
            f"  MLflow UI:  {mlflow_bin} ui --backend-store-uri {uri} --host 127.0.0.1   (then open http://127.0.0.1:5000)"
        )
    else:
        print(f"  MLflow UI:  {uri}")
    print(f"  experiment {experiment!r}: the sweep is a parent run; each trial a nested child run")
    if report is not None:
        print(f"  plots:      {report}   (redraw: mm1 plots --experiment {experiment} --sweep {report.parent.name})")
    if checkpoints is not None and checkpoints.is_dir():
        print(f"  trained models: {checkpoints}/<trial_key>.pt   (evaluate one again: mm1 eval CHECKPOINT)")
    print(f"  lessons:    mm1 lessons --experiment {experiment}   (which of MM1's lessons the runs reproduce; the")
    print('              reference run of every lesson sweep ships in results/: README section "Lessons")')


def cmd_status(args: argparse.Namespace) -> int:
    spec, trials, _ = load_sweep(args.spec, args.tracking_uri, args.sets)
    from mm1core.cli_common import store_exists
    from orchestrator.summary import format_table, trial_table
    from orchestrator.tracking import Tracker

    uri = resolve_tracking_uri(args.tracking_uri)
    runs: list[Any] = []
    if store_exists(uri):
        tracker = Tracker(uri)
        experiment_id = tracker.experiment_id(spec.experiment, create=False)
        runs = tracker.trial_runs(experiment_id, spec.name) if experiment_id else []
    table = trial_table(trials, runs)
    if args.json:
        print(table.to_json(orient="records"))
    else:
        counts = table["status"].value_counts().to_dict()
        print(f"sweep {spec.name!r} in {uri}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        print(format_table(table))
    return EXIT_OK
