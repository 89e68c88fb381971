"""Benchmark: training tokens/s and model FLOPs utilisation (MFU) on one GPU, decoder alone and a full MLLM.

    .venv/bin/python bench/mfu.py                      # on a GPU: (a) and (b), about 3 minutes on an H100
    .venv/bin/python bench/mfu.py --device cpu --preset lm-tiny --seq-len 64 --batch 2 --peak-tflops 1

(a) decoder only: ``--preset`` (lm-302m, ~300M non-embedding parameters) at ``--seq-len`` 2048, batch ``--batch``
16, a Llama-sized vocabulary (``--vocab`` 32000), random tokens. (b) a full MLLM trial: ``--encoder`` vit-l-14 at
336 px, a 144-token c-abstractor and ``--mllm-decoder`` lm-1.2b, batch ``--mllm-batch`` 16, fed one batch of the
trial's own loader (``PretrainingData``) over and over, so the GPU, not the CPU's image rendering, is measured.

Each is a plain loop (fastest: no framework per step) with the trial's pieces: ``torch.compile`` of each part
(``mm1core.train.compile_model``; on a GPU unless ``--no-compile``, on a CPU only with ``--compile``), bf16
autocast (fp32 on a CPU), fused AdamW with the trial's parameter groups; attention is
``F.scaled_dot_product_attention`` (the flash kernel on a bf16 GPU). Compilation and ``--warmup`` steps are not
timed. MFU = model FLOPs per step (``mm1core.flops``: PaLM's 6N + 12 L d T per
position, plus the encoder and connector per image) x steps/s / peak dense bf16 FLOP/s (``PEAK_BF16_TFLOPS`` by
``torch.cuda.get_device_name()``, or ``--peak-tflops``). A batch that runs out of memory is halved and retried.
Without a GPU (and no ``--device cpu``) it prints "no GPU: ..." and exits 0.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from typing import Any

import torch

from mm1core.config import TrialConfig
from mm1core.data.datamodule import PretrainingData
from mm1core.data.tokenizer import build_tokenizer
from mm1core.flops import decoder_flops_per_token, peak_bf16_flops, trial_flops
from mm1core.lm.decoder import Decoder
from mm1core.lm.presets import DECODERS
from mm1core.model import build_model
from mm1core.module import BETAS, decay_split, next_token_loss, parameter_groups
from mm1core.train import compile_model

Step = Callable[[], torch.Tensor]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument("--mode", choices=["auto", "decoder", "mllm", "all"], default="auto", help="auto: all on a GPU")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    parser.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile (default: on a GPU)"
    )
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak to divide by (default: by GPU name)")
    parser.add_argument("--preset", default="lm-302m", help="(a) the decoder preset")
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--encoder", default="vit-l-14")
    parser.add_argument("--resolution", type=int, default=336)
    parser.add_argument("--connector", default="c-abstractor")
    parser.add_argument("--image-tokens", type=int, default=144)
    parser.add_argument("--mllm-decoder", default="lm-1.2b")
    parser.add_argument("--mllm-batch", type=int, default=16)
    return parser.parse_args()


def optimizer_for(groups: list[dict[str, Any]], device: torch.device) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=1e-4, betas=BETAS, fused=device.type == "cuda")


def train_step(optimizer: torch.optim.Optimizer, loss_of: Step, device: torch.device) -> Step:
    """One optimizer step of ``loss_of``'s loss under bf16 autocast on a GPU (fp32 on a CPU)."""

    def step() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = loss_of()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def timed(step: Step, warmup: int, steps: int, device: torch.device) -> float:
    """Seconds per step after ``warmup`` untimed steps (one host sync at each end)."""
    for _ in range(warmup):
        step()
    loss = step().item()  # drains the queue
    started = time.perf_counter()
    for _ in range(steps):
        last = step()
    last.item()
    if device.type == "cuda":
        torch.cuda.synchronize()
    if loss != loss:
        print("  warning: the loss is NaN")
    return (time.perf_counter() - started) / steps


def decoder_step(args: argparse.Namespace, batch: int, device: torch.device) -> tuple[Step, float, int]:
    """(a): the step, its model FLOPs and its tokens."""
    preset = DECODERS.get(args.preset)
    decoder = Decoder(preset, args.vocab).to(device)
    matrices, others = decay_split((decoder,))
    groups = [{"params": matrices, "weight_decay": 0.1}, {"params": others, "weight_decay": 0.0}]
    optimizer = optimizer_for(groups, device)
    if args.compile:
        decoder.compile()
    token_ids = torch.randint(0, args.vocab, (batch, args.seq_len), device=device)
    loss_mask = torch.ones_like(token_ids, dtype=torch.bool)

    def loss_of() -> torch.Tensor:
        return next_token_loss(decoder(decoder.embed(token_ids)), token_ids, loss_mask)

    flops = decoder_flops_per_token(preset, args.seq_len, args.vocab) * batch * args.seq_len
    print(
        f"  {args.preset}: N = {preset.non_embedding_params():,} non-embedding, width {preset.width}, depth "
        f"{preset.depth}, vocab {args.vocab}, {flops / (batch * args.seq_len) / 1e9:.3g} GFLOP per token"
    )
    return train_step(optimizer, loss_of, device), flops, batch * args.seq_len


