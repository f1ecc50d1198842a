"""PreciseBN/AdaBN: recomputed statistics are the population's (the values pooled) by default,
the average of per-batch statistics with ``variance="batch_average"``."""

import pytest
import torch
from torch import nn

from bnstudy.norms import create_norm
from bnstudy.norms.batch import ManualBatchNorm
from bnstudy.norms.evonorm import EvoNormB0
from bnstudy.norms.renorm import BatchRenorm
from bnstudy.precise import PopulationStatistics, recompute_bn_statistics
from bnstudy.train import preserved_buffers

EXACT = {"atol": 1e-10, "rtol": 1e-10}
# norm name (or a factory), spatial dims, whether running_var is unbiased
NORMS = [
    ("batch", 0, True),
    ("batch", 1, True),
    ("batch", 2, True),
    ("batch", 3, True),
    ("batch_manual", 2, True),
    ("batch_keras", 2, False),
    ("batch_keras", 3, False),
]


def fixed_network(bn: nn.Module) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), bn).double()


def batches(count=6, size=4, shape=(2, 5, 5)):
    generator = torch.Generator().manual_seed(1)
    return [
        # per-image offsets: the batch means vary, so the two estimators differ
        torch.randn(size, *shape, generator=generator, dtype=torch.float64) * 2
        + torch.randn(size, *(1,) * len(shape), generator=generator, dtype=torch.float64) * 3
        + 1
        for _ in range(count)
    ]


def identity_model(name: str, dims: int) -> nn.Sequential:
    """The norm alone (its input is the batch itself), float64, non-default running stats."""
    norm = create_norm(name, 3, dims).double()
    with torch.no_grad():
        norm.running_mean.fill_(5.0)
        norm.running_var.fill_(7.0)
    return nn.Sequential(norm)


@pytest.mark.parametrize("images", [1, 2, 8])
@pytest.mark.parametrize("name, dims, unbiased", NORMS)
def test_population_statistics_are_those_of_all_values_pooled(name, dims, unbiased, images):
    model = identity_model(name, dims)
    data = batches(count=5, size=images, shape=(3, *(3,) * dims))
    norm = model[0]
    if images == 1 and dims == 0 and name == "batch":  # one value per channel: torch raises
        with pytest.raises(ValueError, match="more than 1 value per channel"):
            recompute_bn_statistics(model, data)
        return
    assert recompute_bn_statistics(model, data) == len(data)
    pooled = torch.cat(data)
    axes = (0, *range(2, pooled.dim()))
    torch.testing.assert_close(norm.running_mean, pooled.mean(dim=axes), **EXACT)
    torch.testing.assert_close(norm.running_var, pooled.var(dim=axes, unbiased=unbiased), **EXACT)
    assert norm.num_batches_tracked == len(data)


@pytest.mark.parametrize("images", [1, 2, 8])
def test_population_statistics_behind_a_convolution(images):
    for bn, unbiased in ((nn.BatchNorm2d(3), True), (create_norm("batch_keras", 3, 2), False)):
        model = fixed_network(bn)
        data = batches(count=4, size=images)
        with torch.no_grad():
            features = torch.cat([model[0](x) for x in data])
        recompute_bn_statistics(model, data)
        torch.testing.assert_close(bn.running_mean, features.mean(dim=(0, 2, 3)), **EXACT)
        expected = features.var(dim=(0, 2, 3), unbiased=unbiased)
        torch.testing.assert_close(bn.running_var, expected, **EXACT)


def test_per_activation_statistics_pool_over_the_samples_only():
    model = nn.Sequential(ManualBatchNorm(3, 2, stats="activation").double())
    data = batches(count=3, size=2, shape=(3, 4, 4))
    recompute_bn_statistics(model, data)
    pooled = torch.cat(data)
    assert model[0].running_mean.shape == (3, 4, 4)
    torch.testing.assert_close(model[0].running_mean, pooled.mean(dim=0), **EXACT)
    torch.testing.assert_close(model[0].running_var, pooled.var(dim=0), **EXACT)


@pytest.mark.parametrize("layer", [BatchRenorm(3, 2), EvoNormB0(3, 2)])
def test_renorm_and_evonorm_b0_get_the_population_variance(layer):
    model = nn.Sequential(layer.double())
    data = batches(count=4, size=2, shape=(3, 3, 3))
    recompute_bn_statistics(model, data)
    pooled = torch.cat(data)
    torch.testing.assert_close(layer.running_var, pooled.var(dim=(0, 2, 3)), **EXACT)
    if hasattr(layer, "running_mean"):
        torch.testing.assert_close(layer.running_mean, pooled.mean(dim=(0, 2, 3)), **EXACT)


def test_batch_average_is_the_mean_of_per_batch_mean_and_stored_variance():
    for bn, unbiased in (
        (nn.BatchNorm2d(3), True),
        (ManualBatchNorm(3, 2), True),
        (create_norm("batch_keras", 3, 2), False),
    ):
        model = fixed_network(bn)
        data = batches()
        with torch.no_grad():
            features = [model[0](x) for x in data]
        assert recompute_bn_statistics(model, data, variance="batch_average") == len(data)
        means = torch.stack([f.mean(dim=(0, 2, 3)) for f in features])
        variances = torch.stack([f.var(dim=(0, 2, 3), unbiased=unbiased) for f in features])
        torch.testing.assert_close(bn.running_mean, means.mean(0), **EXACT)
        torch.testing.assert_close(bn.running_var, variances.mean(0), **EXACT)
        # it misses the variance of the batch means: below the population variance
        pooled = torch.cat(features).var(dim=(0, 2, 3), unbiased=unbiased)
        assert (bn.running_var < pooled).all()


def test_the_estimator_is_the_law_of_total_variance_with_unequal_batches():
    generator = torch.Generator().manual_seed(2)
    parts = [torch.randn(n, 4, generator=generator, dtype=torch.float64) + n for n in (1, 3, 7)]
    estimate = PopulationStatistics()
    for part in parts:
        estimate.add(part, (0,))
    counts = torch.tensor([len(p) for p in parts], dtype=torch.float64)[:, None]
    means = torch.stack([p.mean(0) for p in parts])
    variances = torch.stack([p.var(0, unbiased=False) for p in parts])
    mean = (counts * means).sum(0) / counts.sum()
    within = (counts * variances).sum(0) / counts.sum()  # E[var_b]
    between = (counts * (means - mean) ** 2).sum(0) / counts.sum()  # Var[mean_b]
    torch.testing.assert_close(estimate.mean, mean, **EXACT)
    torch.testing.assert_close(estimate.variance(unbiased=False), within + between, **EXACT)
    torch.testing.assert_close(estimate.variance(unbiased=True), torch.cat(parts).var(0), **EXACT)
    assert estimate.count == 11 and estimate.batches == 3


def test_the_ema_after_training_differs_and_preserved_buffers_restores_it():
    bn = nn.BatchNorm2d(3)
    model = fixed_network(bn)
    data = batches()
    with torch.no_grad():
        for x in data:
            model(x)
    ema = bn.running_mean.clone()
    with preserved_buffers(model):
        recompute_bn_statistics(model, data)
        precise = bn.running_mean.clone()
    assert not torch.allclose(ema, precise)  # the EMA (momentum 0.1) still remembers its init
    torch.testing.assert_close(bn.running_mean, ema)


def test_unknown_estimator_is_refused():
    with pytest.raises(ValueError, match="population, batch_average"):
        recompute_bn_statistics(fixed_network(nn.BatchNorm2d(3)), batches(), variance="median")
