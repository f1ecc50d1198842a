"""Tests for bnstudy.external: torchvision and user models with the study's norm."""

import textwrap

import pytest
import torch
from torch import nn

from bnstudy.config import ModelConfig
from bnstudy.external import (
    FOREIGN_NORMS,
    norm_inputs,
    replace_convs,
    replace_norms,
    source_fingerprint,
)
from bnstudy.models import InputShape
from bnstudy.norms import create_norm, module_spec
from bnstudy.norms.registry import GroupOptions
from bnstudy.norms.weight_standardization import WSConv2d
from bnstudy.preflight import make_model

IMAGES = InputShape(3, 2, 16)


def _model(name, shape=IMAGES, num_classes=5, **fields):
    return make_model(ModelConfig.model_validate({"name": name, **fields}), shape, num_classes)


def _norms(model):
    return [m for m in model.modules() if module_spec(m) is not None]


def _group_norm(channels, dims):
    return create_norm("group", channels, dims, GroupOptions(groups=2))


@pytest.mark.parametrize("norm", ["batch", "group", "instance", "batch_renorm"])
def test_a_torchvision_resnet_gets_the_norm_through_norm_layer(norm):
    model = _model("torchvision:resnet18", norm=norm, group={"groups": 8})
    norms = [m for m in model.modules() if module_spec(m) is not None]
    assert len(norms) == 20  # every BatchNorm2d of torchvision's resnet18
    assert {module_spec(m).name for m in norms} <= {norm, "layer"}
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 5)  # 2×2 maps at the end


@pytest.mark.parametrize("norm", ["frn", "evonorm_b0", "evonorm_s0"])
def test_a_norm_that_fuses_its_activation_is_for_built_in_models_only(norm):
    """Passed as norm_layer, FRN would lose its TLU and EvoNorm all normalization (it
    normalizes as the activation): the results would be labelled with a norm never trained."""
    with pytest.raises(ValueError, match=f"{norm} normalizes as its activation"):
        ModelConfig(name="torchvision:resnet18", norm=norm)


def test_batch_norm_in_a_torchvision_model_takes_ghost_batches():
    model = _model("torchvision:resnet18")
    assert all(hasattr(m, "norm_batch_size") for m in _norms(model))


def test_the_first_convolution_is_adapted_to_the_datas_channels():
    model = _model("torchvision:resnet18", shape=InputShape(1, 2, 16))
    assert model.conv1.in_channels == 1 and model(torch.randn(2, 1, 16, 16)).shape == (2, 5)


def test_a_torchvision_model_without_norm_layer_asks_for_replace_norms():
    with pytest.raises(ValueError, match="takes no norm_layer: set model.replace_norms: true"):
        _model("torchvision:shufflenet_v2_x0_5")
    model = _model("torchvision:shufflenet_v2_x0_5", norm="group", replace_norms=True)
    assert _norms(model) and not any(
        isinstance(m, nn.BatchNorm2d) for m in model.modules() if module_spec(m) is None
    )
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 5)


def test_a_video_model_takes_volumes_and_refuses_images():
    with pytest.raises(ValueError, match="takes 3D inputs; the data is 2D"):
        _model("torchvision:r3d_18", replace_norms=True)


def test_unknown_torchvision_and_user_models_are_config_errors():
    for name, message in [
        ("torchvision:resnet1", "no classification or video model 'resnet1'"),
        ("no_such_module:build", "cannot import module 'no_such_module'"),
        ("examples.custom_model:nope", "has no callable 'nope'"),
        (":build", "<module.path>:<factory>"),
    ]:
        with pytest.raises(ValueError, match=message):
            ModelConfig(name=name)


def test_replace_norms_is_only_for_external_models_and_widths_only_for_built_in():
    with pytest.raises(ValueError, match="built-in models take the norm directly"):
        ModelConfig(name="cnn", replace_norms=True)
    assert ModelConfig(name="torchvision:resnet18", widths=[4]).widths is None


def _replace(model, sample):
    replace_norms(model, _group_norm, norm_inputs(model, sample), set())


