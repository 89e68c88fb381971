"""Security: what a sweep file or a checkpoint from elsewhere can make ``mm1`` do.

- YAML is read with ``yaml.safe_load``: a ``!!python/...`` tag is bad input (exit 2, one line), never run.
- ``torch.load`` only with ``weights_only=True`` (``mm1core.weights``): a pickle that would run code is refused.
- No code path executes text: no ``eval``/``exec``/``__import__``/``pickle.load``/``yaml.load``/``shell=True``.
- Paths in a spec resolve against the spec file's folder (not the working directory) and errors name them.
- The MLflow UI commands the project prints bind to 127.0.0.1.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import pickle
import re
from pathlib import Path

import pytest
import torch
import yaml

from mm1core.config import TrialConfig, set_path
from mm1core.preflight import resolve_files
from orchestrator.cli import main
from orchestrator.commands.sweep import load_sweep, where_to_look
from orchestrator.commands.trial import load_trial
from tests.conftest import run_mm1

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mm1core", "orchestrator", "dashboards")


def _sources() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def _mm1(*args: str) -> tuple[int, str, str]:
    """``mm1 ARGS`` in-process: exit code, stdout, stderr."""
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
        rc = main(list(args))
    return rc, out.getvalue(), err.getvalue()


# --------------------------------------------------------------------------------------------- safe YAML
def _python_tags(marker: Path) -> dict[str, str]:
    """YAML that would create ``marker`` if it were loaded with an unsafe loader."""
    command = f"touch {marker}"
    return {
        "object/apply": f'name: x\nbase: !!python/object/apply:os.system ["{command}"]\n',
        "object/apply-top": f'!!python/object/apply:os.system ["{command}"]\n',
        "object/new": f"name: x\nbase: !!python/object/new:subprocess.Popen [[touch, '{marker}']]\n",
        "object/new-args": (
            f"name: x\nbase:\n  model: !!python/object/new:subprocess.Popen\n    args: [[touch, '{marker}']]\n"
        ),
        "name": "name: x\nbase: !!python/name:os.system\n",
        "module": "name: x\nbase: !!python/module:os\n",
        "in-a-grid": f'name: x\ngrid:\n  train.lr: [!!python/object/apply:os.system ["{command}"]]\n',
    }


@pytest.mark.parametrize("case", list(_python_tags(Path("m"))), ids=str)
@pytest.mark.parametrize("verb", [("sweep", "validate"), ("sweep", "plan"), ("train",)], ids=" ".join)
def test_python_yaml_tags_are_bad_input_and_never_run(verb: tuple[str, ...], case: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    spec = tmp_path / "evil.yaml"
    spec.write_text(_python_tags(marker)[case])
    rc, _, stderr = _mm1(*verb, str(spec))
    assert rc == 2, stderr
    assert stderr.startswith(f"mm1: error: {spec}: ") and stderr.count("\n") == 1, stderr
    assert "constructor for the tag" in stderr and "Traceback" not in stderr
    assert not marker.exists()


@pytest.mark.parametrize("verb", [("sweep", "validate"), ("train",)], ids=" ".join)
def test_python_yaml_tag_through_the_real_cli(verb: tuple[str, ...], tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    spec = tmp_path / "evil.yaml"
    spec.write_text(_python_tags(marker)["object/apply"])
    result = run_mm1(*verb, str(spec), cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not marker.exists() and not (tmp_path / "mlflow.db").exists()


def test_an_unsafe_loader_would_have_run_it(tmp_path: Path) -> None:
    """The payload above is real: ``yaml.unsafe_load`` does create the file (so the tests above mean something)."""
    marker = tmp_path / "pwned"
    yaml.unsafe_load(_python_tags(marker)["object/apply"])
    assert marker.exists()


# ------------------------------------------------------------------------------------- weights_only loads
class _OpensAFile:
    """Unpickling this creates ``path`` (what a malicious checkpoint could do with any callable)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (open, (str(self.path), "w"))


class _RunsACommand:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.path}",))


