"""The data section (MM1 Sec. 3.3, Fig. 5): where each pre-training stream comes from and how the streams are
mixed, tokenised and packed; the SFT conversations of ``train.stage: sft`` (MM1 Sec. 5).

Paths are kept as given; the preflight (``mm1core.preflight``) resolves them against the file that named them
and checks that each one reads as its stream's format.
"""

from __future__ import annotations

import math
import typing

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from mm1core.config.base import SOURCE_NAME, SOURCE_STREAMS, StrictModel, no_nul, registered
from mm1core.data import DATA_SOURCES
from mm1core.data.records import STREAMS

TOKENIZERS = ("world", "bytes")  # the named tokenizers; anything else is a local Hugging Face tokenizer directory


class MixtureConfig(StrictModel):
    """Shares of pre-training samples by type (MM1 Sec. 3.3: caption / interleaved / text-only)."""

    caption: float = Field(0.45, ge=0, description="share of image-caption pairs")
    interleaved: float = Field(0.45, ge=0, description="share of interleaved image-text documents")
    text: float = Field(0.10, ge=0, description="share of text-only documents")

    @model_validator(mode="after")
    def _sums_to_one(self) -> MixtureConfig:
        total = self.caption + self.interleaved + self.text
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"mixture ratios must sum to 1, got {total:g}")
        return self


class SFTMixConfig(StrictModel):
    """Shares of the embedded world's instruction data by kind (``train.stage: sft``)."""

    short: float = Field(1.0, ge=0, description="one question, a short answer")
    conversation: float = Field(1.0, ge=0, description="several question-answer turns about one image")
    detail: float = Field(1.0, ge=0, description="a request for a detailed description")

    @model_validator(mode="after")
    def _some_weight(self) -> SFTMixConfig:
        if self.short + self.conversation + self.detail <= 0:
            raise ValueError("at least one of short, conversation, detail must be > 0")
        return self


class SFTDataConfig(StrictModel):
    """Supervised fine-tuning data (MM1 Sec. 5), used when ``train.stage`` is ``sft``: the embedded world's
    instruction set (``synthetic``) or a LLaVA-style JSON on disk (a list of ``{"image", "conversations": [{"from":
    "human"|"gpt", "value"}]}``) with its images under ``images`` (default: the JSON's folder)."""

    source: str = Field("synthetic", description="synthetic, or a LLaVA-style conversations JSON")
    images: str | None = Field(None, description="the JSON's image folder (default: the JSON's folder)")
    mix: SFTMixConfig = SFTMixConfig()

    _paths = field_validator("source", "images")(no_nul)

    @model_validator(mode="after")
    def _images_with_a_file(self) -> SFTDataConfig:
        if self.source == "synthetic" and self.images is not None:
            raise ValueError("images: only used with a conversations JSON source")
        return self


class DataConfig(StrictModel):
    """Where each pre-training stream comes from and how they are mixed, tokenised and packed (MM1 Sec. 3.3).

    ``source`` is ``synthetic`` (the embedded world for every stream) or a mapping from stream (``caption``,
    ``interleaved``, ``text``) to ``synthetic`` or a local path: caption pairs as WebDataset tar shards
    (a directory, glob or ``{00000..00009}`` pattern) or a COCO-captions JSON; interleaved documents as
    OBELICS-style parquet/jsonl; text as jsonl. Every stream with a non-zero mixture weight needs one.
    """

    source: typing.Annotated[
        typing.Annotated[str, Tag(SOURCE_NAME)] | typing.Annotated[dict[str, str], Tag(SOURCE_STREAMS)],
        Discriminator(lambda v: SOURCE_STREAMS if isinstance(v, dict) else SOURCE_NAME),
    ] = Field("synthetic", description="synthetic, or {stream: path or synthetic} per stream")
    mixture: MixtureConfig = MixtureConfig()
    seed: int = Field(0, ge=0, lt=2**32, description="seed of the embedded world and of the mixture order")
    max_images: int = Field(3, ge=1, le=16, description="images per sequence, at most (MM1: 16)")
    synthetic_captions: bool = Field(False, description="mix VeCap-style rich captions into the caption stream")
    synthetic_share: float = Field(0.5, ge=0, le=1, description="share of caption samples that are synthetic")
    tokenizer: str = Field("world", description="world | bytes | a local Hugging Face tokenizer directory")
    seq_len: int | None = Field(None, gt=0, description="pack documents of a stream into sequences of this length")
    workers: int = Field(0, ge=0, le=32, description="DataLoader worker processes (0: load in the trial)")
    sft: SFTDataConfig = SFTDataConfig()

    _tokenizer = field_validator("tokenizer")(no_nul)

    @field_validator("source")
    @classmethod
    def _sources(cls, source: str | dict[str, str]) -> str | dict[str, str]:
        if isinstance(source, str):
            return registered(DATA_SOURCES, source)
        for stream, where in source.items():
            if stream not in STREAMS:
                raise ValueError(f"{stream}: not a stream (streams: {', '.join(STREAMS)})")
            no_nul(where)
        return source

    @model_validator(mode="after")
    def _every_stream_has_a_source(self) -> DataConfig:
        if isinstance(self.source, dict):
            for stream in STREAMS:
                if getattr(self.mixture, stream) > 0 and stream not in self.source:
                    raise ValueError(
                        f"source.{stream}: missing, but mixture.{stream} is {getattr(self.mixture, stream):g} "
                        "(give a path or synthetic)"
                    )
        return self

    def stream_source(self, stream: str) -> str:
        """``synthetic`` or the path the stream is read from."""
        return self.source if isinstance(self.source, str) else self.source.get(stream, "synthetic")
