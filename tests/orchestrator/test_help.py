"""``--help`` works for ``mm1`` and every verb and sub-verb, found by walking the parser (not a hand-written list):
each exits 0 and prints its usage. A ``%`` in a help text that argparse would %-format fails here."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def commands(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command line that names a (sub)command: ``()``, ``("sweep",)``, ``("sweep", "run")``, ..."""
    yield words
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                yield from commands(subparser, (*words, name))


COMMANDS = list(commands(build_parser()))


def test_the_walk_finds_every_verb() -> None:
    verbs = {words[0] for words in COMMANDS if words}
    assert {"sweep", "train", "eval", "fit-lr", "plots", "lessons", "compare", "registry"} <= verbs
    assert {("sweep", verb) for verb in ("validate", "plan", "run", "status")} <= set(COMMANDS)


@pytest.mark.parametrize("words", COMMANDS, ids=lambda words: " ".join(("mm1", *words)))
def test_help_exits_0_and_prints_usage(words: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*words, "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr()
    assert shown.out.startswith(f"usage: {' '.join(('mm1', *words))}") and shown.err == ""


def test_the_installed_command_prints_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: mm1") and "lessons" in result.stdout
