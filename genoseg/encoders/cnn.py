"""Dilated residual CNN encoder: one-hot sequence (+ tracks) -> per-position label scores.

Input channels (B, T, 6 + n_tracks), float: one-hot A, C, G, T, N (IUPAC ambiguity codes as N),
a soft-mask channel (1.0 for lowercase bases), then ``n_tracks`` signal tracks. Output emissions
(B, T, C), unnormalised; the semi-CRF turns them into segment scores.

Layers: a stem conv (``kernel_size`` taps) to ``width`` channels, ``depth`` pre-norm residual
blocks ``x + Dropout(Conv_dilated(GELU(LayerNorm(x))))``, a final LayerNorm + GELU and a 1x1 conv
to C. The norm is a per-position LayerNorm over channels (no BatchNorm, no GroupNorm over time):
every layer is a function of the receptive field alone, so scores on one long window equal scores
on the training windows, away from the window edges.

Every output position sees exactly ``receptive_field`` input positions, centred on it; windows
whose edges are closer than ``(receptive_field - 1) // 2`` see zero padding there, which is why
annotation overlaps windows by ``receptive_field - 1``. Reverse-complement symmetry: not built in.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

N_BASE_CHANNELS = 6  # A, C, G, T, N, soft-mask


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel dim of a (B, W, T) tensor, independently at every position."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalised along dim 1 in the (B, W, T) layout (a new tensor, not in place):
        # layer_norm over a transposed view copies the tensor twice (in and out of the
        # (B, T, W) layout), half of this layer's time on a CPU.
        # (torch.var_mean along dim 1 is slower on a CPU than these two means.)
        norm = self.norm
        centred = x - x.mean(dim=1, keepdim=True)
        var = (centred * centred).mean(dim=1, keepdim=True)
        return torch.addcmul(norm.bias[:, None], centred * torch.rsqrt(var + norm.eps),
                             norm.weight[:, None])


class ResidualBlock(nn.Module):
    def __init__(self, width: int, kernel_size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.norm = ChannelLayerNorm(width)
        self.conv = nn.Conv1d(width, width, kernel_size, dilation=dilation,
                              padding=dilation * (kernel_size - 1) // 2)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        u = F.gelu(self.norm(x))
        if mask is not None:
            # Zero past each sequence's end, so the conv sees exactly the zero padding it would
            # see at the end of an unpadded sequence (padded batches == one-by-one passes).
            u = u * mask
        return x + self.dropout(self.conv(u))


class DilatedResidualCNN(nn.Module):
    """(B, T, in_channels) float -> emissions (B, T, n_labels), same dtype.

    ``dilations`` has one entry per residual block; ``kernel_size`` must be odd.
    """

    def __init__(self, n_labels: int, *, n_tracks: int = 0, width: int = 64,
                 kernel_size: int = 9, dilations: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128),
                 dropout: float = 0.1) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.n_labels = n_labels
        self.n_tracks = n_tracks
        self.in_channels = N_BASE_CHANNELS + n_tracks
        self.kernel_size = kernel_size
        self.dilations = tuple(int(d) for d in dilations)
        self.stem = nn.Conv1d(self.in_channels, width, kernel_size, padding=(kernel_size - 1) // 2)
        self.blocks = nn.ModuleList(
            ResidualBlock(width, kernel_size, d, dropout) for d in self.dilations)
        self.out_norm = ChannelLayerNorm(width)
        self.head = nn.Conv1d(width, n_labels, 1)
        # Small initial scores: the CRF starts close to its transition/duration prior.
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    @property
    def receptive_field(self) -> int:
        """Input positions (bp) that determine one output position, exactly."""
        return 1 + (self.kernel_size - 1) * (1 + sum(self.dilations))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, in_channels), zero past ``lengths`` (B,) if given; outputs there are junk."""
        if x.dim() != 3 or x.shape[-1] != self.in_channels:
            raise ValueError(f"expected input (B, T, {self.in_channels}), got {tuple(x.shape)}")
        mask = None
        if lengths is not None:
            T = x.shape[1]
            mask = (torch.arange(T, device=x.device)[None, :] < lengths.to(x.device)[:, None])
            mask = mask.unsqueeze(1).to(x.dtype)  # (B, 1, T)
        h = self.stem(x.transpose(1, 2))  # (B, W, T)
        for block in self.blocks:
            h = block(h, mask)
        return self.head(F.gelu(self.out_norm(h))).transpose(1, 2)  # (B, T, C)


def build_encoder(encoder_config, n_labels: int, n_tracks: int | None = None) -> nn.Module:
    """The encoder described by an ``EncoderConfig``; ``n_tracks`` defaults to the config's."""
    cfg = encoder_config
    if cfg.kind != "cnn":
        raise ValueError(f"unknown encoder kind {cfg.kind!r}")
    return DilatedResidualCNN(
        n_labels,
        n_tracks=cfg.n_tracks if n_tracks is None else n_tracks,
        width=cfg.width,
        kernel_size=cfg.kernel_size,
        dilations=cfg.resolved_dilations(),
        dropout=cfg.dropout,
    )
