"""The MM1-style multimodal LLM (MM1 Sec. 3, Fig. 3): image encoder -> VL connector -> decoder-only LM.

Images are encoded into patch features, the connector turns each image into ``num_tokens`` LM-width vectors,
and these replace the embeddings at the image-token positions of the text (in order), so one sequence can
hold several images anywhere in its text (interleaved data, MM1 Sec. 3.3).
"""

from __future__ import annotations

import torch
from torch import nn

from mm1core.config import ModelConfig
from mm1core.connectors import CONNECTORS
from mm1core.connectors.base import Connector
from mm1core.data.tokenizer import IMAGE_TOKEN_ID
from mm1core.lm.decoder import Decoder, KVCache, build_decoder
from mm1core.vision.vit import VisionTransformer, build_encoder


class MM1Model(nn.Module):
    """``token_ids`` (B, T) + ``images`` (N, 3, R, R) -> logits (B, T, V).

    ``token_ids`` holds ``num_tokens`` image-token ids per image; ``images`` lists the batch's images in the
    order those runs appear, row by row (``N * num_tokens`` image tokens in all).
    """

    def __init__(self, encoder: VisionTransformer, connector: Connector, decoder: Decoder, image_token_id: int) -> None:
        super().__init__()
        self.encoder, self.connector, self.decoder = encoder, connector, decoder
        self.image_token_id = image_token_id

    def embed(self, token_ids: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Token embeddings with each image's connector outputs spliced in: encode -> connect -> splice."""
        embeddings = self.decoder.embed(token_ids)  # (B, T, D)
        if images.shape[0] == 0:
            return embeddings  # text-only batch
        patches = self.encoder(images)  # (N, grid * grid, C_enc)
        image_tokens = self.connector(patches)  # (N, num_tokens, D)
        is_image = (token_ids == self.image_token_id).unsqueeze(-1)  # (B, T, 1)
        return embeddings.masked_scatter(is_image, image_tokens.to(embeddings.dtype))  # fills row by row

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
    """Encoder, connector and decoder by their registered names; ``cfg.encoder.freeze`` freezes the encoder."""
    encoder = build_encoder(cfg.encoder.name)
    decoder = build_decoder(cfg.decoder.name, vocab_size)
    connector_class = CONNECTORS.get(cfg.connector.type).load()
    connector = connector_class(encoder.width, decoder.preset.width, cfg.connector.num_tokens)
    if cfg.encoder.freeze:
        encoder.requires_grad_(False)  # MM1 Sec. 3.2 trains with the encoder frozen or not
    return MM1Model(encoder, connector, decoder, image_token_id)
