"""BatchRenorm: BN exactly at r_max 1 / d_max 0, the paper's formula otherwise (float64)."""

import pytest
import torch

from bnstudy.norms.renorm import BatchRenorm

TORCH_BN = {
    0: torch.nn.BatchNorm1d,
    1: torch.nn.BatchNorm1d,
    2: torch.nn.BatchNorm2d,
    3: torch.nn.BatchNorm3d,
}
SHAPES = [(5, 3), (4, 3, 7), (3, 2, 5, 4), (2, 2, 3, 4, 5), (1, 3, 2, 2)]
EPS = 1e-5


def affine(module, channels):
    with torch.no_grad():  # non-trivial affine parameters
        module.weight.copy_(torch.linspace(0.5, 2.0, channels))
        module.bias.copy_(torch.linspace(-1.0, 1.0, channels))
    return module


def channel_shape(x):
    return (1, -1) + (1,) * (x.dim() - 2)


def by_hand(x, running_mean, running_var, weight, bias, r_max, d_max):
    """The paper's training output, written out, with r and d as constants."""
    axes, shape = (0, *range(2, x.dim())), channel_shape(x)
    mean, var = x.mean(axes), x.var(axes, unbiased=False)
    std, running_std = (var + EPS).sqrt(), (running_var + EPS).sqrt()
    r = (std / running_std).clamp(1 / r_max, r_max)
    d = ((mean - running_mean) / running_std).clamp(-d_max, d_max)
    x_hat = (x - mean.reshape(shape)) / std.reshape(shape) * r.reshape(shape) + d.reshape(shape)
    return weight.reshape(shape) * x_hat + bias.reshape(shape), r, d


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize(
    "limits",
    [
        {"schedule": "fixed", "r_max": 1.0, "d_max": 0.0},
        {},  # the fractions schedule at progress 0 is plain BN
    ],
)
def test_equals_torch_batch_norm_without_correction(shape, momentum, limits):
    torch.manual_seed(0)
    dims, channels = len(shape) - 2, shape[1]
    reference = affine(TORCH_BN[dims](channels, eps=EPS, momentum=momentum).double(), channels)
    renorm = BatchRenorm(channels, dims, eps=EPS, momentum=momentum, **limits).double()
    affine(renorm, channels)
    for step in range(3):
        x = (torch.randn(shape, dtype=torch.float64) * (step + 2) + step).requires_grad_()
        x_renorm = x.detach().clone().requires_grad_()
        upstream = torch.randn(shape, dtype=torch.float64)
        expected, got = reference(x), renorm(x_renorm)
        torch.testing.assert_close(got, expected)
        expected.backward(upstream)
        got.backward(upstream)
        torch.testing.assert_close(x_renorm.grad, x.grad)
        torch.testing.assert_close(renorm.weight.grad, reference.weight.grad)
        torch.testing.assert_close(renorm.bias.grad, reference.bias.grad)
        torch.testing.assert_close(renorm.running_mean, reference.running_mean)
        torch.testing.assert_close(renorm.running_var, reference.running_var)
    assert renorm.num_batches_tracked == reference.num_batches_tracked == 3
    reference.eval(), renorm.eval()
    x = torch.randn(shape, dtype=torch.float64)
    torch.testing.assert_close(renorm(x), reference(x))


def test_r_and_d_carry_no_gradient():
    torch.manual_seed(1)
    renorm = affine(BatchRenorm(3, 1, schedule="fixed", r_max=3.0, d_max=5.0).double(), 3)
    renorm.set_progress(1.0)  # inside a training step
    x = (torch.randn(6, 3, 4, dtype=torch.float64) * 2 + 1).requires_grad_()
    with torch.no_grad():  # running statistics that make r != 1 and d != 0, both unclipped
        renorm.running_mean.fill_(0.5)
        renorm.running_var.fill_(1.0)
    running_mean, running_var = renorm.running_mean.clone(), renorm.running_var.clone()
    upstream = torch.randn(x.shape, dtype=torch.float64)
    renorm(x).backward(upstream)

    def grad_with(detach):
        x_ref = x.detach().clone().requires_grad_()
        axes, shape = (0, 2), (1, -1, 1)
        mean, var = x_ref.mean(axes), x_ref.var(axes, unbiased=False)
        std, running_std = (var + EPS).sqrt(), (running_var + EPS).sqrt()
        r, d = std / running_std, (mean - running_mean) / running_std
        assert ((r > 1.01) | (r < 0.99)).all() and (r < 3).all() and (r > 1 / 3).all()
        assert (d.abs() > 0.01).all() and (d.abs() < 5).all()
        if detach:
            r, d = r.detach(), d.detach()
        x_hat = (x_ref - mean.reshape(shape)) / std.reshape(shape) * r.reshape(shape)
        y = renorm.weight.detach().reshape(shape) * (x_hat + d.reshape(shape))
        y.backward(upstream)
        return x_ref.grad

    torch.testing.assert_close(x.grad, grad_with(detach=True))
    assert not torch.allclose(x.grad, grad_with(detach=False))


