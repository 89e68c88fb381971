"""Checks of a LLaVA-style conversations JSON (``data.sft.source``), torch-free so that validating a sweep stays
fast: ``sft_source_problem`` says in one line what is wrong (file, item, field) or that nothing is. The loader is
``mm1core.data.sft.LlavaConversations``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mm1core.config import printable
from mm1core.data.records import IMAGE

ROLES = ("human", "gpt")


def _turn_problem(entry: dict[str, Any], has_image: bool) -> str | None:
    """Why ``entry["conversations"]`` is not a list of human/gpt turns with at most one ``<image>``, in a human turn
    and only when the entry has an image (``None`` when it is)."""
    turns = entry.get("conversations")
    if not isinstance(turns, list) or not turns:
        return "conversations: missing or not a non-empty list"
    for number, turn in enumerate(turns):
        expected = ROLES[number % 2]
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            return f"conversations[{number}]: not an object with a text 'value'"
        if turn.get("from") != expected:
            found = printable(str(turn.get("from")))
            return f"conversations[{number}].from: {found!r}, expected {expected!r} (human and gpt alternate)"
    if len(turns) % 2:
        return f"conversations[{len(turns) - 1}]: a human turn without a gpt answer"
    placeholders = [number for number, turn in enumerate(turns) if IMAGE in turn["value"]]
    if placeholders and not has_image:
        return f"conversations[{placeholders[0]}].value: {IMAGE} in an entry without an image"
    if len(placeholders) > 1 or sum(turn["value"].count(IMAGE) for turn in turns) > 1:
        return f"conversations[{placeholders[-1]}].value: more than one {IMAGE} (one image per entry)"
    if placeholders and placeholders[0] % 2:
        return f"conversations[{placeholders[0]}].value: {IMAGE} in a gpt turn"
    return None


def entry_problem(entry: Any) -> str | None:
    """Why a JSON list item is not a LLaVA conversation (``None`` when it is); the message names the field."""
    if not isinstance(entry, dict):
        return f"not an object but {type(entry).__name__}"
    if "image" in entry and (not isinstance(entry["image"], str) or not entry["image"]):
        return "image: not a file name"
    return _turn_problem(entry, "image" in entry)


def read_entries(path: str) -> list[Any]:
    """The JSON list in ``path``; ``ValueError`` (one line, naming the file) otherwise."""
    try:
        with open(path, encoding="utf-8") as file:
            entries = json.load(file)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable JSON file ({printable(str(error))})") from None
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a JSON list of conversations, got a {type(entries).__name__}")
    if not entries:
        raise ValueError(f"{path}: the list holds no conversation")
    return entries


def sft_source_problem(path: str, images: str | None) -> str | None:
    """Why the LLaVA-style JSON at ``path`` cannot be trained on (one line naming the file, item and field), or
    ``None``: unreadable, not a list, an item without well-formed human/gpt conversations, or an image file
    that does not exist (the first one missing; every image is checked, without being read)."""
    try:
        entries = read_entries(path)
    except ValueError as error:
        return str(error)
    folder = image_folder(path, images)
    for index, entry in enumerate(entries):
        problem = entry_problem(entry)
        if problem:
            return f"{path}: item {index}: {problem}"
    for index, entry in enumerate(entries):
        if "image" in entry and not image_path(folder, entry["image"]).is_file():
            return f"{path}: item {index}: image {printable(entry['image'])} not found under {folder}"
    return None


def image_folder(path: str, images: str | None) -> Path:
    """Where relative image names resolve: ``images``, else the JSON's folder."""
    return Path(images) if images is not None else Path(path).parent


def image_path(folder: Path, name: str) -> Path:
    return Path(name) if Path(name).is_absolute() else folder / name
