"""Tiny, CPU-fast flavours shared by the mm1core tests."""

from __future__ import annotations

import pytest
import torch

from mm1core.config import TrialConfig
from mm1core.data.tokenizer import Tokenizer, build_tokenizer
from mm1core.model import MM1Model, build_model
from tests.mm1core.flavours import TINY


@pytest.fixture
def tiny_config() -> TrialConfig:
    return TrialConfig.model_validate(TINY)


@pytest.fixture
def tokenizer() -> Tokenizer:
    return build_tokenizer()


@pytest.fixture
def tiny_model(tiny_config: TrialConfig, tokenizer: Tokenizer) -> MM1Model:
    torch.manual_seed(0)
    return build_model(tiny_config.model, tokenizer.vocab_size).eval()
