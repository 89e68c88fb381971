"""The paper-scale sweeps in ``sweeps/paper/``: each is the counterpart of a toy sweep in ``sweeps/`` (the same
ablation axes) at the MM1 paper's sizes and settings (McKinzie et al., 2024, Sec. 3.1-5).

Fast and torch-free: the CLI runs in-process (``sweep validate``, ``sweep plan --json``) and the trials are expanded
from the spec; nothing starts Ray or touches MLflow.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli import main
from orchestrator.expand import Trial, expand
from orchestrator.spec import SweepSpec, load_spec

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"
PAPER = SWEEPS / "paper"
EXPECTED = ("encoder", "connector", "data-mixture", "data-text", "data-synthetic", "lr-scaling", "highres", "moe")
COUNTERPARTS = sorted(path.stem for path in SWEEPS.glob("*.yaml") if (PAPER / path.name).exists())

LAW = {"a": -0.4214, "b": -0.5535}  # Sec. 3.4, eq. 1: eta = exp(-0.4214 ln N - 0.5535)

# Sec. 3.1, the base every ablation starts from: "A ViT-L/14 ... images of size 336x336", "C-Abstractor with 144
# image tokens", "captioned images (45%), interleaved image-text documents (45%), and text-only (10%)"; the LR grid
# (Sec. 3.4, footnote 4) downsizes to the same ViT-L at 336 px. Sec. 4, the final recipe (high resolution, MoE):
# "a ViT-H model with 378x378 resolution". Sec. 4 for all: "sequence length 4096, up to 16 images per sequence",
# "a batch size of 512 sequences".
ABLATION_ENCODER = {"model.encoder.name": "vit-l-14", "model.encoder.resolution": 336}
FINAL_ENCODER = {"model.encoder.name": "vit-h-14", "model.encoder.resolution": 378}
SHARED = {
    "model.connector.type": "c-abstractor",
    "model.connector.num_tokens": 144,
    "data.mixture.caption": 0.45,
    "data.mixture.interleaved": 0.45,
    "data.mixture.text": 0.10,
    "data.seq_len": 4096,
    "data.max_images": 16,
    "train.batch_size": 512,
}
# The one departure, explained in highres.yaml's header: at 720 tokens per 1344-px image only 5 images fit 4096.
DEPARTURES: dict[str, dict[str, Any]] = {"highres": {"data.max_images": 5}}
# MoE keeps "the same training hyperparameters that are discovered for the dense backbone" (Sec. 4): the law's LR
# at the dense decoder, as a number. The LR grid varies train.lr itself.
LR_NOT_A_LAW = ("moe", "lr-scaling")


def paper_defaults(name: str) -> dict[str, Any]:
    encoder = FINAL_ENCODER if name in ("highres", "moe") else ABLATION_ENCODER
    return {**encoder, **SHARED, **DEPARTURES.get(name, {})}


def load(path: Path) -> tuple[SweepSpec, list[Trial]]:
    spec = load_spec(path)
    return spec, expand(spec)


def axes(spec: SweepSpec) -> list[str]:
    return [*spec.grid, *spec.zip]


def varies(spec: SweepSpec, path: str) -> bool:
    """Whether an axis sets ``path``: the path itself or a section holding it (``data.mixture``)."""
    return any(path == axis or path.startswith(axis + ".") for axis in axes(spec))


def same(have: Any, want: Any) -> bool:
    if isinstance(want, float):
        return isinstance(have, (int, float)) and math.isclose(have, want, rel_tol=1e-9)
    return have == want


def law_lr(non_embedding_params: int) -> float:
    return math.exp(LAW["a"] * math.log(non_embedding_params) + LAW["b"])


def cli_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> Any:
    capsys.readouterr()
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_the_eight_paper_sweeps_exist_each_with_a_toy_counterpart() -> None:
    assert sorted(path.stem for path in PAPER.glob("*.yaml")) == sorted(EXPECTED)
    assert COUNTERPARTS == sorted(EXPECTED)


@pytest.mark.parametrize("name", COUNTERPARTS)
def test_validates_and_plans_through_the_cli(
    name: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may land in the checkout
    path = str(PAPER / f"{name}.yaml")
    capsys.readouterr()
    assert main(["sweep", "validate", path]) == 0, capsys.readouterr().err
    count = cli_json(["sweep", "validate", path, "--json"], capsys)["trials"]
    plan = cli_json(["sweep", "plan", path, "--json"], capsys)
    assert len(plan) == count > 0
    assert len({trial["trial_key"] for trial in plan}) == count
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", COUNTERPARTS)
def test_same_ablation_as_the_toy_sweep_in_its_own_experiment(name: str) -> None:
    toy, paper = load_spec(SWEEPS / f"{name}.yaml"), load_spec(PAPER / f"{name}.yaml")
    assert list(paper.grid) == list(toy.grid) and list(paper.zip) == list(toy.zip)
    assert paper.seeds == toy.seeds
    assert (paper.name, paper.experiment) == (f"paper-{name}", "mm1-paper")
    assert paper.experiment != toy.experiment
    header = (PAPER / f"{name}.yaml").read_text().split("\nname:")[0]
    assert header.startswith("# ") and f"sweeps/{name}.yaml" in header


@pytest.mark.parametrize("name", COUNTERPARTS)
def test_settings_the_grid_does_not_vary_are_the_papers(name: str) -> None:
    spec, trials = load(PAPER / f"{name}.yaml")
    fixed = {path: value for path, value in paper_defaults(name).items() if not varies(spec, path)}
    for trial in trials:
        flat = trial.config.flat_params()
        wrong = {path: (flat[path], value) for path, value in fixed.items() if not same(flat[path], value)}
        assert not wrong, f"trial {trial.index}: (have, paper) {wrong}"


@pytest.mark.parametrize("name", COUNTERPARTS)
def test_peak_lr_is_the_papers_law_at_the_dense_decoder(name: str) -> None:
    spec, trials = load(PAPER / f"{name}.yaml")
    if varies(spec, "train.lr"):
        assert name == "lr-scaling"
        return
    if name not in LR_NOT_A_LAW:
        assert spec.base["train"]["lr"] == {"law": LAW}
    for trial in trials:
        train, decoder = trial.config.train, trial.config.model.decoder
        assert train.lr == pytest.approx(law_lr(decoder.preset().non_embedding_params()), rel=1e-3)
        assert train.weight_decay == pytest.approx(0.1 * train.lr)  # weight_decay: auto, Sec. 3.4


def test_the_lr_grid_brackets_the_law_at_each_of_the_papers_four_sizes() -> None:
    spec, trials = load(PAPER / "lr-scaling.yaml")
    assert spec.grid["model.decoder.name"] == ["lm-9m", "lm-85m", "lm-302m", "lm-1.2b"]  # Sec. 3.4: 9M .. 1.2B
    for trial in trials:
        lrs = [t.config.train.lr for t in trials if t.config.model.decoder.name == trial.config.model.decoder.name]
        optimum = law_lr(trial.config.model.decoder.non_embedding_params())
        assert min(lrs) < optimum < max(lrs)
    assert 8 in trials[0].config.eval.shots  # the paper picks the best LR by the 8-shot average


@pytest.mark.parametrize("name", COUNTERPARTS)
def test_every_rows_images_fit_its_sequence(name: str) -> None:
    """A row holds up to ``max_images`` images of ``tokens_per_image`` each: none is cut by ``seq_len``."""
    _, trials = load(PAPER / f"{name}.yaml")
    for trial in trials:
        model, data = trial.config.model, trial.config.data
        assert data.seq_len is not None and model.tokens_per_image * data.max_images <= data.seq_len


def test_moe_is_the_papers_3b_moe() -> None:
    spec, _ = load(PAPER / "moe.yaml")
    dense, sparse = spec.grid["model.decoder.moe"]
    assert dense is None and spec.base["model"]["decoder"]["name"] == "lm-3b"
    assert sparse == {
        "num_experts": 64,
        "every_k_layers": 2,
        "top_k": 2,
        "capacity_factor": 1.25,
        "load_balance_coef": 0.01,
        "router_z_coef": 0.001,
    }


def test_highres_reaches_1344_px_as_five_672_px_views() -> None:
    _, trials = load(PAPER / "highres.yaml")
    subimage = [t.config.model for t in trials if t.config.model.highres.mode == "subimage"]
    assert subimage and all(m.image_resolution == 1344 and m.view_resolution == 672 for m in subimage)
    assert {m.tokens_per_image for m in subimage} == {720}  # Sec. 5.1: "ours is only 720 in total"
