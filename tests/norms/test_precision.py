"""Statistics in at least float32: bfloat16 inputs give exactly the float32 result, rounded."""

import copy

import pytest
import torch

from bnstudy.norms.batch import ManualBatchNorm
from bnstudy.norms.evonorm import EvoNormB0, EvoNormS0
from bnstudy.norms.frn import FilterResponseNorm
from bnstudy.norms.frozen import FrozenStatisticsBatchNorm
from bnstudy.norms.precision import at_least_float32
from bnstudy.norms.renorm import BatchRenorm
from bnstudy.norms.weight_standardization import WSConv2d


@pytest.mark.parametrize(
    "dtype, expected",
    [
        (torch.float16, torch.float32),
        (torch.bfloat16, torch.float32),
        (torch.float32, torch.float32),
        (torch.float64, torch.float64),
        (torch.int64, torch.int64),
    ],
)
def test_at_least_float32(dtype, expected):
    x = torch.arange(4).to(dtype)
    out = at_least_float32(x)
    assert out.dtype == expected
    assert torch.equal(out.to(dtype), x)
    if dtype == expected:
        assert out is x


def training(renorm: BatchRenorm) -> BatchRenorm:
    """The module as inside a training step (its r, d correction on)."""
    renorm.set_progress(1.0)
    return renorm


def norms():
    return [
        FilterResponseNorm(8, 2),
        EvoNormS0(8, 2, groups=4),
        EvoNormB0(8, 2),
        training(BatchRenorm(8, 2, schedule="fixed", r_max=2.0, d_max=1.0)),
        ManualBatchNorm(8, 2),
        FrozenStatisticsBatchNorm(8),
    ]


@pytest.mark.parametrize("module", norms(), ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("training", [True, False])
def test_bfloat16_input_is_normalized_in_float32(module, training):
    torch.manual_seed(0)
    x = (torch.randn(4, 8, 8, 8) * 30 + 20).bfloat16()
    reference = copy.deepcopy(module)
    module.train(training), reference.train(training)
    out = module(x)
    assert out.dtype == torch.bfloat16
    # the float32 computation on the same values, rounded once at the end: identical
    assert torch.equal(out, reference(x.float()).bfloat16())
    for name, buffer in module.named_buffers():
        assert buffer.dtype == reference.get_buffer(name).dtype
        torch.testing.assert_close(buffer, reference.get_buffer(name), rtol=0, atol=0)


def test_the_comparison_can_fail_statistics_in_bfloat16_differ():
    torch.manual_seed(0)
    x = (torch.randn(4, 8, 8, 8) * 30 + 20).bfloat16()
    in_bf16 = x * torch.rsqrt(x.square().mean((2, 3), keepdim=True) + 1e-6)
    assert not torch.equal(FilterResponseNorm(8, 2, activation=False)(x), in_bf16)


def test_bfloat16_module_with_bfloat16_input_keeps_its_dtype():
    x = torch.randn(2, 8, 4, 4).bfloat16()
    for module in norms():
        assert module.bfloat16()(x).dtype == torch.bfloat16
    conv = WSConv2d(8, 4, 3).bfloat16()
    expected = WSConv2d.standardized_weight(copy.deepcopy(conv).float()).bfloat16()
    assert torch.equal(conv.standardized_weight(), expected)
    assert conv(x).dtype == torch.bfloat16


@pytest.mark.parametrize("module", norms(), ids=lambda m: type(m).__name__)
def test_float64_stays_float64(module):
    x = torch.randn(2, 8, 3, 3, dtype=torch.float64)
    assert module(x).dtype == torch.float64
