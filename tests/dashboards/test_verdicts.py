"""``dashboards.verdicts`` / ``mm1 lessons`` on fake experiments written through the real MLflow API: the contrast
and its interval against hand computations, every verdict state, a row per lesson from sweeps whose params are named
as real runs name them, the CLI, and the Lessons table that ``make_report`` puts at the top of index.html."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from dashboards.plots import make_report
from dashboards.runs import Store
from dashboards.verdicts import (
    INCONCLUSIVE,
    LESSONS,
    LOSS_DROP,
    NOT_REPRODUCED,
    NOT_RUN,
    ONE_SEED,
    REPRODUCED,
    Verdict,
    contrast,
    decide,
    experiment_verdicts,
    format_verdicts,
    pooled_variance,
    write_verdicts,
)
from orchestrator.cli import main
from tests.dashboards.conftest import FakeStore

EXPERIMENT, RISING, SMALL = "lessons", "rising-lr", "synthetic-only"
SEED_OFFSET = {0: -0.5, 1: 0.5}  # two seeds: every cell's variance is 0.5
S2 = 0.5
T = {2: 4.302653, 3: 3.182446, 4: 2.776445, 12: 2.178813}  # t(0.975, df), from a table

BASE = {
    "model.encoder.name": "vit-tiny",
    "model.encoder.resolution": 32,
    "model.connector.type": "avg-pool",
    "model.connector.num_tokens": 16,
    "model.decoder.name": "lm-tiny",
    "model.decoder.non_embedding_params": 400_000,
    "model.highres.mode": "none",
    "model.highres.resolution": None,
    "data.mixture.caption": 0.45,
    "data.mixture.interleaved": 0.45,
    "data.mixture.text": 0.1,
    "data.synthetic_captions": False,
    "train.stage": "pretrain",
    "train.lr": 0.001,
    "train.max_steps": 600,
    "train.seed": 0,
}
DECODER_N = {"lm-nano": 100_000, "lm-tiny": 400_000, "lm-small": 1_600_000}
LRS = (1e-4, 3e-4, 1e-3, 3e-3)  # every best LR below is interior


def run(seed: int = 0, zero: float = 30.0, few: float = 30.0, text: float = 40.0, loss: float = 3.0, **params) -> dict:
    """A trial over BASE (``__`` in a keyword stands for a dot) whose scores get the seed's offset. S, the mean of
    the 0- and 4-shot averages, is (zero + few) / 2 plus the offset."""
    noise = SEED_OFFSET[seed]
    params = {**BASE, **{key.replace("__", "."): value for key, value in params.items()}, "train.seed": seed}
    metrics = {"eval/avg/0shot": zero + noise, "eval/avg/4shot": few + noise, "eval/textcore": text + noise}
    return {"params": params, "metrics": {**metrics, "eval/loss": loss}}


def score(value: float) -> dict:
    """Both shot averages at ``value``: S = value (plus the seed's offset)."""
    return {"zero": value, "few": value}


def mixture(caption: float, interleaved: float, text: float) -> dict:
    return {"data__mixture__caption": caption, "data__mixture__interleaved": interleaved, "data__mixture__text": text}


def lr_grid(best: Callable[[float], float]) -> list[dict]:
    """One seed per (decoder, LR); held-out loss a parabola in ln(lr) around ``best(N)``."""
    return [
        run(0, model__decoder__name=name, model__decoder__non_embedding_params=n, train__lr=lr,
            loss=3.0 + 0.1 * math.log(lr / best(n)) ** 2)
        for name, n in DECODER_N.items()
        for lr in LRS
    ]  # fmt: skip


CONNECTOR_BONUS = {"avg-pool": 1.0, "attn-pool": 0.0, "c-abstractor": 0.5}
TEXT_ONLY_FEW = {0.0: 0.0, 0.09: 6.0, 0.14: 2.0, 0.33: -1.0}
HIGHRES_BONUS = {"none": 0.0, "interpolate": -1.0, "subimage": 3.0}
MOE = {"model__decoder__moe__num_experts": 4, "model__decoder__moe__top_k": 1, "model__decoder__moe__every_k_layers": 1}
SEEDS, BOOLS = (0, 1), (False, True)


def encoder_sweep() -> list[dict]:
    """Table 1: 64 px +6, the bigger encoder +2, so Δres - Δsize = 4."""
    return [
        run(seed, **score(30 + 6 * (res == 64) + 2 * (name == "vit-base-toy")),
            model__encoder__name=name, model__encoder__resolution=res)
        for name in ("vit-tiny", "vit-base-toy") for res in (32, 64) for seed in SEEDS
    ]  # fmt: skip


def connector_sweep() -> list[dict]:
    """Fig. 4: 16 tokens +5, 64 px +4, the connectors within 1 point of each other (avg-pool best)."""
    return [
        run(seed, **score(30 + 5 * (tokens == 16) + 4 * (res == 64) + CONNECTOR_BONUS[kind]),
            model__connector__type=kind, model__connector__num_tokens=tokens, model__encoder__resolution=res)
        for kind in CONNECTOR_BONUS for tokens in (4, 16) for res in (32, 64) for seed in SEEDS
    ]  # fmt: skip


def mixture_sweep() -> list[dict]:
    """Fig. 5a: caption share 1, 0.5, 0 at 10% text-only; per unit of caption share zero-shot +6, few-shot -4,
    TextCore -0.2 (within the seed noise)."""
    return [
        run(seed, zero=30 + 6 * share, few=30 - 4 * share, text=40 + 0.2 * (1 - share),
            **mixture(0.9 * share, 0.9 * (1 - share), 0.1))
        for share in (1.0, 0.5, 0.0) for seed in SEEDS
    ]  # fmt: skip


def text_only_sweep() -> list[dict]:
    """Fig. 5b/5c: image:text 100:0, 91:9, 86:14, 67:33 (caption = interleaved); text-only data costs TextCore 3."""
    return [
        run(seed, few=30 + few, text=40 - 3 * (text > 0), **mixture((1 - text) / 2, (1 - text) / 2, text))
        for text, few in TEXT_ONLY_FEW.items() for seed in SEEDS
    ]  # fmt: skip


def highres_sweep() -> list[dict]:
    """Fig. 7b with one seed (no interval): 32 px native, 64 px interpolated (-1) or as sub-images (+3)."""
    return [
        run(0, **score(30 + HIGHRES_BONUS[mode]), model__highres__mode=mode, model__highres__resolution=res,
            **({"model__highres__grid": 2} if mode == "subimage" else {}))
        for mode, res in (("none", None), ("interpolate", 64), ("subimage", 64))
    ]  # fmt: skip


SWEEPS = {
    "encoder": encoder_sweep(),
    "connector": connector_sweep(),
    "data-mixture": mixture_sweep(),
    "data-text": text_only_sweep(),
    "data-synthetic": [run(seed, few=32 if on else 30, data__synthetic_captions=on) for on in BOOLS for seed in SEEDS],
    "lr-scaling": lr_grid(lambda n: 0.2 * n**-0.42),  # the best LR falls with N, slope -0.42
    "highres": highres_sweep(),
    # MoE 5 points below dense; a dense run logs model.decoder.moe = None, as the real ones do
    # ... and its held-out loss 0.1 lower (the loss carries no seed noise here: a zero-width interval)
    "moe": [run(seed, **score(25), loss=2.9, **MOE) for seed in SEEDS]
    + [run(seed, model__decoder__moe=None) for seed in SEEDS],
}
RISING_SWEEPS = {
    "lr-scaling": lr_grid(lambda n: 1e-5 * n**0.3),  # the best LR rises with N
    # logged the 0-shot average only: no few-shot metric for lesson 4
    "data-synthetic": [
        {"params": {**BASE, "data.synthetic_captions": on}, "metrics": {"eval/avg/0shot": 30.0}} for on in BOOLS
    ],
    # an SFT sweep varying the connector: not a pre-training sweep, no Fig. 4 rows
    "sft-connectors": [
        {"params": {**BASE, "train.stage": "sft", "model.connector.type": kind}, "metrics": {"eval/sft/avg": 50.0}}
        for kind in ("avg-pool", "c-abstractor")
    ],
}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> FakeStore:
    store = FakeStore(tmp_path_factory.mktemp("store"))
    for experiment, sweeps in ((EXPERIMENT, SWEEPS), (RISING, RISING_SWEEPS)):
        for name, trials in sweeps.items():
            store.add_sweep(experiment, name, trials)
    store.add_sweep(SMALL, "data-synthetic", SWEEPS["data-synthetic"])
    return store


@pytest.fixture(scope="module")
def verdicts(store: FakeStore) -> dict[str, Verdict]:
    rows = experiment_verdicts(Store(store.uri), EXPERIMENT)
    assert list(dict.fromkeys(row.lesson for row in rows)) == list(LESSONS), "rows by lesson, in the paper's order"
    model_axes = {"encoder", "connector-tokens", "connector-resolution", "connector-type", "highres", "moe"}
    assert [row.lesson for row in rows if row.metric == LOSS_DROP] == [n for n in LESSONS if n in model_axes]
    return {row.lesson: row for row in rows if row.metric != LOSS_DROP}


def test_model_axis_lessons_are_also_judged_on_the_held_out_loss(store: FakeStore) -> None:
    rows = [r for r in experiment_verdicts(Store(store.uri), EXPERIMENT) if r.metric == LOSS_DROP]
    moe = next(r for r in rows if r.lesson == "moe")
    assert moe.effect == pytest.approx(0.1) and moe.verdict == REPRODUCED and moe.unit == "nats"
    assert moe.effect_text.startswith("+0.100 nats") and moe.detail == "MoE vs dense"
    tokens = next(r for r in rows if r.lesson == "connector-tokens")  # equal losses: no effect either way
    assert tokens.effect == pytest.approx(0.0) and tokens.verdict == INCONCLUSIVE


def interval(effect: float, se: float, df: int) -> tuple[float, float]:
    return pytest.approx((effect - T[df] * se, effect + T[df] * se), abs=1e-5)


# ------------------------------------------------------------------------------------------------ statistics
def test_contrast_of_two_cells_of_two_seeds_by_hand():
    s2, df = pooled_variance([[1.0, 3.0], [4.0, 8.0]])  # variances 2 and 8
    assert (s2, df) == (pytest.approx(5.0), 2)
    estimate = contrast(means=[2.0, 6.0], counts=[2, 2], weights=[-1, 1], s2=s2, df=df)
    assert estimate.effect == pytest.approx(4.0)
    assert estimate.ci == interval(4.0, math.sqrt(5.0 * (1 / 2 + 1 / 2)), 2)
    assert (estimate.seeds, estimate.runs) == (2, 4)


def test_contrast_with_unequal_seeds_by_hand():
    s2, df = pooled_variance([[1.0, 2.0, 3.0], [5.0, 9.0], [7.0]])  # variances 1 (n 3), 8 (n 2); a lone run adds none
    assert (s2, df) == (pytest.approx((2 * 1 + 1 * 8) / 3), 3)
    estimate = contrast(means=[2.0, 7.0], counts=[3, 2], weights=[-1, 1], s2=s2, df=df)
    assert estimate.effect == pytest.approx(5.0)
    assert estimate.ci == interval(5.0, math.sqrt(10 / 3 * (1 / 3 + 1 / 2)), 3)  # SE = 5/3
    assert decide(estimate.ci) == INCONCLUSIVE and (estimate.seeds, estimate.runs) == (2, 5)


def test_one_seed_per_cell_has_no_interval():
    assert pooled_variance([[1.0], [2.0]]) == (pytest.approx(math.nan, nan_ok=True), 0)
    estimate = contrast([1.0, 2.0], [1, 1], [-1, 1], math.nan, 0)
    assert estimate.effect == 1.0 and estimate.ci is None and decide(estimate.ci) == INCONCLUSIVE


@pytest.mark.parametrize(
    ("ci", "bound", "below", "expected"),
    [
        ((0.5, 2.0), 0.0, False, REPRODUCED),
        ((-2.0, -0.5), 0.0, False, NOT_REPRODUCED),
        ((-0.5, 2.0), 0.0, False, INCONCLUSIVE),
        ((0.2, 1.7), 4.0, True, REPRODUCED),  # connector type: the gap lies below the token/resolution effect
        ((5.0, 6.0), 4.0, True, NOT_REPRODUCED),
        ((3.0, 5.0), 4.0, True, INCONCLUSIVE),
        ((-0.6, -0.3), 0.0, True, REPRODUCED),  # LR law: the slope lies below 0
    ],
    ids=["above", "below", "straddles", "gap-under-m", "gap-over-m", "gap-straddles-m", "slope-negative"],
)
def test_decide(ci, bound, below, expected):
    assert decide(ci, bound, below) == expected


# ------------------------------------------------------------------------------------------------ lessons
def test_encoder_row_is_resolution_minus_size_in_one_contrast(verdicts):
    row = verdicts["encoder"]
    # weights: +1 on (vit-tiny, 64 px), -1 on (vit-base-toy, 32 px): 36 - 32 = 4, SE = s sqrt(1/2 + 1/2)
    assert (row.verdict, row.sweep, row.metric, row.paper) == (REPRODUCED, "encoder", "k-shot meta-average", "Table 1")
    assert row.effect == pytest.approx(4.0) and row.ci == interval(4.0, math.sqrt(S2), 4)
    assert "Δres (32 px -> 64 px) +6.00" in row.detail and "Δsize (vit-tiny -> vit-base-toy) +2.00" in row.detail
    assert (row.seeds, row.runs) == (2, 4)


def test_connector_rows(verdicts):
    tokens, resolution, kind = (verdicts[f"connector-{name}"] for name in ("tokens", "resolution", "type"))
    # 6 cells against 6, two seeds each, 12 cells in all (df 12): SE = s sqrt(12 / 36 / 2)
    assert tokens.verdict == REPRODUCED and tokens.effect == pytest.approx(5.0)
    assert tokens.ci == interval(5.0, math.sqrt(S2 / 6), 12) and tokens.detail == "16 tokens vs 4 tokens"
    assert resolution.verdict == REPRODUCED and resolution.effect == pytest.approx(4.0)
    # the largest gap is attn-pool - avg-pool = -1, reported as avg-pool - attn-pool = +1, below m = 4
    assert kind.verdict == REPRODUCED and kind.effect == pytest.approx(1.0)
    assert kind.ci == interval(1.0, math.sqrt(S2 * 8 / 16 / 2), 12)
    assert kind.detail.startswith("largest gap avg-pool - attn-pool; m = 4.00 pts"), kind.detail


def test_data_rows(verdicts):
    # Fig. 5a: caption share 1 vs 0, one cell each (df 3)
    assert verdicts["data-1-zero-shot"].verdict == REPRODUCED
    assert verdicts["data-1-zero-shot"].ci == interval(6.0, math.sqrt(S2), 3)
    assert verdicts["data-1-zero-shot"].detail == "cap/int 100/0 vs cap/int 0/100"
    few = verdicts["data-1-few-shot"]
    assert (few.verdict, few.metric, few.effect) == (REPRODUCED, "eval/avg/4shot", pytest.approx(4.0))
    text = verdicts["data-1-text"]
    assert (text.verdict, text.metric, text.effect) == (INCONCLUSIVE, "eval/textcore", pytest.approx(0.2))
    # Fig. 5b: the three text-only levels together against none (df 4)
    with_text = verdicts["data-2-few-shot"]
    assert with_text.verdict == REPRODUCED and with_text.effect == pytest.approx(7 / 3)
    assert with_text.ci == interval(7 / 3, math.sqrt(S2 * (3 / 9 / 2 + 1 / 2)), 4)
    assert verdicts["data-2-text"].verdict == NOT_REPRODUCED and verdicts["data-2-text"].effect == pytest.approx(-3)
    # Fig. 5c: 91:9 has the largest gain in S (6 / 2 = 3) over 100:0, at a TextCore cost of 3
    ratio = verdicts["data-3-ratio"]
    assert ratio.verdict == REPRODUCED and ratio.effect == pytest.approx(3.0)
    assert ratio.detail.startswith("best ratio 91:9 vs 100:0; TextCore 91:9 - 100:0 -3.00 ["), ratio.detail


def test_synthetic_row_against_a_hand_computation(verdicts):
    row = verdicts["data-4-synthetic"]  # two cells of two seeds: 32 - 30, s^2 = 0.5, df = 2
    assert (row.verdict, row.metric) == (INCONCLUSIVE, "eval/avg/4shot")
    assert row.effect == pytest.approx(2.0) and row.ci == interval(2.0, math.sqrt(S2), 2)


def test_moe_row_not_reproduced(verdicts):
    row = verdicts["moe"]
    assert row.verdict == NOT_REPRODUCED and row.effect == pytest.approx(-5.0) and row.detail == "MoE vs dense"


def test_highres_row_with_one_seed_has_no_interval(verdicts):
    row = verdicts["highres"]  # 64 px (interpolate -1, subimage +3) pooled against 32 px
    assert (row.verdict, row.ci, row.seeds) == (INCONCLUSIVE, None, 1)
    assert row.effect == pytest.approx(1.0) and row.detail.startswith(ONE_SEED)
    assert "none @ 32 px 29.50" in row.detail and "subimage @ 64 px 32.50" in row.detail


def test_lr_law_falling_reproduced_rising_not(verdicts, store):
    falling = verdicts["lr-law"]
    assert (falling.verdict, falling.metric, falling.unit) == (REPRODUCED, "eval/loss", "slope")
    assert falling.effect == pytest.approx(-0.42) and falling.ci[1] < 0
    assert "paper a = -0.4214" in falling.detail and "lowest eval/loss" in falling.detail
    rising = {row.lesson: row for row in experiment_verdicts(Store(store.uri), RISING)}
    assert rising["lr-law"].verdict == NOT_REPRODUCED and rising["lr-law"].effect == pytest.approx(0.3)


def test_lessons_without_a_sweep_are_not_run_and_missing_metrics_are_named(store):
    rows = {row.lesson: row for row in experiment_verdicts(Store(store.uri), RISING)}
    encoder = rows["encoder"]
    assert (encoder.verdict, encoder.effect, encoder.sweep) == (NOT_RUN, None, "")
    assert "sweeps/encoder.yaml" in encoder.detail
    assert rows["connector-type"].verdict == NOT_RUN, "an SFT sweep is no Fig. 4 sweep"
    assert "sweeps/moe.yaml" in rows["moe"].detail
    synthetic = rows["data-4-synthetic"]
    assert (synthetic.verdict, synthetic.detail) == (INCONCLUSIVE, "runs lack eval/avg/<k>shot (k > 0)")


def test_format_and_write(verdicts, tmp_path: Path):
    rows = list(verdicts.values())
    text = format_verdicts(rows)
    header, *lines = text.splitlines()
    assert header.split() == ["lesson", "paper", "verdict", "effect", "[95%", "CI]", "on", "sweep"]
    encoder = next(line for line in lines if line.startswith("encoder "))
    assert "reproduced" in encoder and "+4.00 pts [+2.04, +5.96]" in encoder
    assert "-0.420 slope [" in text and "+1.00 pts (no CI)" in text
    assert "encoder (sweep encoder, k-shot meta-average): image resolution matters most" in text
    json_file, csv_file = write_verdicts(rows, tmp_path)
    assert json.loads(json_file.read_text())[0] == {**rows[0].to_dict(), "ci": list(rows[0].ci)}
    table = pd.read_csv(csv_file)
    assert len(table) == len(rows) and {"ci_low", "ci_high", "unit"} <= set(table.columns)
    assert table.loc[0, "ci_low"] == pytest.approx(rows[0].ci[0])


# ------------------------------------------------------------------------------------------------ CLI, report
def test_cli_prints_the_table_and_writes_the_files(store, tmp_path: Path, capsys):
    code = main(["lessons", "--experiment", EXPERIMENT, "--tracking-uri", store.uri, "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[0].startswith("lesson") and "data-3-ratio" in out
    assert f"written: {tmp_path / 'lessons.json'}, {tmp_path / 'lessons.csv'}" in out
    assert (tmp_path / "lessons.csv").exists()


def test_cli_json_is_all_of_stdout(store, tmp_path: Path, capsys):
    argv = ["lessons", "--experiment", EXPERIMENT, "--tracking-uri", store.uri, "--out", str(tmp_path), "--json"]
    assert main([*argv, "--lr-metric", "eval/avg/4shot", "--lr-mode", "max"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert list(dict.fromkeys(row["lesson"] for row in rows)) == list(LESSONS)
    law = next(row for row in rows if row["lesson"] == "lr-law")
    assert law["metric"] == "eval/avg/4shot" and law["unit"] == "slope"
    assert set(rows[0]) == {
        "lesson", "paper", "claim", "sweep", "metric", "effect", "ci", "seeds", "runs", "verdict", "detail", "unit"
    }  # fmt: skip


def test_cli_markdown_is_one_table_row_per_verdict(store, tmp_path: Path, capsys):
    argv = ["lessons", "--experiment", EXPERIMENT, "--tracking-uri", store.uri, "--out", str(tmp_path)]
    assert main([*argv, "--markdown"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rows = experiment_verdicts(Store(store.uri), EXPERIMENT)
    assert lines[0].startswith("| lesson | paper | claim |") and len(lines) == 2 + len(rows)
    assert lines[2].startswith("| encoder | Table 1 |") and "**reproduced**" in lines[2]
    assert main([*argv, "--markdown", "--json"]) == 2  # one output format at a time
    assert "not allowed with argument" in capsys.readouterr().err


def test_cli_unknown_experiment_is_one_line_exit_2(store, tmp_path: Path, capsys):
    code = main(["lessons", "--experiment", "nope", "--tracking-uri", store.uri, "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.count("\n") == 1 and "no experiment 'nope'" in captured.err
    assert not (tmp_path / "out").exists()


def test_index_opens_with_the_lessons_table(store, tmp_path: Path):
    report = make_report(Store(store.uri), SMALL, None, tmp_path)
    assert {row.lesson for row in report.lessons} == set(LESSONS)
    text = report.index.read_text()
    assert '<li><a href="#lessons">Lessons (0 of 14 reproduced)</a></li>' in text
    lessons, first_figure = text.index('<section id="lessons">'), text.index('<section id="data-synthetic')
    assert lessons < first_figure
    row = text[text.index("<code>data-4-synthetic</code>") :].split("</tr>")[0]
    assert '<td class="verdict inconclusive">inconclusive</td>' in row and "+2.00 pts [" in row
    assert "sweeps/encoder.yaml" in text


def test_one_sweep_only(store):
    rows = experiment_verdicts(Store(store.uri), EXPERIMENT, sweep="moe")
    assert {row.lesson for row in rows if row.verdict != NOT_RUN} == {"moe"} and len(rows) == len(LESSONS) + 1