def _malicious_files(folder: Path, marker: Path) -> dict[str, Path]:
    """``.pt`` files in several encodings whose unpickling creates ``marker``; one looks like a trial checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "torch-save-open": (_OpensAFile(marker), {}),
        "torch-save-system": ({"state_dict": {"w": _RunsACommand(marker)}}, {}),
        "torch-save-legacy": (_OpensAFile(marker), {"_use_new_zipfile_serialization": False}),
        "trial-lookalike": ({"format": "mm1-trial/1", "config": {}, "model": _OpensAFile(marker)}, {}),
    }
    paths = {}
    for name, (payload, options) in files.items():
        paths[name] = folder / f"{name}.pt"
        torch.save(payload, paths[name], **options)
    paths["plain-pickle"] = folder / "plain-pickle.pt"
    paths["plain-pickle"].write_bytes(pickle.dumps(_RunsACommand(marker), protocol=2))
    return paths


MALICIOUS = ["torch-save-open", "torch-save-system", "torch-save-legacy", "trial-lookalike", "plain-pickle"]


def test_the_malicious_files_would_run_code_with_weights_only_false(tmp_path: Path) -> None:
    for name, path in _malicious_files(tmp_path / "files", tmp_path / "control").items():
        (tmp_path / "control").unlink(missing_ok=True)
        with contextlib.suppress(RuntimeError):  # a plain pickle runs, then fails torch's magic-number check
            torch.load(path, weights_only=False)  # what must never happen in the package
        assert (tmp_path / "control").exists(), name


@pytest.mark.parametrize("name", MALICIOUS)
def test_mm1_eval_refuses_a_malicious_checkpoint(name: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = _malicious_files(tmp_path / "files", marker)[name]
    rc, _, stderr = _mm1("eval", str(path))
    assert rc == 2 and stderr.count("\n") == 1, stderr
    assert stderr.startswith(f"mm1: error: {path}: not a checkpoint: the file ") and "Traceback" not in stderr
    assert not marker.exists()


@pytest.mark.parametrize("name", ["torch-save-open", "trial-lookalike"])
def test_mm1_eval_refuses_a_malicious_checkpoint_through_the_real_cli(name: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = _malicious_files(tmp_path / "files", marker)[name]
    result = run_mm1("eval", str(path), cwd=tmp_path, timeout=180)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mm1: error: {path}: "), result.stderr
    assert "holds more than tensors" in lines[0] and "Traceback" not in result.stderr
    assert not marker.exists()


@pytest.mark.parametrize("name", MALICIOUS)
def test_encoder_and_decoder_loaders_refuse_a_malicious_checkpoint(name: str, tmp_path: Path) -> None:
    from mm1core.lm.checkpoints import read_weights
    from mm1core.vision.checkpoints import checkpoint_problem
    from mm1core.vision.vit import load_encoder

    marker = tmp_path / "pwned"
    path = _malicious_files(tmp_path / "files", marker)[name]
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load_encoder(path, 32)  # an OpenCLIP-style .pt file
    assert str(path) in (checkpoint_problem(str(path), "from-checkpoint") or "")
    decoder = tmp_path / "llama"
    decoder.mkdir()
    path.rename(decoder / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pytorch_model.bin"):
        read_weights(decoder)
    assert not marker.exists()


def test_an_encoder_checkpoint_in_a_spec_is_bad_input_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = _malicious_files(tmp_path / "files", marker)["torch-save-open"]
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "x", "base": {"model": {"encoder": {"checkpoint": str(path)}}}}))
    rc, _, stderr = _mm1("sweep", "validate", str(spec))
    assert rc == 2 and stderr.count("\n") == 1, stderr
    assert f"base.model.encoder.checkpoint: {path} holds more than tensors" in stderr
    assert not marker.exists()


def _calls(path: Path) -> list[ast.Call]:
    return [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)]


def _name(call: ast.Call) -> str:
    """``torch.load`` for ``torch.load(...)``, ``.fit`` for ``trainer.fit(...)``."""
    func = call.func
    if isinstance(func, ast.Attribute):
        return f"{func.value.id}.{func.attr}" if isinstance(func.value, ast.Name) else f".{func.attr}"
    return func.id if isinstance(func, ast.Name) else ""


def _weights_only(call: ast.Call) -> object:
    option = next((keyword.value for keyword in call.keywords if keyword.arg == "weights_only"), None)
    return option.value if isinstance(option, ast.Constant) else option


def test_every_torch_load_is_weights_only() -> None:
    """Every ``torch.load`` and every Lightning resume (``fit(ckpt_path=...)``) passes ``weights_only=True``;
    ``weights_only=False`` appears only where a checkpoint is saved (it then means: the whole training state)."""
    loads, problems = [], []
    for path in _sources():
        for call in _calls(path):
            where = f"{path.relative_to(ROOT)}:{call.lineno}: {_name(call)}"
            resumes = _name(call).endswith(".fit") and any(k.arg == "ckpt_path" for k in call.keywords)
            if _name(call) == "torch.load" or resumes:
                loads.append(where)
                if _weights_only(call) is not True:
                    problems.append(where)
            elif _weights_only(call) is False and not _name(call).endswith("save_checkpoint"):
                problems.append(where)
    assert any("mm1core/weights.py" in where for where in loads), loads
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------- no execution of text
FORBIDDEN = {
    "eval(": r"(?<![\w.])eval\(",
    "exec(": r"(?<![\w.])exec\(",
    "compile(": r"(?<![\w.])compile\(",
    "__import__(": r"__import__\(",
    "import_module(": r"import_module\(",
    "pickle.load": r"\b(c?pickle|dill|cloudpickle|marshal)\.loads?\(",
    "pickle.Unpickler": r"\bUnpickler\(",
    "yaml.load": r"\byaml\.(load|load_all|unsafe_load|full_load|unsafe_load_all|full_load_all)\(",
    "yaml.Loader": r"\byaml\.(Unsafe|Full)?Loader\b",
    "shell=True": r"shell\s*=\s*True",
    "os.system": r"\bos\.(system|popen|exec\w*|spawn\w*)\(",
}
# Matches that are not what they look like, each with its reason: (file, pattern name, the matching line's text).
_REGISTRY_IMPORT = "return getattr(importlib.import_module(module), name)"
ALLOWED = {
    # A registry entry imports its class lazily from a "module:Class" constant written in the registry's own
    # source; a YAML name only selects an entry (unknown names are rejected), it never reaches import_module.
    ("mm1core/connectors/__init__.py", "import_module(", _REGISTRY_IMPORT),
    ("mm1core/evaluate/tasks.py", "import_module(", _REGISTRY_IMPORT),
    ("mm1core/stages.py", "import_module(", _REGISTRY_IMPORT),
    ("mm1core/objectives/__init__.py", "import_module(", _REGISTRY_IMPORT),
}


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """The file's lines with comments and string contents blanked (a docstring may name what the code avoids)."""
    import tokenize

    lines = path.read_text().splitlines()
    blank = [list(line) for line in lines]
    with path.open("rb") as handle:
        for token in tokenize.tokenize(handle.readline):
            if token.type in (tokenize.COMMENT, tokenize.STRING):
                (row, col), (end_row, end_col) = token.start, token.end
                for r in range(row, end_row + 1):
                    start = col if r == row else 0
                    stop = end_col if r == end_row else len(blank[r - 1])
                    blank[r - 1][start:stop] = " " * (stop - start)
    return [(number, "".join(chars)) for number, chars in enumerate(blank, 1)]


