"""The reference results that ship in ``results/`` (every lesson sweep, run on a 2-core CPU): the read-back verbs
work on the committed store as a user runs them from the repository root, and the README's "Lessons" section
shows what ``mm1 lessons`` prints for it (regenerate it with ``mm1 lessons ... --markdown`` after a re-run)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboards.verdicts import INCONCLUSIVE, LESSONS, NOT_REPRODUCED, REPRODUCED
from orchestrator.cli import main

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results"
EXPERIMENT = "mm1-ablations"
BEGIN, END = "<!-- lessons:begin -->", "<!-- lessons:end -->"
LESSON_FIGURES = {
    "encoders",
    "connectors",
    "data-mixture",
    "data-text-only",
    "data-image-text-ratio",
    "data-synthetic",
    "lr-scaling",
    "resolution",
    "learning-curves",
}


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A copy of results/ in a scratch working directory (the store's artifact paths are relative to it)."""
    where = tmp_path_factory.mktemp("clone")
    shutil.copytree(RESULTS / "mlartifacts", where / "results" / "mlartifacts")
    shutil.copy2(RESULTS / "mlflow.db", where / "results" / "mlflow.db")
    before = Path.cwd()
    os.chdir(where)
    yield where
    os.chdir(before)


def uri(clone: Path) -> str:
    return f"sqlite:///{clone}/results/mlflow.db"  # absolute: MLflow caches stores by URI, across working dirs


def lessons(clone: Path, capsys: pytest.CaptureFixture, *flags: str) -> str:
    assert main(["lessons", "--experiment", EXPERIMENT, "--tracking-uri", uri(clone), "--out", "out", *flags]) == 0
    return capsys.readouterr().out


def test_every_lesson_is_measured_with_an_interval(clone: Path, capsys: pytest.CaptureFixture) -> None:
    rows = json.loads(lessons(clone, capsys, "--json"))
    assert {row["lesson"] for row in rows} == set(LESSONS)
    for row in rows:
        assert row["verdict"] in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE), row
        assert row["effect"] is not None and row["ci"] is not None, row
        assert row["seeds"] >= (1 if row["lesson"] == "lr-law" else 2), row  # the law's interval: a bootstrap


def test_readme_shows_the_verdicts_of_the_shipped_store(clone: Path, capsys: pytest.CaptureFixture) -> None:
    readme = (ROOT / "README.md").read_text()
    shown = readme.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert shown == lessons(clone, capsys, "--markdown").strip(), "README out of date: paste mm1 lessons ... --markdown"


def test_fit_lr_gives_the_lesson_table_slope(clone: Path, capsys: pytest.CaptureFixture) -> None:
    law = next(row for row in json.loads(lessons(clone, capsys, "--json")) if row["lesson"] == "lr-law")
    args = ["--experiment", EXPERIMENT, "--sweep", "lr-scaling", "--tracking-uri", uri(clone), "--out", "fit"]
    assert main(["fit-lr", *args, "--metric", "eval/loss", "--mode", "min", "--json"]) == 0
    fit = json.loads(capsys.readouterr().out.splitlines()[0])
    assert fit["a"] == pytest.approx(law["effect"]) and len(fit["points"]) == 4


def test_plots_regenerate_every_lesson_figure(clone: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["plots", "--experiment", EXPERIMENT, "--tracking-uri", uri(clone), "--out", "plots"]) == 0
    drawn = {line.split()[1] for line in capsys.readouterr().out.splitlines() if line.strip().startswith("drawn")}
    assert LESSON_FIGURES <= drawn, LESSON_FIGURES - drawn
    assert "Lessons" in (clone / "plots" / "index.html").read_text()
