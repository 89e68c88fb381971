"""Model FLOPs of a training step and the peak throughput of known GPUs, for model FLOPs utilisation (MFU).

MFU (PaLM, Chowdhery et al., 2022, App. B) = achieved model FLOP/s / the chip's peak dense FLOP/s, where model
FLOPs count the matmuls the architecture needs (a multiply-add is 2 FLOPs; rematerialisation, norms, softmax and
element-wise ops are not counted), so MFU does not depend on how a step is implemented.

Decoder, per token of a ``seq_len`` sequence (``LMPreset.flops_per_token``; PaLM's ``6N + 12 L H Q T``):

    training = 3 x forward,  forward = 2 * N + 2 * d * V + 4 * L * seq_len * d

with N the (active) non-embedding parameters, d the width, L the depth, V the vocabulary. The output head is a
``d x V`` matmul at every position whether it is tied to the embedding or not (``2 d V``); the embedding lookup
is not a matmul. Attention's ``Q K^T`` and ``A V`` cost ``4 * seq_len * d`` per layer and token, counted unmasked
(as PaLM; a causal kernel skips about half). An image token is a decoder position like a text token.

Image encoder (ViT), per image view of P patches (P = grid^2, + 1 with a class token), width w, depth L_e, MLP m:

    forward = P * (2 * 3 * patch^2 * w + L_e * (2 * (4 w^2 + 2 w m) + 4 * P * w))

(patch convolution; q/k/v/out and the two MLP matrices; bidirectional attention over P). Training is 3 x forward,
or 1 x with ``encoder.freeze`` (images need no gradient, so no backward runs through a frozen encoder).

Connector, per view: each registry entry's ``forward_flops`` (``mm1core.connectors.costs``: ``2 * weights *
positions`` for each part, the readout MLP at the k output tokens, what runs over the P patches at P).
``tests/mm1core/test_perf_path.py`` checks the decoder, encoder and connector counts against
``torch.utils.flop_counter.FlopCounterMode``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mm1core.config import ModelConfig
from mm1core.connectors import CONNECTORS
from mm1core.lm.config import MoEConfig
from mm1core.lm.presets import LMPreset
from mm1core.vision.presets import ViTPreset

# Peak dense (no 2:4 sparsity) bf16 tensor-core TFLOP/s, from NVIDIA's datasheets (their "with sparsity" figures
# halved): H100 / H200 Tensor Core GPU datasheets (SXM 989, PCIe 756, NVL 835), A100 datasheet (312, SXM and PCIe),
# L40S (362), L4 (121), A10 (125; AWS's A10G is quoted at the A10's figure), RTX A6000 (155).
# Matched in order against torch.cuda.get_device_name() ("NVIDIA H100 80GB HBM3" is the SXM part).
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("GH200", 989.0),
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A10G", 125.0),
    ("A10", 125.0),
    ("RTX A6000", 155.0),
)


def peak_bf16_flops(device_name: str) -> float | None:
    """Peak dense bf16 FLOP/s of the GPU called ``device_name`` (``torch.cuda.get_device_name()``), ``None`` when
    it is not in ``PEAK_BF16_TFLOPS``."""
    for key, tflops in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return tflops * 1e12
    return None


def decoder_flops_per_token(
    preset: LMPreset, seq_len: int, vocab_size: int, moe: MoEConfig | None = None, training: bool = True
) -> float:
    """Model FLOPs per decoder position (module docstring): ``6 N + 6 d V + 12 L seq_len d`` for training."""
    return preset.flops_per_token(seq_len, vocab_size, moe, training)


def encoder_forward_flops(preset: ViTPreset, view_resolution: int) -> float:
    """Matmul FLOPs of one forward pass of one image view through the ViT (module docstring)."""
    width, patches = preset.width, preset.grid(view_resolution) ** 2
    positions = patches + preset.class_token
    patch_embedding = 2 * 3 * preset.patch**2 * width * patches
    matrices = 2 * (4 * width * width + 2 * width * preset.mlp_width) * positions
    attention = 4 * positions * positions * width
    return float(patch_embedding + preset.depth * (matrices + attention))


def connector_forward_flops(model: ModelConfig) -> float:
    """Matmul FLOPs of one forward pass of one view's P patches through the connector, to k tokens (its registry
    entry's ``forward_flops``)."""
    encoder, lm_width = model.encoder.preset(), model.decoder.preset().width
    config = model.connector
    patches = encoder.grid(model.view_resolution) ** 2
    return CONNECTORS.get(config.type).forward_flops(config, encoder.width, lm_width, patches)


@dataclass(frozen=True)
class TrialFlops:
    """Training FLOPs of a multimodal trial: ``per_image`` (every view through the encoder and the connector) and
    ``per_position`` (each decoder position, text or image token); a step costs
    ``images * per_image + positions * per_position``."""

    per_image: float
    per_position: float

    def step(self, images: int, positions: int) -> float:
        return images * self.per_image + positions * self.per_position


def trial_flops(model: ModelConfig, seq_len: int, vocab_size: int) -> TrialFlops:
    """Training FLOPs of ``model`` at decoder sequence length ``seq_len`` (the padded row length)."""
    encoder_passes = 1 if model.encoder.freeze else 3  # a frozen encoder runs forward only
    view = encoder_passes * encoder_forward_flops(model.encoder.preset(), model.view_resolution)
    view += 3 * connector_forward_flops(model)
    vocab_size = max(vocab_size, model.decoder.checkpoint_vocab_size())
    position = decoder_flops_per_token(model.decoder.preset(), seq_len, vocab_size, model.decoder.moe)
    return TrialFlops(per_image=model.views_per_image * view, per_position=position)