def test_no_code_path_executes_text() -> None:
    hits = []
    for path in _sources():
        relative = path.relative_to(ROOT).as_posix()
        for number, line in _code_lines(path):
            for name, pattern in FORBIDDEN.items():
                if re.search(pattern, line) and (relative, name, line.strip()) not in ALLOWED:
                    hits.append(f"{relative}:{number}: {name}: {line.strip()}")
    assert not hits, "\n".join(hits)


def test_the_scan_finds_what_it_looks_for(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "x = eval(text)\nexec(code)\nm = __import__(name)\nobj = pickle.loads(blob)\ndata = yaml.load(text)\n"
        "subprocess.run(cmd, shell=True)\nos.system(cmd)\n"
        "model.eval()\nvalue = evaluate(model)\ndata = yaml.safe_load(text)  # eval( in a comment\ns = 'exec('\n"
    )
    flagged = {number for number, line in _code_lines(sample) if any(re.search(p, line) for p in FORBIDDEN.values())}
    assert flagged == {1, 2, 3, 4, 5, 6, 7}


# ------------------------------------------------------------------------ paths relative to the spec file
def _tokenizer(folder: Path) -> Path:
    from tests.mm1core.data.test_tokenizer import word_level

    return word_level(folder)


def _spec_folder(tmp_path: Path) -> Path:
    """``tmp_path/project/sweeps`` holding a tokenizer, a TextCore jsonl, a text corpus and an LR fit."""
    folder = tmp_path / "project" / "sweeps"
    folder.mkdir(parents=True)
    _tokenizer(folder / "tok")
    (folder / "data").mkdir()
    (folder / "data" / "mc.jsonl").write_text(json.dumps({"context": "a", "choices": ["b", "c"], "answer": 0}) + "\n")
    (folder / "data" / "corpus.jsonl").write_text(json.dumps({"text": "a red circle on the left."}) + "\n")
    (folder / "fit.json").write_text(json.dumps({"a": -0.4214, "b": -0.5535}))
    return folder


RELATIVE_SPEC = {
    "name": "relative",
    "base": {
        "data": {
            "tokenizer": "tok",
            "source": {"caption": "synthetic", "interleaved": "synthetic", "text": "data/corpus.jsonl"},
        },
        "train": {"lr": {"law": "fit.json"}},
        "eval": {"textcore": ["world", "data/mc.jsonl"]},
    },
    "grid": {"eval.textcore": [["data/mc.jsonl"], ["./data/../data/mc.jsonl", "world"]]},
}


