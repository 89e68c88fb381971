"""The per-family connector configs: the union on ``type``, defaults equal to the modules', bounds, the checks that
need the encoder, and building a module from a config."""

from __future__ import annotations

import inspect

import pytest
from pydantic import BaseModel, Field, ValidationError

from mm1core.connectors import CONNECTORS, build_connector
from mm1core.connectors.attn_pool import AttentionPoolConnector
from mm1core.connectors.c_abstractor import CAbstractor
from mm1core.connectors.config import (
    AttnPoolConfig,
    AvgPoolConfig,
    CAbstractorConfig,
    ConnectorConfig,
    default_connector,
)


class Section(BaseModel):
    connector: ConnectorConfig = Field(default_factory=default_connector)


def parsed(connector: object) -> object:
    return Section.model_validate({"connector": connector}).connector


def errors(connector: object) -> list[tuple[tuple, str]]:
    with pytest.raises(ValidationError) as caught:
        parsed(connector)
    return [(error["loc"], error["msg"]) for error in caught.value.errors()]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, AvgPoolConfig()),
        ({"num_tokens": 4}, AvgPoolConfig(num_tokens=4)),  # no type: the default family, as before the families
        ({"type": "attn-pool", "heads": 4}, AttnPoolConfig(heads=4)),
        ({"type": "c-abstractor", "depth": 3, "hidden_width": 32}, CAbstractorConfig(depth=3, hidden_width=32)),
    ],
    ids=["empty", "no-type", "attn-pool-heads", "c-abstractor-depth-width"],
)
def test_type_picks_the_family(given: dict, expected: BaseModel) -> None:
    assert parsed(given) == expected
    assert parsed(expected.model_dump()) == expected  # what a logged config reads back as


def test_the_default_section_is_16_token_average_pooling() -> None:
    assert Section().connector == AvgPoolConfig(num_tokens=16, freeze=False)


def test_an_unknown_type_is_one_error_listing_the_valid_ones() -> None:
    [(location, message)] = errors({"type": "cabstractor", "num_tokens": 4})
    assert location == ("connector",)
    assert message.endswith("type: 'cabstractor' is not one of avg-pool, attn-pool, c-abstractor")


@pytest.mark.parametrize(
    ("given", "field", "message"),
    [
        ({"type": "avg-pool", "heads": 2}, "heads", "Extra inputs are not permitted"),  # another family's field
        ({"type": "attn-pool", "heads": 0}, "heads", "greater than or equal to 1"),
        ({"type": "c-abstractor", "depth": 0}, "depth", "greater than or equal to 1"),
        ({"type": "c-abstractor", "hidden_width": 0}, "hidden_width", "greater than 0"),
        ({"type": "attn-pool", "num_tokens": 0}, "num_tokens", "greater than 0"),
    ],
    ids=["foreign-field", "no-heads", "no-depth", "no-width", "no-tokens"],
)
def test_a_bad_family_field_names_the_field(given: dict, field: str, message: str) -> None:
    [(location, text)] = errors(given)
    assert location == ("connector", given["type"], field)  # describe_errors drops the union tag (CONNECTOR_TYPES)
    assert message in text


def test_not_a_mapping_is_refused() -> None:
    [(_, message)] = errors("avg-pool")
    assert "expected a mapping with a type (avg-pool, attn-pool, c-abstractor)" in message


def test_defaults_are_the_modules_own() -> None:
    """A config that names no family field builds what the module builds by default (existing trials unchanged)."""
    heads = inspect.signature(AttentionPoolConnector).parameters["heads"].default
    c_abstractor = inspect.signature(CAbstractor).parameters
    assert AttnPoolConfig().heads == heads
    assert CAbstractorConfig().depth == c_abstractor["depth"].default
    assert CAbstractorConfig().hidden_width is c_abstractor["hidden_width"].default is None


@pytest.mark.parametrize(
    ("config", "grid", "expected"),
    [
        (AvgPoolConfig(num_tokens=6), 8, [("num_tokens", "avg-pool cannot give 6 tokens: not a square number")]),
        (CAbstractorConfig(num_tokens=25), 4, [("num_tokens", "c-abstractor cannot give 25 tokens: needs a 5x5")]),
        (AttnPoolConfig(num_tokens=17), 4, [("num_tokens", "attn-pool cannot give 17 tokens: more tokens than")]),
        (AttnPoolConfig(heads=3), 8, [("heads", "3 heads do not divide the encoder width 64")]),
        (AttnPoolConfig(num_tokens=65, heads=3), 8, [("num_tokens", "attn-pool cannot"), ("heads", "3 heads")]),
        (CAbstractorConfig(depth=3, hidden_width=24), 8, []),
    ],
    ids=["avg-pool-square", "c-abstractor-grid", "attn-pool-patches", "attn-pool-heads", "both", "fine"],
)
def test_problems_need_the_encoder(config: BaseModel, grid: int, expected: list[tuple[str, str]]) -> None:
    found = config.problems(64, grid)  # type: ignore[attr-defined]
    assert [field for field, _ in found] == [field for field, _ in expected]
    for (_, message), (_, start) in zip(found, expected, strict=True):
        assert message.startswith(start)


def test_a_trial_config_holds_its_family_and_family_fields_at_default_keep_the_key() -> None:
    from mm1core.config import TrialConfig

    plain = TrialConfig.model_validate({"model": {"connector": {"type": "c-abstractor", "num_tokens": 4}}})
    assert isinstance(plain.model.connector, CAbstractorConfig)
    explicit = TrialConfig.model_validate(
        {"model": {"connector": {"type": "c-abstractor", "num_tokens": 4, "depth": 2, "hidden_width": None}}}
    )
    deeper = TrialConfig.model_validate({"model": {"connector": {"type": "c-abstractor", "num_tokens": 4, "depth": 3}}})
    assert explicit.trial_key() == plain.trial_key() != deeper.trial_key()
    assert isinstance(
        TrialConfig.model_validate({"model": {"connector": {"num_tokens": 4}}}).model.connector, AvgPoolConfig
    )


@pytest.mark.parametrize(
    ("config", "attributes"),
    [
        (AttnPoolConfig(num_tokens=4, heads=2), {"heads": 2, "num_tokens": 4}),
        (CAbstractorConfig(num_tokens=4, depth=1, hidden_width=8), {"side": 2}),
    ],
    ids=["attn-pool", "c-abstractor"],
)
def test_build_connector_passes_the_family_fields(config: BaseModel, attributes: dict) -> None:
    module = build_connector(config, 16, 24)  # type: ignore[arg-type]
    assert type(module) is CONNECTORS.get(config.type).load()  # type: ignore[attr-defined]
    assert {name: getattr(module, name) for name in attributes} == attributes
    if isinstance(config, CAbstractorConfig):
        assert len(module.local_mixing) == len(module.pooled_mixing) == 1
        assert module.local_mixing[0].reduce[0].out_channels == 8
