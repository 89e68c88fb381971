"""Fuzzing ``mm1 sweep validate``: random text, random YAML trees and mutated real sweeps must end with exit 0
(valid) or 2 (one ``mm1: error:`` line per problem), never a traceback or an unexpected exception (exit 1).

In-process for speed (``orchestrator.cli.main``); derandomized, so a failure reproduces in CI.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.cli import main

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"
REAL_SPECS = {
    name: yaml.safe_load((SWEEPS / f"{name}.yaml").read_text()) for name in ("quickstart", "connector", "lr-scaling")
}

# MM1_FUZZ_EXAMPLES=5000 MM1_FUZZ_RANDOM=1 for a longer hunt with fresh examples.
FUZZ = settings(
    max_examples=int(os.environ.get("MM1_FUZZ_EXAMPLES", "150")),
    deadline=None,
    derandomize=not os.environ.get("MM1_FUZZ_RANDOM"),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Names that occur in sweep files, so that mutations often reach deep validators instead of stopping at the
# first unknown key.
FIELD_NAMES = [
    "name", "experiment", "base", "grid", "zip", "exclude", "seeds", "resources", "scheduler", "failure",
    "model", "encoder", "connector", "decoder", "highres", "moe", "data", "train", "eval", "checkpoint",
    "resolution", "num_tokens", "type", "mode", "grid", "source", "mixture", "caption", "interleaved", "text",
    "tokenizer", "seq_len", "lr", "law", "a", "b", "weight_decay", "max_steps", "batch_size", "seed", "shots",
    "tasks", "textcore", "path", "annotations", "images", "num_experts", "every_k_layers", "gpus_per_trial",
]  # fmt: skip
NAMES = st.sampled_from(FIELD_NAMES) | st.text(max_size=12)
YAMLISH = st.sampled_from(list(":-[]{},#&*!|>'\"%@`?\t\n .~=/\\0123456789eE+") + ["\u00e9", "\u2028", "\u00a0", "\x85"])
NUMBERS = (
    st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0, -1, 1, 2**63, -(2**63), 1e308, -1e308, 1e-320, math.nan, math.inf, -math.inf])
)
WORDS = st.sampled_from(
    ["synthetic", "world", "bytes", "avg-pool", "attn-pool", "c-abstractor", "vit-tiny", "lm-tiny", "from-checkpoint",
     "auto", "fifo", "asha", "none", "subimage", "interpolate", "vqav2", "coco-captions", "caption", "fit.json",
     "~", "~nobody/x", "..", "/", "x" * 300, "a/" * 200, "{0..3}.tar", "*.jsonl", "", " ", "null", "yes"]
)  # fmt: skip
SCALARS = st.none() | st.booleans() | NUMBERS | st.text(max_size=20) | WORDS
TREES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(NAMES, children, max_size=4),
    max_leaves=20,
)


def _validate(path: Path) -> None:
    """``mm1 sweep validate PATH``: exit 0 or 2, no traceback, and on 2 only ``mm1: error:`` lines."""
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
        rc = main(["sweep", "validate", str(path)])
    stdout, stderr = out.getvalue(), err.getvalue()
    shown = f"rc={rc}\n--- spec\n{path.read_text(errors='replace')[:3000]}\n--- stderr\n{stderr[:3000]}"
    assert rc in (0, 2), shown
    assert "Traceback" not in stdout + stderr, shown
    if rc == 2:
        lines = stderr.rstrip("\n").split("\n")
        assert lines and all(line.startswith("mm1: error: ") for line in lines), shown
    else:
        assert stderr == "", shown


def _write(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    return path


def _dump(tree: Any) -> str:
    return yaml.safe_dump(tree, sort_keys=False, allow_unicode=True)


# ------------------------------------------------------------------------------------------ (a) raw text
@FUZZ
@given(text=st.text(alphabet=YAMLISH | st.characters(codec="utf-8"), max_size=200))
def test_arbitrary_text(text: str, tmp_path: Path) -> None:
    _validate(_write(tmp_path, text))


@FUZZ
@given(
    prefix=st.sampled_from(["", "name: x\n", "name: x\nbase:\n  ", "name: x\ngrid:\n  train.lr: "]),
    body=st.text(alphabet=YAMLISH, max_size=120),
)
def test_yamlish_text_after_a_valid_start(prefix: str, body: str, tmp_path: Path) -> None:
    _validate(_write(tmp_path, prefix + body))


# ------------------------------------------------------------------------------------- (b) random trees
@FUZZ
@given(tree=TREES)
def test_random_yaml_trees(tree: Any, tmp_path: Path) -> None:
    _validate(_write(tmp_path, _dump(tree)))


@FUZZ
@given(sections=st.dictionaries(st.sampled_from(FIELD_NAMES[:10]), TREES, max_size=5))
def test_random_values_under_known_top_level_keys(sections: dict[str, Any], tmp_path: Path) -> None:
    _validate(_write(tmp_path, _dump({"name": "fuzz", **sections})))


# ---------------------------------------------------------------------------------- (c) mutated sweeps
def _nodes(tree: Any, where: tuple = ()) -> list[tuple]:
    """Every position in ``tree`` (dict keys and list indices), the root first."""
    found = [where]
    if isinstance(tree, dict):
        for key, value in tree.items():
            found += _nodes(value, (*where, key))
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            found += _nodes(value, (*where, index))
    return found


def _get(tree: Any, where: tuple) -> Any:
    for part in where:
        tree = tree[part]
    return tree


def _set(tree: Any, where: tuple, value: Any) -> Any:
    if not where:
        return value
    _get(tree, where[:-1])[where[-1]] = value
    return tree


def _mutate(tree: dict[str, Any], data: st.DataObject) -> Any:
    """One random change: a deleted, renamed, added or replaced key, a wrong-typed or empty axis, deep nesting, an
    LR law of random content or a random dotted path."""
    kind = data.draw(
        st.sampled_from(["delete", "replace", "rename", "insert", "axis", "empty", "nest", "law", "dotted"]), "kind"
    )
    nodes = _nodes(tree)
    where = data.draw(st.sampled_from(nodes), "where")
    parent_of = [n for n in nodes[1:] if isinstance(_get(tree, n[:-1]), dict)]
    if kind == "delete" and parent_of:
        spot = data.draw(st.sampled_from(parent_of), "key")
        del _get(tree, spot[:-1])[spot[-1]]
    elif kind == "replace":
        tree = _set(tree, where, data.draw(TREES, "value"))
    elif kind == "rename" and parent_of:
        spot = data.draw(st.sampled_from(parent_of), "key")
        parent = _get(tree, spot[:-1])
        parent[data.draw(NAMES, "new name")] = parent.pop(spot[-1])
    elif kind == "insert":
        dicts = [n for n in nodes if isinstance(_get(tree, n), dict)]
        spot = data.draw(st.sampled_from(dicts), "dict")
        _get(tree, spot)[data.draw(NAMES, "new key")] = data.draw(TREES, "value")
    elif kind in ("axis", "empty"):
        section = tree.setdefault(data.draw(st.sampled_from(["grid", "zip"]), "section"), {})
        if isinstance(section, dict):
            path = data.draw(st.sampled_from([*section, "train.lr", "model.connector.type", "data.source"]), "axis")
            section[path] = [] if kind == "empty" else data.draw(st.lists(TREES, max_size=4), "values")
    elif kind == "nest":
        depth = data.draw(st.integers(1, 60), "depth")
        value = _get(tree, where)
        for _ in range(depth):
            value = data.draw(st.sampled_from([[value], {"model": value}]), "wrap") if depth < 8 else [value]
        tree = _set(tree, where, value)
    elif kind == "law":
        train = tree.setdefault("base", {}).setdefault("train", {}) if isinstance(tree.get("base"), dict) else {}
        if isinstance(train, dict):
            train["lr"] = {"law": data.draw(TREES | st.dictionaries(st.sampled_from(["a", "b", "c"]), NUMBERS), "law")}
    elif kind == "dotted":
        segments = data.draw(st.lists(NAMES, min_size=1, max_size=5), "segments")
        section = tree.setdefault(data.draw(st.sampled_from(["grid", "zip", "exclude"]), "section"), {})
        value = data.draw(st.lists(SCALARS, min_size=1, max_size=3), "values")
        if isinstance(section, dict):
            section[".".join(map(str, segments))] = value
        elif isinstance(section, list):
            section.append({".".join(map(str, segments)): value[0]})
    return tree


@FUZZ
@given(name=st.sampled_from(sorted(REAL_SPECS)), data=st.data())
def test_mutated_real_sweeps(name: str, data: st.DataObject, tmp_path: Path) -> None:
    tree: Any = copy.deepcopy(REAL_SPECS[name])
    for _ in range(data.draw(st.integers(1, 3), "mutations")):
        if isinstance(tree, dict):
            tree = _mutate(tree, data)
    _validate(_write(tmp_path, _dump(tree)))


@FUZZ
@given(name=st.sampled_from(sorted(REAL_SPECS)), data=st.data())
def test_duplicated_lines_of_real_sweeps(name: str, data: st.DataObject, tmp_path: Path) -> None:
    """Duplicate keys (YAML keeps the last), a line repeated at another indentation, or a line dropped."""
    lines = (SWEEPS / f"{name}.yaml").read_text().splitlines()
    for _ in range(data.draw(st.integers(1, 3), "edits")):
        index = data.draw(st.integers(0, len(lines) - 1), "line")
        edit = data.draw(st.sampled_from(["duplicate", "indent", "drop", "truncate"]), "edit")
        if edit == "duplicate":
            lines.insert(data.draw(st.integers(0, len(lines)), "at"), lines[index])
        elif edit == "indent":
            lines[index] = " " * data.draw(st.integers(1, 6), "spaces") + lines[index]
        elif edit == "drop" and len(lines) > 1:
            del lines[index]
        elif edit == "truncate":
            lines[index] = lines[index][: data.draw(st.integers(0, max(len(lines[index]) - 1, 0)), "cut")]
    _validate(_write(tmp_path, "\n".join(lines) + "\n"))


def test_the_real_sweeps_are_valid() -> None:
    for name in REAL_SPECS:
        _validate(SWEEPS / f"{name}.yaml")
