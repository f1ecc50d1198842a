"""Norms whose statistics are per sample (batch-independent): ``group``, ``instance`` and
``layer``. Each computes the same thing at every batch size, in train and eval
mode, so along a batch-size axis they are a study's controls.

- ``group``    per sample, per group of C/G channels, over those channels and the spatial axes
               (Wu & He 2018, arXiv 1803.08494).
- ``instance`` per sample and channel over the spatial axes (Ulyanov et al. 2016, arXiv
               1607.08022), with a learned affine (as nnU-Net uses it); no running statistics.
- ``layer``    per sample over C and the spatial axes: GroupNorm with one group (Ba et al. 2016,
               arXiv 1607.06450).
"""

from __future__ import annotations

from torch import nn
from torch.nn.modules.instancenorm import _InstanceNorm

from bnstudy.norms.registry import (
    EpsOptions,
    GroupOptions,
    fixed,
    group_axes,
    register_norm,
    spatial_axes,
)

_INSTANCE_NORM = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}


def group_norm(groups: int, channels: int, eps: float, name: str = "group") -> nn.GroupNorm:
    """``nn.GroupNorm`` with an error that says what to change when groups don't divide."""
    if channels % groups:
        raise ValueError(
            f"{name} norm: {groups} groups do not divide {channels} channels "
            f"(choose model.{name}.groups dividing every layer width)"
        )
    return nn.GroupNorm(groups, channels, eps=eps)


@register_norm(
    name="group",
    summary="per sample over the C/G channels of a group and the spatial axes (Wu & He 2018, "
    "arXiv 1803.08494)",
    options=GroupOptions,
    modules=(nn.GroupNorm,),
    statistic_axes=group_axes,
    at_one_value=fixed("gives β"),
    legacy_keys={"groups": "norm_groups", "eps": "norm_eps"},
)
def _group(channels: int, spatial_dims: int, options: GroupOptions) -> nn.Module:
    return group_norm(options.groups, channels, options.eps)


@register_norm(
    name="instance",
    summary="per sample and channel over the spatial axes (Ulyanov et al. 2016, arXiv "
    "1607.08022), learned affine as in nnU-Net",
    options=EpsOptions,
    modules=(_InstanceNorm,),
    statistic_axes=spatial_axes,
    at_one_value=fixed("PyTorch raises (in eval mode too: no running statistics)"),
    legacy_keys={"eps": "norm_eps"},
)
def _instance(channels: int, spatial_dims: int, options: EpsOptions) -> nn.Module:
    return _INSTANCE_NORM[spatial_dims](channels, eps=options.eps, affine=True)


@register_norm(
    name="layer",
    summary="per sample over C and the spatial axes: GroupNorm with one group (Ba et al. 2016, "
    "arXiv 1607.06450)",
    options=EpsOptions,
    modules=(nn.GroupNorm,),
    statistic_axes=group_axes,
    at_one_value=fixed("gives β"),
    legacy_keys={"eps": "norm_eps"},
)
def _layer(channels: int, spatial_dims: int, options: EpsOptions) -> nn.Module:
    return nn.GroupNorm(1, channels, eps=options.eps)
