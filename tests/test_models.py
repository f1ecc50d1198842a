import pytest
import torch

from bnstudy.config import ModelConfig
from bnstudy.models import InputShape
from bnstudy.norms import NORMS
from bnstudy.preflight import make_model


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


@pytest.mark.parametrize("norm", list(NORMS))
def test_resnet20_builds_with_every_norm_in_2d_and_3d(norm):
    options = {"groups": 2} if "groups" in NORMS[norm].options.model_fields else {}
    config = ModelConfig.model_validate(
        {"name": "resnet20", "widths": [4, 8, 16], "norm": norm, norm: options}
    )
    for dims in (2, 3):
        model = make_model(config, InputShape(channels=2, spatial_dims=dims, size=8), 5)
        assert model(torch.randn(3, 2, *[8] * dims)).shape == (3, 5)


def test_resnet20_has_the_papers_layers_and_parameter_count():
    model = make_model(ModelConfig(name="resnet20"), InputShape(3, 2, 32), num_classes=10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 19  # + the linear classifier: 20 weighted layers
    assert sum(p.numel() for p in model.parameters()) == 269_722  # the paper's 0.27M


def test_resnet8_is_resnet20_with_one_block_per_stage_in_2d_and_3d():
    for dims in (2, 3):
        model = make_model(ModelConfig(name="resnet8"), InputShape(1, dims, 16), num_classes=11)
        convs = [m for m in model.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
        assert len(convs) == 7 and all(c.weight.dim() == dims + 2 for c in convs)
        assert model(torch.randn(2, 1, *[16] * dims)).shape == (2, 11)


def test_option_a_shortcut_subsamples_and_pads_channels_with_zeros():
    model = make_model(ModelConfig(name="resnet20"), InputShape(3, 2, 32), num_classes=10)
    block = model.features[3 + 3]  # after conv, norm, ReLU and stage 1: 16 -> 32, stride 2
    x = torch.randn(2, 16, 8, 8)
    out = block.shortcut(x)
    assert out.shape == (2, 32, 4, 4)
    torch.testing.assert_close(out[:, 8:24], x[:, :, ::2, ::2])
    assert out[:, :8].abs().sum() == 0 and out[:, 24:].abs().sum() == 0


def test_a_fused_norm_before_the_residual_sum_comes_without_its_activation():
    model = make_model(ModelConfig(name="resnet20", norm="frn"), InputShape(3, 2, 32), 10)
    block = model.features[3]
    assert block.norm1[0].tau is not None and block.norm2[0].tau is None