def test_replace_norms_swaps_every_torch_norm_for_one_of_the_same_channels():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        nn.Sequential(nn.Conv2d(4, 6, 3), nn.GroupNorm(3, 6), nn.InstanceNorm2d(6)),
        nn.LayerNorm([6, 4, 4]),
    )
    _replace(model, torch.randn(2, 3, 8, 8))
    swapped = [model[1], model[2][1], model[2][2], model[3]]
    assert [m.num_channels for m in swapped] == [4, 6, 6, 6]
    assert all(isinstance(m, nn.GroupNorm) and m.num_groups == 2 for m in swapped)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 6, 4, 4)


def test_replace_norms_reads_each_norms_rank_from_its_input():
    """A BatchNorm1d over (N, C, L) is a 1D norm; over (N, C) it normalizes features, which no
    channels-first norm of the registry fits: refused by name, as is a LayerNorm over tokens."""
    model = nn.Sequential(nn.Conv1d(3, 4, 3), nn.BatchNorm1d(4))
    _replace(model, torch.randn(2, 3, 8))
    assert isinstance(model[1], nn.GroupNorm) and model(torch.randn(2, 3, 8)).shape == (2, 4, 6)
    features = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(12))
    with pytest.raises(ValueError, match=r"^1: normalizes \(2, 12\) features"):
        _replace(features, torch.randn(2, 3, 4))
    tokens = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.LayerNorm(4)))
    with pytest.raises(ValueError, match=r"^1\.0: LayerNorm over \(4,\) of \(2, 3, 4\) inputs"):
        _replace(tokens, torch.randn(2, 3, 4))


def test_a_model_that_ignores_norm_layer_is_refused(tmp_path, monkeypatch):
    (tmp_path / "own_norms.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            def build(*, in_channels, num_classes, norm_layer, spatial_dims):
                return nn.Sequential(nn.Conv2d(in_channels, 4, 3), nn.BatchNorm2d(4),
                                     nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                     nn.Linear(4, num_classes))
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"did not build with norm_layer: 1 \(BatchNorm2d\)"):
        _model("own_norms:build", norm="group", group={"groups": 2})
    model = _model("own_norms:build", norm="group", group={"groups": 2}, replace_norms=True)
    assert not any(isinstance(m, FOREIGN_NORMS) and module_spec(m) is None for m in model.modules())


@pytest.mark.parametrize("replace", [False, True])
@pytest.mark.parametrize("dims", [2, 3])
def test_the_example_factory_builds_with_the_norm_in_2d_and_3d(replace, dims):
    shape = InputShape(2, dims, 8)
    model = _model(
        "examples.custom_model:build",
        shape,
        norm="group",
        group={"groups": 4},
        replace_norms=replace,
    )
    assert [module_spec(m).name for m in _norms(model)] == ["group"] * 3
    assert model(torch.randn(2, 2, *[8] * dims)).shape == (2, 5)


def test_group_ws_standardizes_every_convolution_of_an_external_model_keeping_weights():
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False)
    model = nn.Sequential(conv)
    replace_convs(model, {2: WSConv2d})
    assert type(model[0]) is WSConv2d and model[0].stride == (2, 2) and model[0].bias is None
    torch.testing.assert_close(model[0].weight, conv.weight)
    resnet = _model("torchvision:resnet18", norm="group_ws")
    assert all(type(m) is WSConv2d for m in resnet.modules() if isinstance(m, nn.Conv2d))


def test_a_user_models_identity_follows_its_source_file(tmp_path, monkeypatch):
    path = tmp_path / "mine.py"
    path.write_text("def build(**kwargs):\n    pass\n")
    monkeypatch.chdir(tmp_path)
    before = source_fingerprint("mine:build")
    assert source_fingerprint("torchvision:resnet18") is None and source_fingerprint("cnn") is None
    import importlib
    import sys

    path.write_text("def build(**kwargs):\n    return None\n")
    importlib.reload(sys.modules["mine"])
    assert source_fingerprint("mine:build") != before
