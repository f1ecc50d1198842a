"""EvoNorm-S0/B0 against hand-written references (float64), running variance, ghost batches."""

import pytest
import torch

from bnstudy.norms.evonorm import EvoNormB0, EvoNormS0

EPS = 1e-5
SHAPES = [(3, 8, 5), (2, 8, 3, 4), (2, 8, 2, 3, 2)]


def params(module, channels):
    with torch.no_grad():  # non-trivial parameters
        module.weight.copy_(torch.linspace(0.5, 2.0, channels))
        module.bias.copy_(torch.linspace(-0.5, 0.5, channels))
        if module.v is not None:
            module.v.copy_(torch.linspace(-1.0, 1.5, channels))
    return module


def channel(t, x):
    return t.reshape((1, -1) + (1,) * (x.dim() - 2))


def s0_by_hand(x, module, groups):
    n, c = x.shape[:2]
    grouped = x.reshape(n, groups, c // groups, *x.shape[2:])
    axes = tuple(range(2, grouped.dim()))
    mean = grouped.mean(axes, keepdim=True)
    std = (((grouped - mean) ** 2).mean(axes, keepdim=True) + EPS).sqrt()
    std = std.expand(grouped.shape).reshape(x.shape)
    gated = x * torch.sigmoid(channel(module.v, x) * x)
    return channel(module.weight, x) * gated / std + channel(module.bias, x)


def b0_sides(x, module, var):
    """The two arguments of B0's max: batch std and v·x + instance std."""
    spatial = tuple(range(2, x.dim()))
    instance_mean = x.mean(spatial, keepdim=True)
    instance_std = (((x - instance_mean) ** 2).mean(spatial, keepdim=True) + EPS).sqrt()
    return channel((var + EPS).sqrt(), x), channel(module.v, x) * x + instance_std


def b0_by_hand(x, module, var):
    left, right = b0_sides(x, module, var)
    return channel(module.weight, x) * x / torch.maximum(left, right) + channel(module.bias, x)


def batch_var(x):
    axes = (0, *range(2, x.dim()))
    return ((x - x.mean(axes, keepdim=True)) ** 2).mean(axes)


def gradcheck_module(module, x):
    names = [name for name, _ in module.named_parameters()]

    def call(x, *values):
        return torch.func.functional_call(module, dict(zip(names, values, strict=True)), (x,))

    inputs = (x, *(p.detach() for p in module.parameters()))
    return torch.autograd.gradcheck(call, tuple(t.clone().requires_grad_() for t in inputs))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("groups", [1, 4])
def test_s0_matches_the_formula(shape, groups):
    torch.manual_seed(0)
    module = params(EvoNormS0(8, len(shape) - 2, groups=groups).double(), 8)
    assert module.num_groups == groups
    x = torch.randn(shape, dtype=torch.float64) * 2 + 0.5
    torch.testing.assert_close(module(x), s0_by_hand(x, module, groups))
    module.eval()  # batch-independent: the same in eval mode
    torch.testing.assert_close(module(x), s0_by_hand(x, module, groups))


def test_without_activation_evonorm_is_an_affine_transform_only():
    # the authors' code ("if False, apply an affine transform only") and timm's EvoNorm2d*0
    torch.manual_seed(1)
    x = torch.randn(4, 8, 3, 3, dtype=torch.float64) * 3 + 2
    for module in (EvoNormS0(8, 2, activation=False), EvoNormB0(8, 2, activation=False)):
        module = params(module.double(), 8)
        assert module.v is None
        torch.testing.assert_close(
            module(x), channel(module.weight, x) * x + channel(module.bias, x)
        )
    assert module.num_batches_tracked == 0 and torch.equal(
        module.running_var, torch.ones(8).double()
    )


def test_s0_groups_must_divide_the_channels():
    with pytest.raises(ValueError, match="3 groups do not divide 8 channels"):
        EvoNormS0(8, 2, groups=3)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("momentum", [0.1, None])
def test_b0_matches_the_formula_and_keeps_torch_running_variance(shape, momentum):
    torch.manual_seed(2)
    module = params(EvoNormB0(8, len(shape) - 2, momentum=momentum).double(), 8)
    expected_running = torch.ones(8, dtype=torch.float64)
    seen = []
    for step in range(3):
        x = torch.randn(shape, dtype=torch.float64) * (step + 1) + step
        var = batch_var(x)
        torch.testing.assert_close(module(x), b0_by_hand(x, module, var))
        left, right = b0_sides(x, module, var)
        assert (left > right).any() and (right > left).any()  # both sides of the max occur
        count = x.numel() // 8
        seen.append(var * count / (count - 1))
        if momentum is None:
            expected_running = torch.stack(seen).mean(0)
        else:
            expected_running = (1 - momentum) * expected_running + momentum * seen[-1]
        torch.testing.assert_close(module.running_var, expected_running)
    assert module.num_batches_tracked == 3
    module.eval()
    x = torch.randn(shape, dtype=torch.float64)
    torch.testing.assert_close(module(x), b0_by_hand(x, module, expected_running))
    assert not torch.allclose(module(x), b0_by_hand(x, module, batch_var(x)))


def test_b0_at_one_value_per_channel_raises_and_at_1x1_maps_uses_sqrt_eps():
    module = params(EvoNormB0(4, 2).double(), 4)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        module(torch.randn(1, 4, 1, 1, dtype=torch.float64))
    x = torch.randn(3, 4, 1, 1, dtype=torch.float64)
    out = module(x)  # instance variance of one value is 0: instance_std = sqrt(eps)
    left = channel((batch_var(x) + EPS).sqrt(), x)
    right = channel(module.v, x) * x + EPS**0.5
    expected = channel(module.weight, x) * x / torch.maximum(left, right) + channel(module.bias, x)
    torch.testing.assert_close(out, expected)
    module.eval()
    module(torch.randn(1, 4, 1, 1, dtype=torch.float64))  # eval mode never raises


@pytest.mark.parametrize("shape", [(3, 4, 3), (2, 4, 2, 2), (2, 4, 2, 1, 2)])
def test_gradcheck(shape):
    torch.manual_seed(3)
    x = torch.randn(shape, dtype=torch.float64)
    assert gradcheck_module(params(EvoNormS0(4, len(shape) - 2, groups=2).double(), 4), x)
    assert gradcheck_module(params(EvoNormB0(4, len(shape) - 2).double(), 4), x)


def test_s0_a_sample_alone_equals_the_sample_in_a_batch():
    torch.manual_seed(5)
    module = params(EvoNormS0(8, 3, groups=4).double(), 8)
    x = torch.randn(5, 8, 2, 3, 2, dtype=torch.float64)
    batch = module(x)
    for i in range(5):
        torch.testing.assert_close(module(x[i : i + 1]), batch[i : i + 1], rtol=0, atol=1e-14)


def test_wrong_rank_is_a_clear_error():
    for module in (EvoNormS0(8, 2), EvoNormB0(8, 2)):
        with pytest.raises(ValueError, match="expected a 4D input, got shape"):
            module(torch.randn(2, 8, 3))


@pytest.mark.parametrize("momentum", [0.1, None])
def test_b0_ghost_batches_update_the_running_variance_once_from_all_sub_batches(momentum):
    torch.manual_seed(6)
    module = params(EvoNormB0(4, 2, momentum=momentum).double(), 4)
    with torch.no_grad():
        module.running_var.copy_(torch.tensor([2.0, 0.5, 1.0, 3.0]))
    before = module.running_var.clone()
    x = torch.randn(8, 4, 3, 3, dtype=torch.float64) + torch.randn(8, 1, 1, 1) * 2
    module.norm_batch_size = 2
    out = module(x)
    expected = torch.cat([b0_by_hand(part, module, batch_var(part)) for part in x.split(2)])
    torch.testing.assert_close(out, expected)
    weight = 1.0 if momentum is None else momentum  # momentum None: the first batch counted
    pooled = x.var(dim=(0, 2, 3), unbiased=True)
    torch.testing.assert_close(module.running_var, (1 - weight) * before + weight * pooled)
    assert module.num_batches_tracked == 1


def test_b0_without_activation_never_updates_its_running_variance_ghost_or_not():
    module = EvoNormB0(4, 2, activation=False).double()
    module.norm_batch_size = 2
    module(torch.randn(8, 4, 3, 3, dtype=torch.float64))
    assert torch.equal(module.running_var, torch.ones(4, dtype=torch.float64))
    assert module.num_batches_tracked == 0