def mllm_config(args: argparse.Namespace, batch: int) -> TrialConfig:
    return TrialConfig.model_validate(
        {
            "model": {
                "encoder": {"name": args.encoder, "resolution": args.resolution},
                "connector": {"type": args.connector, "num_tokens": args.image_tokens},
                "decoder": {"name": args.mllm_decoder},
            },
            "train": {"batch_size": batch, "max_steps": args.warmup + args.steps + 1, "lr": 1e-4},
        }
    )


def mllm_step(args: argparse.Namespace, batch: int, device: torch.device) -> tuple[Step, float, int]:
    """(b): the step, its model FLOPs and its decoder positions (text and image tokens, padding included)."""
    cfg = mllm_config(args, batch)
    tokenizer = build_tokenizer(cfg.data.tokenizer)
    model = build_model(cfg.model, tokenizer.vocab_size, image_token_id=tokenizer.image_id).to(device).train()
    optimizer = optimizer_for(parameter_groups(model, 1e-4, 1e-5, cfg.train.vision_lr_scale), device)
    if args.compile:
        compile_model(model)
    rows = next(iter(PretrainingData(cfg, tokenizer).train_dataloader()))
    rows = {k: v.to(device) if torch.is_tensor(v) else v for k, v in rows.items()}
    images, positions = rows["images"].shape[0], rows["token_ids"].numel()
    flops = trial_flops(cfg.model, rows["token_ids"].shape[1], tokenizer.vocab_size).step(images, positions)
    counts = cfg.model.parameter_counts(tokenizer.vocab_size)
    print(
        f"  {args.encoder}@{args.resolution} + {args.connector}({args.image_tokens}) + {args.mllm_decoder}: "
        f"{counts['model.total_params']:,} parameters; the batch: {batch} rows x {rows['token_ids'].shape[1]} "
        f"positions, {images} images"
    )

    def loss_of() -> torch.Tensor:
        return next_token_loss(model(rows["token_ids"], rows["images"]), rows["token_ids"], rows["loss_mask"])

    return train_step(optimizer, loss_of, device), flops, positions


def attempt(
    build: Callable[..., tuple[Step, float, int]], batch: int, args: argparse.Namespace, device: torch.device
) -> tuple[float, float, int] | None:
    """(seconds per step, model FLOPs per step, tokens per step), or ``None`` when the GPU ran out of memory (the
    model and its optimizer are released when this returns)."""
    try:
        step, flops, tokens = build(args, batch, device)
        return timed(step, args.warmup, args.steps, device), flops, tokens
    except torch.OutOfMemoryError:
        return None


def measure(
    name: str,
    build: Callable[..., tuple[Step, float, int]],
    batch: int,
    args: argparse.Namespace,
    device: torch.device,
    peak: float | None,
) -> None:
    """Builds and times one benchmark, halving the batch on running out of GPU memory."""
    print(f"{name}:", flush=True)
    while (result := attempt(build, batch, args, device)) is None:
        if batch == 1:
            raise SystemExit("  out of memory at batch 1")
        batch //= 2
        print(f"  out of memory: retrying with batch {batch}", flush=True)
        torch._dynamo.reset()  # its caches hold the compiled model
        gc.collect()
        torch.cuda.empty_cache()
    seconds, flops, tokens = result
    achieved = flops / seconds
    mfu = f"MFU {100 * achieved / peak:.1f}%" if peak else "MFU n/a (unknown peak: pass --peak-tflops)"
    print(
        f"  batch {batch}: {seconds * 1e3:.1f} ms/step, {tokens / seconds:,.0f} tokens/s, "
        f"{achieved / 1e12:.3g} model TFLOP/s, {mfu}"
    )
    if device.type == "cuda":
        print(f"  peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
        torch.cuda.reset_peak_memory_stats()


def main() -> None:
    args = parse_args()
    if args.device != "cpu" and not torch.cuda.is_available():
        print("no GPU: torch.cuda.is_available() is False; nothing measured (--device cpu exercises the code path)")
        return
    device = torch.device("cuda" if args.device != "cpu" else "cpu")
    args.compile = device.type == "cuda" if args.compile is None else args.compile
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    peak = args.peak_tflops * 1e12 if args.peak_tflops else (peak_bf16_flops(name) if device.type == "cuda" else None)
    peak_text = f"{peak / 1e12:.0f} TFLOP/s" if peak else "unknown"
    print(f"device: {name}; peak dense bf16 {peak_text}; torch {torch.__version__}; compile {args.compile}")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        print(f"  flash attention enabled: {torch.backends.cuda.flash_sdp_enabled()}")
    mode = args.mode if args.mode != "auto" else ("all" if device.type == "cuda" else "decoder")
    if mode in ("decoder", "all"):
        measure(f"(a) decoder {args.preset}, seq {args.seq_len}", decoder_step, args.batch, args, device, peak)
    if mode in ("mllm", "all"):
        measure("(b) MLLM trial", mllm_step, args.mllm_batch, args, device, peak)


if __name__ == "__main__":
    main()
