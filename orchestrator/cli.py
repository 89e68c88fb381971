"""The ``mm1`` command line (DESIGN.md, "CLI"). Exit codes: 0 ok, 1 run-time failure, 2 bad input, 3 some trials failed.

Each verb lives with its subject and adds itself to the parser here: ``orchestrator.commands.sweep`` (validate,
plan, run, status), ``orchestrator.commands.trial`` (train, eval), ``dashboards.commands`` (fit-lr, plots,
lessons, compare) and ``orchestrator.commands.registry``. Bad input is reported as one line per problem on stderr,
before Ray starts or MLflow is touched. Heavy imports (torch, lightning, ray, mlflow, pandas) happen only in the
verbs that need them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from dashboards import DashboardError
from dashboards import commands as read_back
from mm1core.cli_common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, BadInput, Parser
from orchestrator.commands import registry, sweep, trial


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="mm1", description="MM1-style multimodal LLM ablation sweeps")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=Parser)
    sweep.add_commands(verbs)
    trial.add_commands(verbs)
    read_back.add_commands(verbs)
    registry.add_commands(verbs)
    return parser


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
