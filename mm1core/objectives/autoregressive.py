"""AIM: autoregressive image pre-training (El-Nouby et al., 2024, "Scalable Pre-training of Large Autoregressive
Image Models").

The image is cut into patches in raster order; the encoder runs under prefix attention (``VisionTransformer(...,
causal_prefix=S)``: the first ``S`` patches see each other, later ones only what comes before them); a small MLP
head maps each patch's feature to the pixels of the next patch. Targets are the patches' pixels normalised per patch
(MAE's ``norm_pix_loss``, He et al., 2022: mean and unbiased variance over the patch's ``3 p^2`` values, eps 1e-6,
which AIM adopts, Sec. 3); the loss is the mean squared error over the non-prefix patches only (AIM Sec. 3): inside
the prefix attention is bidirectional, so a prefix patch already sees the patch it would predict; the last prefix
patch sees none after it and predicts the first scored one. ``S`` is drawn uniformly from ``[1, K - 1]`` per image
when not given, ``K`` the patch count.
"""

from __future__ import annotations

import torch
from torch import nn

from mm1core.layers import MLP
from mm1core.objectives.base import Objective
from mm1core.vision.vit import VisionTransformer

NORM_PIX_EPS = 1e-6  # MAE's


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """``images`` (N, C, H, W) -> (N, (H / patch) * (W / patch), patch * patch * C): patches in raster order, as
    the ViT's patch convolution flattens them, pixels of one patch row-major with channels last (MAE's layout)."""
    batch, channels, height, width = images.shape
    if height % patch or width % patch:
        raise ValueError(f"image sides {height}x{width} are not divisible by the patch size {patch}")
    rows, columns = height // patch, width // patch
    x = images.reshape(batch, channels, rows, patch, columns, patch)  # (N, C, h, p, w, p)
    x = x.permute(0, 2, 4, 3, 5, 1)  # (N, h, w, p, p, C)
    return x.reshape(batch, rows * columns, patch * patch * channels)  # (N, h * w, p * p * C)


def normalise_patches(patches: torch.Tensor, eps: float = NORM_PIX_EPS) -> torch.Tensor:
    """``(patch - mean) / sqrt(var + eps)`` over each patch's values (the last dim), unbiased variance as MAE."""
    mean = patches.mean(dim=-1, keepdim=True)
    variance = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (variance + eps) ** 0.5


def autoregressive_loss(predictions: torch.Tensor, targets: torch.Tensor, prefix: int | torch.Tensor) -> torch.Tensor:
    """``predictions`` (N, K, D), position ``i`` predicting patch ``i + 1``; ``targets`` (N, K, D), the normalised
    patches; ``prefix`` S (int or (N,)) -> the MSE over the target patches ``S .. K - 1`` of every image (each
    patch's squared error averaged over its ``D`` values, then over all those patches of the batch)."""
    squared = (predictions[:, :-1] - targets[:, 1:]).square().mean(dim=-1)  # (N, K - 1): target patches 1 .. K-1
    target_positions = torch.arange(1, targets.shape[1], device=targets.device)  # (K - 1,)
    prefix = torch.as_tensor(prefix, device=targets.device).reshape(-1, 1)  # (N or 1, 1)
    scored = (target_positions[None] >= prefix).expand_as(squared).to(squared.dtype)  # (N, K - 1)
    return (squared * scored).sum() / scored.sum()


class PixelHead(nn.Module):
    """AIM's prediction head (Sec. 3, "a heavy MLP head", 12 blocks there): ``depth`` residual pre-LN MLP blocks
    applied to each patch feature alone, then LayerNorm and a linear map to the ``pixels`` of a patch."""

    def __init__(self, width: int, pixels: int, depth: int = 2, hidden: int | None = None) -> None:
        super().__init__()
        hidden = 4 * width if hidden is None else hidden
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(depth))
        self.mlps = nn.ModuleList(MLP(width, hidden) for _ in range(depth))
        self.out_norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, pixels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (N, K, width) -> (N, K, pixels)."""
        for norm, mlp in zip(self.norms, self.mlps, strict=True):
            x = x + mlp(norm(x))
        return self.out(self.out_norm(x))


class AutoregressiveObjective(Objective):
    """AIM pre-training of ``encoder``: prefix attention, next-patch normalised-pixel regression on the non-prefix
    patches. ``head_depth`` / ``head_width`` shape the ``PixelHead`` (hidden ``4 * encoder.width`` by default)."""

    def __init__(self, encoder: VisionTransformer, head_depth: int = 2, head_width: int | None = None) -> None:
        super().__init__(encoder)
        self.head = PixelHead(encoder.width, 3 * encoder.patch**2, head_depth, head_width)

    def forward(
        self,
        images: torch.Tensor,
        token_ids: torch.Tensor | None = None,
        prefix: int | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``images`` (N, 3, R, R) -> scalar loss; captions are not used. ``prefix`` S in ``[1, K - 1]`` (int or
        (N,)); ``None`` draws one per image."""
        patches = normalise_patches(patchify(images, self.encoder.patch))  # (N, K, 3 p^2)
        count = patches.shape[1]
        if count < 2:
            raise ValueError("AIM needs at least two patches per image")
        if prefix is None:
            prefix = torch.randint(1, count, (images.shape[0],), device=images.device)  # (N,)
        elif not bool((torch.as_tensor(prefix) >= 1).all() and (torch.as_tensor(prefix) < count).all()):
            raise ValueError(f"prefix must lie in [1, {count - 1}], got {prefix}")
        features = self.encoder(images, causal_prefix=prefix)  # (N, K, C)
        return autoregressive_loss(self.head(features), patches, prefix)
