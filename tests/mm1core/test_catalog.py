"""``mm1 registry``'s catalog: each connector lists the fields its config class lets a YAML set."""

from __future__ import annotations

from mm1core.catalog import catalog, format_catalog
from mm1core.connectors import CONNECTORS


def test_each_connector_lists_its_settable_fields_with_defaults_and_descriptions() -> None:
    connectors = catalog()["connectors"]
    assert list(connectors) == CONNECTORS.names()
    for name, entry in connectors.items():
        fields = CONNECTORS.get(name).config.model_fields
        assert list(entry["fields"]) == [field for field in fields if field != "type"]
        assert all(about["description"] for about in entry["fields"].values())
    assert connectors["attn-pool"]["fields"]["heads"]["default"] == 8
    assert connectors["c-abstractor"]["fields"]["depth"]["default"] == 2
    assert connectors["c-abstractor"]["fields"]["hidden_width"]["default"] is None
    assert connectors["avg-pool"]["fields"]["num_tokens"]["default"] == 16


def test_the_text_shows_each_field_under_its_connector() -> None:
    text = format_catalog(catalog())
    lines = text.splitlines()
    start = lines.index(next(line for line in lines if line.strip().startswith("c-abstractor")))
    assert lines[start + 1].split()[:2] == ["num_tokens:", "16"]
    assert "hidden_width: null" in text and "heads: 8" in text
