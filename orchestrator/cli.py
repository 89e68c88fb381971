"""The ``mm1`` command line (DESIGN.md, "CLI"). Exit codes: 0 ok, 1 run-time failure, 2 bad input, 3 some trials failed.

Bad input is reported as one line per problem on stderr, before Ray starts or MLflow is touched.
Heavy imports (torch, lightning, ray, mlflow) happen only in the verbs that need them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from dashboards import DashboardError
from orchestrator.spec import SpecError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_TRIALS_FAILED = 0, 1, 2, 3


class BadInput(Exception):
    """Raised for invalid user input; the message is what the user sees."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2 (argparse prints usage + error otherwise)
        raise BadInput(f"{self.prog}: {message} (see --help)")


# ------------------------------------------------------------------------------------------ sweep verbs
def _load(path: str, tracking_uri: str | None = None) -> tuple[Any, list[Any], str]:
    """The spec, its trials and its text; relative paths in it resolve against its folder. ``train.init_from``
    references are looked up in the MLflow store of ``tracking_uri`` (resolved as ``--tracking-uri``)."""
    from mm1core.config import paths_relative_to, printable
    from orchestrator.expand import expand
    from orchestrator.lineage import MlflowSources
    from orchestrator.spec import load_spec

    try:
        with paths_relative_to(Path(path).parent):  # expansion validates each trial again: same folder
            spec = load_spec(path)
            trials = expand(spec, MlflowSources(tracking_uri))
    except SpecError as exc:
        raise BadInput("\n".join(f"{path}: {printable(line)}" for line in str(exc).split("\n"))) from None
    return spec, trials, Path(path).read_text()


def cmd_validate(args: argparse.Namespace) -> int:
    spec, trials, _ = _load(args.spec, args.tracking_uri)
    if args.json:
        print(json.dumps({"trials": len(trials)}))
    else:
        print(f"{args.spec}: valid sweep {spec.name!r} with {len(trials)} trial(s)")
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    spec, trials, _ = _load(args.spec, args.tracking_uri)
    if args.json:
        plan = [{"index": t.index, "trial_key": t.key, "varied": t.varied, "derived": t.derived} for t in trials]
        print(json.dumps(plan, indent=1))
        return EXIT_OK
    import pandas as pd

    rows = [{"#": t.index + 1, "trial_key": t.key, **t.varied, **_shown(t.derived)} for t in trials]
    print(f"sweep {spec.name!r}: {len(trials)} trial(s)")
    print(pd.DataFrame(rows).to_string(index=False))
    return EXIT_OK


def _shown(derived: dict[str, Any]) -> dict[str, Any]:
    """Derived values for the plan table: the LR and weight decay an LR law gives (its a, b are in the YAML)."""
    shown = {f"{path} (law)": f"{value:.3g}" for path, value in derived.items() if path.startswith("train.")}
    if "init.step" in derived:  # the pre-training step of the checkpoint a trial starts from
        shown["init.step"] = derived["init.step"]
    return {path: value for path, value in shown.items() if "lr_law" not in path}


def cmd_run(args: argparse.Namespace) -> int:
    spec, trials, text = _load(args.spec, args.tracking_uri)
    from orchestrator.run import RayUnavailable, SweepBusy, run_sweep
    from orchestrator.summary import compute_line, format_table, overhead_line, trial_table
    from orchestrator.tracking import Tracker, resolve_tracking_uri

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
    _where_to_look(tracker.uri, spec.experiment, Path.cwd() / ".mm1" / "checkpoints" / spec.name, report)
    if outcome.failed:
        print(f"{len(outcome.failed)} trial(s) failed: {', '.join(outcome.failed)}", file=sys.stderr)
        return EXIT_TRIALS_FAILED
    return EXIT_OK


def _sweep_report(uri: str, experiment: str, sweep: str) -> Path | None:
    """The sweep's plots and index.html (as ``mm1 plots`` writes them); a sweep never fails for want of a plot."""
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


