"""PreciseBN: recomputed statistics are the true average of per-batch statistics."""

import torch
from torch import nn

from bnstudy.norms.batch import ManualBatchNorm
from bnstudy.precise import recompute_bn_statistics
from bnstudy.train import preserved_buffers


def fixed_network(bn: nn.Module) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), bn).double()


def batches(count=6, size=4):
    generator = torch.Generator().manual_seed(1)
    return [
        torch.randn(size, 2, 5, 5, generator=generator, dtype=torch.float64) * 2 + 1
        for _ in range(count)
    ]


def test_precise_statistics_are_the_average_of_per_batch_mean_and_unbiased_variance():
    for bn in (nn.BatchNorm2d(3), ManualBatchNorm(3, 2)):
        model = fixed_network(bn)
        data = batches()
        with torch.no_grad():
            features = [model[0](x) for x in data]
        assert recompute_bn_statistics(model, data) == len(data)
        means = torch.stack([f.mean(dim=(0, 2, 3)) for f in features])
        variances = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in features])
        torch.testing.assert_close(bn.running_mean, means.mean(0))
        torch.testing.assert_close(bn.running_var, variances.mean(0))
        # equal batches: the average of batch means is the population mean exactly
        torch.testing.assert_close(bn.running_mean, torch.cat(features).mean(dim=(0, 2, 3)))
        assert bn.momentum == 0.1  # the module's own momentum is put back


def test_one_batch_of_everything_gives_the_population_variance():
    bn = nn.BatchNorm2d(3)
    model = fixed_network(bn)
    data = torch.cat(batches())
    recompute_bn_statistics(model, [data])
    with torch.no_grad():
        features = model[0](data)
    torch.testing.assert_close(bn.running_var, features.var(dim=(0, 2, 3), unbiased=True))


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
