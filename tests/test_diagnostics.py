import math

import pytest
import torch
from torch import nn

from bnstudy.config import ModelConfig
from bnstudy.diagnostics import (
    batch_statistic_noise,
    layer_reports,
    output_probe,
    values_per_statistic,
    verdict,
)
from bnstudy.models import InputShape
from bnstudy.norms import NORMS, create_norm
from bnstudy.norms.batch import ManualBatchOptions
from bnstudy.preflight import make_model


@pytest.mark.parametrize(
    "name, dims, shape, expected",
    [
        ("batch", 2, (4, 8, 5, 3), 4 * 5 * 3),
        ("batch", 3, (1, 8, 32, 32, 32), 32**3),
        ("batch", 2, (1, 8, 1, 1), 1),
        ("group", 2, (4, 8, 5, 3), 2 * 5 * 3),
        ("instance", 2, (4, 8, 5, 3), 5 * 3),
        ("layer", 2, (4, 8, 5, 3), 8 * 5 * 3),
        ("batch_manual", 2, (4, 8, 5, 3), 4 * 5 * 3),
        ("frn", 0, (4, 8), 1),  # no spatial axis: one value, degenerate
        ("frozen_bn", 2, (4, 8, 5, 3), None),  # fixed statistics: none computed
    ],
)
def test_values_per_statistic(name, dims, shape, expected):
    options = NORMS[name].options
    layer = create_norm(name, shape[1], dims, options(groups=4) if name == "group" else None)
    assert values_per_statistic(layer, shape) == expected


def test_per_activation_statistics_average_over_the_batch_only():
    layer = create_norm("batch_manual", 8, 2, ManualBatchOptions(stats="activation"))
    assert values_per_statistic(layer, (4, 8, 5, 3)) == 4


def test_verdicts():
    bn = nn.BatchNorm2d(4)
    assert verdict(1, bn).startswith("degenerate") and "PyTorch raises" in verdict(1, bn)
    assert verdict(15, bn, images=8).startswith("noisy")
    assert verdict(16, bn, images=8).startswith("fine: from 8 images")
    # many values of one image: per-image statistics, however large the map
    assert verdict(4096, bn, images=1).startswith("per-sample")
    assert "eval mode collapses" in verdict(4096, bn, images=1)
    # what the shipped Fashion-MNIST study measured: short at 2 images, within a point at 4
    assert verdict(4096, bn, images=2).startswith("few images (2): eval mode a point or two")
    assert verdict(4096, bn, images=4).startswith("small (4 images)")
    assert "test in eval mode" in verdict(4096, bn, images=4)
    assert "same in train and eval" in verdict(4096, nn.GroupNorm(2, 4))
    assert verdict(None, create_norm("frozen_stats", 4, 2)).startswith("fixed: no statistic")


def zeros_net(norm, **knobs):
    torch.manual_seed(0)
    config = ModelConfig(name="zeros_net", widths=[4, 8], norm=norm, **{norm: knobs})
    return make_model(config, InputShape(3, 2, 32), num_classes=5)


def test_layer_reports_find_the_one_value_layer_of_zeros_net_even_where_torch_raises():
    reports = layer_reports(zeros_net("batch"), torch.randn(1, 3, 32, 32))
    assert [(r.input_shape, r.values) for r in reports] == [
        ((1, 4, 14, 14), 196),
        ((1, 8, 5, 5), 25),
        ((1, 5, 1, 1), 1),
    ]
    assert reports[-1].axes == "N,H,W" and reports[-1].verdict.startswith("degenerate")


def test_zeros_net_gives_exactly_beta_at_batch_size_one_without_the_guard():
    model = zeros_net("batch_manual", single_value="beta")
    one = output_probe(model, torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32))
    two = output_probe(model, torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32))
    assert one == {
        "output_std": 0.0,
        "zero_fraction": 1.0,
        "beta_fraction": 1.0,
        "output_change": 0.0,
    }
    assert two["zero_fraction"] == 0.0 and two["output_change"] > 0 and two["output_std"] > 0.5


def test_keras_preset_reproduces_the_tensorflow_zeros():
    probe = output_probe(
        zeros_net("batch_keras"), torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32)
    )
    assert probe["zero_fraction"] == 1.0


