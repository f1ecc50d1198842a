"""EvoNorm-S0 and EvoNorm-B0: normalization and activation in one layer, found by search.

Liu, Brock, Simonyan & Le 2020 (arXiv 2004.02967), Table 1, as the authors' TensorFlow code
(tensorflow/tpu ``models/official/resnet/resnet_model.py``, ``evonorm``) and timm
(``timm/layers/evo_norm.py``, ``EvoNorm2dS0``/``EvoNorm2dB0``) compute them. Per channel, with
``v``, ``gamma`` (both 1 at init) and ``beta`` (0) learned per channel::

    S0:  y = x * sigmoid(v * x) / group_std(x) * gamma + beta
    B0:  y = x / max(sqrt(var + eps), v * x + instance_std(x)) * gamma + beta

- ``group_std``: per sample, over the C/G channels of a group and the spatial axes,
  ``sqrt(biased variance + eps)`` (GroupNorm's statistic). S0 is batch-independent. The
  authors' code lowers the group count (default 32) until it divides C; here a group count
  that does not divide C raises, as bnstudy's GroupNorm does.
- ``var`` (B0): per channel over N and the spatial axes, biased, in training (raises PyTorch's
  ``ValueError`` at one value per channel, as BN does); ``running_var`` in eval mode.
- ``instance_std`` (B0): per sample and channel over the spatial axes, ``sqrt(biased variance
  + eps)``. On a 1×1 map (or a (N, C) input, ``spatial_dims=0``) the variance of one value is 0,
  so ``instance_std = sqrt(eps)``: well defined, the right branch is then ``v * x + sqrt(eps)``.
  No error is raised (unlike ``nn.InstanceNorm``); the denominator is never below
  ``sqrt(var + eps) > 0``.

``activation=False``: the authors' code documents it as "apply an affine transform only", and
timm does the same: ``y = gamma * x + beta``, with NO normalization, no ``v`` and (B0) no
running-variance update. These modules follow them. (timm's ``EvoNorm2dS0a`` instead divides by
``group_std`` without the gate; it is not provided here.) So EvoNorm normalizes only where it
also applies its nonlinearity; a model using it replaces each norm+activation pair with it.

B0's running variance: the authors' code stores the biased batch variance with TF decay 0.9;
this module follows torch's BN (and timm): ``running_var = (1 - momentum) * running_var +
momentum * m/(m-1) * var`` with the unbiased correction, ``momentum`` the weight of the new
batch (0.1), ``None`` a cumulative average over ``num_batches_tracked``. There is no
``running_mean`` (B0 never subtracts a mean). eps is 1e-5 for both (the authors' value; timm's
B0 defaults to 1e-3). Statistics and the division run in at least float32
(:func:`bnstudy.norms.precision.at_least_float32`); the result has the input's dtype.
"""

from __future__ import annotations

import torch
from torch import nn

from bnstudy.norms.batch import BatchOptions, VirtualBatches, update_running_statistics
from bnstudy.norms.precision import at_least_float32
from bnstudy.norms.registry import GroupOptions, batch_axes, fixed, group_axes, register_norm


def group_std(x: torch.Tensor, groups: int, eps: float) -> torch.Tensor:
    """sqrt(biased variance + eps) per sample over each group of C/groups consecutive channels
    and the spatial axes of (N, C, *spatial), expanded to x's shape."""
    grouped = x.reshape(x.shape[0], groups, -1)
    std = torch.sqrt(grouped.var(dim=-1, unbiased=False, keepdim=True) + eps)
    return std.expand(grouped.shape).reshape(x.shape)


def instance_std(x: torch.Tensor, eps: float) -> torch.Tensor:
    """sqrt(biased variance + eps) per sample and channel over the spatial axes, shaped to
    broadcast against x (sqrt(eps) where there is one spatial value)."""
    n, c = x.shape[:2]
    var = x.reshape(n, c, -1).var(dim=-1, unbiased=False)
    return torch.sqrt(var + eps).reshape(n, c, *([1] * (x.dim() - 2)))


def _check_rank(x: torch.Tensor, spatial_dims: int) -> None:
    if x.dim() != spatial_dims + 2:
        raise ValueError(f"expected a {spatial_dims + 2}D input, got shape {tuple(x.shape)}")


