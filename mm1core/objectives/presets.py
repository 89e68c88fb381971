"""Named shapes of the small text tower the image-text objectives train beside the image encoder (torch-free).

The tower is CLIP's text transformer (Radford et al., 2021, Sec. 2.4) at toy widths: token and learned positional
embeddings, causal pre-LN blocks, a final LayerNorm, the feature of the last non-pad token (the ``<eos>``) projected
to the shared embedding width, which the image side's projection of its mean-pooled patches also maps to.
``TextTower(preset, vocab_size)`` in ``mm1core.objectives.text_tower`` builds one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from mm1core.registry import Registry


@dataclass(frozen=True)
class TextTowerPreset:
    """Shape of a CLIP-style text encoder: ``depth`` causal pre-LN blocks of ``width`` with ``heads`` heads and an
    MLP of ``mlp_width``, positions for ``context_length`` tokens, output projected to ``embed_width`` (the image-text
    embedding space both towers share)."""

    width: int
    depth: int
    heads: int
    mlp_width: int
    embed_width: int
    context_length: int = 64

    def __post_init__(self) -> None:
        for field in ("width", "depth", "heads", "mlp_width", "embed_width", "context_length"):
            if getattr(self, field) <= 0:
                raise ValueError(f"{field} must be positive, got {getattr(self, field)}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by {self.heads} heads")

    def params(self, vocab_size: int) -> int:
        """Exact parameter count of ``TextTower(self, vocab_size)``."""
        width, hidden = self.width, self.mlp_width
        embeddings = vocab_size * width + self.context_length * width
        block = 2 * 2 * width + (4 * width * width + 4 * width) + (2 * width * hidden + hidden + width)
        return embeddings + self.depth * block + 2 * width + width * self.embed_width

    def tiny(self) -> TextTowerPreset:
        """A CPU-fast flavour (torchtitan's debug model) with the same context length."""
        return replace(self, width=32, depth=2, heads=2, mlp_width=64, embed_width=32)


TEXT_TOWERS: Registry[TextTowerPreset] = Registry("text tower")
TEXT_TOWERS.register("text-tiny", TextTowerPreset(width=64, depth=2, heads=4, mlp_width=256, embed_width=64))
TEXT_TOWERS.register("text-small", TextTowerPreset(width=128, depth=4, heads=4, mlp_width=512, embed_width=128))
# CLIP ViT-B's text tower (Radford et al., 2021, Sec. 2.4: 63M parameters, 12 x 512 wide, 8 heads, 77 tokens).
TEXT_TOWERS.register(
    "text-clip-b", TextTowerPreset(width=512, depth=12, heads=8, mlp_width=2048, embed_width=512, context_length=77)
)