def test_fractions_schedule_limits():
    renorm = BatchRenorm(2, 2)  # r_max 3, d_max 5, relax at 0.05, d_max at 0.25, r_max at 0.4
    expected = {
        0.0: (1.0, 0.0),
        0.049: (1.0, 0.0),
        0.05: (1.0, 0.0),
        0.15: (1.0 + 2.0 * 0.1 / 0.35, 2.5),  # d halfway up its ramp
        0.225: (2.0, 5.0 * 0.175 / 0.2),  # r halfway up its ramp
        0.25: (1.0 + 2.0 * 0.2 / 0.35, 5.0),
        0.4: (3.0, 5.0),
        1.0: (3.0, 5.0),
    }
    assert renorm.progress is None and renorm.clip_limits() == (1.0, 0.0)  # not training
    for progress, (r_max, d_max) in expected.items():
        renorm.set_progress(progress)
        assert renorm.progress == progress
        assert renorm.clip_limits() == pytest.approx((r_max, d_max))
    fixed = BatchRenorm(2, 2, schedule="fixed", r_max=1.5, d_max=0.5)
    assert fixed.clip_limits() == (1.0, 0.0)
    fixed.set_progress(0.0)
    assert fixed.clip_limits() == (1.5, 0.5)
    with pytest.raises(ValueError, match="progress"):
        renorm.set_progress(1.5)


@pytest.mark.parametrize(
    "kwargs, option",
    [
        ({"r_max": 0.5}, "r_max"),
        ({"d_max": -1.0}, "d_max"),
        ({"schedule": "steps"}, "schedule"),
        ({"relax_start": -0.1}, "relax_start"),
        ({"relax_start": 0.3}, "d_max_at"),
        ({"r_max_at": 1.2}, "r_max_at"),
        ({"d_max_at": 0.05}, "d_max_at"),
        ({"momentum": 1.5}, "momentum"),
    ],
)
def test_invalid_options_are_named(kwargs, option):
    with pytest.raises(ValueError, match=option):
        BatchRenorm(4, 2, **kwargs)


def test_with_limits_it_differs_from_bn_and_matches_the_paper_formula():
    torch.manual_seed(2)
    renorm = affine(BatchRenorm(3, 2, momentum=0.3).double(), 3)
    renorm.set_progress(0.15)  # r_max 1.571, d_max 2.5
    r_max, d_max = renorm.clip_limits()
    scale = torch.tensor([0.5, 1.0, 4.0], dtype=torch.float64).reshape(1, 3, 1, 1)
    shift = torch.tensor([0.0, 0.3, 10.0], dtype=torch.float64).reshape(1, 3, 1, 1)
    clipped, unclipped = 0, 0
    for step in range(4):
        x = torch.randn(4, 3, 3, 3, dtype=torch.float64) * scale + shift * step
        running_mean, running_var = renorm.running_mean.clone(), renorm.running_var.clone()
        expected, r, d = by_hand(
            x, running_mean, running_var, renorm.weight, renorm.bias, r_max, d_max
        )
        got = renorm(x)
        torch.testing.assert_close(got, expected)
        bn = torch.nn.functional.batch_norm(
            x, None, None, renorm.weight, renorm.bias, training=True, eps=EPS
        )
        assert not torch.allclose(got, bn)
        # the running statistics are BN's, whatever r and d were
        count = x.numel() // 3
        batch_var = x.var((0, 2, 3), unbiased=False) * count / (count - 1)
        torch.testing.assert_close(
            renorm.running_mean, 0.7 * running_mean + 0.3 * x.mean((0, 2, 3))
        )
        torch.testing.assert_close(renorm.running_var, 0.7 * running_var + 0.3 * batch_var)
        at_limit = (r - r_max).abs() < 1e-12
        clipped += int(at_limit.sum())
        unclipped += int((~at_limit).sum())
    assert clipped and unclipped  # both branches of the clip were exercised
    renorm.eval()
    x = torch.randn(2, 3, 3, 3, dtype=torch.float64)
    shape = (1, -1, 1, 1)
    expected = (x - renorm.running_mean.reshape(shape)) / (
        renorm.running_var.reshape(shape) + EPS
    ).sqrt() * renorm.weight.reshape(shape) + renorm.bias.reshape(shape)
    torch.testing.assert_close(renorm(x), expected)


