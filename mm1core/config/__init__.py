"""A trial's configuration as plain, typed, torch-free data (pydantic): one module per section.

- ``model``: image encoder, connector, decoder, high-resolution input (MM1 Sec. 3.2);
- ``data``: the pre-training streams and their mixture, SFT conversations (Sec. 3.3, 5);
- ``train``: stage, initial weights, optimiser and LR law (Sec. 3.4);
- ``eval``: zero- and few-shot tasks, TextCore (Sec. 3.1);
- ``trial``: the four together, resolution and the stable ``trial_key``;
- ``dotted`` and ``errors``: dotted paths into a config and one-line error messages.

Validators check values only. Everything that needs a file (a checkpoint's shape, a data path, a fit.json) is
the preflight's (``mm1core.preflight``), which also resolves relative paths against the file that named them.
Resolution order is one: defaults < sweep YAML (and the files it extends) < command-line ``--set``.
"""

from mm1core.config.base import UNION_TAGS, StrictModel, printable
from mm1core.config.data import DataConfig, MixtureConfig, SFTDataConfig, SFTMixConfig
from mm1core.config.dotted import flatten, path_problem, set_path, with_overrides
from mm1core.config.errors import describe_error_items, describe_errors
from mm1core.config.eval import EMBEDDED_TASKS, EvalConfig, FileTask
from mm1core.config.model import ConnectorConfig, DecoderConfig, EncoderConfig, HighresConfig, ModelConfig
from mm1core.config.train import InitFrom, LawCoefficients, LRLaw, TrainConfig
from mm1core.config.trial import HASHED_WHEN_SET, UNHASHED, TrialConfig, load_trial
from mm1core.lm.presets import FROM_CHECKPOINT

__all__ = [
    "EMBEDDED_TASKS",
    "FROM_CHECKPOINT",
    "HASHED_WHEN_SET",
    "UNHASHED",
    "UNION_TAGS",
    "ConnectorConfig",
    "DataConfig",
    "DecoderConfig",
    "EncoderConfig",
    "EvalConfig",
    "FileTask",
    "HighresConfig",
    "InitFrom",
    "LRLaw",
    "LawCoefficients",
    "MixtureConfig",
    "ModelConfig",
    "SFTDataConfig",
    "SFTMixConfig",
    "StrictModel",
    "TrainConfig",
    "TrialConfig",
    "describe_error_items",
    "describe_errors",
    "flatten",
    "load_trial",
    "path_problem",
    "printable",
    "set_path",
    "with_overrides",
]