def test_torch_batchnorm_at_one_value_gives_no_probe_numbers():
    probe = output_probe(zeros_net("batch"), torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32))
    assert all(math.isnan(v) for v in probe.values())


def test_per_activation_statistics_zero_a_large_map_at_batch_size_one():
    torch.manual_seed(0)
    config = ModelConfig(
        widths=[4],
        norm="batch_manual",
        batch_manual={"stats": "activation", "single_value": "beta"},
    )
    model = nn.Sequential(*list(make_model(config, InputShape(3, 2, 8), 2).features)[:2])
    probe = output_probe(model, torch.randn(1, 3, 8, 8), torch.randn(1, 3, 8, 8))
    assert probe["zero_fraction"] == 1.0


@pytest.mark.parametrize("n, length", [(1, 16), (4, 4), (16, 1)])
def test_batch_mean_noise_is_one_over_sqrt_of_the_values_per_channel(n, length):
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randn(n, 3, length, generator=generator) * 2 + 3 for _ in range(2000)]
    noise = batch_statistic_noise(nn.Sequential(nn.BatchNorm1d(3)), batches)["0"]
    assert noise["mean_noise"] == pytest.approx(1 / math.sqrt(16), rel=0.1)
    # var of a chi-square sample variance: sqrt(2 (m-1)) / m relative to the population variance
    assert noise["var_noise"] == pytest.approx(math.sqrt(2 * 15) / 16, rel=0.1)
    assert 0 < noise["min_var"] < 4


def test_batch_statistic_noise_shrinks_as_the_batch_grows():
    torch.manual_seed(0)
    model = make_model(ModelConfig(widths=[4, 8]), InputShape(3, 2, 8), 3)
    data = torch.randn(256, 3, 8, 8) * 2 + 1
    small = batch_statistic_noise(model, list(data.split(2)))
    large = batch_statistic_noise(model, list(data.split(32)))
    for name in small:
        assert small[name]["mean_noise"] > 2 * large[name]["mean_noise"]


def test_a_channel_constant_over_the_population_does_not_poison_the_noise():
    batches = [torch.stack([torch.randn(4, 8), torch.zeros(4, 8)], dim=1) for _ in range(50)]
    noise = batch_statistic_noise(nn.Sequential(nn.BatchNorm1d(2)), batches)["0"]
    assert math.isfinite(noise["mean_noise"]) and noise["min_var"] == 0.0


def test_per_activation_layers_are_all_reported_before_training():
    model = zeros_net("batch_manual", stats="activation", single_value="beta")
    reports = layer_reports(model, torch.randn(2, 3, 32, 32))
    assert [r.values for r in reports] == [2, 2, 2]


def test_verdict_says_what_each_layer_does_with_one_value():
    assert "PyTorch raises (in eval mode too" in verdict(1, nn.InstanceNorm2d(4))
    manual = create_norm("batch_manual", 4, 2, ManualBatchOptions(single_value="beta"))
    assert "gives β, as TF" in verdict(1, manual)
    assert "gives β" in verdict(1, nn.GroupNorm(2, 4))


def test_noise_of_correlated_pixels_follows_images_not_values():
    # every image is its own offset plus a little pixel noise: the pixels of one image are
    # correlated, so a batch mean over n images of 64 pixels varies like n values, not 64 n
    generator = torch.Generator().manual_seed(0)
    n = 4
    batches = [
        torch.randn(n, 2, 1, generator=generator) + 0.1 * torch.randn(n, 2, 64, generator=generator)
        for _ in range(1500)
    ]
    noise = batch_statistic_noise(nn.Sequential(nn.BatchNorm1d(2)), batches)["0"]
    assert noise["mean_noise"] == pytest.approx(noise["mean_noise_between_images"], rel=0.1)
    assert noise["mean_noise_between_images"] == pytest.approx(1 / math.sqrt(n), rel=0.1)
    assert noise["mean_noise_values_law"] == 1 / math.sqrt(n * 64)
    assert noise["mean_noise"] > 5 * noise["mean_noise_values_law"]


def test_running_out_of_memory_in_a_probe_is_not_swallowed():
    from bnstudy.diagnostics import forward_quietly

    def exhausted(x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(torch.OutOfMemoryError):
        forward_quietly(exhausted, torch.zeros(1))
    assert forward_quietly(torch.nn.BatchNorm1d(2).train(), torch.zeros(1, 2)) is None
