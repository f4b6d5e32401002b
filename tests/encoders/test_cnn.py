"""Dilated residual CNN: shapes, exact receptive field, independence of the window length."""

from __future__ import annotations

import pytest
import torch

from genoseg.config import EncoderConfig
from genoseg.encoders import N_BASE_CHANNELS, DilatedResidualCNN, build_encoder


def make(dilations=(1, 2, 4), kernel_size=5, n_tracks=0, seed=0):
    torch.manual_seed(seed)
    net = DilatedResidualCNN(3, n_tracks=n_tracks, width=8, kernel_size=kernel_size,
                             dilations=dilations, dropout=0.1).double().eval()
    # Non-trivial head weights so every receptive-field position visibly moves the output.
    torch.nn.init.normal_(net.head.weight)
    return net


@pytest.mark.parametrize("n_tracks", [0, 2])
@pytest.mark.parametrize("T", [1, 97])
def test_shape(n_tracks, T):
    net = make(n_tracks=n_tracks)
    x = torch.rand(2, T, N_BASE_CHANNELS + n_tracks, dtype=torch.float64)
    y = net(x)
    assert y.shape == (2, T, 3) and y.dtype == torch.float64
    with pytest.raises(ValueError, match="expected input"):
        net(torch.rand(2, T, N_BASE_CHANNELS + n_tracks + 1, dtype=torch.float64))


@pytest.mark.parametrize("dilations, kernel_size", [((1, 2, 4), 5), ((3, 1), 3), ((), 7)])
def test_receptive_field_is_exact(dilations, kernel_size):
    net = make(dilations, kernel_size)
    rf = net.receptive_field
    assert rf == 1 + (kernel_size - 1) * (1 + sum(dilations))
    half = (rf - 1) // 2
    T, p = 3 * rf, 3 * rf // 2
    x = torch.rand(1, T, N_BASE_CHANNELS, dtype=torch.float64)
    x2 = x.clone()
    x2[0, p] += torch.rand(N_BASE_CHANNELS, dtype=torch.float64) + 0.5
    with torch.no_grad():
        changed = (net(x) - net(x2)).abs().amax(dim=2)[0] > 0
    expected = torch.zeros(T, dtype=torch.bool)
    expected[p - half:p + half + 1] = True
    assert torch.equal(changed, expected)


def test_window_length_does_not_change_interior_scores():
    # Per-position LayerNorm (no BatchNorm, no norm over time): a sub-window's scores match the
    # long window's wherever the sub-window's padding is out of reach.
    net = make()
    half = (net.receptive_field - 1) // 2
    x = torch.rand(2, 200, N_BASE_CHANNELS, dtype=torch.float64)
    with torch.no_grad():
        full = net(x)
        part = net(x[:, 50:150])
    torch.testing.assert_close(part[:, half:-half], full[:, 50 + half:150 - half], rtol=0,
                               atol=1e-12)


def test_build_encoder_from_config():
    cfg = EncoderConfig(width=16, depth=3, kernel_size=5, dilation_base=3, n_tracks=1)
    net = build_encoder(cfg, n_labels=4)
    assert net.dilations == (1, 3, 9)
    assert net.receptive_field == cfg.receptive_field
    assert net(torch.rand(1, 10, N_BASE_CHANNELS + 1)).shape == (1, 10, 4)
    assert build_encoder(cfg, n_labels=4, n_tracks=0).in_channels == N_BASE_CHANNELS


def test_dropout_only_in_training_mode():
    net = make()
    x = torch.rand(1, 50, N_BASE_CHANNELS, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(net(x), net(x))
        net.train()
        assert not torch.equal(net(x), net(x))


def test_even_kernel_rejected():
    with pytest.raises(ValueError, match="odd"):
        DilatedResidualCNN(3, kernel_size=4)


def test_channel_layer_norm_is_layer_norm_over_channels():
    """ChannelLayerNorm normalises each position over its channels, in the (B, W, T) layout,
    exactly as nn.LayerNorm on the (B, T, W) layout (values and gradients, float64)."""
    from genoseg.encoders.cnn import ChannelLayerNorm

    torch.manual_seed(0)
    norm = ChannelLayerNorm(16).double()
    torch.nn.init.normal_(norm.norm.weight)
    torch.nn.init.normal_(norm.norm.bias)
    x = (3 * torch.randn(2, 16, 50, dtype=torch.float64) + 5).requires_grad_(True)
    ours = norm(x)
    ref = norm.norm(x.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    w = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad((ours * w).sum(), x)[0],
                               torch.autograd.grad((ref * w).sum(), x)[0], rtol=0, atol=1e-10)
