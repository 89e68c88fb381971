"""Dotted paths into a config (``model.connector.type``): flattening for MLflow params, setting a value by path,
and naming the fields a path could have meant."""

from __future__ import annotations

import copy
import difflib
import json
import types
import typing
from typing import Any

from pydantic import BaseModel


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Every leaf of ``tree`` under its dotted path; lists as JSON text (MLflow params are strings)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = json.dumps(value) if isinstance(value, list) else value
    return flat


def set_path(tree: dict[str, Any], path: str, value: Any) -> None:
    """Sets ``tree[a][b][c] = value`` for ``path == "a.b.c"``, creating the dicts on the way."""
    *parents, leaf = path.split(".")
    for key in parents:
        node = tree.get(key)
        if not isinstance(node, dict):
            node = tree[key] = {}
        tree = node
    tree[leaf] = value


def with_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with each ``dotted.path: value`` of ``overrides`` set in it."""
    tree = copy.deepcopy(base)
    for path, value in overrides.items():
        set_path(tree, path, value)
    return tree


def path_problem(model: type[BaseModel], path: str) -> str | None:
    """Why ``path`` names no field of ``model`` (``None`` when it does), with the fields it could have meant.

    A section (``model.highres``, ``model.decoder.moe``) is a value too: a mapping that replaces the whole
    section (its omitted fields take their defaults, not the base's), or ``null`` for an optional one. A field
    of one family of a union section (``model.connector.depth``, the C-Abstractor's) is a path of that section.
    """
    sections: list[type[BaseModel]] = [model]
    walked: list[str] = []
    for key in path.split("."):
        if not sections:
            return f"{'.'.join(walked)} has no field {key!r}"
        owners = [section for section in sections if key in section.model_fields]
        if not owners:
            where = ".".join(walked) or "a trial config"
            return f"{where} has no field {key!r}{unknown_hint(key, field_names(sections))}"
        walked.append(key)
        sections = [nested for owner in owners for nested in _sections(owner.model_fields[key].annotation)]
    return None


def field_names(sections: list[type[BaseModel]]) -> list[str]:
    """The fields of ``sections`` (the members of a union section), each once, in order."""
    return list(dict.fromkeys(name for section in sections for name in section.model_fields))


def unknown_hint(key: str, fields: list[str]) -> str:
    """`` (did you mean 'x'? fields: a, b, c)`` for an unknown ``key`` among ``fields``."""
    close = difflib.get_close_matches(key, fields, n=1, cutoff=0.6)
    guess = f"did you mean {close[0]!r}? " if close else ""
    return f" ({guess}fields: {', '.join(fields)})"


def section_at(model: type[BaseModel], location: tuple[Any, ...]) -> list[type[BaseModel]]:
    """The section classes at a pydantic error location (field names, list indices, union tags) under ``model``:
    what an unknown key there could have been. Empty when the location leaves the sections."""
    sections: list[type[BaseModel]] = [model]
    for part in location:
        if isinstance(part, int):
            continue  # a list item: the list's item type is already among the candidates
        owners = [section for section in sections if part in section.model_fields]
        if owners:
            sections = [n for owner in owners for n in _sections(owner.model_fields[part].annotation, containers=True)]
            continue
        tagged = [section for section in sections if _tag_of(section) == part]
        if not tagged and not isinstance(part, str):
            return []
        sections = tagged or sections  # a union tag picks its member; other tags (lr:law) keep the candidates
    return sections


def _tag_of(section: type[BaseModel]) -> str | None:
    """The literal ``type`` of a discriminated union member (``"c-abstractor"``), else ``None``."""
    field = section.model_fields.get("type")
    if field is None:
        return None
    literals = typing.get_args(field.annotation)
    return literals[0] if len(literals) == 1 and isinstance(literals[0], str) else None


def _sections(annotation: Any, containers: bool = False) -> list[type[BaseModel]]:
    """The model classes a section annotation holds: ``Section``, ``Section | None``, a discriminated union of
    families (``model.connector``); with ``containers``, also the items of lists and of unions that mix sections
    with plain values (``list[str | FileTask]``, ``float | LRLaw``), which are values, not paths, for
    ``path_problem``."""
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in _UNIONS:
        members = [_unwrap(arg) for arg in args if arg is not type(None)]
        if not containers and not all(isinstance(m, type) and issubclass(m, BaseModel) for m in members):
            return []
    elif not (containers and origin in (list, dict)):
        return []
    found: list[type[BaseModel]] = []
    for candidate in args:
        found += [section for section in _sections(candidate, containers) if section not in found]
    return found


def _unwrap(annotation: Any) -> Any:
    """``X`` of ``Annotated[X, ...]``."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


_UNIONS = (typing.Union, types.UnionType)
