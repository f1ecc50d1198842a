"""Frozen BN against torch's BN in eval mode (float64), in train mode too, from a BN's state."""

import pytest
import torch
from torch import nn

from bnstudy.norms import create_norm
from bnstudy.norms.frozen import FrozenBatchNorm, FrozenStatisticsBatchNorm

SHAPES = [(3, 4), (3, 4, 7), (2, 4, 3, 5), (2, 4, 2, 3, 2)]
TORCH_BN = {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def trained_bn(channels: int, spatial_dims: int) -> nn.Module:
    """A torch BN with non-trivial running statistics and affine, in float64."""
    bn = TORCH_BN[spatial_dims](channels).double()
    with torch.no_grad():
        bn.running_mean.copy_(torch.linspace(-1.0, 2.0, channels))
        bn.running_var.copy_(torch.linspace(0.1, 3.0, channels))
        bn.weight.copy_(torch.linspace(0.5, 2.0, channels))
        bn.bias.copy_(torch.linspace(-0.5, 0.5, channels))
    return bn.eval()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", ["frozen_bn", "frozen_stats"])
def test_a_bn_state_loads_and_normalizes_as_that_bn_in_eval_mode_in_either_mode(shape, name):
    torch.manual_seed(0)
    spatial_dims = len(shape) - 2
    bn = trained_bn(shape[1], spatial_dims)
    frozen = create_norm(name, shape[1], spatial_dims).double()
    frozen.load_state_dict(bn.state_dict())  # strict: num_batches_tracked is BN's only extra
    x = torch.randn(shape, dtype=torch.float64) * 2 + 0.3
    for mode in (True, False):
        frozen.train(mode)
        torch.testing.assert_close(frozen(x), bn(x))
    assert torch.equal(frozen.running_var, bn.running_var)  # nothing updated


def test_only_the_stats_variant_trains_its_affine_and_neither_its_statistics():
    fixed, trained = FrozenBatchNorm(4), FrozenStatisticsBatchNorm(4)
    assert [n for n, _ in fixed.named_parameters()] == []
    assert sorted(n for n, _ in trained.named_parameters()) == ["bias", "weight"]
    x = torch.randn(3, 4, 5, requires_grad=True)
    trained(x).square().sum().backward()
    assert trained.weight.grad is not None and x.grad is not None
    assert sorted(fixed.state_dict()) == sorted(trained.state_dict())


def test_one_value_per_channel_is_normalized_not_an_error():
    frozen = FrozenBatchNorm(3).train()
    out = frozen(torch.full((1, 3, 1, 1), 2.0))
    torch.testing.assert_close(out, torch.full((1, 3, 1, 1), 2.0 / (1 + 1e-5) ** 0.5))
