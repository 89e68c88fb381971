"""Image-text objectives: CLIP's contrastive loss (Radford et al., 2021) and SigLIP's sigmoid loss (Zhai et al., 2023).

The two losses sit side by side as in open_clip's ``loss.py``: each a small module whose ``forward`` takes L2-normalised
image and text features and the temperature (and SigLIP's bias) and returns the loss, computing what open_clip's
``ClipLoss`` / ``SigLipLoss`` compute in a single process (``tests/mm1core/objectives/test_losses.py`` checks equality).
The objectives around them hold the learned temperature, the text tower and the image-side projection of the
encoder's mean-pooled patches into the shared embedding space (open_clip's ``pool_type="avg"`` + ``proj``).

Distributed training is not in these modules (the model code stays single-device): it would gather the features of
all ranks before the loss, as open_clip's ``gather_features`` does: ``torch.distributed.nn.all_gather`` (which keeps
the gradient) of both feature tensors, then the same loss over the global ``(N * world, N * world)`` logits, the local
rank's labels offset by ``N * rank``; SigLIP can instead pass text features around a ring of neighbour exchanges and
add the negatives-only loss of each block (open_clip's ``dist_impl="bidir"``), never forming the global matrix.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mm1core.objectives.base import Objective
from mm1core.objectives.presets import TEXT_TOWERS, TextTowerPreset
from mm1core.objectives.text_tower import TextTower
from mm1core.vision.vit import VisionTransformer

CLIP_INIT_LOG_SCALE = math.log(1 / 0.07)  # CLIP Sec. 2.5: temperature initialised to 0.07
SIGLIP_INIT_LOG_SCALE = math.log(10.0)  # SigLIP Sec. 3.2: t' = log 10
SIGLIP_INIT_BIAS = -10.0  # SigLIP Sec. 3.2: b = -10, so the many negatives start near their target
MAX_SCALE = 100.0  # CLIP Sec. 2.5: "clipped to prevent scaling the logits by more than 100"


class ContrastiveLoss(nn.Module):
    """CLIP's symmetric InfoNCE (Radford et al., 2021, Fig. 3): the mean of the image->text and text->image cross
    entropies over the ``(N, N)`` similarity logits, pair ``i`` the target of row ``i``. Follows open_clip's
    ``ClipLoss`` with ``world_size=1``."""

    def forward(
        self, image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor
    ) -> torch.Tensor:
        """``image_features``, ``text_features`` (N, E), L2-normalised; ``logit_scale`` the temperature's inverse
        (``exp`` of the learned log scale) -> scalar loss."""
        logits_per_image = logit_scale * image_features @ text_features.T  # (N, N)
        logits_per_text = logit_scale * text_features @ image_features.T  # (N, N)
        labels = torch.arange(image_features.shape[0], device=image_features.device)  # (N,)
        return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2


class SigmoidLoss(nn.Module):
    """SigLIP's pairwise sigmoid loss (Zhai et al., 2023, Alg. 1): every image-text pair an independent binary
    problem, label +1 on the diagonal and -1 elsewhere, ``-sum log sigmoid(label * (t x.y + b)) / N``. Follows
    open_clip's ``SigLipLoss`` with ``world_size=1``."""

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
        logit_bias: torch.Tensor,
    ) -> torch.Tensor:
        """``image_features``, ``text_features`` (N, E), L2-normalised; ``logit_scale`` t = exp(t'), ``logit_bias``
        b -> scalar loss."""
        batch = image_features.shape[0]
        logits = logit_scale * image_features @ text_features.T + logit_bias  # (N, N)
        eye = torch.eye(batch, device=logits.device, dtype=logits.dtype)
        labels = 2 * eye - 1  # (N, N): +1 matching pairs, -1 the rest
        return -F.logsigmoid(labels * logits).sum() / batch


