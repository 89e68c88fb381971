"""Fuzzing ``mm1 sweep validate``: random text, random YAML trees and mutated real sweeps must end with exit 0
(valid) or 2 (one ``mm1: error: SPEC: ...`` line per problem), never a traceback or an unexpected exception
(exit 1).

In-process for speed (``orchestrator.cli.main``) and derandomized, so a failure reproduces in CI; for a longer
hunt with fresh examples: ``MM1_FUZZ_EXAMPLES=3000 MM1_FUZZ_RANDOM=1 pytest tests/orchestrator/test_spec_fuzz.py``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.cli import main
from orchestrator.spec import compose

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"
# Merged over their baselines (sweeps/baselines/), so a mutated copy written elsewhere is a whole sweep.
REAL_SPECS = {name: compose(SWEEPS / f"{name}.yaml") for name in ("quickstart", "connector", "lr-scaling")}

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
    "resolution", "num_tokens", "type", "mode", "source", "mixture", "caption", "interleaved", "text",
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
     "auto", "fifo", "asha", "none", "subimage", "interpolate", "vqav2", "coco-captions", "caption", "", " ", "yes"]
)  # fmt: skip
SCALARS = st.none() | st.booleans() | NUMBERS | st.text(max_size=20) | WORDS
TREES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(NAMES, children, max_size=4),
    max_leaves=20,
)
# Path values: relative ones resolve in the spec's folder, where ``_junk_files`` left files of random content.
PATHS = st.sampled_from(
    ["", ".", "..", "/", "~", "~nobody-here/x", "x" * 300, "a/" * 2100, "nul\0byte", "junk.pt", "junk.json",
     "junk.jsonl", "junk", "spec.yaml", "{0..3}.jsonl", "{1..2}{1..2}.tar", "*.jsonl", "junk/*.pt", "./junk.pt/x"]
) | st.text(max_size=30).filter(lambda text: "**" not in text)  # fmt: skip


def _validate(path: Path) -> None:
    """``mm1 sweep validate PATH``: exit 0 or 2, no traceback, and on 2 only ``mm1: error: PATH:`` lines."""
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
        rc = main(["sweep", "validate", str(path)])
    stdout, stderr = out.getvalue(), err.getvalue()
    shown = f"rc={rc}\n--- spec\n{path.read_text(errors='replace')[:3000]}\n--- stderr\n{stderr[:3000]}"
    assert rc in (0, 2), shown
    assert "Traceback" not in stdout + stderr, shown
    if rc == 2:  # one line per problem, each naming the file; a quoted value never breaks a line
        lines = stderr.rstrip("\n").split("\n")
        assert lines and all(line.startswith(f"mm1: error: {path}: ") for line in lines), shown
        assert all(line.isprintable() for line in lines), shown
    else:
        assert stderr == "", shown


def _write(folder: Path, content: str) -> Path:
    path = folder / "spec.yaml"
    path.write_text(content, encoding="utf-8")
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


def _nested(style: str, depth: int) -> str:
    """YAML nested ``depth`` levels; block styles indent each level, so they stop at 300 (the text grows as
    depth squared)."""
    if style == "flow-list":
        return "[" * depth + "]" * depth
    if style == "flow-map":
        return "{a: " * depth + "1" + "}" * depth
    item = "- " if style == "block-list" else "a: "
    return "".join(f"\n{'  ' * (level + 1)}{item}" for level in range(min(depth, 300)))


@FUZZ
@given(
    style=st.sampled_from(["flow-list", "flow-map", "block-list", "block-map"]),
    depth=st.integers(1, 3000),
    where=st.sampled_from(["base: ", "grid:\n  train.lr: ", "base:\n  model: ", "exclude: "]),
)
def test_deep_nesting(style: str, depth: int, where: str, tmp_path: Path) -> None:
    _validate(_write(tmp_path, f"name: x\n{where}{_nested(style, depth)}\n"))


@FUZZ
@given(levels=st.integers(1, 9), fanout=st.integers(1, 9), where=st.sampled_from(["base.eval.shots", "grid.train.lr"]))
def test_yaml_alias_bombs_and_cycles(levels: int, fanout: int, where: str, tmp_path: Path) -> None:
    """Aliases that grow exponentially when walked (a "billion laughs") or refer to themselves."""
    lines = ["name: x", "scratch:", f"  a0: &a0 [{', '.join(['0'] * fanout)}]"]
    lines += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * fanout)}]" for i in range(1, levels)]
    lines += ["  loop: &loop [*loop]" if fanout == 1 else ""]
    section, *path = where.split(".")
    lines += [f"{section}:", f"  {'.'.join(path)}: {'*loop' if fanout == 1 else f'*a{levels - 1}'}"]
    _validate(_write(tmp_path, "\n".join(lines) + "\n"))


def test_python_tags_are_refused_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    _validate(_write(tmp_path, f'name: x\nbase: !!python/object/apply:os.system ["touch {marker}"]\n'))
    assert not marker.exists()


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


def _keyed(tree: Any) -> list[tuple]:
    """Positions whose parent is a mapping (a key that can be deleted or renamed)."""
    return [where for where in _nodes(tree)[1:] if isinstance(_get(tree, where[:-1]), dict)]


def _section(tree: dict[str, Any], *keys: str) -> dict[str, Any] | None:
    """``tree[k1][k2]...``, created as empty mappings on the way; ``None`` where a non-mapping is in the way."""
    for key in keys:
        if not isinstance(tree, dict):
            return None
        tree = tree.setdefault(key, {})
    return tree if isinstance(tree, dict) else None


def _delete(tree: Any, data: st.DataObject) -> Any:
    if spots := _keyed(tree):
        spot = data.draw(st.sampled_from(spots))
        del _get(tree, spot[:-1])[spot[-1]]
    return tree


def _rename(tree: Any, data: st.DataObject) -> Any:
    if spots := _keyed(tree):
        spot = data.draw(st.sampled_from(spots))
        parent = _get(tree, spot[:-1])
        parent[data.draw(NAMES)] = parent.pop(spot[-1])
    return tree


def _replace(tree: Any, data: st.DataObject) -> Any:
    return _set(tree, data.draw(st.sampled_from(_nodes(tree))), data.draw(TREES))


def _insert(tree: Any, data: st.DataObject) -> Any:
    mappings = [where for where in _nodes(tree) if isinstance(_get(tree, where), dict)]
    _get(tree, data.draw(st.sampled_from(mappings)))[data.draw(NAMES)] = data.draw(TREES)
    return tree


def _axis(tree: Any, data: st.DataObject) -> Any:
    """Wrong types, an empty list or a non-list on a grid or zip axis."""
    section = _section(tree, data.draw(st.sampled_from(["grid", "zip"])))
    if section is not None:
        path = data.draw(st.sampled_from([*section, "train.lr", "model.connector.type", "data.source", "eval.shots"]))
        section[path] = data.draw(st.lists(TREES, max_size=4) | TREES)
    return tree


def _nest(tree: Any, data: st.DataObject) -> Any:
    where = data.draw(st.sampled_from(_nodes(tree)))
    value, wrap = _get(tree, where), data.draw(st.sampled_from(["list", "mapping"]))
    for _ in range(data.draw(st.integers(1, 200))):
        value = [value] if wrap == "list" else {"model": value}
    return _set(tree, where, value)


def _law(tree: Any, data: st.DataObject) -> Any:
    train = _section(tree, "base", "train")
    if train is not None:
        train["lr"] = {"law": data.draw(TREES | PATHS | st.dictionaries(st.sampled_from(["a", "b", "c"]), NUMBERS))}
    return tree


def _dotted(tree: Any, data: st.DataObject) -> Any:
    """A grid, zip or exclude key made of random segments."""
    path = ".".join(data.draw(st.lists(NAMES, min_size=1, max_size=5)))
    values = data.draw(st.lists(SCALARS, min_size=1, max_size=3))
    section = tree.setdefault(data.draw(st.sampled_from(["grid", "zip", "exclude"])), {})
    if isinstance(section, dict):
        section[path] = values
    elif isinstance(section, list):
        section.append({path: values[0]})
    return tree


PATH_FIELDS: dict[str, Callable[[Any], Any]] = {
    "data.tokenizer": lambda path: path,
    "model.encoder.checkpoint": lambda path: path,
    "model.decoder.checkpoint": lambda path: path,
    "eval.textcore": lambda path: ["world", path],
    "data.source": lambda path: {"caption": path, "interleaved": path, "text": path},
    "eval.tasks": lambda path: [{"type": "vqav2", "path": path, "annotations": path}],
}


def _path(tree: Any, data: st.DataObject) -> Any:
    """A path-valued field pointed at a random path, often one of the junk files beside the spec."""
    field = data.draw(st.sampled_from(sorted(PATH_FIELDS)))
    *sections, leaf = field.split(".")
    section = _section(tree, "base", *sections)
    if section is not None:
        section[leaf] = PATH_FIELDS[field](data.draw(PATHS))
    return tree


def _extends(tree: Any, data: st.DataObject) -> Any:
    """An ``extends`` of a random value: a path, often a junk file beside the spec or the spec itself (a cycle)."""
    tree["extends"] = data.draw(st.sampled_from(["spec.yaml", "./spec.yaml", "junk.json", "junk"]) | PATHS | TREES)
    return tree


MUTATIONS = [_delete, _rename, _replace, _insert, _axis, _nest, _law, _dotted, _path, _extends]


def _junk_files(folder: Path, data: st.DataObject) -> None:
    """Files of random content for path fields to land on: a .pt (random bytes, maybe behind a pickle or zip
    header), JSON and jsonl (random text or JSON of a random tree), and a folder holding one more .pt."""
    header = data.draw(st.sampled_from([b"", b"\x80\x02", b"\x80\x04\x95", b"PK\x03\x04"]))
    (folder / "junk.pt").write_bytes(header + data.draw(st.binary(max_size=64)))
    for name in ("junk.json", "junk.jsonl"):
        text = data.draw(st.text(max_size=40) | TREES.map(lambda tree: json.dumps(tree, default=str)))
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "junk").mkdir(exist_ok=True)
    (folder / "junk" / "weights.pt").write_bytes(data.draw(st.binary(max_size=32)))


@FUZZ
@given(name=st.sampled_from(sorted(REAL_SPECS)), data=st.data())
def test_mutated_real_sweeps(name: str, data: st.DataObject, tmp_path: Path) -> None:
    _junk_files(tmp_path, data)
    tree: Any = copy.deepcopy(REAL_SPECS[name])
    for _ in range(data.draw(st.integers(1, 3))):
        if isinstance(tree, dict):
            tree = data.draw(st.sampled_from(MUTATIONS))(tree, data)
    _validate(_write(tmp_path, _dump(tree)))


@FUZZ
@given(name=st.sampled_from(sorted(REAL_SPECS)), data=st.data())
def test_edited_lines_of_real_sweeps(name: str, data: st.DataObject, tmp_path: Path) -> None:
    """Duplicate keys (an error naming both lines), a line repeated at another indentation, dropped or truncated."""
    shutil.copytree(SWEEPS / "baselines", tmp_path / "baselines", dirs_exist_ok=True)  # what the file extends
    lines = (SWEEPS / f"{name}.yaml").read_text().splitlines()
    for _ in range(data.draw(st.integers(1, 3))):
        index = data.draw(st.integers(0, len(lines) - 1))
        edit = data.draw(st.sampled_from(["duplicate", "indent", "drop", "truncate"]))
        if edit == "duplicate":
            lines.insert(data.draw(st.integers(0, len(lines))), lines[index])
        elif edit == "indent":
            lines[index] = " " * data.draw(st.integers(1, 6)) + lines[index]
        elif edit == "drop" and len(lines) > 1:
            del lines[index]
        elif edit == "truncate":
            lines[index] = lines[index][: data.draw(st.integers(0, max(len(lines[index]) - 1, 0)))]
    _validate(_write(tmp_path, "\n".join(lines) + "\n"))


def test_the_real_sweeps_are_valid() -> None:
    for name in REAL_SPECS:
        _validate(SWEEPS / f"{name}.yaml")
