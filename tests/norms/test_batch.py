"""ManualBatchNorm against torch.nn.BatchNorm*d (float64) and the seeds' worked examples."""

import copy

import pytest
import torch

from bnstudy.norms import create_norm
from bnstudy.norms.batch import BatchOptions, ManualBatchNorm

TORCH_BN = {
    0: torch.nn.BatchNorm1d,
    1: torch.nn.BatchNorm1d,
    2: torch.nn.BatchNorm2d,
    3: torch.nn.BatchNorm3d,
}
SHAPES = [(5, 3), (4, 3, 7), (3, 2, 5, 4), (2, 2, 3, 4, 5), (1, 3, 2, 2), (2, 4, 1, 1)]


def pair(shape, **kwargs):
    dims = len(shape) - 2
    reference = TORCH_BN[dims](shape[1], **kwargs).double()
    manual = ManualBatchNorm(shape[1], dims, **kwargs).double()
    with torch.no_grad():  # non-trivial affine parameters, the same in both
        for module in (reference, manual):
            module.weight.copy_(torch.linspace(0.5, 2.0, shape[1]))
            module.bias.copy_(torch.linspace(-1.0, 1.0, shape[1]))
    return reference, manual


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
def test_matches_torch_in_train_outputs_gradients_running_stats_and_eval(shape, momentum):
    torch.manual_seed(0)
    reference, manual = pair(shape, momentum=momentum, eps=1e-5)
    for step in range(3):
        x = (torch.randn(shape, dtype=torch.float64) * (step + 1) + step).requires_grad_()
        x_manual = x.detach().clone().requires_grad_()
        upstream = torch.randn(shape, dtype=torch.float64)
        expected, got = reference(x), manual(x_manual)
        torch.testing.assert_close(got, expected)
        expected.backward(upstream)
        got.backward(upstream)
        torch.testing.assert_close(x_manual.grad, x.grad)
        torch.testing.assert_close(manual.weight.grad, reference.weight.grad)
        torch.testing.assert_close(manual.bias.grad, reference.bias.grad)
        torch.testing.assert_close(manual.running_mean, reference.running_mean)
        torch.testing.assert_close(manual.running_var, reference.running_var)
    assert manual.num_batches_tracked == reference.num_batches_tracked == 3
    reference.eval(), manual.eval()
    x = torch.randn(shape, dtype=torch.float64)
    torch.testing.assert_close(manual(x), reference(x))


@pytest.mark.parametrize(
    "shape, raises",
    [
        ((1, 4), True),
        ((1, 4, 1, 1), True),
        ((1, 4, 1, 1, 1), True),
        ((1, 4, 1), True),
        ((2, 4, 1, 1), False),
        ((1, 4, 2, 1), False),
        ((1, 1, 1, 2), False),
    ],
)
def test_raises_exactly_when_torch_does(shape, raises):
    reference, manual = pair(shape)
    x = torch.randn(shape, dtype=torch.float64)
    for module in (reference, manual):
        if raises:
            with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
                module(x)
        else:
            module(x)
        module.eval()
        module(x)  # eval mode uses running statistics and never raises


def test_one_value_per_channel_without_the_guard_outputs_exactly_beta_for_any_input():
    manual = ManualBatchNorm(3, 2, single_value="beta").double()
    with torch.no_grad():
        manual.bias.copy_(torch.tensor([0.0, 0.5, -2.0]))
    first = manual(torch.randn(1, 3, 1, 1, dtype=torch.float64) * 100)
    second = manual(torch.randn(1, 3, 1, 1, dtype=torch.float64))
    assert torch.equal(first, second)
    assert torch.equal(first.flatten(), manual.bias.detach())
    # the unbiased running-variance update is 0 * inf: NaN, as pytorch/pytorch#1381 describes
    assert torch.isnan(manual.running_var).all()
    assert not torch.equal(
        manual(torch.randn(2, 3, 1, 1, dtype=torch.float64)),
        manual(torch.randn(2, 3, 1, 1, dtype=torch.float64)),
    )


def test_one_value_gives_no_gradient_to_the_input_or_gamma():
    manual = ManualBatchNorm(3, 2, single_value="beta").double()
    x = torch.randn(1, 3, 1, 1, dtype=torch.float64, requires_grad=True)
    manual(x).sum().backward()
    assert torch.count_nonzero(x.grad) == 0 and torch.count_nonzero(manual.weight.grad) == 0
    assert torch.equal(manual.bias.grad, torch.ones(3, dtype=torch.float64))


def test_per_activation_statistics_zero_everything_at_batch_size_one_whatever_the_size():
    manual = ManualBatchNorm(2, 2, stats="activation", single_value="beta").double()
    out = manual(torch.randn(1, 2, 8, 8, dtype=torch.float64))
    assert torch.count_nonzero(out) == 0
    assert manual.running_mean.shape == (2, 8, 8)
    channel = ManualBatchNorm(2, 2, single_value="beta").double()
    assert torch.count_nonzero(channel(torch.randn(1, 2, 8, 8, dtype=torch.float64))) > 0


