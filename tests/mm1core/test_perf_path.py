"""The performance path: precision, compile, the profiler, the sync-free divergence check, model FLOPs, the benches."""

from __future__ import annotations

import functools
import json
import math
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import mm1core.train as train_module
from mm1core.checkpoint import read_trial_checkpoint
from mm1core.config import ModelConfig, TrialConfig
from mm1core.connectors import CONNECTORS, build_connector
from mm1core.connectors.config import AttnPoolConfig, CAbstractorConfig, ConnectorBase
from mm1core.data.datamodule import build_data
from mm1core.data.records import STREAMS
from mm1core.data.tokenizer import build_tokenizer
from mm1core.flops import (
    connector_forward_flops,
    decoder_flops_per_token,
    encoder_forward_flops,
    peak_bf16_flops,
    trial_flops,
)
from mm1core.lm.decoder import Decoder
from mm1core.lm.presets import DECODERS
from mm1core.model import build_model
from mm1core.module import MM1Module, NonFiniteLoss, next_token_loss
from mm1core.train import SinkCallback, profile_schedule, resolve_precision, train_trial
from mm1core.vision.presets import ENCODERS
from mm1core.vision.vit import VisionTransformer
from tests.mm1core.flavours import TINY

ROOT = Path(__file__).resolve().parents[2]
QUICK_EVAL = {"shots": [0], "num_examples": 2, "max_new_tokens": 2, "batch_size": 2, "tasks": ["caption"]}


def tiny_trial(**train: object) -> TrialConfig:
    return TrialConfig.model_validate({**TINY, "train": {**TINY["train"], **train}, "eval": QUICK_EVAL})


class RecordingSink:
    def __init__(self) -> None:
        self.rows: list[tuple[int, dict[str, float]]] = []

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.rows.append((step, dict(metrics)))

    def flush(self) -> None:
        pass


# ---------------------------------------------------------------------------------------- precision, key
def test_precision_auto_is_fp32_on_this_cpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: auto depends on it")
    assert resolve_precision("auto") == "32-true"