def test_relative_paths_resolve_against_the_spec_folder_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _spec_folder(tmp_path)
    spec = folder / "relative.yaml"
    spec.write_text(yaml.safe_dump(RELATIVE_SPEC))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    _, trials, _ = load_sweep(os.path.relpath(spec))
    assert len(trials) == 2
    for trial in trials:
        data, textcore = trial.config.data, trial.config.eval.textcore
        assert data.tokenizer == str(folder / "tok")
        assert data.source["text"] == str(folder / "data" / "corpus.jsonl")
        assert str(folder / "data" / "mc.jsonl") in textcore
    assert trials[0].derived["train.lr_law.a"] == -0.4214
    rc, stdout, stderr = _mm1("sweep", "validate", str(spec), "--json")
    assert (rc, json.loads(stdout), stderr) == (0, {"trials": 2}, "")


def test_the_real_cli_validates_a_relative_spec_from_another_directory(tmp_path: Path) -> None:
    folder = _spec_folder(tmp_path)
    spec = folder / "relative.yaml"
    spec.write_text(yaml.safe_dump(RELATIVE_SPEC))
    result = run_mm1("sweep", "plan", "project/sweeps/relative.yaml", "--json", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 2


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        ("eval.textcore", ["missing/mc.jsonl"], "{folder}/missing/mc.jsonl is not a file"),
        ("train.lr", {"law": "missing-fit.json"}, "{folder}/missing-fit.json does not exist"),
        ("data.tokenizer", "missing-tok", "tokenizer '{folder}/missing-tok' is not one of"),
        ("model.encoder.checkpoint", "missing.pt", "{folder}/missing.pt"),
    ],
    ids=["textcore", "lr-law", "tokenizer", "encoder-checkpoint"],
)
def test_a_missing_relative_file_is_named_by_its_absolute_path_under_the_spec_folder(
    where: str, value: object, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "sweeps"
    folder.mkdir()
    base: dict = {}
    set_path(base, where, value)
    spec = folder / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "x", "base": base}))
    monkeypatch.chdir(tmp_path)
    rc, _, stderr = _mm1("sweep", "validate", "sweeps/spec.yaml")
    assert rc == 2
    assert stderr.startswith(f"mm1: error: sweeps/spec.yaml: base.{where}") and stderr.count("\n") == 1, stderr
    assert message.format(folder=folder) in stderr


def test_a_trial_file_resolves_its_paths_against_its_own_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _spec_folder(tmp_path)
    trial = folder / "trial.yaml"
    trial.write_text(yaml.safe_dump(RELATIVE_SPEC["base"]))
    monkeypatch.chdir(tmp_path)
    config = load_trial("project/sweeps/trial.yaml")
    assert config.data.tokenizer == str(folder / "tok")
    assert config.eval.textcore == ["world", str(folder / "data" / "mc.jsonl")]


def test_absolute_paths_stay_and_without_a_folder_the_working_directory_is_the_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _spec_folder(tmp_path)
    absolute = TrialConfig.model_validate({"data": {"tokenizer": str(folder / "tok")}})
    assert resolve_files(absolute, tmp_path / "somewhere-else")[0].data.tokenizer == str(folder / "tok")
    monkeypatch.chdir(folder)
    relative = TrialConfig.model_validate({"data": {"tokenizer": "tok"}})
    assert resolve_files(relative)[0].data.tokenizer == str(folder / "tok")


def test_validation_takes_a_path_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The config checks values only: a path is made absolute (against the file that named it) by
    ``resolve_files``, never by the working directory validation happens to run in."""
    monkeypatch.chdir(tmp_path)
    assert TrialConfig.model_validate({"eval": {"textcore": ["fit.json"]}}).eval.textcore == ["fit.json"]


# -------------------------------------------------------------------------------------- MLflow UI binding
# A command line: ``mlflow ui`` / ``mlflow server`` (or ``{mlflow_bin} ui``) followed by an option or the line's end,
# so prose that names the command ("starts a real `mlflow server`") is not one.
_UI_COMMAND = re.compile(r"mlflow\S*\s+(ui|server)(\s+--?\w|\s*$)")


def test_every_printed_or_documented_mlflow_ui_binds_to_loopback() -> None:
    """Each such command binds to 127.0.0.1; another host is allowed only on a line that says ``opt-in``."""
    documents = [ROOT / "README.md", ROOT / "Makefile", *_sources()]
    commands = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in documents
        if path.exists()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if _UI_COMMAND.search(line)
    ]
    assert len(commands) >= 3, f"the scan found too few mlflow ui/server commands: {commands}"
    unbound = [command for command in commands if "--host 127.0.0.1" not in command and "opt-in" not in command]
    assert not unbound, "\n".join(unbound)


@pytest.mark.parametrize("uri", ["sqlite:////tmp/mlflow.db", "file:///tmp/mlruns"])
def test_the_where_to_look_hint_binds_the_ui_to_loopback(uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    where_to_look(uri, "mm1")
    line = next(line for line in capsys.readouterr().out.splitlines() if "MLflow UI" in line)
    assert " ui " in line and "--host 127.0.0.1" in line and "0.0.0.0" not in line