@pytest.mark.parametrize(
    "shape, raises",
    [((1, 4), True), ((1, 4, 1, 1), True), ((1, 4, 1, 1, 1), True), ((2, 4, 1, 1), False)],
)
def test_one_value_per_channel_raises_like_torch_in_training_only(shape, raises):
    renorm = BatchRenorm(4, len(shape) - 2)
    x = torch.randn(shape)
    if raises:
        with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
            renorm(x)
    else:
        renorm(x)
    renorm.eval()
    renorm(x)


def test_wrong_rank_is_a_clear_error():
    with pytest.raises(ValueError, match="expected a 4D input, got shape"):
        BatchRenorm(4, 2)(torch.randn(2, 4, 3))


@pytest.mark.parametrize("shape", [(4, 2, 3), (3, 2, 2, 2), (2, 2, 2, 1, 2)])
def test_gradcheck_with_the_corrections_at_their_limits(shape):
    # r and d are constants by design, so finite differences see their dependence on x unless
    # they are clipped: running statistics far from the batch ones keep them at the limits.
    torch.manual_seed(4)
    channels = shape[1]
    renorm = affine(
        BatchRenorm(channels, len(shape) - 2, schedule="fixed", r_max=1.5, d_max=0.5), 2
    )
    renorm = renorm.double()
    renorm.set_progress(1.0)
    with torch.no_grad():
        renorm.running_mean.fill_(-5.0)
        renorm.running_var.fill_(0.01)
    buffers = {name: b.clone() for name, b in renorm.named_buffers()}
    x = torch.randn(shape, dtype=torch.float64)
    running = buffers["running_mean"], buffers["running_var"]
    _, r, d = by_hand(x, *running, renorm.weight, renorm.bias, 1.5, 0.5)
    assert torch.all(r == 1.5) and torch.all(d == 0.5)

    def fresh_call(x, weight, bias):  # each call sees the same running statistics
        state = {name: b.clone() for name, b in buffers.items()}
        state.update(weight=weight, bias=bias)
        return torch.func.functional_call(renorm, state, (x,))

    inputs = (x, renorm.weight.detach(), renorm.bias.detach())
    assert torch.autograd.gradcheck(fresh_call, tuple(t.clone().requires_grad_() for t in inputs))


def test_outside_training_steps_train_mode_is_plain_batch_statistics():
    torch.manual_seed(5)
    renorm = BatchRenorm(3, 2, schedule="fixed", r_max=3.0, d_max=5.0).double()
    with torch.no_grad():  # running statistics far from the batch's: the correction would show
        renorm.running_mean.fill_(2.0)
        renorm.running_var.fill_(4.0)
    bn = torch.nn.BatchNorm2d(3).double()
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(renorm(x), bn(x))  # progress None: r = 1, d = 0
    renorm.set_progress(0.5)
    assert not torch.allclose(renorm(x), bn(x))


def test_ghost_batches_see_the_running_statistics_from_before_the_forward_and_update_once():
    torch.manual_seed(5)
    layer = affine(BatchRenorm(3, 2, schedule="fixed", r_max=1.5, d_max=0.5).double(), 3)
    with torch.no_grad():  # running statistics far from the batches': r and d are clipped
        layer.running_mean.copy_(torch.tensor([1.0, -2.0, 0.0]))
        layer.running_var.copy_(torch.tensor([4.0, 0.2, 1.0]))
    layer.set_progress(1.0)
    running_mean, running_var = layer.running_mean.clone(), layer.running_var.clone()
    x = torch.randn(8, 3, 2, 2, dtype=torch.float64) * 2 + 0.5
    layer.norm_batch_size = 2
    out = layer(x)
    expected = torch.cat(
        [
            by_hand(part, running_mean, running_var, layer.weight, layer.bias, 1.5, 0.5)[0]
            for part in x.split(2)
        ]
    )
    torch.testing.assert_close(out, expected)
    axes = (0, 2, 3)
    torch.testing.assert_close(layer.running_mean, 0.9 * running_mean + 0.1 * x.mean(axes))
    torch.testing.assert_close(layer.running_var, 0.9 * running_var + 0.1 * x.var(axes))
    assert layer.num_batches_tracked == 1
