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
InstanceNorm and channels-first LayerNorm module with the configured norm of the same channel
count; a norm that pairs with its own convolution (weight standardization) also gets every
convolution swapped, weights kept. Either way, a model that still holds a norm bnstudy did not
build is refused: its statistics would escape the study (no ghost batches, a norm other than
the one the results are labelled with).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path

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
    models: editing the factory changes the run identities, as editing a data file does."""
    if not is_external(name) or name.startswith(TORCHVISION):
        return None
    path = inspect.getsourcefile(_factory(name))
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16] if path else None


def build_external(
    name: str,
    in_channels: int,
    spatial_dims: int,
    num_classes: int,
    norm: NormBuilder,
    replace: bool,
    conv: dict[int, type[nn.Module]] | None = None,
) -> nn.Module:
    """Build external model ``name`` for the data's channels, dims and classes with the study's
    norm: through ``norm_layer``, or by replacing the model's own norms (``replace``); then swap
    its convolutions for ``conv`` (a class per spatial dims) where the norm pairs with one."""
    built: set[int] = set()

    def norm_layer(channels: int) -> nn.Module:
        module = norm(channels, spatial_dims)
        built.update(id(m) for m in module.modules())
        return module

    build = _build_torchvision if name.startswith(TORCHVISION) else _build_user
    model = build(name, in_channels, spatial_dims, num_classes, norm_layer, replace)
    if replace:
        replace_norms(model, norm, spatial_dims, built)
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


def _norm_shape(module: nn.Module, spatial_dims: int, path: str) -> tuple[int, int]:
    """(channels, spatial dims) a torch norm module normalizes; LayerNorm only when it covers
    (C, *spatial) of a channels-first input, since over the last axis alone it normalizes
    channels-last features (transformer tokens, ConvNeXt) that no channels-first norm fits."""
    if isinstance(module, _BatchNorm | _InstanceNorm):
        dims = {"1d": 1, "2d": 2, "3d": 3}.get(type(module).__name__[-2:].lower(), spatial_dims)
        return module.num_features, dims
    if isinstance(module, nn.GroupNorm):
        return module.num_channels, spatial_dims
    shape = tuple(module.normalized_shape)
    if len(shape) < 2:
        raise ValueError(
            f"{path}: LayerNorm over the last axis ({shape}) normalizes channels-last "
            "features; replace_norms handles channels-first layers only"
        )
    return shape[0], len(shape) - 1


def replace_norms(
    model: nn.Module, norm: NormBuilder, spatial_dims: int, keep: set[int], prefix: str = ""
) -> None:
    """Replace, in place, every torch norm module of ``model`` (:data:`FOREIGN_NORMS`) whose id
    is not in ``keep`` with ``norm(channels, dims)`` of the same channel count, recording the
    new modules' ids in ``keep``."""
    for name, child in model.named_children():
        path = f"{prefix}{name}"
        if isinstance(child, FOREIGN_NORMS) and id(child) not in keep:
            new = norm(*_norm_shape(child, spatial_dims, path))
            keep.update(id(m) for m in new.modules())
            setattr(model, name, new.train(child.training))
        else:
            replace_norms(child, norm, spatial_dims, keep, f"{path}.")


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
