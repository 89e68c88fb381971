"""A sweep file as one mapping before validation (``orchestrator.sweepfile``, through ``orchestrator.spec``): duplicate
keys refused with both lines, ``extends`` chains merged (maps key by key, lists and scalars replaced), ``--set``
overrides checked like the file. Real files in ``tmp_path``; resolution order: baseline < file < ``--set``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from orchestrator.expand import expand
from orchestrator.spec import SpecError, apply_sets, compose, load_spec, parse_sets, read_yaml
from tests.conftest import run_mm1


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def problem(path: Path, sets: tuple[str, ...] = ()) -> str:
    with pytest.raises(SpecError) as caught:
        load_spec(path, sets)
    return str(caught.value)


BASELINE = """
    experiment: lessons
    base:
      model:
        encoder: {name: vit-tiny, resolution: 32}
        connector: {type: avg-pool, num_tokens: 16}
      train: {max_steps: 20, lr: 1.0e-3}
      eval: {shots: [0, 4, 8], num_examples: 8}
    seeds: [0, 1]
"""


# ------------------------------------------------------------------------------------------ duplicate keys
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: a\nseeds: [0]\nname: b\n", "name: duplicate key (lines 1 and 3)"),
        (
            "name: a\ngrid:\n  train.lr: [1]\n  train.max_steps: [2]\n  train.lr: [3]\n",
            "grid.train.lr: duplicate key (lines 3 and 5)",
        ),
        (
            "name: a\nbase:\n  model:\n    connector:\n      type: avg-pool\n      num_tokens: 4\n"
            "      type: attn-pool\n",
            "base.model.connector.type: duplicate key (lines 5 and 7)",
        ),
        ("name: a\nbase: {train: {lr: 1, lr: 2}}\n", "base.train.lr: duplicate key (lines 2 and 2)"),
        ("name: a\nexclude:\n  - {train.lr: 1, train.lr: 2}\n", "exclude[0].train.lr: duplicate key (lines 3 and 3)"),
        ("name: a\n'name': b\n", "name: duplicate key (lines 1 and 2)"),
    ],
    ids=["top-level", "grid", "nested-in-base", "flow-mapping", "list-item", "quoted"],
)
def test_a_key_written_twice_is_named_with_both_lines(text: str, expected: str, tmp_path: Path) -> None:
    assert problem(write(tmp_path, "spec.yaml", text)) == expected


def test_every_duplicate_is_reported_in_file_order(tmp_path: Path) -> None:
    path = write(tmp_path, "spec.yaml", "name: a\nbase: {train: {lr: 1, lr: 2}}\nname: b\nseeds: [0]\nseeds: [1]\n")
    assert problem(path).split("\n") == [
        "base.train.lr: duplicate key (lines 2 and 2)",
        "name: duplicate key (lines 1 and 3)",
        "seeds: duplicate key (lines 4 and 5)",
    ]


def test_merge_keys_are_no_duplicates_of_the_keys_they_bring_in(tmp_path: Path) -> None:
    text = "name: merged\nbase:\n  model:\n    encoder:\n      <<: {name: vit-tiny, resolution: 32}\n"
    encoder = load_spec(write(tmp_path, "spec.yaml", text + "      resolution: 64\n")).base["model"]["encoder"]
    assert encoder == {"name": "vit-tiny", "resolution": 64}
    anchored = "name: a\nexclude:\n  - &rule {train.lr: 1}\n  - {<<: *rule, train.lr: 2}\n  - {<<: [*rule, *rule]}\n"
    assert read_yaml(write(tmp_path, "anchored.yaml", anchored))["exclude"][1:] == [{"train.lr": 2}, {"train.lr": 1}]


def test_a_trial_file_with_a_duplicate_key_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "trial.yaml", "train:\n  lr: 1.0e-3\n  max_steps: 5\n  lr: 3.0e-3\n")
    with pytest.raises(SpecError, match=r"^train\.lr: duplicate key \(lines 2 and 4\)$"):
        read_yaml(path)


def test_a_duplicate_in_an_extended_file_names_that_file(tmp_path: Path) -> None:
    write(tmp_path, "baselines/toy.yaml", "base:\n  train:\n    lr: 1\n    lr: 2\n")
    sweep = write(tmp_path, "sweeps/a.yaml", "extends: ../baselines/toy.yaml\nname: a\n")
    assert problem(sweep) == "extends: ../baselines/toy.yaml: base.train.lr: duplicate key (lines 3 and 4)"


# ------------------------------------------------------------------------------------------ extends
def test_the_file_is_merged_over_its_baseline_maps_key_by_key_lists_and_scalars_replaced(tmp_path: Path) -> None:
    write(tmp_path, "baseline.yaml", BASELINE)
    sweep = write(
        tmp_path,
        "sweep.yaml",
        """
        extends: baseline.yaml
        name: change
        base:
          model:
            encoder: {resolution: 64}
          eval: {shots: [0]}
        seeds: [3]
        """,
    )
    data = compose(sweep)
    assert "extends" not in data and data["name"] == "change" and data["experiment"] == "lessons"
    assert data["base"]["model"] == {
        "encoder": {"name": "vit-tiny", "resolution": 64},
        "connector": {"type": "avg-pool", "num_tokens": 16},
    }
    assert data["base"]["eval"] == {"shots": [0], "num_examples": 8} and data["seeds"] == [3]
    spec = load_spec(sweep)
    assert (spec.name, spec.experiment, spec.seeds) == ("change", "lessons", [3])
    assert list(data) == ["experiment", "base", "seeds", "name"]  # a key keeps its place in the baseline


def test_a_chain_of_three_files_each_over_the_one_it_extends(tmp_path: Path) -> None:
    write(tmp_path, "root.yaml", "experiment: root\nbase: {train: {max_steps: 10, lr: 1.0e-3, batch_size: 4}}\n")
    write(tmp_path, "family/middle.yaml", "extends: ../root.yaml\nbase: {train: {max_steps: 20, lr: 2.0e-3}}\n")
    sweep = write(
        tmp_path, "family/sweeps/leaf.yaml", "extends: ../middle.yaml\nname: leaf\nbase: {train: {lr: 3.0e-3}}\n"
    )
    spec = load_spec(sweep)
    assert spec.experiment == "root"
    assert spec.base["train"] == {"max_steps": 20, "lr": 3.0e-3, "batch_size": 4}


def test_an_absolute_extends_path_and_home_expansion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    baseline = write(tmp_path, "elsewhere/baseline.yaml", BASELINE)
    assert load_spec(write(tmp_path, "a.yaml", f"extends: {baseline}\nname: a\n")).experiment == "lessons"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_spec(write(tmp_path, "b.yaml", "extends: ~/elsewhere/baseline.yaml\nname: b\n")).experiment == "lessons"


def test_a_cycle_names_the_chain(tmp_path: Path) -> None:
    write(tmp_path, "b.yaml", "extends: a.yaml\n")
    a = write(tmp_path, "a.yaml", "extends: b.yaml\nname: a\n")
    assert problem(a) == "extends: a cycle: a.yaml -> b.yaml -> a.yaml"
    itself = write(tmp_path, "self.yaml", "extends: ./self.yaml\nname: s\n")
    assert problem(itself) == "extends: a cycle: self.yaml -> ./self.yaml"


def test_a_missing_extended_file_is_named_with_the_path_looked_for(tmp_path: Path) -> None:
    sweep = write(tmp_path, "sweeps/a.yaml", "extends: ../baselines/nope.yaml\nname: a\n")
    expected = f"extends: ../baselines/nope.yaml: no such file ({tmp_path / 'baselines' / 'nope.yaml'})"
    assert problem(sweep) == expected
    write(tmp_path, "sweeps/b.yaml", "extends: gone.yaml\n")
    chained = write(tmp_path, "sweeps/c.yaml", "extends: b.yaml\nname: c\n")
    assert (
        problem(chained) == f"extends: b.yaml: extends: gone.yaml: no such file ({tmp_path / 'sweeps' / 'gone.yaml'})"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [("[a.yaml]", "got list"), ("''", "got an empty path"), ("null", "got NoneType"), ("3", "got int")],
    ids=["list", "empty", "null", "number"],
)
def test_extends_takes_one_path(value: str, expected: str, tmp_path: Path) -> None:
    message = problem(write(tmp_path, "a.yaml", f"extends: {value}\nname: a\n"))
    assert message == f"extends: expected the path of a sweep file, got {expected.removeprefix('got ')}"


def test_an_extended_file_that_is_not_a_mapping_or_not_yaml(tmp_path: Path) -> None:
    write(tmp_path, "list.yaml", "- a\n")
    write(tmp_path, "broken.yaml", "base: [unclosed\n")
    (tmp_path / "folder.yaml").mkdir()
    assert problem(write(tmp_path, "a.yaml", "extends: list.yaml\nname: a\n")) == (
        "extends: list.yaml: expected a mapping at the top level, got list"
    )
    assert problem(write(tmp_path, "b.yaml", "extends: broken.yaml\nname: b\n")).startswith(
        "extends: broken.yaml: line 2, column 1: invalid YAML"
    )
    assert problem(write(tmp_path, "c.yaml", "extends: folder.yaml\nname: c\n")) == (
        "extends: folder.yaml: cannot read (IsADirectoryError)"
    )


def test_problems_in_the_merged_result_name_the_path_even_when_only_the_baseline_has_it(tmp_path: Path) -> None:
    write(tmp_path, "typo.yaml", "base: {train: {lrr: 1.0e-3}}\n")
    assert problem(write(tmp_path, "a.yaml", "extends: typo.yaml\nname: a\n")).startswith(
        "base.train.lrr: unknown key (did you mean 'lr'? fields: stage, init_from,"
    )
    write(tmp_path, "axis.yaml", "grid: {model.connector.typo: [1]}\n")
    assert problem(write(tmp_path, "b.yaml", "extends: axis.yaml\nname: b\n")).startswith(
        "grid.model.connector.typo: model.connector has no field 'typo'"
    )
    assert problem(write(tmp_path, "c.yaml", "extends: typo.yaml\n")).startswith("name: required field is missing")


# ------------------------------------------------------------------------------------------ --set
@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    write(tmp_path, "baselines/toy.yaml", BASELINE)
    return write(
        tmp_path,
        "sweeps/moe.yaml",
        """
        extends: ../baselines/toy.yaml
        name: moe
        base:
          model:
            decoder: {name: lm-tiny, moe: {num_experts: 4, top_k: 1}}
          train: {lr: 2.0e-3}
        grid:
          model.connector.num_tokens: [4, 16]
        zip:
          model.highres: [{mode: none}]
        """,
    )


def test_set_beats_the_file_which_beats_the_baseline(sweep: Path) -> None:
    assert load_spec(sweep).base["train"] == {"max_steps": 20, "lr": 2.0e-3}
    spec = load_spec(sweep, ["train.lr=3e-3", "train.max_steps=5"])
    trials = expand(spec)
    assert {(t.config.train.lr, t.config.train.max_steps) for t in trials} == {(3e-3, 5)}


def test_set_a_list_null_and_a_whole_section(sweep: Path) -> None:
    spec = load_spec(sweep, ["eval.shots=[0, 4]", "model.decoder.moe=null", "model.encoder={name: vit-tiny}"])
    trial = expand(spec)[0]
    assert trial.config.eval.shots == [0, 4] and trial.config.model.decoder.moe is None
    assert spec.base["model"]["encoder"] == {"name": "vit-tiny"}  # a section is replaced, as by a grid value


def test_an_unknown_set_path_is_named_like_an_unknown_grid_path(sweep: Path) -> None:
    message = problem(sweep, ("train.lrr=1",))
    assert message.startswith("--set train.lrr: train has no field 'lrr' (") and "fields: " in message
    assert problem(sweep, ("max_concurrent=3",)).startswith("--set max_concurrent: a trial config has no field")


@pytest.mark.parametrize("entry", ["x", "=3", "train lr=3", "train..lr=3", ".lr=1"])
def test_a_malformed_set_entry(entry: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_sets([entry])
    assert str(caught.value) == f"--set {entry!r}: expected dotted.path=value"


def test_set_values_are_read_as_yaml_and_a_path_is_set_once() -> None:
    parsed = parse_sets(["train.lr=3.0e-3", "eval.shots=[0,4]", "model.decoder.moe=null", "data.tokenizer=a=b"])
    assert parsed == {"train.lr": 3e-3, "eval.shots": [0, 4], "model.decoder.moe": None, "data.tokenizer": "a=b"}
    with pytest.raises(SpecError, match=r"^--set train\.lr: given twice$"):
        parse_sets(["train.lr=1", "train.lr=2"])
    with pytest.raises(SpecError, match=r"^--set eval\.shots: line 1, column \d+: invalid YAML"):
        parse_sets(["eval.shots=[0,"])
    with pytest.raises(SpecError, match=r"^--set model\.decoder\.moe: num_experts: duplicate key \(lines 1 and 1\)$"):
        parse_sets(["model.decoder.moe={num_experts: 2, num_experts: 4}"])


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            "model.connector.num_tokens=4",
            "--set model.connector.num_tokens: grid.model.connector.num_tokens is an axis",
        ),
        ("model.highres.mode=subimage", "--set model.highres.mode: zip.model.highres is an axis"),
        ("train.seed=3", "--set train.seed: the sweep's 'seeds' list sets each trial's seed"),
    ],
    ids=["grid-axis", "inside-a-zip-section", "seed"],
)
def test_a_set_that_an_axis_would_overwrite(entry: str, expected: str, sweep: Path) -> None:
    assert problem(sweep, (entry,)).startswith(expected)


def test_a_set_value_is_checked_like_a_grid_value(sweep: Path) -> None:
    assert problem(sweep, ("train.lr=fast",)).startswith("--set train.lr: Input should be a valid number")
    assert problem(sweep, ("model.connector.type=cabstractor",)).startswith(
        "--set model.connector.type: 'cabstractor' is not one of"
    )
    assert problem(sweep, ("train.lr=fast", "train.lrr=1")).count("\n") == 1  # every problem at once


def test_apply_sets_on_a_trial_file(tmp_path: Path) -> None:
    trial = read_yaml(write(tmp_path, "trial.yaml", "train: {max_steps: 5, lr: 1.0e-3}\n"))
    changed = apply_sets(trial, parse_sets(["train.lr=2e-3", "model.connector.num_tokens=4"]))
    assert changed == {"train": {"max_steps": 5, "lr": "2e-3"}, "model": {"connector": {"num_tokens": 4}}}
    assert trial == {"train": {"max_steps": 5, "lr": 1.0e-3}}  # a copy
    with pytest.raises(SpecError, match=r"^--set model\.conector: model has no field 'conector'"):
        apply_sets(trial, {"model.conector": 1})


def test_compose_is_the_mapping_load_spec_validates(sweep: Path) -> None:
    data = compose(sweep, ["train.lr=0.004"])
    assert data["base"]["train"] == {"max_steps": 20, "lr": 0.004} and "extends" not in data
    assert load_spec(sweep, ["train.lr=0.004"]).base == data["base"]


# ------------------------------------------------------------------------------------------ the real CLI
@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"a.yaml": "name: a\nseeds: [0]\nseeds: [1]\n"}, "seeds: duplicate key (lines 2 and 3)"),
        (
            {"a.yaml": "extends: b.yaml\nname: a\n", "b.yaml": "extends: a.yaml\n"},
            "extends: a cycle: a.yaml -> b.yaml -> a.yaml",
        ),
    ],
    ids=["duplicate", "cycle"],
)
def test_the_cli_exits_2_with_one_line(files: dict[str, str], expected: str, tmp_path: Path) -> None:
    for name, text in files.items():
        write(tmp_path, name, text)
    result = run_mm1("sweep", "validate", "a.yaml", cwd=tmp_path)
    assert (result.returncode, result.stderr, result.stdout) == (2, f"mm1: error: a.yaml: {expected}\n", "")