def _where_to_look(uri: str, experiment: str, checkpoints: Path | None = None, report: Path | None = None) -> None:
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
    spec, trials, _ = _load(args.spec, args.tracking_uri)
    from orchestrator.summary import format_table, trial_table
    from orchestrator.tracking import Tracker, resolve_tracking_uri, store_exists

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


# ------------------------------------------------------------------------------------------- one trial
def cmd_train(args: argparse.Namespace) -> int:
    given = _load_trial(args.trial)
    if given.train.init_from is not None and given.train.init_from.sweep is not None:
        raise BadInput(
            f"{args.trial}: train.init_from.sweep: `mm1 train` starts from a checkpoint path; references to a "
            "sweep's trials are resolved by `mm1 sweep run`"
        )
    config = given.resolved()
    from orchestrator.tracking import ROLE, TRIAL_KEY, MlflowSink, Tracker, resolve_tracking_uri, trial_params

    tracker = Tracker(resolve_tracking_uri(args.tracking_uri))
    experiment_id = tracker.experiment_id(args.experiment)
    tags = {ROLE: "trial", TRIAL_KEY: config.trial_key()}
    run_id = tracker.client.create_run(experiment_id, run_name=Path(args.trial).stem, tags=tags).info.run_id
    from orchestrator.expand import derived_values

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
    _where_to_look(tracker.uri, args.experiment)
    return EXIT_OK


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


def _load_trial(path: str) -> Any:
    from pydantic import ValidationError

    from mm1core.config import TrialConfig, describe_errors, paths_relative_to, printable
    from orchestrator.spec import read_yaml

    try:
        raw = read_yaml(Path(path))
        with paths_relative_to(Path(path).parent):  # relative paths in a trial file: from its folder
            return TrialConfig.model_validate(raw)
    except SpecError as exc:
        raise BadInput(f"{path}: {printable(str(exc))}") from None
    except ValidationError as exc:
        raise BadInput("\n".join(f"{path}: {line}" for line in describe_errors(exc))) from None


# ------------------------------------------------------------------------------------------- read-back
def _store(args: argparse.Namespace) -> Any:
    from dashboards.runs import Store
    from orchestrator.tracking import resolve_tracking_uri

    return Store(resolve_tracking_uri(args.tracking_uri))


def _report_dir(args: argparse.Namespace) -> Path:
    return Path(args.out or Path(".mm1") / "reports" / (args.sweep or args.experiment)).resolve()


def cmd_fit_lr(args: argparse.Namespace) -> int:
    """MM1's LR scaling law (Sec. 3.4, Fig. 6) fitted to the finished trials' best LR per decoder size."""
    from dashboards.lrfit import draw_law, fit_law, format_law
    from dashboards.runs import latest_per_trial

    store = _store(args)
    frame = latest_per_trial(store.trials(args.experiment, args.sweep))
    result = fit_law(frame, args.metric, args.mode, predict=args.predict)
    out = _report_dir(args)
    out.mkdir(parents=True, exist_ok=True)
    fit_file = out / "fit.json"
    fit_file.write_text(json.dumps(result, indent=1) + "\n")
    files = [fit_file, *draw_law(result, frame, args.metric, out)]
    store.log_outputs(store.sweep_parents(args.experiment, frame["sweep"]).values(), files)
    if args.json:
        print(json.dumps(result))
    else:
        print(format_law(result))
        print("\nwritten: " + ", ".join(str(f) for f in files))
    return EXIT_OK


def cmd_plots(args: argparse.Namespace) -> int:
    """The paper's lesson figures from whatever runs exist, plus an offline index.html."""
    from dashboards.plots import make_report

    store = _store(args)
    out = _report_dir(args)
    report = make_report(store, args.experiment, args.sweep, out, args.lr_metric, args.lr_mode)
    for figure in report.figures:
        print(f"  drawn    {figure.name:22s} {figure.title}")
    for name, reason in report.skipped:
        print(f"  skipped  {name:22s} {reason}")
    print(f"\n{len(report.figures)} figure(s) in {out}; open {report.index}")
    return EXIT_OK


