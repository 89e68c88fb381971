"""What each connector can produce and how big it is, without torch (MM1 Sec. 3.2, Fig. 4).

A sweep spec is validated before any trial starts: ``*_problem(num_tokens, grid)`` says why a connector
cannot give ``num_tokens`` tokens from a ``grid x grid`` patch grid (``None`` when it can), and
``*_params(encoder_width, lm_width, num_tokens)`` is the closed-form count of a connector's parameters. The
default widths and depths live here so that the modules and their counts share one source.
"""

from __future__ import annotations

import math

ATTN_POOL_HEADS = 8  # cross-attention heads; the count does not change the parameter total
C_ABSTRACTOR_DEPTH = 2  # bottleneck blocks per stage; Honeybee uses 3 (we halve the CPU cost of toy runs)
C_ABSTRACTOR_SE_RATIO = 4  # squeeze-excitation bottleneck: hidden // 4 channels, as in RegNet's se_ratio 0.25


# ----------------------------------------------------------------------------------------------- token counts
def square_grid_problem(num_tokens: int, grid: int) -> str | None:
    """Pooling the ``grid x grid`` patch grid yields ``n x n`` tokens, n <= grid (avg-pool, c-abstractor)."""
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        return "not a square number (n x n pooling gives 1, 4, 9, 16, ...)"
    if side > grid:
        return f"needs a {side}x{side} patch grid but the encoder gives only {grid}x{grid}"
    return None


def patch_count_problem(num_tokens: int, grid: int) -> str | None:
    """Each learnable query pools the patches, and there may be no more queries than patches (attn-pool)."""
    if num_tokens > grid * grid:
        return f"more tokens than patches ({num_tokens} > {grid}x{grid} = {grid * grid})"
    return None


# ----------------------------------------------------------------------------------------------- parameters
def mlp_params(in_width: int, lm_width: int) -> int:
    """The readout every connector ends in: Linear(in, D) -> GELU -> Linear(D, D), with biases."""
    return in_width * lm_width + lm_width + lm_width * lm_width + lm_width


def avg_pool_params(encoder_width: int, lm_width: int, num_tokens: int) -> int:
    """Pooling has no parameters; only the readout MLP does."""
    return mlp_params(encoder_width, lm_width)


def attn_pool_params(encoder_width: int, lm_width: int, num_tokens: int) -> int:
    """Queries (k x C), two LayerNorms (2 x 2C), q/k/v/out projections (4 x (C^2 + C)), readout MLP."""
    width = encoder_width
    return num_tokens * width + 2 * (2 * width) + 4 * (width * width + width) + mlp_params(width, lm_width)


def bottleneck_params(in_width: int, width: int) -> int:
    """One residual bottleneck block (bias-free convs, each followed by a LayerNorm2d)."""
    squeezed = max(1, width // C_ABSTRACTOR_SE_RATIO)
    convs = in_width * width + 9 * width * width + width * width  # 1x1, 3x3, 1x1
    norms = 3 * 2 * width
    excitation = width * squeezed + squeezed + squeezed * width + width  # two 1x1 convs with biases
    shortcut = 0 if in_width == width else in_width * width + 2 * width  # 1x1 conv + LayerNorm2d
    return convs + norms + excitation + shortcut


def c_abstractor_params(
    encoder_width: int,
    lm_width: int,
    num_tokens: int,
    *,
    depth: int = C_ABSTRACTOR_DEPTH,
    hidden_width: int | None = None,
) -> int:
    """Two stages of ``depth`` blocks around the pooling (the first block may widen C -> H), then the readout."""
    hidden = hidden_width or encoder_width
    blocks = bottleneck_params(encoder_width, hidden) + (2 * depth - 1) * bottleneck_params(hidden, hidden)
    return blocks + mlp_params(hidden, lm_width)
