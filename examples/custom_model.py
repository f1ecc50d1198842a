"""A user model for bnstudy: ``model.name: examples.custom_model:build`` (from the repository
root; any importable ``module.path:function`` works the same way).

The factory contract (bnstudy.external): keyword arguments ``in_channels``, ``num_classes``,
``norm_layer`` and ``spatial_dims``; return an ``nn.Module`` mapping
``(N, in_channels, *spatial)`` to ``(N, num_classes)`` logits; build every norm layer with
``norm_layer(channels)``. bnstudy passes the study's norm (batch, group, instance, ...) as
``norm_layer``, or ``None`` with ``model.replace_norms: true``, in which case the model builds
torch's BatchNorm and bnstudy replaces it.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

CONV = {2: nn.Conv2d, 3: nn.Conv3d}
BATCH_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
POOL = {2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}


def build(
    *,
    in_channels: int,
    num_classes: int,
    norm_layer: Callable[[int], nn.Module] | None,
    spatial_dims: int,
    widths: tuple[int, ...] = (16, 32, 64),
) -> nn.Module:
    """Stride-2 conv3×3 → norm → ReLU blocks, global average pooling, a linear classifier."""
    norm_layer = norm_layer or BATCH_NORM[spatial_dims]
    layers: list[nn.Module] = []
    channels = in_channels
    for width in widths:
        conv = CONV[spatial_dims](channels, width, 3, stride=2, padding=1, bias=False)
        layers += [conv, norm_layer(width), nn.ReLU(inplace=True)]
        channels = width
    layers += [POOL[spatial_dims](1), nn.Flatten(), nn.Linear(channels, num_classes)]
    return nn.Sequential(*layers)
