"""Reading ``torch.save`` files without running their code: the only ``torch.load`` of the package.

``weights_only=True`` always: tensors and plain containers unpickle, a pickle naming any other global (a class,
``os.system``) is refused before anything runs, so a checkpoint from elsewhere is data, never code. Every failure
is a ``ValueError`` of one line naming the file, ready for ``mm1: error:``.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class UnreadableWeights(ValueError):
    """A ``torch.load`` that failed; ``reason`` is the message without the file's name."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path} {reason}")
        self.reason = reason


def load_weights(path: str | Path, *, mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, memory-mapped if asked (and the file's format allows);
    ``UnreadableWeights`` (a ``ValueError``) when it fails."""
    import torch

    with warnings.catch_warnings():  # a foreign pickle protocol only warns; the load then fails or not on its own
        warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
        try:
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            except RuntimeError as error:
                if not mmap or "mmap" not in str(error):
                    raise
                return torch.load(path, map_location="cpu", weights_only=True)  # legacy format: not mappable
        except Exception as error:  # noqa: BLE001 - any failure to unpickle means: not a file we can read
            raise UnreadableWeights(path, unreadable(error)) from None


def unreadable(error: BaseException) -> str:
    """Why a ``torch.load`` failed, in one line: a refused pickle says what it held; torch's advice to load with
    ``weights_only=False`` is left out on purpose."""
    text = _ANSI.sub("", str(error))
    marker = "WeightsUnpickler error:"
    if marker in text:
        detail = next((line.strip() for line in text.split(marker, 1)[1].splitlines() if line.strip()), "")
        detail = detail.split(". Please")[0].rstrip(".")
        if "Unsupported global" in detail:
            return f"holds more than tensors ({detail}): refused, as unpickling it could run code"
        return f"is not a torch file of tensors ({detail})"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"cannot be read as a torch file ({type(error).__name__}{': ' + first if first else ''})"
