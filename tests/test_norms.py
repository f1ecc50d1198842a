import pytest
import torch

from bnstudy.norms import NORMS, NormOptions, create_norm


@pytest.mark.parametrize("name", sorted(NORMS))
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_every_norm_keeps_the_shape_in_1d_2d_3d(name, dims):
    x = torch.randn(3, 8, *[4] * dims)
    layer = create_norm(name, 8, dims, NormOptions(groups=4))
    assert layer(x).shape == x.shape


def test_batch_norm_uses_eps_and_momentum_in_torch_convention():
    layer = create_norm("batch", 6, 2, NormOptions(eps=1e-3, momentum=0.01))
    assert isinstance(layer, torch.nn.BatchNorm2d)
    assert (layer.eps, layer.momentum) == (1e-3, 0.01)


def test_instance_norm_is_affine_without_running_stats():
    layer = create_norm("instance", 6, 3, NormOptions())
    assert isinstance(layer, torch.nn.InstanceNorm3d)
    assert layer.affine and not layer.track_running_stats


def test_layer_norm_is_group_norm_with_one_group():
    layer = create_norm("layer", 6, 2, NormOptions(groups=3))
    assert isinstance(layer, torch.nn.GroupNorm) and layer.num_groups == 1


def test_group_norm_names_the_problem_when_groups_do_not_divide():
    with pytest.raises(ValueError, match="3 groups do not divide 8 channels"):
        create_norm("group", 8, 2, NormOptions(groups=3))


def test_unknown_norm_lists_the_known_names():
    with pytest.raises(ValueError, match="batch, batch_keras, batch_manual, group"):
        create_norm("batchnorm", 8, 2, NormOptions())
