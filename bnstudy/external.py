"""Models bnstudy did not write, with the study's norm in place of theirs.

``model.name`` picks where a model comes from:

- a built-in name (:data:`bnstudy.models.MODELS`);
- ``torchvision:<name>``: a torchvision classification model (2D: ``resnet18``,
  ``mobilenet_v2``, ...) or video model (3D: ``r3d_18``, ...), untrained, built with
  ``num_classes``. Models that take a ``norm_layer`` (the ResNet family, MobileNets,
  EfficientNets, ...) get the registry's norm through it; for the others set
  ``model.replace_norms: true``. Where the data has other than 3 channels, the first
  convolution that reads 3 is rebuilt to read the data's channels.
- ``<module.path>:<factory>``: a user's own model. The module is imported from the working
  directory or the installed packages. The factory contract::

      factory(*, in_channels: int, num_classes: int, norm_layer, spatial_dims: int) -> nn.Module

  The model maps ``(N, in_channels, *spatial)`` (``spatial_dims`` axes: 2 for images, 3 for
  volumes) to ``(N, num_classes)`` logits, and builds every norm layer by calling
  ``norm_layer(channels)``. With ``model.replace_norms: true`` the factory is called with
  ``norm_layer=None`` and builds its own torch norms, which are then replaced.
  ``examples/custom_model.py`` is a worked example.

``model.replace_norms: true`` walks the module tree (as detectron2's
``FrozenBatchNorm2d.convert_frozen_batchnorm`` does) and replaces every BatchNorm, GroupNorm,
InstanceNorm and LayerNorm module with the configured norm for the feature map it normalizes
(channels and rank read from one forward pass); one over (N, C) features or a LayerNorm that
is not over all of (C, *spatial) is refused by name. A norm that pairs with its own
convolution (weight standardization) also gets every convolution swapped, weights kept.
Norms that fuse their activation (FRN, EvoNorm) are for built-in models only: these models
apply their own activation after ``norm_layer``. Either way, a model that still holds a norm
bnstudy did not build is refused: its statistics would escape the study (no ghost batches, a
norm other than the one the results are labelled with).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.instancenorm import _InstanceNorm

TORCHVISION = "torchvision:"
# torch norm classes that replace_norms swaps out; LayerNorm only over (C, *spatial)
FOREIGN_NORMS = (_BatchNorm, nn.GroupNorm, _InstanceNorm, nn.LayerNorm)
NormLayer = Callable[[int], nn.Module]
# (channels, spatial_dims) -> the study's norm without a fused activation
NormBuilder = Callable[[int, int], nn.Module]


def is_external(name: str) -> bool:
    """Whether model ``name`` is a torchvision or user model (it has a ``source:`` prefix)."""
    return ":" in name


def check_model_name(name: str) -> str:
    """``name`` if it resolves to a model factory; else ValueError saying why not."""
    _factory(name)
    return name


def torchvision_models() -> dict[str, int]:
    """torchvision's classification (2D) and video (3D) models: name -> spatial dims."""
    from torchvision import models

    return {
        **{name: 2 for name in models.list_models(module=models)},
        **{name: 3 for name in models.list_models(module=models.video)},
    }


def _factory(name: str) -> Callable[..., nn.Module]:
    source, _, attribute = name.partition(":")
    if source == TORCHVISION[:-1]:
        return _torchvision_factory(attribute)
    if not source or not attribute:
        raise ValueError(f"{name!r}: write a user model as <module.path>:<factory>")
    module = _import(source)
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ValueError(f"module {source!r} has no callable {attribute!r}")
    return factory


