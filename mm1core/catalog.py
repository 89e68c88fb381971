"""What a sweep YAML can name, with the facts a user picks by (torch-free): ``mm1 registry``.

One entry per registry (encoders, connectors, decoders, data sources) plus the enumerated choices of the
model section (high-resolution modes, checkpoint formats).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from pydantic import BaseModel

from mm1core.config import FROM_CHECKPOINT, HighresConfig
from mm1core.connectors import CONNECTORS
from mm1core.data import DATA_SOURCES
from mm1core.data.formats import FORMATS
from mm1core.lm import DECODERS
from mm1core.stages import STAGES
from mm1core.vision import ENCODERS

CHECKPOINT_FORMATS = {
    "model.encoder.checkpoint": {
        "hf-clip": "a Hugging Face CLIPVisionModel / CLIPModel directory (config.json + safetensors or bin)",
        "hf-siglip": "a Hugging Face SiglipVisionModel / SiglipModel directory",
        "open-clip": "an OpenCLIP state-dict file (.pt, .bin, .pth or .safetensors)",
    },
    "model.decoder.checkpoint": {
        "hf-llama": "a Hugging Face Llama-style causal-LM directory (config.json + safetensors or bin)",
    },
}


def typical_resolution(patch: int) -> int:
    """A resolution to quote an encoder's size at: 224 px for real patch sizes, 64 px for the toy ones."""
    return 224 if patch >= 14 else 64


def catalog() -> dict[str, Any]:
    encoders = {}
    for name, preset in ENCODERS.items():
        resolution = typical_resolution(preset.patch)
        encoders[name] = {**dataclasses.asdict(preset), "params": preset.params(resolution), "at": resolution}
    decoders = {
        name: {**dataclasses.asdict(preset), "non_embedding_params": preset.non_embedding_params()}
        for name, preset in DECODERS.items()
    }
    connectors = {
        name: {"description": entry.description, "fields": settable_fields(entry.config)}
        for name, entry in CONNECTORS.items()
    }
    return {
        "encoders": encoders,
        "connectors": connectors,
        "decoders": decoders,
        "stages": {
            name: {"description": stage.description, "trains": list(stage.components), "few_shot": stage.few_shot}
            for name, stage in STAGES.items()
        },
        "data_sources": {name: {"description": text} for name, text in DATA_SOURCES.items()},
        "data_formats": {
            stream: {suffix: fmt.name for suffix, fmt in formats.items()} for stream, formats in FORMATS.items()
        },
        "tokenizers": ["world", "bytes", "a local Hugging Face tokenizer directory"],
        "highres_modes": list(HighresConfig.model_fields["mode"].annotation.__args__),  # type: ignore[union-attr]
        "checkpoint_formats": CHECKPOINT_FORMATS,
        "from_checkpoint": FROM_CHECKPOINT,
    }


def settable_fields(config: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """A config class's fields as a YAML may set them: name -> default and description (``type`` left out: it is
    the entry's name)."""
    return {
        name: {"default": field.get_default(call_default_factory=True), "description": field.description or ""}
        for name, field in config.model_fields.items()
        if name != "type"
    }


def human_count(count: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.3g}{unit}"
    return str(count)


def format_catalog(entries: dict[str, Any]) -> str:
    """The catalog as short text tables, one section per kind."""
    lines = ["encoders (ViT; any resolution divisible by the patch):"]
    for name, e in entries["encoders"].items():
        shape = f"{e['width']} wide x {e['depth']} deep, {e['heads']} heads, patch {e['patch']}"
        lines.append(f"  {name:<18} {shape:<40} {human_count(e['params']):>7} params at {e['at']} px")
    lines.append("connectors (image patches -> num_tokens LM-width tokens):")
    for name, e in entries["connectors"].items():
        lines.append(f"  {name:<18} {e['description']}")
        for field, about in e["fields"].items():
            setting = f"{field}: {json.dumps(about['default'])}"
            lines.append(f"  {'':<18}   {setting:<22} {about['description']}")
    lines.append("decoders (Llama-style; N = non-embedding parameters, the scaling law's N):")
    for name, e in entries["decoders"].items():
        shape = f"{e['width']} wide x {e['depth']} deep, {e['heads']} heads"
        lines.append(f"  {name:<18} {shape:<40} N = {human_count(e['non_embedding_params']):>7}")
    lines.append("stages (train.stage):")
    for name, e in entries["stages"].items():
        lines.append(f"  {name:<18} {e['description']} (trains {', '.join(e['trains'])})")
    lines.append("data sources (data.source: synthetic, or per stream a path in one of these formats):")
    lines += [f"  {name:<18} {e['description']}" for name, e in entries["data_sources"].items()]
    for stream, formats in entries["data_formats"].items():
        lines.append(f"  {stream:<18} " + ", ".join(f"{suffix} ({name})" for suffix, name in formats.items()))
    lines.append(f"data.tokenizer: {', '.join(entries['tokenizers'])}")
    lines.append(f"model.highres.mode: {', '.join(entries['highres_modes'])}")
    lines.append(f"checkpoints (name {entries['from_checkpoint']} takes the shape from the checkpoint):")
    for field, formats in entries["checkpoint_formats"].items():
        lines += [f"  {field}: {fmt:<10} {text}" for fmt, text in formats.items()]
    return "\n".join(lines)
