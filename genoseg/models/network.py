"""The network: encoder (sequence -> emissions) plus the semi-CRF head (transitions, durations)."""

from __future__ import annotations

from torch import nn

from genoseg.crf.head import SemiCRFHead
from genoseg.encoders.cnn import build_encoder


class SegmentationModel(nn.Module):
    """(B, T, channels) one-hot sequence (+ tracks) -> emissions (B, T, C); ``head`` decodes."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.encoder = build_encoder(config.encoder, config.scheme.C)
        self.head = SemiCRFHead(config.scheme, K=config.K,
                                duration_prior=config.crf.duration_prior)

    @property
    def in_channels(self) -> int:
        return self.encoder.in_channels

    @property
    def receptive_field(self) -> int:
        return self.encoder.receptive_field

    def forward(self, x, lengths=None):
        return self.encoder(x, lengths)
