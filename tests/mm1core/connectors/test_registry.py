"""The connector registry: torch-free import and checks, one entry per MM1 connector, duplicates refused, each
entry's config class the union's member for its name."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mm1core.connectors import CONNECTORS, ConnectorEntry
from mm1core.connectors.config import CONNECTOR_TYPES, FAMILIES
from mm1core.registry import UnknownNameError

NAMES = CONNECTORS.names()


def test_importing_and_checking_does_not_import_torch() -> None:
    code = (
        "import sys; from mm1core.connectors import CONNECTORS\n"
        "for name, entry in CONNECTORS.items():\n"
        "    config = entry.config(num_tokens=16); config.problems(64, 8); entry.params(config, 64, 128)\n"
        "    entry.forward_flops(config, 64, 128, 64); entry.activation_elements(config, 64, 128, 64)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_three_mm1_connectors_are_registered() -> None:
    assert set(NAMES) >= {"avg-pool", "attn-pool", "c-abstractor"}


def test_every_entry_is_a_member_of_the_config_union() -> None:
    """The YAML union and the registry name the same families, each entry with its own config class."""
    assert list(CONNECTOR_TYPES) == NAMES
    assert [CONNECTORS.get(name).config for name in NAMES] == list(FAMILIES)


@pytest.mark.parametrize("name", NAMES, ids=NAMES)
def test_entry_loads_a_connector_and_has_a_one_line_description(name: str) -> None:
    from mm1core.connectors.base import Connector

    entry = CONNECTORS.get(name)
    assert issubclass(entry.load(), Connector)
    assert entry.description and "\n" not in entry.description and len(entry.description) <= 100


def test_duplicate_registration_raises() -> None:
    entry = CONNECTORS.get("avg-pool")
    with pytest.raises(ValueError, match="already registered"):
        again = ConnectorEntry(
            entry.config, entry.builder, "again", entry.params, entry.forward_flops, entry.activation_elements
        )
        CONNECTORS.register("avg-pool", again)
    assert CONNECTORS.get("avg-pool") is entry


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownNameError, match="c-abstractor"):
        CONNECTORS.get("cabstractor")


@pytest.mark.parametrize(
    ("name", "num_tokens", "grid", "message"),
    [
        ("avg-pool", 6, 8, "not a square"),
        ("avg-pool", 81, 8, "needs a 9x9 patch grid"),
        ("c-abstractor", 12, 8, "not a square"),
        ("c-abstractor", 25, 4, "needs a 5x5 patch grid"),
        ("attn-pool", 17, 4, "more tokens than patches"),
    ],
    ids=[
        "avg-pool-nonsquare",
        "avg-pool-side-too-big",
        "c-abstractor-nonsquare",
        "c-abstractor-side-too-big",
        "attn-pool-too-many",
    ],
)
def test_token_problem_explains_impossible_counts(name: str, num_tokens: int, grid: int, message: str) -> None:
    [(field, problem)] = CONNECTORS.get(name).config(num_tokens=num_tokens).problems(64, grid)
    assert field == "num_tokens" and problem.startswith(f"{name} cannot give {num_tokens} tokens: ")
    assert message in problem
