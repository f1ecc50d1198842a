import copy

import pytest
import torch
from torch import nn

from bnstudy.models import layer_class
from bnstudy.norms import NORMS, create_norm, create_norm_act, module_spec, progress_layers
from bnstudy.norms.batch import BatchOptions, ManualBatchOptions
from bnstudy.norms.registry import EpsOptions, GroupOptions, NoOptions, conv_layer


def options_with_groups(name: str, groups: int = 4):
    """The norm's default options, with ``groups`` where it has that option."""
    options = NORMS[name].options
    return options(groups=groups) if "groups" in options.model_fields else options()


@pytest.mark.parametrize("name", list(NORMS))
@pytest.mark.parametrize("dims", [0, 1, 2, 3])
def test_every_norm_keeps_the_shape_in_the_dims_it_supports(name, dims):
    if dims not in NORMS[name].spatial_dims:
        with pytest.raises(ValueError, match=f"no {dims}D form"):
            create_norm_act(name, 8, dims, options_with_groups(name))
        return
    x = torch.randn(3, 8, *[4] * dims)
    unit = create_norm_act(name, 8, dims, options_with_groups(name))
    assert unit(x).shape == x.shape


@pytest.mark.parametrize("name", list(NORMS))
def test_every_norm_with_statistics_is_recognized_by_its_spec_fields(name):
    spec = NORMS[name]
    layer = create_norm(name, 8, 2, options_with_groups(name))
    found = module_spec(layer)
    if name == "none":
        assert found is None
        return
    assert found is not None
    for field in ("batch_statistics", "running_statistics", "needs_progress"):
        assert getattr(found, field) == getattr(spec, field), field
    assert found.statistic_axes(layer, 4) == spec.statistic_axes(layer, 4)