class LearnedTemperature(nn.Module):
    """A learned log scale ``t'``; ``forward()`` returns ``t = exp(t')``, at most ``MAX_SCALE``.

    The parameter itself is clamped to ``[0, log MAX_SCALE]`` in place before each use, the clamp open_clip's training
    loop applies after every optimizer step (``logit_scale.clamp_(0, math.log(100))``): the scale never exceeds the
    cap and, unlike a clamp inside the graph, the gradient still reaches ``t'`` at the cap, so it can come back down.
    """

    def __init__(self, init_log_scale: float, max_scale: float = MAX_SCALE) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(init_log_scale))
        self.max_log_scale = math.log(max_scale)

    def forward(self) -> torch.Tensor:
        with torch.no_grad():
            self.log_scale.clamp_(0.0, self.max_log_scale)
        return self.log_scale.exp()


class ImageTextObjective(Objective):
    """The two towers of CLIP and SigLIP: the image encoder's patches mean-pooled and projected, and a small text
    tower (``text_tower``: a ``TEXT_TOWERS`` name or a preset), both into the shared ``embed_width`` space."""

    def __init__(
        self,
        encoder: VisionTransformer,
        vocab_size: int,
        text_tower: str | TextTowerPreset = "text-tiny",
        pad_id: int = 0,
    ) -> None:
        super().__init__(encoder)
        preset = TEXT_TOWERS.get(text_tower) if isinstance(text_tower, str) else text_tower
        self.text_tower = TextTower(preset, vocab_size, pad_id)
        self.image_projection = nn.Linear(encoder.width, preset.embed_width, bias=False)
        nn.init.normal_(self.image_projection.weight, std=encoder.width**-0.5)  # CLIP's proj init

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` (N, 3, R, R) -> (N, E), L2-normalised."""
        pooled = self.encoder(images).mean(dim=1)  # (N, P, C) -> (N, C)
        return F.normalize(self.image_projection(pooled), dim=-1)  # (N, E)

    def encode_text(self, token_ids: torch.Tensor) -> torch.Tensor:
        """``token_ids`` (N, T), right-padded -> (N, E), L2-normalised."""
        return F.normalize(self.text_tower(token_ids), dim=-1)

    def features(self, images: torch.Tensor, token_ids: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if token_ids is None:
            raise ValueError(f"the {type(self).__name__} needs the captions' token ids")
        return self.encode_image(images), self.encode_text(token_ids)


class ContrastiveObjective(ImageTextObjective):
    """CLIP pre-training (Radford et al., 2021): ``ContrastiveLoss`` with a learned temperature, initialised to
    0.07 and capped so the logits scale by at most 100."""

    def __init__(
        self,
        encoder: VisionTransformer,
        vocab_size: int,
        text_tower: str | TextTowerPreset = "text-tiny",
        pad_id: int = 0,
    ) -> None:
        super().__init__(encoder, vocab_size, text_tower, pad_id)
        self.temperature = LearnedTemperature(CLIP_INIT_LOG_SCALE)
        self.loss = ContrastiveLoss()

    def forward(self, images: torch.Tensor, token_ids: torch.Tensor | None = None) -> torch.Tensor:
        image_features, text_features = self.features(images, token_ids)  # each (N, E)
        return self.loss(image_features, text_features, self.temperature())


class SigmoidObjective(ImageTextObjective):
    """SigLIP pre-training (Zhai et al., 2023): ``SigmoidLoss`` with a learned temperature (t' = log 10) and bias
    (b = -10), Sec. 3.2; the temperature has CLIP's cap of 100, as open_clip's training loop gives every model."""

    def __init__(
        self,
        encoder: VisionTransformer,
        vocab_size: int,
        text_tower: str | TextTowerPreset = "text-tiny",
        pad_id: int = 0,
    ) -> None:
        super().__init__(encoder, vocab_size, text_tower, pad_id)
        self.temperature = LearnedTemperature(SIGLIP_INIT_LOG_SCALE)
        self.logit_bias = nn.Parameter(torch.tensor(SIGLIP_INIT_BIAS))
        self.loss = SigmoidLoss()

    def forward(self, images: torch.Tensor, token_ids: torch.Tensor | None = None) -> torch.Tensor:
        image_features, text_features = self.features(images, token_ids)  # each (N, E)
        return self.loss(image_features, text_features, self.temperature(), self.logit_bias)
