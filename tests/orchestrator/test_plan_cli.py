"""``mm1 sweep plan`` on a sweep whose LR comes from a fitted law: the resolved numbers are shown."""

from __future__ import annotations

import json
import math
from pathlib import Path

from tests.conftest import run_mm1


def test_plan_shows_the_lr_each_size_gets_from_a_fit_file(write_yaml, tmp_path: Path) -> None:
    fit = tmp_path / "fit.json"
    fit.write_text(json.dumps({"a": -0.5, "b": 0.2}))
    spec = write_yaml(
        {
            "name": "up",
            "base": {"train": {"lr": {"law": str(fit)}}},
            "grid": {"model.decoder.name": ["lm-nano", "lm-small"]},
        }
    )
    text = run_mm1("sweep", "plan", str(spec), cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "train.lr (law)" in text.stdout and "train.weight_decay (law)" in text.stdout

    plan = json.loads(run_mm1("sweep", "plan", str(spec), "--json", cwd=tmp_path).stdout)
    nano, small = (trial["derived"] for trial in plan)
    assert nano["train.lr"] > small["train.lr"]
    assert nano["train.weight_decay"] == 0.1 * nano["train.lr"]
    assert nano["train.lr_law.a"] == -0.5
    assert f"{nano['train.lr']:.3g}" in text.stdout and f"{small['train.lr']:.3g}" in text.stdout
    assert math.isclose(
        math.log(nano["train.lr"]) - math.log(small["train.lr"]), 0.5 * math.log(1.33e6 / 1.07e5), rel_tol=0.05
    )


def test_a_missing_fit_file_is_a_one_line_error(write_yaml, tmp_path: Path) -> None:
    spec = write_yaml({"name": "up", "base": {"train": {"lr": {"law": str(tmp_path / "nofit.json")}}}})
    result = run_mm1("sweep", "validate", str(spec), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    missing = tmp_path / "nofit.json"
    expected = f"mm1: error: {spec}: base.train.lr.law: {missing} does not exist (a fit.json from mm1 fit-lr, "
    assert result.stderr.strip().startswith(expected) and len(result.stderr.strip().splitlines()) == 1
