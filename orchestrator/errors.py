"""The one error type of bad sweep input, shared by the modules that read, validate and expand a sweep."""

from __future__ import annotations


class SpecError(ValueError):
    """Invalid sweep input; ``str()`` is the user-facing message (one line per problem)."""
