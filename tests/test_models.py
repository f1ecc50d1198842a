import pytest
import torch

from bnstudy.config import ModelConfig
from bnstudy.models import InputShape
from bnstudy.norms import NORMS
from bnstudy.run import make_model


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("norm", list(NORMS))
def test_cnn_builds_in_1d_2d_3d_with_every_norm_and_gives_logits(dims, norm):
    options = {"groups": 2} if "groups" in NORMS[norm].options.model_fields else {}
    model = make_model(
        ModelConfig.model_validate({"widths": [4, 8], "norm": norm, norm: options}),
        InputShape(channels=2, spatial_dims=dims, size=8),
        num_classes=5,
    )
    assert model(torch.randn(3, 2, *[8] * dims)).shape == (3, 5)


def test_cnn_puts_one_norm_per_block_of_the_configured_width():
    model = make_model(ModelConfig(widths=[4, 8, 16]), InputShape(3, 2, 16), num_classes=10)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert [m.num_features for m in norms] == [4, 8, 16]


def test_group_ws_standardizes_every_convolution_and_nothing_else_does():
    ws = make_model(
        ModelConfig(widths=[4, 8], norm="group_ws", group_ws={"groups": 2}), InputShape(3, 2, 8), 10
    )
    plain = make_model(
        ModelConfig(widths=[4, 8], norm="group", group={"groups": 2}), InputShape(3, 2, 8), 10
    )
    convs = [type(m).__name__ for m in ws.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs == ["WSConv2d", "WSConv2d"]
    assert all(
        type(m) is torch.nn.Conv2d for m in plain.modules() if isinstance(m, torch.nn.Conv2d)
    )


def test_a_fused_norm_replaces_the_relu_of_each_block():
    model = make_model(ModelConfig(widths=[4, 8], norm="frn"), InputShape(3, 2, 8), 10)
    assert not any(isinstance(m, torch.nn.ReLU) for m in model.modules())
    batch = make_model(ModelConfig(widths=[4, 8]), InputShape(3, 2, 8), 10)
    assert sum(isinstance(m, torch.nn.ReLU) for m in batch.modules()) == 2