@pytest.mark.parametrize("name", [n for n, s in NORMS.items() if not s.batch_statistics])
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_a_batch_independent_norm_gives_a_sample_the_same_output_alone_and_in_a_batch(name, dims):
    torch.manual_seed(0)
    x = torch.randn(5, 8, *[4] * dims, dtype=torch.float64)
    conv = (conv_layer(name, dims) or layer_class("conv", dims))(8, 8, 3, padding=1)
    block = nn.Sequential(conv, *create_norm_act(name, 8, dims, options_with_groups(name)))
    block = block.double().train()
    for parameter in block.parameters():  # non-trivial affine parameters
        parameter.data.uniform_(0.5, 1.5)
    together = block(x)
    for index in range(len(x)):
        alone = block(x[index : index + 1])
        torch.testing.assert_close(alone, together[index : index + 1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", [n for n, s in NORMS.items() if s.batch_statistics])
def test_a_batch_statistic_norm_does_depend_on_the_other_samples(name):
    torch.manual_seed(0)
    x = torch.randn(5, 8, 4, 4, dtype=torch.float64)
    layer = create_norm(name, 8, 2).double().train()
    assert not torch.allclose(layer(x[:1].repeat(2, 1, 1, 1))[0], layer(x)[0])


@pytest.mark.parametrize("name", [n for n, s in NORMS.items() if s.fused_activation])
def test_a_fused_activation_replaces_the_relu_and_precedes_any_other(name):
    relu_unit = create_norm_act(name, 8, 2, options_with_groups(name), "relu")
    assert len(relu_unit) == 1 and module_spec(relu_unit[0]) is NORMS[name]
    tanh_unit = create_norm_act(name, 8, 2, options_with_groups(name), "tanh")
    assert len(tanh_unit) == 2 and isinstance(tanh_unit[1], nn.Tanh)
    if name == "frn":  # FRN without its TLU before another activation; EvoNorm keeps its own
        assert tanh_unit[0].tau is None and relu_unit[0].tau is not None


def test_frn_tlu_is_applied_exactly_once_in_a_model_block():
    unit = create_norm_act("frn", 4, 2)
    frn = unit[0]
    frn.tau.data.fill_(-0.5)  # a ReLU after the TLU would clip the outputs in [-0.5, 0) to 0
    out = unit(torch.randn(2, 4, 5, 5))
    assert not any(isinstance(m, nn.ReLU) for m in unit.modules())
    assert (out < 0).any() and out.min() >= -0.5


def test_non_fused_norms_are_followed_by_the_asked_activation():
    unit = create_norm_act("batch", 4, 2, activation="prelu")
    assert isinstance(unit[0], nn.BatchNorm2d) and isinstance(unit[1], nn.PReLU)


def test_progress_reaches_the_layers_whose_norm_needs_it():
    model = nn.Sequential(create_norm("batch_renorm", 4, 2), create_norm("batch", 4, 2))
    layers = progress_layers(model)
    assert layers == [model[0]]
    layers[0].set_progress(0.5)
    assert layers[0].progress == 0.5


def test_weight_standardized_group_norm_pairs_with_ws_convs():
    assert conv_layer("group_ws", 3).__name__ == "WSConv3d"
    assert conv_layer("group", 3) is None


def test_batch_norm_uses_eps_and_momentum_in_torch_convention():
    layer = create_norm("batch", 6, 2, BatchOptions(eps=1e-3, momentum=0.01))
    assert isinstance(layer, torch.nn.BatchNorm2d)
    assert (layer.eps, layer.momentum) == (1e-3, 0.01)
    keras = create_norm("batch", 6, 2, BatchOptions(momentum=0.99, momentum_convention="keras"))
    assert keras.momentum == pytest.approx(0.01)


def test_keras_convention_needs_a_momentum_below_one():
    with pytest.raises(ValueError, match="keras convention"):
        BatchOptions(momentum=1.0, momentum_convention="keras")


def test_instance_norm_is_affine_without_running_stats():
    layer = create_norm("instance", 6, 3, EpsOptions())
    assert isinstance(layer, torch.nn.InstanceNorm3d)
    assert layer.affine and not layer.track_running_stats


def test_layer_norm_is_group_norm_with_one_group():
    layer = create_norm("layer", 6, 2)
    assert isinstance(layer, torch.nn.GroupNorm) and layer.num_groups == 1


def test_group_norm_names_the_problem_when_groups_do_not_divide():
    with pytest.raises(ValueError, match="3 groups do not divide 8 channels"):
        create_norm("group", 8, 2, GroupOptions(groups=3))


def test_a_norm_refuses_another_norms_options():
    with pytest.raises(TypeError, match="batch_keras takes NoOptions, not ManualBatchOptions"):
        create_norm("batch_keras", 8, 2, ManualBatchOptions())
    assert isinstance(create_norm("none", 8, 2, NoOptions()), nn.Identity)


def test_unknown_norm_lists_the_known_names():
    with pytest.raises(ValueError, match="batch, batch_manual, batch_keras, batch_renorm"):
        create_norm("batchnorm", 8, 2)


@pytest.mark.parametrize("name", [n for n, s in NORMS.items() if s.batch_statistics])
def test_ghost_batches_equal_separate_calls_and_update_once_for_every_batch_statistic_norm(name):
    """Outputs and gradients: separate calls on the sub-batches, each from the state before the
    forward. Running statistics: one update, the one a single call on the whole batch makes."""
    torch.manual_seed(3)
    ghost = create_norm(name, 3, 2).double().train()
    for parameter in ghost.parameters():  # non-trivial affine parameters
        parameter.data.uniform_(0.5, 1.5)
    for buffer in ghost.buffers():  # non-default running statistics (r and d depend on them)
        if buffer.is_floating_point():
            buffer.uniform_(0.5, 1.5)
    for layer in progress_layers(ghost):  # inside a training step, late in the run
        layer.set_progress(1.0)
    x = (torch.randn(8, 3, 2, 2, dtype=torch.float64) * 3 + 1).requires_grad_()
    upstream = torch.randn(8, 3, 2, 2, dtype=torch.float64)
    plain = [copy.deepcopy(ghost) for _ in range(4)]
    whole = copy.deepcopy(ghost)
    whole(x.detach())  # the running statistics of one update from the whole batch
    x_plain = x.detach().clone().requires_grad_()
    ghost.norm_batch_size = 2
    out = ghost(x)
    expected = torch.cat([layer(part) for layer, part in zip(plain, x_plain.split(2), strict=True)])
    torch.testing.assert_close(out, expected)
    out.backward(upstream)
    expected.backward(upstream)
    torch.testing.assert_close(x.grad, x_plain.grad)
    for key, mine in ghost.named_parameters():
        theirs = sum(dict(layer.named_parameters())[key].grad for layer in plain)
        torch.testing.assert_close(mine.grad, theirs, msg=key)
    for (key, mine), (_, theirs) in zip(ghost.named_buffers(), whole.named_buffers(), strict=True):
        torch.testing.assert_close(mine, theirs, msg=key)
    whole = copy.deepcopy(ghost)
    whole.norm_batch_size = None
    assert not torch.allclose(whole(x.detach()), out.detach())  # the split matters


def test_the_registry_holds_the_catalog_in_its_order():
    """The report orders norms by bnstudy.norm_catalog without importing torch; the registry
    (what builds them, and `bnstudy norms`) lists the same names in the same order. Whether a
    norm mixes samples (the catalog's batch statistics) is checked on the layers above."""
    from bnstudy.norm_catalog import NORM_NAMES

    assert tuple(NORMS) == NORM_NAMES