class EvoNormS0(nn.Module):
    """EvoNorm-S0 over inputs of shape (N, C, *spatial): per-sample group statistics.

    ``EvoNormS0(num_features, spatial_dims, *, groups=8, eps=1e-5, activation=True)``.
    ``groups`` (kept as ``num_groups``) must divide ``num_features``. ``spatial_dims`` fixes the
    input rank (0 for (N, C) inputs: the group statistic is then over channels only).
    ``activation=False`` is an affine transform only (module docstring).
    """

    def __init__(
        self,
        num_features: int,
        spatial_dims: int,
        *,
        groups: int = 8,
        eps: float = 1e-5,
        activation: bool = True,
    ) -> None:
        super().__init__()
        if groups < 1 or num_features % groups:
            raise ValueError(f"{groups} groups do not divide {num_features} channels")
        self.num_features, self.spatial_dims = num_features, spatial_dims
        self.num_groups, self.eps = groups, eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.v = nn.Parameter(torch.ones(num_features)) if activation else None

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, groups={self.num_groups}, eps={self.eps}, "
            f"activation={self.v is not None}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_rank(x, self.spatial_dims)
        channel = (1, -1) + (1,) * (x.dim() - 2)
        xf = at_least_float32(x)
        if self.v is not None:
            gate = torch.sigmoid(self.v.reshape(channel) * xf)
            xf = xf * gate / group_std(xf, self.num_groups, self.eps)
        y = self.weight.reshape(channel) * xf + self.bias.reshape(channel)
        return y.to(x.dtype)


class _EvoNormB0Core(nn.Module):
    """One EvoNorm-B0 call of :class:`EvoNormB0` (the whole batch, no ghost split)."""

    def __init__(
        self,
        num_features: int,
        spatial_dims: int,
        *,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        activation: bool = True,
    ) -> None:
        super().__init__()
        if momentum is not None and not 0 <= momentum <= 1:
            raise ValueError(f"momentum must be in [0, 1] or None, got {momentum}")
        self.num_features, self.spatial_dims = num_features, spatial_dims
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.v = nn.Parameter(torch.ones(num_features)) if activation else None
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"activation={self.v is not None}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_rank(x, self.spatial_dims)
        channel = (1, -1) + (1,) * (x.dim() - 2)
        xf = at_least_float32(x)
        if self.v is not None:
            var = self._batch_variance(xf) if self.training else self.running_var
            left = torch.sqrt(var + self.eps).reshape(channel)
            right = self.v.reshape(channel) * xf + instance_std(xf, self.eps)
            xf = xf / torch.maximum(left, right)
        y = self.weight.reshape(channel) * xf + self.bias.reshape(channel)
        return y.to(x.dtype)

    def _batch_variance(self, x: torch.Tensor) -> torch.Tensor:
        count = x.numel() // x.shape[1]
        if count == 1:
            raise ValueError(
                f"Expected more than 1 value per channel when training, got input size {x.size()}"
            )
        var = x.var(dim=(0, *range(2, x.dim())), unbiased=False)
        update_running_statistics(self, None, var.detach(), count)
        return var


class EvoNormB0(VirtualBatches, _EvoNormB0Core):
    """EvoNorm-B0 over inputs of shape (N, C, *spatial): batch variance, running variance.

    ``EvoNormB0(num_features, spatial_dims, *, eps=1e-5, momentum=0.1, activation=True)``.
    Buffers ``running_var`` (unbiased, torch convention) and ``num_batches_tracked``; no
    ``running_mean``. ``spatial_dims`` fixes the input rank (0 for (N, C) inputs). In training
    it normalizes in ghost batches when ``norm_batch_size`` is set (:class:`VirtualBatches`).
    ``activation=False`` is an affine transform only (module docstring).
    """


@register_norm(
    name="evonorm_b0",
    summary="x / max(batch std, v·x + instance std) (Liu et al. 2020, arXiv 2004.02967); "
    "eval mode uses the running variance",
    options=BatchOptions,
    modules=(EvoNormB0,),
    statistic_axes=batch_axes,
    at_one_value=fixed("raises, as PyTorch's BN"),
    running_statistics=True,
    fused_activation=True,
    spatial_dims=(0, 1, 2, 3),
)
def _evonorm_b0(
    channels: int, spatial_dims: int, options: BatchOptions, activation: bool
) -> nn.Module:
    return EvoNormB0(
        channels,
        spatial_dims,
        eps=options.eps,
        momentum=options.torch_momentum,
        activation=activation,
    )


@register_norm(
    name="evonorm_s0",
    summary="x·σ(v·x) / group std, per sample (Liu et al. 2020, arXiv 2004.02967)",
    options=GroupOptions,
    modules=(EvoNormS0,),
    statistic_axes=group_axes,
    at_one_value=fixed("divides by √ε: outputs blow up by 1/√ε"),
    fused_activation=True,
    spatial_dims=(0, 1, 2, 3),
)
def _evonorm_s0(
    channels: int, spatial_dims: int, options: GroupOptions, activation: bool
) -> nn.Module:
    return EvoNormS0(
        channels, spatial_dims, groups=options.groups, eps=options.eps, activation=activation
    )
