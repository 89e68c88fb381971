"""The trial config's reference: every field with its type, default, bounds and description, read from the
pydantic models themselves (``mm1 schema``; ``docs/config.md`` is its Markdown, checked by a test).

A union section (``model.connector``, one class per connector family) lists each family's fields under the
family's name; a field that takes a name or a mapping (``data.source``, ``train.lr``) is one entry whose type
says both.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import asdict, dataclass
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from mm1core.config import TrialConfig


@dataclass(frozen=True)
class FieldDoc:
    """One field of the reference: ``path`` (dotted; ``[family]`` for a member of a union section)."""

    path: str
    type: str
    default: str
    bounds: str
    description: str
    family: str = ""


def reference(model: type[BaseModel] = TrialConfig, prefix: str = "", family: str = "") -> list[FieldDoc]:
    """The fields of ``model``, sections expanded in declaration order."""
    docs: list[FieldDoc] = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        sections = _section_classes(info.annotation)
        if sections and len(sections) == 1 and not _optional(info.annotation):
            docs += reference(sections[0], path + ".", family)
            continue
        if len(sections) > 1 and _is_family_union(sections):
            for section in sections:
                docs += reference(section, path + ".", _family_name(section))
            continue
        docs.append(FieldDoc(path, type_text(info.annotation), _default(info), _bounds(info), _describe(info), family))
        for section in sections:  # an optional section (moe: null or {...}): its fields too
            docs += reference(section, path + ".", family)
    return docs


def _describe(info: FieldInfo) -> str:
    return " ".join((info.description or "").split())


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return "(required)"
    else:
        value = info.default
    if isinstance(value, BaseModel):
        return "(section)"
    return json.dumps(value, default=str)


def _bounds(info: FieldInfo) -> str:
    parts = []
    for item in info.metadata:
        for attribute, symbol in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="), ("min_length", "len >=")):
            value = getattr(item, attribute, None)
            if value is not None and isinstance(item, (annotated_types.BaseMetadata, object)):
                parts.append(f"{symbol} {value:g}" if isinstance(value, float) else f"{symbol} {value}")
    return ", ".join(dict.fromkeys(parts))


def type_text(annotation: Any) -> str:
    """A short, readable type: ``int``, ``int | null``, ``list[int]``, ``"none" | "subimage"``, ``{a, b}``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is typing.Annotated:
        return type_text(args[0])
    if origin is typing.Literal:
        return " | ".join(json.dumps(arg) for arg in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(dict.fromkeys(type_text(arg) for arg in args))
    if origin in (list, tuple):
        return f"list[{' | '.join(type_text(arg) for arg in args if arg is not Ellipsis)}]"
    if origin is dict:
        return f"map[{type_text(args[0])}, {type_text(args[1])}]"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "{" + ", ".join(annotation.model_fields) + "}"
    return {int: "int", float: "number", str: "string", bool: "bool"}.get(
        annotation, getattr(annotation, "__name__", str(annotation))
    )


def _section_classes(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _section_classes(args[0])
    members = [_unwrap(arg) for arg in args]
    if origin in (typing.Union, types.UnionType) and all(
        arg is type(None) or (isinstance(arg, type) and issubclass(arg, BaseModel)) for arg in members
    ):
        return [arg for arg in members if arg is not type(None)]
    return []


def _unwrap(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _optional(annotation: Any) -> bool:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _optional(args[0])
    return origin in (typing.Union, types.UnionType) and type(None) in args


def _is_family_union(sections: list[type[BaseModel]]) -> bool:
    return all(_family_name(section) for section in sections)


def _family_name(section: type[BaseModel]) -> str:
    field = section.model_fields.get("type")
    literals = typing.get_args(field.annotation) if field is not None else ()
    return literals[0] if len(literals) == 1 and isinstance(literals[0], str) else ""


def as_json(docs: list[FieldDoc]) -> str:
    return json.dumps([asdict(doc) for doc in docs], indent=1)


def as_text(docs: list[FieldDoc]) -> str:
    lines = []
    for doc in docs:
        where = f"{doc.path} [{doc.family}]" if doc.family else doc.path
        bounds = f" ({doc.bounds})" if doc.bounds else ""
        lines.append(f"{where}: {doc.type} = {doc.default}{bounds}")
        if doc.description:
            lines.append(f"    {doc.description}")
    return "\n".join(lines)


def as_markdown(docs: list[FieldDoc]) -> str:
    """The reference page (``docs/config.md``)."""
    head = [
        "# Trial config reference",
        "",
        "Generated from the config models by `mm1 schema --markdown` (a test checks it is current). Every field",
        "of a trial config, i.e. of a sweep's `base` section and of a `mm1 train` file, by dotted path: what `grid`,",
        "`zip`, `exclude` and `--set` name. A field marked with a family (`[c-abstractor]`) exists only when the",
        "section's `type` is that family.",
        "",
        "| field | type | default | bounds | description |",
        "|---|---|---|---|---|",
    ]
    rows = []
    for doc in docs:
        where = f"`{doc.path}` [{doc.family}]" if doc.family else f"`{doc.path}`"
        cells = [where, f"`{doc.type}`", f"`{doc.default}`", doc.bounds, doc.description]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(head + rows) + "\n"