@pytest.mark.parametrize(
    ("cuda", "bf16", "expected"),
    [(True, True, "bf16-mixed"), (True, False, "32-true"), (False, False, "32-true")],
    ids=["bf16-gpu", "fp16-only-gpu", "no-gpu"],
)
def test_precision_auto_decision(monkeypatch: pytest.MonkeyPatch, cuda: bool, bf16: bool, expected: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    assert resolve_precision("auto") == expected
    assert resolve_precision("16-mixed") == "16-mixed"  # an explicit choice is kept


def test_compile_and_profile_leave_the_trial_key_alone() -> None:
    base = tiny_trial()
    assert tiny_trial(compile=True, profile=True).trial_key() == base.trial_key()


# ---------------------------------------------------------------------------------------- compile, profile
def compiled_trial_keeps_the_eager_parameter_names(checkpoint: Path) -> None:
    cfg = tiny_trial(max_steps=2, compile=True)
    result = train_trial(cfg, progress_bar=False, threads=1, checkpoint=checkpoint)
    assert result.steps == 2 and math.isfinite(result.metrics["train/loss"])
    saved = read_trial_checkpoint(checkpoint)["model"]
    eager = build_model(cfg.model, build_tokenizer().vocab_size).state_dict()
    assert list(saved) == list(eager)  # no "_orig_mod." anywhere: loadable into an eager model


def test_compiled_trial_trains_and_saves_the_eager_parameter_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through dynamo and AOT autograd. Inductor's code generation is left out: from a cold cache it costs 3-4
    minutes of g++ on this 2-core CPU, more than the suite can carry; bench/mfu.py runs it on a GPU."""
    aot_eager = functools.partial(train_module.compile_model, backend="aot_eager")
    monkeypatch.setattr(train_module, "compile_model", aot_eager)
    compiled_trial_keeps_the_eager_parameter_names(tmp_path / "model.pt")


@pytest.mark.parametrize(("steps", "expected"), [(1, (0, 0, 1)), (3, (0, 0, 3)), (5, (1, 1, 3)), (100, (2, 1, 3))])
def test_profile_schedule_fits_the_steps(steps: int, expected: tuple[int, int, int]) -> None:
    assert profile_schedule(steps) == expected


def test_profiled_trial_writes_a_chrome_trace(tmp_path: Path) -> None:
    result = train_trial(tiny_trial(profile=True), progress_bar=False, threads=1, profile_dir=tmp_path / "profile")
    assert result.profile == str(tmp_path / "profile" / "trace.json")
    events = json.loads(Path(result.profile).read_text())["traceEvents"]
    steps = {event["name"] for event in events if event.get("name", "").startswith("ProfilerStep#")}
    assert len(steps) == 3 and any(event.get("name") == "aten::mm" for event in events)  # (1, 1, 3) of 5 steps


def test_unprofiled_trial_has_no_trace() -> None:
    assert train_trial(tiny_trial(max_steps=1), progress_bar=False, threads=1).profile is None


# ---------------------------------------------------------------------------------------- divergence
def test_non_finite_loss_raises_before_the_update_on_cpu(tiny_config: TrialConfig) -> None:
    tokenizer = build_tokenizer()
    model = build_model(tiny_config.model, tokenizer.vocab_size)
    module = MM1Module(model, tiny_config.train)
    with torch.no_grad():
        model.decoder.final_norm.weight.fill_(float("nan"))
    batch = next(iter(build_data(tiny_config, tokenizer)))
    with pytest.raises(NonFiniteLoss, match=r"train/loss is nan at step 1: the trial diverged"):
        module.training_step(batch, 0)


def test_burst_with_a_non_finite_loss_delivers_the_steps_before_it_then_raises() -> None:
    """The accelerator path: the check happens where the burst is read back, naming the first bad step."""
    sink = RecordingSink()
    recorder = SinkCallback(sink, every_n_steps=4)
    for step, value in enumerate([2.0, 1.5, float("inf"), float("nan")], start=1):
        loss = torch.tensor(value)
        recorder.pending.append((step, {"lm_loss": loss}, loss, 1e-3))
        recorder.pending_counts.append(torch.zeros(len(STREAMS) + 1, dtype=torch.long))
    with pytest.raises(NonFiniteLoss, match=r"train/loss is inf at step 3"):
        recorder.deliver()
    assert [step for step, metrics in sink.rows if "train/loss" in metrics] == [1, 2]


# ---------------------------------------------------------------------------------------- model FLOPs
def counted_flops(run: Callable[[], object]) -> int:
    """FLOPs torch's counter sees in ``run``. Attention runs as SDPA's math kernel (matmuls the counter counts; it
    has no formula for the CPU's fused kernel), over the whole unmasked score matrix, as the PaLM formula counts."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


@pytest.mark.parametrize(
    "preset",
    [DECODERS.get("lm-tiny"), replace(DECODERS.get("lm-3b").tiny(), mlp_width=96)],
    ids=["lm-tiny-tied", "lm-3b-tiny-untied-gqa"],
)
def test_decoder_training_flops_match_the_flop_counter(preset: object) -> None:
    """PaLM's 6N + 6dV + 12 L T d per token against the matmuls torch actually runs (forward and backward)."""
    torch.manual_seed(0)
    vocab, batch, length = 300, 2, 48
    decoder = Decoder(preset, vocab)  # type: ignore[arg-type]
    token_ids = torch.randint(0, vocab, (batch, length))
    mask = torch.ones_like(token_ids, dtype=torch.bool)

    def step() -> None:
        next_token_loss(decoder(decoder.embed(token_ids)), token_ids, mask).backward()

    expected = decoder_flops_per_token(preset, length, vocab) * batch * length  # type: ignore[arg-type]
    assert counted_flops(step) == pytest.approx(expected, rel=0.03)


@pytest.mark.parametrize(
    ("encoder", "resolution"), [("vit-tiny", 32), ("vit-l-14", 28)], ids=["vit-tiny", "vit-l-14-tiny-class-token"]
)
def test_encoder_forward_flops_match_the_flop_counter(encoder: str, resolution: int) -> None:
    preset = ENCODERS.get(encoder) if encoder == "vit-tiny" else ENCODERS.get(encoder).tiny()
    vit = VisionTransformer(preset, resolution)
    images = torch.randn(3, 3, resolution, resolution)
    assert counted_flops(lambda: vit(images)) == pytest.approx(3 * encoder_forward_flops(preset, resolution), rel=0.03)


@pytest.mark.parametrize("connector", list(CONNECTORS), ids=list(CONNECTORS))
def test_connector_forward_flops_match_the_flop_counter(connector: str) -> None:
    model = ModelConfig.model_validate(
        {"encoder": {"name": "vit-tiny", "resolution": 64}, "connector": {"type": connector, "num_tokens": 16}}
    )
    encoder, lm = model.encoder.preset(), model.decoder.preset()
    module = build_connector(model.connector, encoder.width, lm.width)
    patches = torch.randn(2, encoder.grid(64) ** 2, encoder.width)
    assert counted_flops(lambda: module(patches)) == pytest.approx(2 * connector_forward_flops(model), rel=0.03)


FAMILY_SETTINGS = [
    AttnPoolConfig(num_tokens=16, heads=2),
    AttnPoolConfig(num_tokens=7, heads=16),
    CAbstractorConfig(num_tokens=16, depth=3),
    CAbstractorConfig(num_tokens=4, depth=1, hidden_width=96),
    CAbstractorConfig(num_tokens=9, depth=2, hidden_width=32),
]


@pytest.mark.parametrize(
    "config",
    FAMILY_SETTINGS,
    ids=[
        "attn-pool-heads2",
        "attn-pool-7tok-heads16",
        "c-abstractor-depth3",
        "c-abstractor-d1-h96",
        "c-abstractor-h32",
    ],
)
def test_connector_forward_flops_follow_depth_heads_and_width(config: ConnectorBase) -> None:
    """The registry's FLOPs (what ``connector_forward_flops`` returns) at non-default family fields."""
    width, lm_width, patches = 64, 128, 64
    module = build_connector(config, width, lm_width)
    counted = counted_flops(lambda: module(torch.randn(2, patches, width)))
    expected = CONNECTORS.get(config.type).forward_flops(config, width, lm_width, patches)
    assert counted == pytest.approx(2 * expected, rel=0.03)


def test_trial_flops_add_images_and_positions() -> None:
    model = TrialConfig.model_validate(TINY).model
    flops = trial_flops(model, seq_len=64, vocab_size=300)
    frozen_encoder = model.encoder.model_copy(update={"freeze": True})
    frozen = trial_flops(model.model_copy(update={"encoder": frozen_encoder}), 64, 300)
    assert flops.step(images=2, positions=10) == 2 * flops.per_image + 10 * flops.per_position
    assert frozen.per_position == flops.per_position and frozen.per_image < flops.per_image  # no encoder backward


def test_peak_flops_by_device_name() -> None:
    assert peak_bf16_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_bf16_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_bf16_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_bf16_flops("NVIDIA A10G") == 125e12 and peak_bf16_flops("NVIDIA L4") == 121e12
    assert peak_bf16_flops("Some Future GPU") is None


# ---------------------------------------------------------------------------------------- benches
def bench(*args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_mfu_bench_without_a_gpu_says_so() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    run = bench("bench/mfu.py")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("no GPU: ")


def test_mfu_bench_measures_on_cpu() -> None:
    run = bench(
        "bench/mfu.py", "--device", "cpu", "--preset", "lm-tiny", "--seq-len", "32", "--batch", "2",
        "--vocab", "512", "--steps", "2", "--warmup", "1", "--peak-tflops", "1",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "tokens/s" in run.stdout and "MFU" in run.stdout


def test_throughput_bench_prints_the_ratio() -> None:
    run = bench("bench/throughput.py", "--steps", "3", "--warmup", "1", "--repeats", "1")
    assert run.returncode == 0, run.stderr
    assert "ratio lightning / plain = " in run.stdout
