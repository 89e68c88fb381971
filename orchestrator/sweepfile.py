"""A sweep file read into one mapping, before validation (DESIGN.md, "Sweep YAML"): YAML that refuses a key
written twice, the ``extends`` chain merged, ``--set`` overrides parsed and applied.

Resolution order: defaults < extended files (the farthest first) < the file itself < ``--set``. An extending file
is merged over the file it extends: mappings key by key, recursively; lists and scalars replaced. The ``extends``
key is dropped and only the merged mapping is validated, so an extended file may be a partial sweep (no ``name``).
A ``--set`` value replaces what it names, a whole section included, as a grid value does.

Relative paths among the values (data, tokenizer, checkpoints, ``fit.json``) resolve against the folder of the
file named on the command line, whichever file of the chain wrote them: a baseline that other folders extend
holds no relative paths (those in ``sweeps/baselines/`` hold no paths at all).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from mm1core.config import TrialConfig, path_problem, printable, set_path
from orchestrator.errors import SpecError

MAX_DEPTH, MAX_VALUES = 64, 100_000  # a sweep nests about six levels and holds some hundred values
MERGE_TAG = "tag:yaml.org,2002:merge"  # ``<<: *anchor`` brings keys in; they are no duplicates of the keys beside
DOTTED_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")


# ------------------------------------------------------------------------------------------ YAML
class _DepthLimitedLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader (plain data, no Python tags) refusing nesting beyond ``MAX_DEPTH`` while it
    composes, before a deep document exhausts Python's recursion limit."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.depth >= MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise SpecError(f"line {mark.line + 1}, column {mark.column + 1}: nested more than {MAX_DEPTH} levels deep")
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _duplicate_keys(root: yaml.Node) -> list[str]:
    """``dotted.path: duplicate key (lines A and B)`` for every key written twice in one mapping (PyYAML would keep
    the last without a word), in the order of the file. Each node is walked once, however many aliases name it."""
    found: list[tuple[int, str]] = []
    stack, walked = [(root, "")], set()
    while stack:
        node, where = stack.pop()
        if id(node) in walked:
            continue
        walked.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack += [(item, f"{where}[{index}]") for index, item in enumerate(node.value)]
        if not isinstance(node, yaml.MappingNode):
            continue
        first_line: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            if key.tag == MERGE_TAG:
                stack.append((value, where))
                continue
            name = printable(str(key.value)) if isinstance(key, yaml.ScalarNode) else "?"
            path = f"{where}.{name}" if where else name
            line = key.start_mark.line + 1
            if isinstance(key, yaml.ScalarNode) and (key.tag, key.value) in first_line:
                found.append((line, f"{path}: duplicate key (lines {first_line[key.tag, key.value]} and {line})"))
            elif isinstance(key, yaml.ScalarNode):
                first_line[key.tag, key.value] = line
            stack.append((value, path))
    return [problem for _, problem in sorted(found)]


def _safe_load(text: str) -> Any:
    """``yaml.safe_load(text)`` with the depth limit and duplicate keys refused (``SpecError``)."""
    loader = _DepthLimitedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        problems = _duplicate_keys(node)
        if problems:
            raise SpecError("\n".join(problems))
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _yaml_problem(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    return f"{where}invalid YAML: {getattr(error, 'problem', None) or 'not valid YAML'}"


def _shape_problem(data: Any) -> str | None:
    """Why ``data`` is too deep or too large to validate (iterative, and stopped early: YAML aliases can make a
    structure that refers to itself or that grows exponentially as it is walked)."""
    stack, seen = [(data, 0)], 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            return f"more than {MAX_VALUES} values (YAML aliases that repeat themselves?)"
        if isinstance(node, (dict, list)):
            if depth >= MAX_DEPTH:
                return f"nested more than {MAX_DEPTH} levels deep (or a YAML alias refers to itself)"
            stack += [(child, depth + 1) for child in (node.values() if isinstance(node, dict) else node)]
    return None


def read_yaml(path: Path) -> dict[str, Any]:
    """Reads a YAML mapping (a sweep or a trial file); every failure is a ``SpecError`` of one line per problem,
    the caller names the file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError("no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # a folder, no permission, not UTF-8, a NUL in the name
        raise SpecError(f"cannot read ({type(exc).__name__})") from None
    try:
        data = _safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(_yaml_problem(exc)) from None
    problem = _shape_problem(data)  # what aliases build; validation and expansion recurse: refuse before either
    if problem:
        raise SpecError(problem)
    if not isinstance(data, dict):
        raise SpecError(f"expected a mapping at the top level, got {type(data).__name__}")
    if any(not isinstance(k, str) for k in data):
        raise SpecError("top-level keys must be strings")
    return data


# ------------------------------------------------------------------------------------------ extends
def merge(lower: dict[str, Any], upper: dict[str, Any]) -> dict[str, Any]:
    """``upper`` over ``lower``: mappings merged key by key, recursively; any other value of ``upper`` (a list, a
    scalar, ``null``) replaces ``lower``'s. A key keeps its place in ``lower``; new keys follow. Neither changes."""
    merged = dict(lower)
    for key, value in upper.items():
        below = merged.get(key)
        merged[key] = merge(below, value) if isinstance(value, dict) and isinstance(below, dict) else value
    return merged


def read_sweep(path: Path) -> dict[str, Any]:
    """The file at ``path`` merged over the chain of files it ``extends`` (each path relative to the folder of the
    file that names it). A problem in an extended file is named through the chain:
    ``extends: baselines/toy.yaml: base.train.lr: duplicate key (lines 4 and 6)``."""
    return _read_chain(path, [(os.path.realpath(path), printable(path.name))])


def _read_chain(path: Path, chain: list[tuple[str, str]]) -> dict[str, Any]:
    """``chain``: (real path, name as written) of each file on the way here, the command-line file first."""
    prefix = "".join(f"extends: {shown}: " for _, shown in chain[1:])
    try:
        data = read_yaml(path)
    except SpecError as error:
        raise SpecError("\n".join(prefix + line for line in str(error).split("\n"))) from None
    if "extends" not in data:
        return data
    written = data.pop("extends")
    if not isinstance(written, str) or not written.strip():
        got = "an empty path" if isinstance(written, str) else type(written).__name__
        raise SpecError(f"{prefix}extends: expected the path of a sweep file, got {got}")
    shown = printable(written)
    target = Path(os.path.expanduser(written))
    target = target if target.is_absolute() else path.parent / target
    try:
        real = os.path.realpath(target)
    except (OSError, ValueError):  # a NUL character in the name
        raise SpecError(f"{prefix}extends: {shown}: not a usable path") from None
    if real in (seen for seen, _ in chain):
        raise SpecError(f"extends: a cycle: {' -> '.join([*(name for _, name in chain), shown])}")
    if not os.path.exists(real):
        raise SpecError(f"{prefix}extends: {shown}: no such file ({printable(real)})")
    return merge(_read_chain(target, [*chain, (real, shown)]), data)


# ------------------------------------------------------------------------------------------ --set
def parse_sets(sets: Sequence[str]) -> dict[str, Any]:
    """``--set dotted.path=value`` entries as ``{path: value}``, each value read as YAML by the loader a sweep file
    goes through (``3e-3``, ``[0, 4]``, ``{num_experts: 4}``, ``null``). A malformed entry or a path given twice is a
    ``SpecError`` (``--set 'x': expected dotted.path=value``)."""
    parsed: dict[str, Any] = {}
    problems: list[str] = []
    for entry in sets:
        path, equals, text = entry.partition("=")
        path = path.strip()
        if not equals or not DOTTED_PATH.match(path):
            problems.append(f"--set {printable(repr(entry))}: expected dotted.path=value")
            continue
        try:
            value = _safe_load(text)
            problem = _shape_problem(value)
        except yaml.YAMLError as exc:
            problem = _yaml_problem(exc)
        except SpecError as exc:
            problem = str(exc).replace("\n", "; ")
        if problem:
            problems.append(f"--set {path}: {problem}")
        elif path in parsed:
            problems.append(f"--set {path}: given twice")
        else:
            parsed[path] = value
    if problems:
        raise SpecError("\n".join(problems))
    return parsed


def set_path_problems(sets: dict[str, Any]) -> list[str]:
    """``--set path: why`` for each path that names no trial-config field (the message of an unknown grid path)."""
    return [f"--set {path}: {problem}" for path in sets if (problem := path_problem(TrialConfig, path))]


def with_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of the trial-config mapping ``base`` with each ``dotted.path: value`` set (a section replaced)."""
    tree = copy.deepcopy(base)
    for path, value in overrides.items():
        set_path(tree, path, value)
    return tree


def apply_sets(tree: dict[str, Any], sets: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``tree`` (a sweep's ``base`` or a trial file) with the ``parse_sets`` values in place; ``SpecError``
    for a path that names no field."""
    problems = set_path_problems(sets)
    if problems:
        raise SpecError("\n".join(problems))
    return with_overrides(tree, sets)
