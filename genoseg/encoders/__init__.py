"""Encoders: nn.Modules mapping (B, T, 6 + n_tracks) one-hot sequence (+ tracks) to (B, T, C)
emission scores."""

from genoseg.encoders.cnn import N_BASE_CHANNELS, DilatedResidualCNN, build_encoder

__all__ = ["N_BASE_CHANNELS", "DilatedResidualCNN", "build_encoder"]
