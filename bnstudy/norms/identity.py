"""``none``: no normalization (identity), the floor every norm is measured against."""

from __future__ import annotations

from torch import nn

from bnstudy.norms.registry import NoOptions, fixed, no_axes, register_norm


@register_norm(
    name="none",
    summary="identity (no normalization)",
    options=NoOptions,
    modules=(),
    statistic_axes=no_axes,
    at_one_value=fixed("nothing to normalize"),
    spatial_dims=(0, 1, 2, 3),
)
def _identity(channels: int, spatial_dims: int, options: NoOptions) -> nn.Module:
    return nn.Identity()
