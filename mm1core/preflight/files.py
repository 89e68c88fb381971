"""The files a trial config names: resolved against the file that named them, read where their content is part
of the config (an LR law's fit.json), and checked for what a trial would hit at start.

Torch-free except where a file can only be read with it (an mm1 trial checkpoint of ``train.init_from``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mm1core.config import FileTask, LawCoefficients, LRLaw, TrialConfig, printable

Problems = list[tuple[str, str]]  # (dotted path, message)


def local_path(text: str, folder: Path | None = None) -> Path:
    """``text`` as an absolute path: ``~`` expanded, a relative path joined onto ``folder`` (the folder of the file
    that named it; else the working directory), symlinks resolved. Absolute, so a trial running in Ray's working
    directory finds the same file. ``ValueError`` (one line) for text no file system can look up."""
    if "\0" in text:
        raise ValueError(f"{text!r}: a path cannot contain a NUL character")
    try:
        path = Path(text).expanduser()
    except RuntimeError as error:  # an unknown ~user
        raise ValueError(f"{printable(text)}: {error}") from None
    if not path.is_absolute():
        path = (folder or Path.cwd()) / path
    try:
        path = path.resolve()
        path.exists()  # raises for a name too long or a folder that may not be searched; absent is fine here
    except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop
        reason = getattr(error, "strerror", None) or str(error)
        raise ValueError(f"{printable(str(path))}: not a usable path ({reason})") from None
    return path


# ----------------------------------------------------------------------------------------------- resolution
def resolve_files(config: TrialConfig, folder: str | Path | None = None) -> tuple[TrialConfig, Problems]:
    """``config`` with every path made absolute against ``folder`` and an LR law's fit.json read into its
    coefficients, and the ``(path, message)`` of each that cannot be (the config keeps those values as given).
    The names that are not paths (``synthetic``, ``world``, ``bytes``) stay as they are."""
    base = Path(folder).expanduser().resolve() if folder is not None else None
    tree = config.model_dump(mode="python", round_trip=True)
    problems: Problems = []

    def anchor(value: str | None, where: str, keep: tuple[str, ...] = ()) -> str | None:
        if value is None or value in keep:
            return value
        try:
            return str(local_path(value, base))
        except ValueError as error:
            problems.append((where, str(error)))
            return value

    model, data, train, ev = tree["model"], tree["data"], tree["train"], tree["eval"]
    for part in ("encoder", "decoder"):
        model[part]["checkpoint"] = anchor(model[part]["checkpoint"], f"model.{part}.checkpoint")
    if isinstance(data["source"], dict):
        data["source"] = {s: anchor(p, f"data.source.{s}", ("synthetic",)) for s, p in data["source"].items()}
    data["tokenizer"] = anchor(data["tokenizer"], "data.tokenizer", ("world", "bytes"))
    data["sft"]["source"] = anchor(data["sft"]["source"], "data.sft.source", ("synthetic",))
    data["sft"]["images"] = anchor(data["sft"]["images"], "data.sft.images")
    if train["init_from"] is not None:
        train["init_from"]["path"] = anchor(train["init_from"]["path"], "train.init_from.path")
    for index, task in enumerate(ev["tasks"]):
        if isinstance(task, dict):
            for key in ("path", "annotations", "images"):
                task[key] = anchor(task[key], f"eval.tasks[{index}].{key}")
    ev["textcore"] = [anchor(entry, f"eval.textcore[{i}]", ("world",)) for i, entry in enumerate(ev["textcore"])]
    if isinstance(config.train.lr, LRLaw) and isinstance(config.train.lr.law, str):
        law = anchor(config.train.lr.law, "train.lr.law")
        coefficients = _read_fit(Path(law), problems) if law and Path(law).is_absolute() else None
        train["lr"] = {"law": coefficients or law}
    if problems:
        return config, problems
    return TrialConfig.model_validate(tree), problems


def _read_fit(path: Path, problems: Problems) -> dict[str, float] | None:
    """The ``a`` and ``b`` of a fit.json written by ``mm1 fit-lr``."""
    try:
        fit = json.loads(path.read_text())
    except FileNotFoundError:
        problems.append(("train.lr.law", f"{path} does not exist (a fit.json from mm1 fit-lr, or {{a: ..., b: ...}})"))
        return None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: JSONDecodeError, a huge number
        problems.append(("train.lr.law", f"{path}: not a readable JSON file ({type(exc).__name__})"))
        return None
    if not isinstance(fit, dict) or not all(isinstance(fit.get(k), (int, float)) for k in ("a", "b")):
        problems.append(("train.lr.law", f"{path}: needs numbers 'a' and 'b' (the fit of mm1 fit-lr)"))
        return None
    return LawCoefficients(a=fit["a"], b=fit["b"]).model_dump()


# ------------------------------------------------------------------------------------------------ checks
def file_problems(config: TrialConfig) -> Problems:
    """Every file the (resolved) config names that a trial could not read at start."""
    problems: Problems = []
    for check in (_checkpoints, _data, _sft, _eval, _init_from):
        problems += check(config)
    return problems


def _checkpoints(config: TrialConfig) -> Problems:
    from mm1core.lm.checkpoints import checkpoint_problem as decoder_problem
    from mm1core.vision.checkpoints import checkpoint_problem as encoder_problem

    problems: Problems = []
    checks: tuple[tuple[str, Any, Callable[[str, str], str | None]], ...] = (
        ("encoder", config.model.encoder, encoder_problem),
        ("decoder", config.model.decoder, decoder_problem),
    )
    for part, section, problem_of in checks:
        if section.checkpoint is not None:
            problem = problem_of(section.checkpoint, section.name)
            if problem:
                problems.append((f"model.{part}.checkpoint", problem))
    return problems


def _data(config: TrialConfig) -> Problems:
    from mm1core.data.tokenizer import tokenizer_problem

    data, problems = config.data, []
    if isinstance(data.source, dict):
        from mm1core.data.formats import source_problem

        for stream, where in data.source.items():
            problem = None if where == "synthetic" else source_problem(stream, where)
            if problem:
                problems.append((f"data.source.{stream}", problem))
    problem = tokenizer_problem(data.tokenizer)
    if problem:
        problems.append(("data.tokenizer", problem))
    return problems


def _sft(config: TrialConfig) -> Problems:
    sft = config.data.sft
    if sft.source == "synthetic":
        return []
    if not Path(sft.source).is_file():
        return [("data.sft.source", f"{sft.source} is not a file (synthetic, or a LLaVA-style conversations JSON)")]
    if sft.images is not None and not Path(sft.images).is_dir():
        return [("data.sft.images", f"{sft.images} is not a folder")]
    from mm1core.data.llava import sft_source_problem

    problem = sft_source_problem(sft.source, sft.images)
    return [("data.sft.source", problem)] if problem else []


def _eval(config: TrialConfig) -> Problems:
    problems: Problems = []
    for index, task in enumerate(config.eval.tasks):
        if isinstance(task, FileTask):
            for key in ("path", "annotations", "images"):
                value = getattr(task, key)
                if value is not None and not Path(value).exists():
                    problems.append((f"eval.tasks[{index}].{key}", f"{value} does not exist"))
    for index, entry in enumerate(config.eval.textcore):
        if entry != "world" and not Path(entry).is_file():
            message = f"{entry} is not a file (a jsonl of context / choices / answer)"
            problems.append((f"eval.textcore[{index}]", message))
    return problems


def _init_from(config: TrialConfig) -> Problems:
    source = config.train.init_from
    if source is None or source.path is None:
        return []
    from mm1core.checkpoint import checkpoint_config, checkpoint_file_problem  # reads the file with torch

    problem = checkpoint_file_problem(source.path)
    if problem:
        return [("train.init_from.path", problem)]
    return model_fit_problems(checkpoint_config(source.path).get("model", {}), config, source.path)


# What a trial started from a checkpoint may change without changing the weights' shapes.
SHAPE_FREE = ("highres", "encoder.freeze", "connector.freeze", "decoder.freeze")


def model_fit_problems(saved: dict[str, Any], config: TrialConfig, where: str) -> Problems:
    """Each ``model`` field whose value in the checkpoint's config (``saved``) differs from this trial's, where the
    difference changes a weight's shape or meaning (everything but ``SHAPE_FREE``): the weights would not load."""
    from mm1core.config import ModelConfig, flatten

    try:
        theirs = flatten(ModelConfig.model_validate(saved).model_dump(mode="json"))
    except ValueError:
        theirs = flatten(saved)
    ours = flatten(config.model.model_dump(mode="json"))
    problems: Problems = []
    for path in sorted(set(theirs) | set(ours)):
        if any(path == free or path.startswith(free + ".") for free in SHAPE_FREE):
            continue
        if theirs.get(path) != ours.get(path):
            problems.append(
                (
                    f"model.{path}",
                    f"{ours.get(path)!r} here, but {theirs.get(path)!r} in the train.init_from checkpoint {where} "
                    "(its weights would not fit; leave the model to the checkpoint)",
                )
            )
    return problems
