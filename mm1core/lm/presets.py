"""Named shapes of the Llama-style decoder-only LM (torch-free), from CPU toys to the sizes of the MM1 paper.

MM1 (McKinzie et al., 2024) fits its learning rate against the LLM's non-embedding parameter count N on a
grid of 9M, 85M, 302M and 1.2B models (Sec. 3.4 / App.), and trains final models of 3B, 7B and 30B (Sec. 4);
``lm-9m`` ... ``lm-30b`` stand for those. The paper does not publish their shapes, so these are Llama-like
choices whose N lands near the paper's number:

============  =====  =====  =====  ========  =========  ===================  ============
name          width  depth  heads  kv_heads  mlp_width  non_embedding (N)    paper size
============  =====  =====  =====  ========  =========  ===================  ============
lm-tiny         128      2      4         4        384              426,624  (CPU toy)
lm-small        192      3      4         4        512            1,328,448  (CPU toy)
lm-base-toy     256      4      4         4        704            3,213,568  (CPU toy)
lm-nano          64      2      2         2        192              106,816  (CPU toy)
lm-9m           256     12      4         4        640            9,050,368  9M    (+0.6%)
lm-85m          768     12     12        12       2048           84,953,856  85M   (-0.1%)
lm-302m        1024     24     16        16       2752          303,612,928  302M  (+0.5%)
lm-1.2b        2048     24     16        16       5504        1,214,351,360  1.2B  (+1.2%)
lm-3b          3072     30     24         8       8192        3,020,086,272  3B    (+0.7%)
lm-7b          4096     32     32         8      14336        6,979,588,096  7B    (-0.3%; Llama-3-8B's shape)
lm-30b         7168     54     56         8      20480       30,124,272,640  30B   (+0.4%; Yi-34B's widths)
============  =====  =====  =====  ========  =========  ===================  ============

The toys and the LR-grid sizes tie the output head to the token embedding; the final sizes do not (as Llama).
``tests/mm1core/lm/test_presets.py`` checks every N above against an instantiated model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from mm1core.registry import Registry

if TYPE_CHECKING:
    from mm1core.lm.config import MoEConfig

FROM_CHECKPOINT = "from-checkpoint"
"""Decoder name meaning "the architecture of the given Hugging Face checkpoint" (not a ``DECODERS`` entry)."""


def default_mlp_width(width: int) -> int:
    """SwiGLU hidden size ``8/3 * width`` rounded up to a multiple of 64 (Shazeer, 2020; Llama: the 2/3 keeps
    a three-matrix SwiGLU at the parameter count of a 4x two-matrix MLP)."""
    return 64 * math.ceil(8 * width / 3 / 64)


@dataclass(frozen=True)
class LMPreset:
    """Shape of a Llama-style decoder (Touvron et al., 2023): pre-RMSNorm blocks of grouped-query attention
    with rotary positions and a SwiGLU MLP, no biases anywhere.

    ``kv_heads`` ``None`` means ``heads`` (plain multi-head attention); fewer is grouped-query attention
    (Ainslie et al., 2023). ``mlp_width`` ``None`` means ``default_mlp_width(width)``. ``tie_embeddings``
    makes the output head the token embedding's transpose. ``max_seq_len`` is the longest sequence the
    trainer and the evaluator feed (RoPE itself has no table to outgrow).

    Closed forms, with d = width, L = depth, m = mlp width, g = kv_heads * head_dim, E = num_experts, k = top_k:

    - dense block: 2d (two RMSNorm gains) + 2d^2 + 2dg (query, output; key, value) + 3dm (gate, up, down)
    - MoE block (``moe.is_moe_layer(i)``): 3dm becomes E * 3dm + dE (E experts and the router)
    - ``non_embedding_params`` = sum of blocks + d (final RMSNorm); ``active_non_embedding_params`` counts k
      experts per MoE block instead of E.
    """

    width: int
    depth: int
    heads: int
    kv_heads: int | None = None
    mlp_width: int | None = None
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    tie_embeddings: bool = True
    max_seq_len: int = 1024

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by {self.heads} heads")
        if (self.width // self.heads) % 2:
            raise ValueError(f"head dim {self.width // self.heads} is odd; rotary embeddings rotate pairs")
        if self.heads % self.num_kv_heads:
            raise ValueError(f"{self.heads} heads do not split into groups of {self.num_kv_heads} kv heads")

    @property
    def num_kv_heads(self) -> int:
        return self.heads if self.kv_heads is None else self.kv_heads

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def mlp_hidden(self) -> int:
        """The SwiGLU hidden size actually built: ``mlp_width``, or ``default_mlp_width(width)``."""
        return default_mlp_width(self.width) if self.mlp_width is None else self.mlp_width

    def attention_params(self) -> int:
        """Query and output ``d x d``, key and value ``d x (kv_heads * head_dim)``."""
        return 2 * self.width * self.width + 2 * self.width * self.num_kv_heads * self.head_dim

    def mlp_params(self) -> int:
        """One SwiGLU MLP (or one expert): gate and up ``d x m``, down ``m x d``."""
        return 3 * self.width * self.mlp_hidden

    def non_embedding_params(self, moe: MoEConfig | None = None) -> int:
        """N of MM1's LR scaling law: every parameter but the token embedding and an untied output head;
        MoE blocks count all their experts and the router."""
        return self._count(moe, active=False)

    def active_non_embedding_params(self, moe: MoEConfig | None = None) -> int:
        """As ``non_embedding_params`` but with only ``top_k`` experts (plus the router) per MoE block: the
        parameters one token passes through."""
        return self._count(moe, active=True)

    def _count(self, moe: MoEConfig | None, active: bool) -> int:
        total = self.width  # final RMSNorm
        for index in range(self.depth):
            total += 2 * self.width + self.attention_params()
            if moe is not None and moe.is_moe_layer(index):
                experts = moe.top_k if active else moe.num_experts
                total += experts * self.mlp_params() + self.width * moe.num_experts
            else:
                total += self.mlp_params()
        return total

    def embedding_params(self, vocab_size: int) -> int:
        """The token embedding, plus the output head when untied."""
        return vocab_size * self.width * (1 if self.tie_embeddings else 2)

    def flops_per_token(
        self, seq_len: int, vocab_size: int, moe: MoEConfig | None = None, training: bool = True
    ) -> float:
        """Matmul FLOPs per token (a multiply-add is 2 FLOPs), as PaLM App. B (Chowdhery et al., 2022) after
        Kaplan et al. (2020, Sec. 2.1):

        forward = 2 * N_active + 2 * d * V + 4 * L * seq_len * d

        - ``2 * N_active``: every weight matrix, experts counted ``top_k`` times (``active_non_embedding_params``;
          the few norm gains it includes are negligible);
        - ``2 * d * V``: the output head (the embedding lookup is not a matmul);
        - ``4 * L * seq_len * d``: per layer, ``Q K^T`` and ``A V`` of ``2 * seq_len * d`` each, counted over
          the whole ``seq_len`` as if unmasked (causal masking would halve it on average; PaLM, and this, do
          not). Kaplan's ``2 * n_layer * n_ctx * d_attn`` is half of it.

        ``training`` counts forward + backward = 3 x forward (PaLM's ``6N + 12 L H Q T``).
        """
        d = self.width
        forward = 2 * self.active_non_embedding_params(moe) + 2 * d * vocab_size + 4 * self.depth * seq_len * d
        return float(3 * forward if training else forward)

    def tiny(self) -> LMPreset:
        """A CPU-fast flavour in the same style (torchtitan's debug model): width 32, depth 2, 4 heads, the
        kv grouping kept (as near as 4 heads allow), the default MLP, the same tie flag, eps and theta."""
        return replace(self, width=32, depth=2, heads=4, kv_heads=self._tiny_kv_heads(4), mlp_width=None)

    def _tiny_kv_heads(self, heads: int) -> int | None:
        if self.kv_heads is None or self.kv_heads == self.heads:
            return None
        wanted = max(1, heads * self.kv_heads // self.heads)
        return max(k for k in range(1, heads) if heads % k == 0 and k <= wanted)


DECODERS: Registry[LMPreset] = Registry("decoder")
# CPU toys (lm-tiny first: error messages list names in registration order).
DECODERS.register("lm-tiny", LMPreset(width=128, depth=2, heads=4))
DECODERS.register("lm-small", LMPreset(width=192, depth=3, heads=4))
DECODERS.register("lm-base-toy", LMPreset(width=256, depth=4, heads=4))
DECODERS.register("lm-nano", LMPreset(width=64, depth=2, heads=2))
# MM1's learning-rate grid (N = 9M, 85M, 302M, 1.2B), tied like the toys.
DECODERS.register("lm-9m", LMPreset(width=256, depth=12, heads=4, mlp_width=640, max_seq_len=4096))
DECODERS.register("lm-85m", LMPreset(width=768, depth=12, heads=12, max_seq_len=4096))
DECODERS.register("lm-302m", LMPreset(width=1024, depth=24, heads=16, max_seq_len=4096))
DECODERS.register("lm-1.2b", LMPreset(width=2048, depth=24, heads=16, max_seq_len=4096))
# MM1's final LLM sizes: untied, grouped-query attention with 8 kv heads.
_FINAL = {"kv_heads": 8, "tie_embeddings": False, "max_seq_len": 4096}
DECODERS.register("lm-3b", LMPreset(width=3072, depth=30, heads=24, mlp_width=8192, **_FINAL))
DECODERS.register("lm-7b", LMPreset(width=4096, depth=32, heads=32, mlp_width=14336, **_FINAL))
DECODERS.register("lm-30b", LMPreset(width=7168, depth=54, heads=56, mlp_width=20480, **_FINAL))