def test_trained_per_activation_statistics_load_into_a_fresh_layer():
    trained = ManualBatchNorm(2, 2, stats="activation").double()
    trained(torch.randn(4, 2, 3, 3, dtype=torch.float64))  # statistics become (2, 3, 3)
    fresh = ManualBatchNorm(2, 2, stats="activation").double()
    fresh.load_state_dict(trained.state_dict())
    x = torch.randn(5, 2, 3, 3, dtype=torch.float64)
    assert torch.equal(fresh.eval()(x), trained.eval()(x))


def test_per_activation_statistics_normalize_each_position_over_the_batch():
    manual = ManualBatchNorm(2, 1, stats="activation", eps=0.0).double()
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    expected = (x - x.mean(0)) / x.var(0, unbiased=False).sqrt()
    torch.testing.assert_close(manual(x), expected)


def test_biased_running_variance_stores_the_batch_variance():
    manual = ManualBatchNorm(1, 0, momentum=1.0, unbiased_running_var=False).double()
    x = torch.tensor([[1.0], [2.0], [6.0]], dtype=torch.float64)
    manual(x)
    assert manual.running_var.item() == pytest.approx(x.var(unbiased=False).item())
    unbiased = ManualBatchNorm(1, 0, momentum=1.0).double()
    unbiased(x)
    assert unbiased.running_var.item() == pytest.approx(x.var(unbiased=True).item())


def test_keras_preset_uses_keras_defaults():
    layer = create_norm("batch_keras", 4, 2)
    assert (layer.eps, layer.momentum, layer.unbiased_running_var, layer.single_value) == (
        1e-3,
        0.01,
        False,
        "beta",
    )
    layer.double()(torch.ones(1, 4, 1, 1, dtype=torch.float64) * 5)
    # Keras momentum 0.99: 1% of the way from 0 toward the batch mean 5
    torch.testing.assert_close(layer.running_mean, torch.full((4,), 0.05, dtype=torch.float64))


# Worked examples from ../shared/seeds/003 (BatchNorm1d on (3, 4) and (3, 2, 2) inputs,
# BatchNorm2d on (3, 3, 2, 2)), affine=False, outputs printed to 4 decimals.
EXAMPLE_1D = (
    [[1, 3, 2, 4], [2, 2, 1, 1], [6, 2, 4, 1]],
    [
        [-0.9258, 1.4142, -0.2673, 1.4142],
        [-0.4629, -0.7071, -1.0690, -0.7071],
        [1.3887, -0.7071, 1.3363, -0.7071],
    ],
)
EXAMPLE_1D_SEQUENCE = (
    [[[1, 3], [2, 4]], [[2, 2], [1, 1]], [[6, 2], [4, 1]]],
    [
        [[-1.0426, 0.2085], [-0.1240, 1.3644]],
        [[-0.4170, -0.4170], [-0.8682, -0.8682]],
        [[2.0851, -0.4170], [1.3644, -0.8682]],
    ],
)
EXAMPLE_2D = (
    [
        [[[3, 4], [1, 2]], [[3, 3], [1, 2]], [[4, 1], [4, 1]]],
        [[[2, 2], [1, 4]], [[3, 3], [1, 4]], [[2, 1], [2, 3]]],
        [[[4, 2], [4, 1]], [[1, 1], [2, 1]], [[3, 2], [2, 4]]],
    ],
    {
        (0, 0): [[0.4201, 1.2603], [-1.2603, -0.4201]],
        (0, 1): [[0.8835, 0.8835], [-1.0442, -0.0803]],
        (0, 2): [[1.4201, -1.2706], [1.4201, -1.2706]],
        (2, 0): [[1.2603, -0.4201], [1.2603, -1.2603]],
        (2, 1): [[-1.0442, -1.0442], [-0.0803, -1.0442]],
        (2, 2): [[0.5232, -0.3737], [-0.3737, 1.4201]],
    },
)


@pytest.mark.parametrize("example", [EXAMPLE_1D, EXAMPLE_1D_SEQUENCE])
def test_seed_worked_examples_1d(example):
    data, expected = (torch.tensor(v, dtype=torch.float64) for v in example)
    manual = ManualBatchNorm(data.shape[1], data.dim() - 2).double()
    torch.testing.assert_close(manual(data), expected, atol=1e-4, rtol=0)


def test_seed_worked_example_2d():
    data = torch.tensor(EXAMPLE_2D[0], dtype=torch.float64)
    out = ManualBatchNorm(3, 2).double()(data)
    for (sample, channel), values in EXAMPLE_2D[1].items():
        # the page prints numpy's eps-free values; eps=1e-5 moves them by < 1e-4
        torch.testing.assert_close(
            out[sample, channel], torch.tensor(values, dtype=torch.float64), atol=1e-4, rtol=0
        )


# ghost batches: one update of the running statistics per forward, from all the sub-batches

