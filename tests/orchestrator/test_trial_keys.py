"""The shipped sweeps expand to the very trials they did before they were re-based on ``sweeps/baselines/``: the
trial keys of each, in order, as recorded in ``data/trial_keys.json`` (a changed key would re-run a finished trial,
a changed order would shuffle the run names). The SFT sweeps need an MLflow store to expand: they stay valid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.expand import expand
from orchestrator.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
RECORDED: dict[str, list[str]] = json.loads((Path(__file__).parent / "data" / "trial_keys.json").read_text())


def key_differences(have: list[str], want: list[str]) -> str:
    """What differs between two key lists, for a reader: the counts, then the keys only one of them has, or (the
    same keys) the first positions where the order differs."""
    lines = [f"{len(have)} trial(s), {len(want)} recorded"]
    new, gone = [k for k in have if k not in want], [k for k in want if k not in have]
    if new or gone:
        lines += [f"new keys: {_some(new)}", f"recorded keys missing: {_some(gone)}"]
    else:
        moved = [f"#{i}: {h} (recorded {w})" for i, (h, w) in enumerate(zip(have, want, strict=False)) if h != w]
        lines.append(f"the order differs at {_some(moved)}")
    return "\n".join(lines)


def _some(items: list[str]) -> str:
    shown = ", ".join(items[:5]) or "-"
    return f"{shown}, ... ({len(items)} in all)" if len(items) > 5 else shown


@pytest.mark.parametrize("name", sorted(RECORDED), ids=lambda name: name.removeprefix("sweeps/"))
def test_a_shipped_sweep_expands_to_its_recorded_trial_keys(name: str) -> None:
    keys = [trial.key for trial in expand(load_spec(ROOT / name))]
    if keys != RECORDED[name]:
        pytest.fail(f"{name}: the trial keys changed\n{key_differences(keys, RECORDED[name])}", pytrace=False)


@pytest.mark.parametrize("path", sorted((ROOT / "sweeps").glob("sft-*.yaml")), ids=lambda path: path.name)
def test_an_sft_sweep_stays_valid(path: Path) -> None:
    spec = load_spec(path)
    assert spec.base["train"]["stage"] == "sft" and spec.base["train"]["init_from"]["sweep"] == "connector"


def test_the_differences_read_well() -> None:
    assert key_differences(["a", "c"], ["a", "b"]) == "2 trial(s), 2 recorded\nnew keys: c\nrecorded keys missing: b"
    assert key_differences(["b", "a"], ["a", "b"]) == (
        "2 trial(s), 2 recorded\nthe order differs at #0: b (recorded a), #1: a (recorded b)"
    )