def cmd_lessons(args: argparse.Namespace) -> int:
    """Which of MM1's lessons the experiment's runs reproduce: an effect with a 95% CI and a verdict per lesson."""
    from dashboards.verdicts import experiment_verdicts, format_verdicts, markdown_verdicts, write_verdicts

    verdicts = experiment_verdicts(_store(args), args.experiment, args.sweep, args.lr_metric, args.lr_mode)
    files = write_verdicts(verdicts, _report_dir(args))
    written = "written: " + ", ".join(str(f) for f in files)
    if args.json or args.markdown:  # stdout holds the JSON (or the Markdown table) only
        print(json.dumps([v.to_dict() for v in verdicts], indent=1) if args.json else markdown_verdicts(verdicts))
        print(written, file=sys.stderr)
    else:
        print(format_verdicts(verdicts))
        print(f"\n{written}")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    """A pivot of finished trials: one row per value of the --by keys, seeds averaged (mean, std, n)."""
    from dashboards.compare import compare_table, default_metrics, format_compare
    from dashboards.runs import latest_per_trial

    store = _store(args)
    frame = latest_per_trial(store.trials(args.experiment, args.sweep))
    by = [key.strip() for key in args.by.split(",") if key.strip()]
    table = compare_table(frame, by, args.metric or default_metrics(frame))
    if args.csv:
        Path(args.csv).write_text(table.to_csv(index=False))
    print(format_compare(table))
    if args.csv:
        print(f"\nwritten: {Path(args.csv).resolve()}")
    return EXIT_OK


def cmd_registry(args: argparse.Namespace) -> int:
    from mm1core.catalog import catalog, format_catalog

    entries = catalog()
    print(json.dumps(entries, indent=1) if args.json else format_catalog(entries))
    return EXIT_OK


