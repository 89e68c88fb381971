"""The read-back verbs of ``mm1`` (DESIGN.md, "CLI"): ``fit-lr``, ``plots``, ``lessons``, ``compare``.

Each reads finished trial runs from MLflow (``dashboards.runs.Store``) and writes what it draws under ``--out``
(default ``.mm1/reports/<sweep or experiment>``). Bad input is a ``DashboardError`` (exit 2). pandas, MLflow and
matplotlib are imported inside the verbs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mm1core.cli_common import EXIT_OK, add_tracking_option, positive_float, resolve_tracking_uri


def add_commands(verbs: argparse._SubParsersAction) -> None:
    fit = verbs.add_parser("fit-lr", help="fit MM1's LR scaling law to an LR sweep over model sizes")
    _read_back_options(fit)
    fit.add_argument("--metric", default="eval/avg/8shot", help="metric that picks the best LR (default %(default)s)")
    fit.add_argument("--mode", choices=("max", "min"), default="max", help="best = highest (max) or lowest (min)")
    fit.add_argument("--predict", nargs="+", type=size_as_given, default=[], metavar="N", help="sizes to predict")
    fit.add_argument("--json", action="store_true")
    fit.set_defaults(func=cmd_fit_lr)

    plots = verbs.add_parser("plots", help="regenerate the lesson plots and an index.html from MLflow")
    _read_back_options(plots)
    plots.add_argument("--lr-metric", default=None, help="Fig. 6: metric picking the best LR (default: largest k-shot)")
    plots.add_argument("--lr-mode", choices=("max", "min"), default="max", help="Fig. 6: best = highest or lowest")
    plots.set_defaults(func=cmd_plots)

    _add_lessons(verbs)

    compare = verbs.add_parser("compare", help="table of finished trials by one or more params, seeds averaged")
    compare.add_argument("--experiment", required=True)
    compare.add_argument("--sweep", default=None, help="only this sweep's trials (default: the whole experiment)")
    add_tracking_option(compare)
    compare.add_argument("--by", required=True, help="dotted param path(s), comma-separated")
    compare.add_argument(
        "--metric",
        nargs="+",
        default=None,
        help="metrics to show (default: eval/avg/*, textcore; for SFT runs eval/sft/avg, eval/sft/<task>)",
    )
    compare.add_argument("--csv", default=None, help="also write the table to this CSV file")
    compare.set_defaults(func=cmd_compare)


def _add_lessons(verbs: argparse._SubParsersAction) -> None:
    lessons = verbs.add_parser("lessons", help="which of MM1's lessons the runs reproduce (effect, 95%% CI, verdict)")
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


def _read_back_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", required=True, help="MLflow experiment of the sweep(s)")
    parser.add_argument("--sweep", default=None, help="only this sweep's trials (default: the whole experiment)")
    add_tracking_option(parser)
    parser.add_argument("--out", default=None, help="output folder (default .mm1/reports/<sweep or experiment>)")


def size_as_given(text: str) -> str:
    """A ``--predict`` size: checked as a finite number > 0, kept as written (``30000000000`` stays the key of its
    prediction in the JSON answer, not ``3e+10``)."""
    positive_float(text)
    return text.strip()


def _store(args: argparse.Namespace) -> Any:
    from dashboards.runs import Store

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
