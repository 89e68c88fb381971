"""The config reference (``mm1 schema``, ``docs/config.md``) is generated from the models and kept current."""

from __future__ import annotations

from pathlib import Path

from mm1core.config import TrialConfig, flatten, path_problem
from mm1core.schema import as_markdown, reference

DOCS = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def test_the_reference_page_is_current() -> None:
    assert DOCS.read_text() == as_markdown(reference()), (
        "docs/config.md is out of date: regenerate it with `.venv/bin/mm1 schema --markdown > docs/config.md`"
    )


def test_every_field_is_described_and_is_a_valid_path() -> None:
    docs = reference()
    assert [doc.path for doc in docs if not doc.description] == []
    assert [doc.path for doc in docs if path_problem(TrialConfig, doc.path)] == []


def test_every_leaf_of_the_default_config_is_listed_with_its_default() -> None:
    listed = {doc.path: doc.default for doc in reference() if not doc.family or doc.family == "avg-pool"}
    leaves = flatten(TrialConfig().model_dump(mode="json"))
    assert set(leaves) <= set(listed), sorted(set(leaves) - set(listed))
    assert listed["train.max_steps"] == "300" and listed["model.connector.type"] == '"avg-pool"'


def test_bounds_are_read_from_the_fields() -> None:
    by_path = {doc.path: doc for doc in reference()}
    assert by_path["data.max_images"].bounds == ">= 1, <= 16"
    assert by_path["train.warmup_ratio"].bounds == ">= 0, < 1"
