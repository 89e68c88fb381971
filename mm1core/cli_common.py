"""What every ``mm1`` command shares, whichever package it lives in: exit codes, the parser that reports bad input
on one line, ``BadInput``, and the ``--tracking-uri`` option with its default rule (DESIGN.md, "CLI").

Standard library only, so ``mm1 --help`` stays fast, and importable from ``orchestrator`` and ``dashboards`` alike.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import NoReturn

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_TRIALS_FAILED = 0, 1, 2, 3
TRACKING_HELP = "MLflow tracking URI (default $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)"


class BadInput(Exception):
    """Raised for invalid user input; the message is what the user sees (one line per problem)."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are ``BadInput``: one line, exit 2 (argparse prints usage + error
    otherwise)."""

    def error(self, message: str) -> NoReturn:
        raise BadInput(f"{self.prog}: {message} (see --help)")


def add_tracking_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri", default=None, help=TRACKING_HELP)


def resolve_tracking_uri(uri: str | None) -> str:
    """``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db`` (absolute)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{Path(uri.removeprefix('sqlite:///')).resolve()}"
    return uri


def sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def store_exists(uri: str) -> bool:
    """False for a sqlite file that is not there yet (reading must not create it)."""
    path = sqlite_path(uri)
    return path is None or path.exists()


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number > 0")
    return value