def _import(source: str):
    """Import ``source`` with the working directory on the path, as ``python -m`` would."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(source)
    except ImportError as error:
        raise ValueError(f"cannot import module {source!r}: {error}") from None


def _torchvision_factory(model: str) -> Callable[..., nn.Module]:
    from torchvision import models

    known = torchvision_models()
    if model not in known:
        raise ValueError(
            f"torchvision has no classification or video model {model!r} "
            f"(torchvision.models.list_models() lists them)"
        )
    return models.get_model_builder(model)


def source_fingerprint(name: str) -> str | None:
    """SHA-256 (16 hex digits) of the source file of a user model's module, None for other
    models: editing that file changes the run identities, as editing a data file does (edits
    to other modules it imports do not)."""
    if not is_external(name) or name.startswith(TORCHVISION):
        return None
    _factory(name)  # imports it, or says why not
    path = getattr(sys.modules[name.partition(":")[0]], "__file__", None)
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16] if path else None


def build_external(
    name: str,
    in_channels: int,
    spatial_dims: int,
    size: int,
    num_classes: int,
    norm: NormBuilder,
    replace: bool,
    conv: dict[int, type[nn.Module]] | None = None,
) -> nn.Module:
    """Build external model ``name`` for the data's channels, dims, size (per spatial axis)
    and classes with the study's norm: through ``norm_layer``, or by replacing the model's own
    norms (``replace``, shapes found by one forward pass at the data's size); then swap its
    convolutions for ``conv`` (a class per spatial dims) where the norm pairs with one."""
    built: set[int] = set()

    def norm_layer(channels: int) -> nn.Module:
        module = norm(channels, spatial_dims)
        built.update(id(m) for m in module.modules())
        return module

    build = _build_torchvision if name.startswith(TORCHVISION) else _build_user
    model = build(name, in_channels, spatial_dims, num_classes, norm_layer, replace)
    if replace:
        sample = torch.zeros(2, in_channels, *[size] * spatial_dims)
        replace_norms(model, norm, norm_inputs(model, sample), built)
    _refuse_foreign_norms(model, built, name)
    if conv is not None:
        replace_convs(model, conv)
    return model


def _build_torchvision(
    name: str,
    in_channels: int,
    spatial_dims: int,
    num_classes: int,
    norm_layer: NormLayer,
    replace: bool,
) -> nn.Module:
    model_dims = torchvision_models()[name.removeprefix(TORCHVISION)]
    if model_dims != spatial_dims:
        raise ValueError(f"{name} takes {model_dims}D inputs; the data is {spatial_dims}D")
    extra = {} if replace else {"norm_layer": norm_layer}
    try:
        model = _factory(name)(num_classes=num_classes, **extra)
    except TypeError as error:
        if "norm_layer" not in str(error):
            raise
        raise ValueError(f"{name} takes no norm_layer: set model.replace_norms: true") from None
    if in_channels != 3:
        _adapt_first_conv(model, in_channels)
    return model


def _build_user(
    name: str,
    in_channels: int,
    spatial_dims: int,
    num_classes: int,
    norm_layer: NormLayer,
    replace: bool,
) -> nn.Module:
    model = _factory(name)(
        in_channels=in_channels,
        num_classes=num_classes,
        norm_layer=None if replace else norm_layer,
        spatial_dims=spatial_dims,
    )
    if not isinstance(model, nn.Module):
        raise ValueError(f"{name} returned {type(model).__name__}, not an nn.Module")
    return model


def _adapt_first_conv(model: nn.Module, in_channels: int) -> None:
    """Rebuild the first convolution that reads 3 channels to read ``in_channels``."""
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, _ConvNd) and child.in_channels == 3:
                setattr(parent, child_name, _conv_like(child, type(child), in_channels))
                return
    raise ValueError(f"found no convolution reading 3 channels to adapt to {in_channels}")


def _conv_like(conv: _ConvNd, cls: type[nn.Module], in_channels: int) -> nn.Module:
    return cls(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )


def norm_inputs(model: nn.Module, sample: torch.Tensor) -> dict[int, torch.Size]:
    """The input shape of every torch norm module (:data:`FOREIGN_NORMS`) of ``model`` in one
    training-mode forward of ``sample`` (training mode reaches auxiliary heads too; the
    modules measured are about to be replaced, so their updated statistics do not matter)."""
    shapes: dict[int, torch.Size] = {}

    def record(module: nn.Module, args: tuple) -> None:
        shapes.setdefault(id(module), args[0].shape)

    norms = [m for m in model.modules() if isinstance(m, FOREIGN_NORMS)]
    hooks = [m.register_forward_pre_hook(record) for m in norms]
    try:
        with torch.no_grad():
            model.train()(sample)
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def _channels_and_dims(module: nn.Module, shape: torch.Size | None, path: str) -> tuple[int, int]:
    """(channels, spatial dims) of the channels-first feature map ``module`` normalizes, from
    its input ``shape``; a norm over (N, C) features, or a LayerNorm over other than all of
    (C, *spatial) (transformer tokens, ConvNeXt's channels-last blocks), has no channels-first
    counterpart and is refused by name."""
    if shape is None:
        raise ValueError(f"{path}: not called in a forward pass, so what it normalizes is unknown")
    if len(shape) < 3:
        raise ValueError(f"{path}: normalizes {tuple(shape)} features, not a feature map")
    if isinstance(module, nn.LayerNorm) and tuple(module.normalized_shape) != tuple(shape[1:]):
        raise ValueError(
            f"{path}: LayerNorm over {tuple(module.normalized_shape)} of {tuple(shape)} inputs "
            "is not a channels-first norm; replace_norms handles those only"
        )
    return shape[1], len(shape) - 2


def replace_norms(
    model: nn.Module,
    norm: NormBuilder,
    inputs: dict[int, torch.Size],
    keep: set[int],
    prefix: str = "",
) -> None:
    """Replace, in place, every torch norm module of ``model`` (:data:`FOREIGN_NORMS`) whose id
    is not in ``keep`` with ``norm(channels, dims)`` for the feature map it normalizes (its
    input shape in ``inputs``, :func:`norm_inputs`), recording the new modules' ids in
    ``keep``. The new modules start from their own initialization (γ = 1, β = 0)."""
    for name, child in model.named_children():
        path = f"{prefix}{name}"
        if isinstance(child, FOREIGN_NORMS) and id(child) not in keep:
            new = norm(*_channels_and_dims(child, inputs.get(id(child)), path))
            keep.update(id(m) for m in new.modules())
            setattr(model, name, new.train(child.training))
        else:
            replace_norms(child, norm, inputs, keep, f"{path}.")


def _refuse_foreign_norms(model: nn.Module, built: set[int], name: str) -> None:
    foreign = [
        f"{path} ({type(module).__name__})"
        for path, module in model.named_modules()
        if isinstance(module, FOREIGN_NORMS) and id(module) not in built
    ]
    if foreign:
        raise ValueError(
            f"{name} has norm layers it did not build with norm_layer: {', '.join(foreign[:3])}"
            f"{' ...' if len(foreign) > 3 else ''}; set model.replace_norms: true"
        )


def replace_convs(model: nn.Module, conv: dict[int, type[nn.Module]]) -> None:
    """Swap, in place, every plain ``nn.Conv1d/2d/3d`` for ``conv[dims]`` with the same
    settings and weights (weight-standardized convolutions for ``group_ws``)."""
    plain = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}
    for name, child in model.named_children():
        if type(child) in plain:
            new = _conv_like(child, conv[plain[type(child)]], child.in_channels)
            new.load_state_dict(child.state_dict())
            setattr(model, name, new.to(child.weight.device))
        else:
            replace_convs(child, conv)
