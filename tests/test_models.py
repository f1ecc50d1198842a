import pytest
import torch

from bnstudy.config import ModelConfig
from bnstudy.models import InputShape
from bnstudy.run import make_model


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("norm", ["batch", "group", "instance", "layer", "none"])
def test_cnn_builds_in_2d_and_3d_and_gives_logits(dims, norm):
    model = make_model(
        ModelConfig(widths=[4, 8], norm=norm, norm_groups=2),
        InputShape(channels=2, spatial_dims=dims, size=8),
        num_classes=5,
    )
    assert model(torch.randn(3, 2, *[8] * dims)).shape == (3, 5)


def test_cnn_puts_one_norm_per_block_of_the_configured_width():
    model = make_model(ModelConfig(widths=[4, 8, 16]), InputShape(3, 2, 16), num_classes=10)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert [m.num_features for m in norms] == [4, 8, 16]
