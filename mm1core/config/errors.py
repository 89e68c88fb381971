"""Validation errors as one ``dotted.path: message`` line each, the form every mm1 command prints."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ValidationError

from mm1core.config.base import UNION_TAGS, printable
from mm1core.config.dotted import field_names, section_at, unknown_hint

_NESTED_PATH = re.compile(r"^([a-z_]+(?:\.[a-z_]+)*): ")


def describe_errors(error: ValidationError, prefix: str = "", model: type[BaseModel] | None = None) -> list[str]:
    """One ``path: message`` line per pydantic error; paths are dotted, list items as ``[i]``. With ``model`` (the
    class validated), an unknown key gets the fields it could have been (``did you mean 'num_tokens'?``)."""
    return describe_error_items(error.errors(), prefix, model)


def describe_error_items(items: list[Any], prefix: str = "", model: type[BaseModel] | None = None) -> list[str]:
    lines = []
    for item in items:
        path = prefix
        for part in item["loc"]:
            if part in UNION_TAGS:
                continue
            if isinstance(part, int):
                path += f"[{part}]"
            else:
                path += f".{printable(str(part))}" if path else printable(str(part))
        message = printable(item["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, "))
        nested = _NESTED_PATH.match(message)  # a section's validator naming the field at fault
        if nested:
            path = f"{path}.{nested[1]}" if path else nested[1]
            message = message[nested.end() :]
        if item["type"] == "extra_forbidden":
            message = "unknown key" + _hint(model, tuple(item["loc"]))
        elif item["type"] == "missing":
            message = "required field is missing"
        lines.append(f"{path}: {message}" if path else message)
    return lines


def _hint(model: type[BaseModel] | None, location: tuple[Any, ...]) -> str:
    if model is None or not location:
        return ""
    sections = section_at(model, location[:-1])
    return unknown_hint(str(location[-1]), field_names(sections)) if sections else ""
