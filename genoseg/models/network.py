"""The network: encoder (sequence -> emissions) plus the semi-CRF head (transitions, durations)."""

from __future__ import annotations

from torch import nn

from genoseg.crf.head import SemiCRFHead
from genoseg.encoders.cnn import build_encoder


class SegmentationModel(nn.Module):
    """(B, T, channels) one-hot sequence (+ tracks) -> emissions (B, T, n_outputs); ``head``
    decodes."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        if getattr(config.crf, "grammar", "tiled") == "phase":
            from genoseg.crf.phase_head import PhaseGeneHead

            self.head = PhaseGeneHead(config.scheme, K=config.K, min_intron=config.crf.min_intron,
                                      flat_long_runs=config.crf.flat_long_runs,
                                      content_order=config.crf.content_order,
                                      content_weight=config.crf.content_weight)
            n_outputs = self.head.n_outputs
        else:
            self.head = SemiCRFHead(config.scheme, K=config.K,
                                    duration_prior=config.crf.duration_prior)
            n_outputs = config.scheme.C
        self.encoder = build_encoder(config.encoder, n_outputs)

    @property
    def n_outputs(self) -> int:
        """Encoder output columns per base (the scheme's C, plus site scores for 'phase')."""
        return getattr(self.head, "n_outputs", self.config.scheme.C)

    def head_inputs(self, x) -> dict:
        """Extra keyword inputs of the head's methods for network input x: the base codes the
        phase grammar builds its constraints from; nothing for the tiled head."""
        if getattr(self.head, "grammar_name", None) == "phase":
            from genoseg.crf.phase_head import codes_from_inputs

            return {"codes": codes_from_inputs(x)}
        return {}

    @property
    def in_channels(self) -> int:
        return self.encoder.in_channels

    @property
    def receptive_field(self) -> int:
        return self.encoder.receptive_field

    def forward(self, x, lengths=None):
        return self.encoder(x, lengths)
