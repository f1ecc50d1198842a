"""Weight-standardized convolutions in 1D/2D/3D (float64), and GN+WS batch independence."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnstudy.norms.weight_standardization import WS_CONV, WSConv1d, WSConv2d, WSConv3d

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def ws_conv(dims, groups=1, **kwargs):
    torch.manual_seed(0)
    conv = WS_CONV[dims](4, 6, 3, padding=1, groups=groups, **kwargs).double()
    with torch.no_grad():  # per-channel offsets and scales that standardization must remove
        conv.weight.mul_(torch.linspace(0.5, 3.0, 6).reshape(-1, *[1] * (dims + 1)))
        conv.weight.add_(torch.linspace(-1.0, 1.0, 6).reshape(-1, *[1] * (dims + 1)))
    return conv


def by_hand(weight, eps):
    flat = weight.reshape(weight.shape[0], -1)
    mean = flat.mean(1, keepdim=True)
    var = ((flat - mean) ** 2).mean(1, keepdim=True)
    return ((flat - mean) / (var + eps).sqrt()).reshape(weight.shape), var


def test_the_table_maps_dims_to_conv_subclasses():
    assert WS_CONV == {1: WSConv1d, 2: WSConv2d, 3: WSConv3d}
    for dims, cls in WS_CONV.items():
        assert issubclass(cls, getattr(nn, f"Conv{dims}d"))
    assert WSConv2d(3, 4, 3, ws_eps=1e-3).ws_eps == 1e-3
    assert "ws_eps=1e-05" in repr(WSConv3d(2, 2, 1))


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("groups", [1, 2])
def test_standardized_weight_has_mean_zero_and_the_expected_variance(dims, groups):
    conv = ws_conv(dims, groups)
    w_hat = conv.standardized_weight()
    assert w_hat.shape == conv.weight.shape == (6, 4 // groups, *[3] * dims)
    expected, raw_var = by_hand(conv.weight.detach(), 1e-5)
    torch.testing.assert_close(w_hat, expected)
    flat = w_hat.reshape(6, -1)
    torch.testing.assert_close(flat.mean(1), torch.zeros(6, dtype=torch.float64))
    var = flat.var(1, unbiased=False)
    torch.testing.assert_close(var, (raw_var / (raw_var + 1e-5)).flatten())
    assert not torch.allclose(var, torch.ones(6, dtype=torch.float64), rtol=0, atol=1e-9)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_output_is_the_convolution_with_the_standardized_weight(dims):
    conv = ws_conv(dims, groups=2)
    x = torch.randn(2, 4, *[5] * dims, dtype=torch.float64)
    expected = CONV[dims](x, by_hand(conv.weight, 1e-5)[0], conv.bias, padding=1, groups=2)
    torch.testing.assert_close(conv(x), expected)
    plain = CONV[dims](x, conv.weight, conv.bias, padding=1, groups=2)
    assert not torch.allclose(conv(x), plain)


def test_output_ignores_each_output_channels_weight_scale_and_offset():
    conv = ws_conv(2, ws_eps=0.0)
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    before = conv(x)
    with torch.no_grad():
        conv.weight.mul_(torch.linspace(0.1, 10.0, 6).reshape(-1, 1, 1, 1)).add_(3.0)
    torch.testing.assert_close(conv(x), before)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_gradcheck(dims):
    torch.manual_seed(1)
    conv = WS_CONV[dims](2, 3, 2, groups=1).double()

    def call(x, weight, bias):
        return torch.func.functional_call(conv, {"weight": weight, "bias": bias}, (x,))

    x = torch.randn(2, 2, *[3] * dims, dtype=torch.float64)
    inputs = (x, conv.weight.detach(), conv.bias.detach())
    assert torch.autograd.gradcheck(call, tuple(t.clone().requires_grad_() for t in inputs))


@pytest.mark.parametrize("dims", [2, 3])
def test_ws_conv_with_group_norm_is_batch_independent_in_training(dims):
    torch.manual_seed(2)
    block = nn.Sequential(WS_CONV[dims](3, 8, 3, padding=1), nn.GroupNorm(4, 8)).double().train()
    x = torch.randn(5, 3, *[4] * dims, dtype=torch.float64)
    batch = block(x)
    for i in range(5):
        torch.testing.assert_close(block(x[i : i + 1]), batch[i : i + 1], rtol=0, atol=1e-12)