GHOST_LAYERS = {
    "torch": lambda momentum: create_norm("batch", 3, 2, BatchOptions(momentum=momentum)),
    "manual_unbiased": lambda momentum: ManualBatchNorm(3, 2, momentum=momentum),
    "manual_biased": lambda momentum: ManualBatchNorm(
        3, 2, momentum=momentum, unbiased_running_var=False
    ),
}


def one_update_from_the_pooled_values(
    x, parts, running_mean, running_var, tracked, momentum, unbiased
):
    """The reference, written out: pool the sub-batches' values, one momentum step."""
    values = torch.cat([part.transpose(0, 1).reshape(x.shape[1], -1) for part in parts], dim=1)
    count = values.shape[1]
    mean = values.sum(1) / count
    var = ((values - mean[:, None]) ** 2).sum(1) / (count - 1 if unbiased else count)
    tracked += 1
    weight = 1 / tracked if momentum is None else momentum
    return (1 - weight) * running_mean + weight * mean, (1 - weight) * running_var + weight * var


@pytest.mark.parametrize("kind", GHOST_LAYERS)
@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("shape, size", [((8, 3, 4, 4), 2), ((8, 3, 1, 1), 2), ((6, 3, 2, 3), 4)])
def test_ghost_batches_update_the_running_statistics_once_from_all_sub_batches(
    kind, momentum, shape, size
):
    torch.manual_seed(0)
    layer = GHOST_LAYERS[kind](momentum).double().train()
    with torch.no_grad():  # running statistics and a count that are not the defaults
        layer.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        layer.running_var.copy_(torch.tensor([2.0, 0.5, 3.0]))
        layer.num_batches_tracked.fill_(3)
    before = copy.deepcopy(layer)
    x = torch.randn(shape, dtype=torch.float64) * torch.tensor([1.0, 3.0, 0.5]).reshape(1, 3, 1, 1)
    x = x + torch.randn(shape[0], 1, 1, 1, dtype=torch.float64) * 2  # per-sample offsets
    layer.norm_batch_size = size
    out = layer(x)
    parts = list(x.split(size))
    # outputs: each sub-batch normalized alone, as one call of the layer before this forward
    expected = torch.cat([copy.deepcopy(before)(part) for part in parts])
    torch.testing.assert_close(out, expected)
    unbiased = kind != "manual_biased"
    mean, var = one_update_from_the_pooled_values(
        x, parts, before.running_mean, before.running_var, 3, momentum, unbiased
    )
    torch.testing.assert_close(layer.running_mean, mean, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(layer.running_var, var, atol=1e-12, rtol=1e-12)
    assert layer.num_batches_tracked == 4  # one step, not one per sub-batch


def test_ghost_batches_with_per_activation_statistics_pool_over_the_samples():
    layer = ManualBatchNorm(2, 2, stats="activation", momentum=None).double()
    x = torch.randn(6, 2, 3, 3, dtype=torch.float64)
    layer.norm_batch_size = 2
    layer(x)
    assert layer.running_mean.shape == (2, 3, 3) and layer.num_batches_tracked == 1
    torch.testing.assert_close(layer.running_mean, x.mean(0))
    torch.testing.assert_close(layer.running_var, x.var(0))


def test_a_sub_batch_that_raises_leaves_the_running_statistics_as_they_were():
    layer = create_norm("batch", 3, 2).double()
    layer.norm_batch_size = 2
    layer(torch.randn(4, 3, 1, 1, dtype=torch.float64))
    state = copy.deepcopy(layer.state_dict())
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        layer(torch.randn(3, 3, 1, 1, dtype=torch.float64))  # the last sub-batch: 1 value
    for key, value in layer.state_dict().items():
        torch.testing.assert_close(value, state[key], msg=key)


def test_without_a_split_the_layer_is_torchs_exactly():
    torch.manual_seed(1)
    ghost = create_norm("batch", 3, 2).double()
    plain = torch.nn.BatchNorm2d(3).double()
    for size in (None, 8, 16):
        ghost.norm_batch_size = size
        x = torch.randn(8, 3, 2, 2, dtype=torch.float64)
        assert torch.equal(ghost(x), plain(x))
        assert torch.equal(ghost.running_mean, plain.running_mean)
        assert torch.equal(ghost.running_var, plain.running_var)
    assert ghost.num_batches_tracked == plain.num_batches_tracked == 3


@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5), (4, 3, 2, 3), (2, 3, 2, 2, 2)])
def test_running_statistics_come_from_the_mean_and_biased_variance_of_the_values(shape):
    from bnstudy.norms.batch import mean_and_variance

    x = torch.randn(shape, dtype=torch.float64) * 3 + 1
    x[:, 1] = 2.0  # a channel whose values are all equal: variance exactly 0
    axes = (0, *range(2, x.dim()))
    mean, var = mean_and_variance(x, axes)
    torch.testing.assert_close(mean, x.mean(dim=axes), rtol=1e-12, atol=0)
    torch.testing.assert_close(var, x.var(dim=axes, unbiased=False), rtol=1e-12, atol=1e-15)
    assert var[1] == 0
