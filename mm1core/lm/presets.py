"""Named decoder-only LM shapes (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from mm1core.registry import Registry


@dataclass(frozen=True)
class LMPreset:
    """Shape of a GPT-style pre-LN decoder: ``depth`` blocks of ``width``, tied input/output embedding."""

    width: int
    depth: int
    heads: int
    mlp_ratio: float = 4.0
    max_seq_len: int = 1024

    def non_embedding_params(self) -> int:
        """Parameters outside the token and position embeddings (the N of MM1's LR law, Sec. 3.4).

        Per block: two LayerNorms (2 * 2d), attention qkv + out projections with biases (4d^2 + 4d), MLP
        with hidden h = mlp_ratio * d (2dh + h + d); plus the final LayerNorm (2d).
        """
        d, h = self.width, int(self.mlp_ratio * self.width)
        block = 4 * d + (4 * d * d + 4 * d) + (2 * d * h + h + d)
        return self.depth * block + 2 * d


DECODERS: Registry[LMPreset] = Registry("decoder")
DECODERS.register("lm-tiny", LMPreset(width=128, depth=2, heads=4))
DECODERS.register("lm-small", LMPreset(width=192, depth=3, heads=4))
DECODERS.register("lm-base-toy", LMPreset(width=256, depth=4, heads=4))
