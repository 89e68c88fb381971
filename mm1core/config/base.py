"""What every config section shares: strictness about unknown keys, the tags of its unions, and one-line text.

Torch-free and file-free: a config is plain, typed data; reading files is the preflight's job
(``mm1core.preflight``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from mm1core.connectors.config import CONNECTOR_TYPES
from mm1core.registry import Registry


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in a YAML must never silently fall back to a default."""

    model_config = ConfigDict(extra="forbid")


# Tags of the unions that take a name or a mapping (``data.source``, ``eval.tasks[i]``, ``train.lr``,
# ``train.weight_decay``). They are left out of error paths: a wrong value gets one error, not one per member.
SOURCE_NAME, SOURCE_STREAMS = "source:name", "source:streams"
TASK_NAME, TASK_FILE = "task:name", "task:file"
DECAY_NUMBER, DECAY_AUTO = "weight_decay:number", "weight_decay:auto"
LR_NUMBER, LR_LAW = "lr:number", "lr:law"
LAW_COEFFICIENTS, LAW_FILE = "law:coefficients", "law:file"
UNION_TAGS = {
    SOURCE_NAME,
    SOURCE_STREAMS,
    TASK_NAME,
    TASK_FILE,
    DECAY_NUMBER,
    DECAY_AUTO,
    LR_NUMBER,
    LR_LAW,
    LAW_COEFFICIENTS,
    LAW_FILE,
    *CONNECTOR_TYPES,  # the connector family a field belongs to (model.connector.heads is attn-pool's)
}


def printable(text: str) -> str:
    """``text`` with line breaks, tabs and other unprintable characters escaped (``\\n``): a value quoted in an
    error message keeps it one line."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def registered(registry: Registry[Any], name: str) -> str:
    """``name`` if ``registry`` has it; else ``ValueError`` listing the names it has."""
    if name not in registry:
        raise ValueError(registry.unknown_message(name))
    return name


def no_nul(path: str | None) -> str | None:
    """A path value as given (the preflight resolves and checks it); refuses only what no file system accepts."""
    if path is not None and "\0" in path:
        raise ValueError(f"{printable(path)!r}: a path cannot contain a NUL character")
    return path
