"""What a sweep YAML can set under ``model.connector``, one typed config per family (MM1 Sec. 3.2, Fig. 4); torch-free.

``ConnectorConfig`` is a pydantic union discriminated by ``type``. Every family has ``num_tokens`` (image tokens
per image view) and ``freeze``; ``attn-pool`` adds its cross-attention ``heads``, ``c-abstractor`` its ``depth``
(bottleneck blocks per stage) and ``hidden_width``. The defaults are the modules' own (``mm1core.connectors.sizes``),
so a config that does not name a family field builds exactly what it built before the fields existed. A mapping
without ``type`` is an ``avg-pool`` (the default family), as it was when ``type`` was a plain field.

Checks that need only the config's own values are field bounds here (``heads >= 1``, ``depth >= 1``); those that
need the encoder are ``problems(encoder_width, grid)``, which the model config and the preflight call with the
encoder they build (a registered preset's, or a checkpoint's): ``(field, message)`` pairs, fields relative to
``model.connector``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag

from mm1core.connectors.sizes import (
    ATTN_POOL_HEADS,
    C_ABSTRACTOR_DEPTH,
    patch_count_problem,
    square_grid_problem,
)

DEFAULT_TYPE = "avg-pool"
COMMON_FIELDS = frozenset({"type", "num_tokens", "freeze"})  # the rest of a config are its family's module kwargs


class ConnectorBase(BaseModel):
    """The fields every connector family has. ``token_problem(num_tokens, grid)`` says why a family cannot give
    ``num_tokens`` tokens from a ``grid x grid`` patch grid (``None`` when it can)."""

    model_config = ConfigDict(extra="forbid")

    type: str
    num_tokens: int = Field(16, gt=0, description="image tokens per image view (MM1 Fig. 4: 64 or 144)")
    freeze: bool = Field(False, description="keep the connector's weights fixed (MM1 trains it)")

    token_problem: ClassVar[Callable[[int, int], str | None]] = staticmethod(square_grid_problem)

    def problems(self, encoder_width: int, grid: int) -> list[tuple[str, str]]:
        """``(field, message)`` for each way this connector cannot be built on an encoder of ``encoder_width``
        channels whose views give a ``grid x grid`` patch grid (empty when it can)."""
        problem = type(self).token_problem(self.num_tokens, grid)
        found = [("num_tokens", f"{self.type} cannot give {self.num_tokens} tokens: {problem}")] if problem else []
        return found + self.width_problems(encoder_width)

    def width_problems(self, encoder_width: int) -> list[tuple[str, str]]:
        """What the encoder's width rules out for this family (none for the pooling ones)."""
        return []

    def module_kwargs(self) -> dict[str, Any]:
        """The family's own fields, as the keyword arguments of its module class."""
        return {name: getattr(self, name) for name in type(self).model_fields if name not in COMMON_FIELDS}


class AvgPoolConfig(ConnectorBase):
    """``avg-pool``: n x n average pooling of the patch grid, then the readout MLP (``num_tokens`` a square)."""

    type: Literal["avg-pool"] = Field("avg-pool", description="n x n average pooling (MM1 Fig. 4)")


class AttnPoolConfig(ConnectorBase):
    """``attn-pool``: ``num_tokens`` learnable queries cross-attend to the patches (any count up to the patches)."""

    type: Literal["attn-pool"] = Field("attn-pool", description="attention pooling: learned queries (MM1 Fig. 4)")
    heads: int = Field(ATTN_POOL_HEADS, ge=1, le=64, description="cross-attention heads; must divide the encoder width")

    token_problem: ClassVar[Callable[[int, int], str | None]] = staticmethod(patch_count_problem)

    def width_problems(self, encoder_width: int) -> list[tuple[str, str]]:
        if encoder_width % self.heads:
            return [("heads", f"{self.heads} heads do not divide the encoder width {encoder_width}")]
        return []


class CAbstractorConfig(ConnectorBase):
    """``c-abstractor``: residual conv blocks, n x n average pooling, conv blocks, readout (Honeybee)."""

    type: Literal["c-abstractor"] = Field(
        "c-abstractor", description="convolutions, pooling, convolutions (Honeybee C-Abstractor)"
    )
    depth: int = Field(
        C_ABSTRACTOR_DEPTH, ge=1, le=16, description="bottleneck blocks per stage, before and after the pooling"
    )
    hidden_width: int | None = Field(
        None, gt=0, le=65536, description="channels of the conv blocks (null: the encoder's width, as Honeybee)"
    )


FAMILIES: tuple[type[ConnectorBase], ...] = (AvgPoolConfig, AttnPoolConfig, CAbstractorConfig)
CONNECTOR_TYPES: tuple[str, ...] = tuple(family.model_fields["type"].default for family in FAMILIES)
"""The union's tags (also the path segments pydantic puts in a family field's error location)."""


def _family_tag(value: Any) -> Any:
    """The union member to validate ``value`` as: its ``type``, ``avg-pool`` when a mapping has none."""
    if isinstance(value, dict):
        return value.get("type", DEFAULT_TYPE)
    return getattr(value, "type", None)


def _known_type(value: Any) -> Any:
    """One error naming the valid types for an unknown ``type`` (rather than pydantic's tag message)."""
    if not isinstance(value, (dict, ConnectorBase)):
        raise ValueError(f"expected a mapping with a type ({', '.join(CONNECTOR_TYPES)}) and its fields")
    if _family_tag(value) not in CONNECTOR_TYPES:
        raise ValueError(f"type: {_family_tag(value)!r} is not one of {', '.join(CONNECTOR_TYPES)}")
    return value


ConnectorConfig = Annotated[
    Annotated[AvgPoolConfig, Tag("avg-pool")]
    | Annotated[AttnPoolConfig, Tag("attn-pool")]
    | Annotated[CAbstractorConfig, Tag("c-abstractor")],
    Discriminator(_family_tag),
    BeforeValidator(_known_type),
]
"""``model.connector``: one of the family configs, chosen by ``type`` (default ``avg-pool``)."""


def default_connector() -> AvgPoolConfig:
    """The default ``model.connector``: 16-token average pooling."""
    return AvgPoolConfig()
