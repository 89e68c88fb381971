"""The MM1-style multimodal LLM (MM1 Sec. 3, Fig. 3): image encoder -> VL connector -> decoder-only LM.

Images are encoded into patch features, the connector turns each image view into ``num_tokens`` LM-width
vectors, and these replace the embeddings at the image-token positions of the text (in order), so one sequence
can hold any number of images anywhere in its text (interleaved data, MM1 Sec. 3.3; up to 16 per sequence in
the paper). With sub-image decomposition (``model.highres.mode: subimage``, MM1 Sec. 5) each image is several
views - a downsampled global view, then the crops row by row - each encoded as an independent image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mm1core.config import ModelConfig
from mm1core.connectors import build_connector
from mm1core.connectors.base import Connector
from mm1core.data.tokenizer import IMAGE_TOKEN_ID
from mm1core.lm.decoder import Decoder, KVCache, build_decoder
from mm1core.vision.vit import VisionTransformer, build_encoder


def subimage_views(images: torch.Tensor, grid: int) -> torch.Tensor:
    """``(N, 3, R, R)`` -> ``(N * (1 + grid**2), 3, R / grid, R / grid)``: per image, the global view (box-filter
    downsampled) then the ``grid x grid`` crops row-major (SPHINX, Lin et al. 2023; MM1 Sec. 5: a 1344 px image
    becomes one 672 px global view and four 672 px crops)."""
    count, channels, side, _ = images.shape
    view = side // grid
    global_view = F.interpolate(images, size=(view, view), mode="area")  # (N, 3, v, v)
    crops = images.reshape(count, channels, grid, view, grid, view).permute(0, 2, 4, 1, 3, 5)  # (N, g, g, 3, v, v)
    crops = crops.reshape(count, grid * grid, channels, view, view)  # (N, g * g, 3, v, v)
    views = torch.cat([global_view[:, None], crops], dim=1)  # (N, 1 + g * g, 3, v, v)
    return views.flatten(0, 1)


class MM1Model(nn.Module):
    """``token_ids`` (B, T) + ``images`` (N, 3, R, R) -> logits (B, T, V).

    ``token_ids`` holds ``tokens_per_image`` image-token ids per image; ``images`` lists the batch's images in
    the order those runs appear, row by row. ``subimage_grid`` > 0 splits each image into views first.
    """

    def __init__(
        self,
        encoder: VisionTransformer,
        connector: Connector,
        decoder: Decoder,
        image_token_id: int,
        subimage_grid: int = 0,
        vocab_size: int | None = None,
    ) -> None:
        super().__init__()
        self.encoder, self.connector, self.decoder = encoder, connector, decoder
        self.image_token_id, self.subimage_grid = image_token_id, subimage_grid
        # The ids the tokenizer can decode; a pretrained LM's larger vocabulary is never generated from.
        self.vocab_size = vocab_size or decoder.token_embedding.num_embeddings

    def image_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, R, R)`` -> ``(N * views * num_tokens, D)``: encode -> connect, views of one image adjacent."""
        if self.subimage_grid:
            images = subimage_views(images, self.subimage_grid)  # (N * views, 3, v, v)
        patches = self.encoder(images)  # (N * views, grid * grid, C_enc)
        return self.connector(patches).flatten(0, 1)  # (N * views * num_tokens, D)

    def embed(self, token_ids: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Token embeddings with each image's connector outputs spliced in: encode -> connect -> splice."""
        embeddings = self.decoder.embed(token_ids)  # (B, T, D)
        if images.shape[0] == 0:
            return embeddings  # text-only batch
        image_tokens = self.image_tokens(images)
        is_image = token_ids == self.image_token_id  # (B, T)
        positions, count = is_image.sum(), image_tokens.shape[0]
        if embeddings.device.type == "cpu":
            if int(positions) != count:
                raise ValueError(f"{int(positions)} image-token positions but {count} image tokens")
        else:  # checked on the device: reading the count back would stall every step
            torch._assert_async(positions == count, "image-token positions != image tokens")
        return embeddings.masked_scatter(is_image.unsqueeze(-1), image_tokens.to(embeddings.dtype))  # row by row

    def forward(
        self,
        token_ids: torch.Tensor,
        images: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """See ``Decoder.forward`` for ``position_ids``, ``padding_mask`` and ``cache`` (generation only)."""
        return self.decoder(self.embed(token_ids, images), position_ids, padding_mask, cache)


def build_model(cfg: ModelConfig, vocab_size: int, *, image_token_id: int = IMAGE_TOKEN_ID) -> MM1Model:
    """Encoder, connector and decoder by their registered names (or local checkpoints); each component's
    ``freeze`` switch stops its training (MM1 trains all three, in pre-training and SFT alike)."""
    encoder = build_encoder(cfg.encoder.name, cfg.encoder.resolution, cfg.encoder.checkpoint)
    decoder = build_decoder(cfg.decoder.name, vocab_size, moe=cfg.decoder.moe, checkpoint=cfg.decoder.checkpoint)
    connector = build_connector(cfg.connector, encoder.width, decoder.preset.width)
    for part, section in ((encoder, cfg.encoder), (connector, cfg.connector), (decoder, cfg.decoder)):
        if section.freeze:
            part.requires_grad_(False)
    subimage_grid = cfg.highres.grid if cfg.highres.mode == "subimage" else 0
    return MM1Model(encoder, connector, decoder, image_token_id, subimage_grid, vocab_size)
