"""What one connector costs, from its family config and the widths around it (torch-free; MM1 Sec. 3.2, Fig. 4).

For each family, with C the encoder width, D the LM width, P the patches of one view, k = ``num_tokens`` and, for the
c-abstractor, H its hidden width (``hidden_width``, default C) and n = ``depth``:

``*_params(config, C, D)``: the built module's parameter count (``mm1core.connectors.sizes`` has the closed forms).

``*_forward_flops(config, C, D, P)``: matmul FLOPs of one forward pass of one view (a multiply-add is 2 FLOPs, as
``mm1core.flops``): ``2 * weights * positions`` for each part.

- every family ends in the readout MLP at the k tokens: ``2 k (in D + D^2)`` (+ biases), ``in`` = C or H;
- ``avg-pool``: only the readout multiplies;
- ``attn-pool``: key/value projection over the P patches ``4 C^2 P``, cross-attention ``Q K^T`` and ``A V``
  ``4 k P C`` (any number of heads: they split C), output projection ``2 C^2 k``; its learned queries are projected
  once per batch, not per view;
- ``c-abstractor``: the first stage's n bottleneck blocks at the P patches, the second's at the k cells, each
  block ``2 (C_in H + 9 H^2 + H^2 [+ C_in H widening shortcut])`` per position; the squeeze-excitation runs once per
  map (negligible).

``*_activation_elements(config, C, D, P)``: tensor elements autograd keeps for the backward pass of one view (what
``torch.autograd.graph.saved_tensors_hooks`` sees, unique storages, parameters excluded; counted on the modules by
``tests/mm1core/connectors/test_costs.py``). A LayerNorm keeps its input, its output and two statistics per
position; a Linear or conv its input; GELU / SiLU their input; the fused attention kernel q, k, v, its output and
one log-sum-exp per head and query:

- ``avg-pool``: the patch map and the pooled cells, ``P C + k C``, and the readout's hidden layer twice, ``2 k D``;
- ``attn-pool``: the patches, their LayerNorm output and the keys and values, ``4 P C + 2 P``; per query its
  attention output, residual sum and LayerNorm output ``3 C``, heads + 2 statistics, and the readout ``2 D``; the
  k projected queries, once per batch, are left out;
- ``c-abstractor``: the patch map ``P C``; per block and position ``10 H + 6`` (three LayerNorms' inputs and two
  outputs, two SiLU outputs, the gated map, the residual sum, the block's output; six statistics), a widening first
  block's shortcut LayerNorm ``H + 2``; per block and map the squeeze-excitation's ``2 H + 2 max(1, H / 4)``; then the
  cells ``k H`` and the readout ``2 k D``.
"""

from __future__ import annotations

from mm1core.connectors.config import AttnPoolConfig, AvgPoolConfig, CAbstractorConfig
from mm1core.connectors.sizes import (
    C_ABSTRACTOR_SE_RATIO,
    attn_pool_params,
    c_abstractor_params,
    mlp_params,
)


def readout_flops(in_width: int, lm_width: int, num_tokens: int) -> float:
    """The readout MLP at the k output tokens (every family ends in it)."""
    return float(2 * num_tokens * mlp_params(in_width, lm_width))


def bottleneck_conv_weights(in_width: int, width: int) -> int:
    """Weights one position of a c-abstractor bottleneck block multiplies by: its 1x1, 3x3, 1x1 convolutions and
    a widening shortcut's 1x1 (its squeeze-excitation runs once per map: negligible)."""
    return in_width * width + 9 * width * width + width * width + (0 if in_width == width else in_width * width)


# ----------------------------------------------------------------------------------------------------- avg-pool
def avg_pool_params(config: AvgPoolConfig, encoder_width: int, lm_width: int) -> int:
    return mlp_params(encoder_width, lm_width)


def avg_pool_forward_flops(config: AvgPoolConfig, encoder_width: int, lm_width: int, patches: int) -> float:
    return readout_flops(encoder_width, lm_width, config.num_tokens)


def avg_pool_activation_elements(config: AvgPoolConfig, encoder_width: int, lm_width: int, patches: int) -> int:
    k = config.num_tokens
    return patches * encoder_width + k * encoder_width + 2 * k * lm_width


# ----------------------------------------------------------------------------------------------------- attn-pool
def attention_pool_params(config: AttnPoolConfig, encoder_width: int, lm_width: int) -> int:
    return attn_pool_params(encoder_width, lm_width, config.num_tokens)


def attention_pool_forward_flops(config: AttnPoolConfig, encoder_width: int, lm_width: int, patches: int) -> float:
    width, k = encoder_width, config.num_tokens
    key_value = 2 * 2 * width * width * patches
    attention = 4 * k * patches * width
    output = 2 * width * width * k
    return float(key_value + attention + output) + readout_flops(width, lm_width, k)


def attention_pool_activation_elements(config: AttnPoolConfig, encoder_width: int, lm_width: int, patches: int) -> int:
    width, k = encoder_width, config.num_tokens
    return 4 * patches * width + 2 * patches + k * (3 * width + 2 * lm_width + config.heads + 2)


# ----------------------------------------------------------------------------------------------------- c-abstractor
def hidden_width(config: CAbstractorConfig, encoder_width: int) -> int:
    """The conv blocks' channels: ``hidden_width``, or the encoder's width (CAbstractor's default)."""
    return config.hidden_width or encoder_width


def c_abstractor_parameter_count(config: CAbstractorConfig, encoder_width: int, lm_width: int) -> int:
    return c_abstractor_params(
        encoder_width, lm_width, config.num_tokens, depth=config.depth, hidden_width=config.hidden_width
    )


def c_abstractor_forward_flops(config: CAbstractorConfig, encoder_width: int, lm_width: int, patches: int) -> float:
    hidden, k, depth = hidden_width(config, encoder_width), config.num_tokens, config.depth
    block = bottleneck_conv_weights(hidden, hidden)
    local = bottleneck_conv_weights(encoder_width, hidden) + (depth - 1) * block  # over the P patches
    pooled = depth * block  # over the k cells
    return float(2 * (local * patches + pooled * k)) + readout_flops(hidden, lm_width, k)


def c_abstractor_activation_elements(config: CAbstractorConfig, encoder_width: int, lm_width: int, patches: int) -> int:
    hidden, k, depth = hidden_width(config, encoder_width), config.num_tokens, config.depth
    excitation = 2 * hidden + 2 * max(1, hidden // C_ABSTRACTOR_SE_RATIO)
    shortcut = 0 if encoder_width == hidden else patches * (hidden + 2)
    blocks = depth * ((patches + k) * (10 * hidden + 6) + 2 * excitation)
    return patches * encoder_width + shortcut + blocks + k * (hidden + 2 * lm_width)