# ---------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mm1", description="MM1-style multimodal LLM ablation sweeps")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    sweep = verbs.add_parser("sweep", help="validate, plan, run or inspect a sweep YAML")
    sweep_verbs = sweep.add_subparsers(dest="sweep_verb", required=True, parser_class=_Parser)

    for name, func, helptext in (
        ("validate", cmd_validate, "check a sweep and print its trial count"),
        ("plan", cmd_plan, "list the expanded trials: trial_key and varied values"),
    ):
        verb = sweep_verbs.add_parser(name, help=helptext)
        verb.add_argument("spec")
        verb.add_argument("--json", action="store_true")
        _tracking_option(verb)  # where train.init_from references are looked up
        verb.set_defaults(func=func)

    run = sweep_verbs.add_parser("run", help="run the trials not yet finished in MLflow")
    run.add_argument("spec")
    _tracking_option(run)
    run.add_argument("--address", default=None, help="Ray cluster address ('auto' joins a running one)")
    run.add_argument("--max-concurrent", type=_positive_int, default=None)
    run.add_argument("--resume", action="store_true", help="complete an interrupted sweep (finished trials skip)")
    run.set_defaults(func=cmd_run)

    status = sweep_verbs.add_parser("status", help="per-trial state from MLflow")
    status.add_argument("spec")
    _tracking_option(status)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    train = verbs.add_parser("train", help="train and evaluate one trial config, without Ray")
    train.add_argument("trial")
    _tracking_option(train)
    train.add_argument("--experiment", default="mm1")
    train.add_argument("--checkpoint", default=None, help="where to save the model (default .mm1/checkpoints/KEY.pt)")
    train.set_defaults(func=cmd_train)

    evaluation = verbs.add_parser("eval", help="evaluate a saved trial checkpoint alone")
    evaluation.add_argument("checkpoint")
    evaluation.add_argument("--tasks", nargs="+", default=None, help="embedded task names (default: the trial's)")
    evaluation.add_argument("--shots", nargs="+", type=int, default=None)
    evaluation.add_argument("--num-examples", type=_positive_int, default=None)
    evaluation.add_argument("--json", action="store_true")
    evaluation.set_defaults(func=cmd_eval)

    fit = verbs.add_parser("fit-lr", help="fit MM1's LR scaling law to an LR sweep over model sizes")
    _read_back_options(fit)
    fit.add_argument("--metric", default="eval/avg/8shot", help="metric that picks the best LR (default %(default)s)")
    fit.add_argument("--mode", choices=("max", "min"), default="max", help="best = highest (max) or lowest (min)")
    fit.add_argument("--predict", nargs="+", type=_positive_float, default=[], metavar="N", help="sizes to predict")
    fit.add_argument("--json", action="store_true")
    fit.set_defaults(func=cmd_fit_lr)

    plots = verbs.add_parser("plots", help="regenerate the lesson plots and an index.html from MLflow")
    _read_back_options(plots)
    plots.add_argument("--lr-metric", default=None, help="Fig. 6: metric picking the best LR (default: largest k-shot)")
    plots.add_argument("--lr-mode", choices=("max", "min"), default="max", help="Fig. 6: best = highest or lowest")
    plots.set_defaults(func=cmd_plots)

    lessons = verbs.add_parser("lessons", help="which of MM1's lessons the runs reproduce (effect, 95% CI, verdict)")
    _read_back_options(lessons)
    lessons.add_argument(
        "--lr-metric",
        default="eval/loss",
        help="Fig. 6 law: metric picking the best LR per size (default %(default)s: at toy scale held-out loss ranks "
        "LRs far more reliably than the few-shot averages)",
    )
    lessons.add_argument(
        "--lr-mode",
        choices=("max", "min"),
        default="min",
        help="Fig. 6 law: best = highest or lowest (default %(default)s)",
    )
    printed = lessons.add_mutually_exclusive_group()
    printed.add_argument("--json", action="store_true", help="print the verdicts as a JSON list (only that)")
    printed.add_argument("--markdown", action="store_true", help="print them as a Markdown table (the README's)")
    lessons.set_defaults(func=cmd_lessons)

    compare = verbs.add_parser("compare", help="table of finished trials by one or more params, seeds averaged")
    compare.add_argument("--experiment", required=True)
    compare.add_argument("--sweep", default=None, help="only this sweep's trials (default: the whole experiment)")
    _tracking_option(compare)
    compare.add_argument("--by", required=True, help="dotted param path(s), comma-separated")
    compare.add_argument(
        "--metric",
        nargs="+",
        default=None,
        help="metrics to show (default: eval/avg/*, textcore; for SFT runs eval/sft/avg, eval/sft/<task>)",
    )
    compare.add_argument("--csv", default=None, help="also write the table to this CSV file")
    compare.set_defaults(func=cmd_compare)

    registry = verbs.add_parser("registry", help="names of encoders, connectors, decoders, data sources")
    registry.add_argument("--json", action="store_true")
    registry.set_defaults(func=cmd_registry)
    return parser


def _tracking_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
    )


def _read_back_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", required=True, help="MLflow experiment of the sweep(s)")
    parser.add_argument("--sweep", default=None, help="only this sweep's trials (default: the whole experiment)")
    _tracking_option(parser)
    parser.add_argument("--out", default=None, help="output folder (default .mm1/reports/<sweep or experiment>)")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number > 0")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (BadInput, DashboardError) as exc:
        print(f"mm1: error: {exc}".replace("\n", "\nmm1: error: "), file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("mm1: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head`: stop quietly, as other command-line tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - one line for users; MM1_DEBUG=1 shows the traceback
        if os.environ.get("MM1_DEBUG"):
            raise
        print(f"mm1: error: {type(exc).__name__}: {exc} (set MM1_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
