"""Weight Standardization: convolutions whose weights are standardized per output channel.

Qiao, Wang, Liu, Shen & Yuille 2019 (arXiv 1903.10520). Before each convolution, each output
channel's weights are standardized over (in_channels/groups, *kernel)::

    w_hat = (w - mean(w)) / sqrt(var(w) + ws_eps)      (biased variance)
    y     = conv(x, w_hat) + bias

Paired with GroupNorm after the convolution (the paper's GN+WS), it is the batch-independent
standard for small batches: nothing depends on other samples, in train or eval mode.

The eps: the paper's reference code (joe-siyuan-qiao/WeightStandardization, README) divides by
the UNBIASED std plus 1e-5, ``(w - mean) / (std + 1e-5)``. This module follows timm's
``StdConv2d`` (``F.batch_norm`` on the reshaped weight): biased variance, eps inside the square
root; timm defaults to eps 1e-6, this module to ``ws_eps=1e-5``. For a 3×3×C kernel the two
forms differ by a factor sqrt(n/(n-1)) (under 2% for n >= 27). timm's ``ScaledStdConv2d``
(NF-Nets) additionally multiplies by a learned gain and 1/sqrt(fan_in); not done here.

The standardized weight is computed in at least float32
(:func:`bnstudy.norms.precision.at_least_float32`) and cast back to the weight's dtype.
"""

from __future__ import annotations

import torch
from torch import nn

from bnstudy.norms.per_sample import group_norm
from bnstudy.norms.precision import at_least_float32
from bnstudy.norms.registry import GroupOptions, fixed, group_axes, register_norm


def standardize_weight(weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``(w - mean) / sqrt(var + eps)`` per output channel (the first axis), over the others."""
    w = at_least_float32(weight)
    flat = w.reshape(w.shape[0], -1)
    var, mean = torch.var_mean(flat, dim=1, unbiased=False, keepdim=True)
    return ((flat - mean) / torch.sqrt(var + eps)).reshape(weight.shape).to(weight.dtype)


class WeightStandardization(nn.Module):
    """Mixin for ``nn.ConvNd``: convolve with the standardized weight. Takes the conv's
    arguments plus the keyword ``ws_eps`` (default 1e-5)."""

    def __init__(self, *args, ws_eps: float = 1e-5, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if ws_eps < 0:
            raise ValueError(f"ws_eps must be >= 0, got {ws_eps}")
        self.ws_eps = ws_eps

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, ws_eps={self.ws_eps}"

    def standardized_weight(self) -> torch.Tensor:
        """The weight the convolution uses."""
        return standardize_weight(self.weight, self.ws_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.standardized_weight(), self.bias)


class WSConv1d(WeightStandardization, nn.Conv1d):
    """``nn.Conv1d`` with Weight Standardization (keyword ``ws_eps``)."""


class WSConv2d(WeightStandardization, nn.Conv2d):
    """``nn.Conv2d`` with Weight Standardization (keyword ``ws_eps``)."""


class WSConv3d(WeightStandardization, nn.Conv3d):
    """``nn.Conv3d`` with Weight Standardization (keyword ``ws_eps``)."""


WS_CONV = {1: WSConv1d, 2: WSConv2d, 3: WSConv3d}


@register_norm(
    name="group_ws",
    summary="GroupNorm, per sample over the C/G channels of a group and the spatial axes, "
    "after weight-standardized convs (Qiao et al. 2019, arXiv 1903.10520; ws_eps 1e-5)",
    options=GroupOptions,
    modules=(nn.GroupNorm,),
    statistic_axes=group_axes,
    at_one_value=fixed("gives β"),
    conv=WS_CONV,
)
def _group_ws(channels: int, spatial_dims: int, options: GroupOptions) -> nn.Module:
    return group_norm(options.groups, channels, options.eps, name="group_ws")
