"""Batch Normalization: torch's layers with ghost batches, BN written out with the knobs on
which frameworks differ, and their registry entries ``batch``, ``batch_manual``, ``batch_keras``.

Ioffe & Szegedy 2015 (arXiv 1502.03167), Algorithm 1. In training mode, for each channel c::

    mu  = mean of x over the reduced axes          (m values)
    var = mean of (x - mu)^2 over the same axes    (biased: divides by m)
    y   = gamma * (x - mu) / sqrt(var + eps) + beta

and the running estimates move toward the batch ones. In eval mode ``mu``/``var`` are the
running estimates. With torch-equivalent settings (the defaults) this module matches
``torch.nn.BatchNorm{1,2,3}d`` in outputs, gradients and running statistics.

The knobs, with their defaults (PyTorch's) and the alternatives users meet elsewhere:

- ``momentum`` = 0.1: weight of the NEW batch, ``running = (1 - m)·running + m·batch``. Keras/TF
  and old d2l write the complement (Keras 0.99 == 0.01 here; d2l 0.9 == 0.1 here).
  ``None``: cumulative average over the batches seen (PyTorch's ``momentum=None``).
- ``eps`` = 1e-5 (Keras 1e-3): added to the variance inside the square root.
- ``unbiased_running_var`` = True: PyTorch normalizes with the biased batch variance but stores
  ``m/(m-1)·var`` in ``running_var``; Keras stores the biased one in ``moving_variance`` (Keras
  3: ``ops.moments``; Keras 2/tf.keras: ``tf.nn.moments`` on its non-fused path, and on its
  fused path it removes the Bessel correction that TF's ``fused_batch_norm`` applies, "to be
  consistent with non-fused batch norm": ``_maybe_add_or_remove_bessels_correction`` in
  ``keras/layers/normalization/batch_normalization.py``), and so does d2l's from-scratch BN. At
  m = 1 the unbiased update is 0·inf = NaN (pytorch/pytorch#1381).
- ``stats`` = "channel": statistics per channel over N and every spatial axis (torch, Keras conv
  BN). "activation": per channel AND position, over N only (the paper's fully connected form
  applied to every activation; the "first way" in StackOverflow q. 48320854). Then N = 1 makes
  every output exactly beta whatever the spatial size.
- ``single_value`` = "raise": with one value per statistic in training (m = 1), raise PyTorch's
  ``ValueError``. "beta": compute anyway, as TensorFlow does: x - mu = 0 exactly, so the output
  is beta (zeros at init) for any input, and no gradient reaches x or gamma.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from bnstudy.norms.precision import at_least_float32
from bnstudy.norms.registry import (
    NoOptions,
    NormOptions,
    batch_axes,
    fixed,
    module_spec,
    register_norm,
)


class VirtualBatches(nn.Module):
    """Mixin: in training, normalize ``norm_batch_size`` samples at a time (ghost batch norm).

    Ghost BN (Hoffer et al. 2017, arXiv 1705.08741; Keras' ``virtual_batch_size``) computes the
    batch statistics over consecutive sub-batches of the input instead of the whole batch: it
    is what "images per GPU" means in the GroupNorm and Batch Renorm papers. Each sub-batch is
    one call of the wrapped forward, so outputs and gradients are exactly those of separate BN
    calls on the sub-batches (the last one may be shorter; one value per channel in a sub-batch
    raises PyTorch's ``ValueError``, as BN does), and every sub-batch sees the running
    statistics as they were before this forward (Batch Renorm's r and d use them).

    The running statistics are updated ONCE per forward, as Keras updates them once per call:
    one momentum step (or one term of the ``momentum=None`` cumulative average, and one
    ``num_batches_tracked``) toward the sub-batches' statistics combined by the population rule
    (count-weighted mean of the sub-batch means; mean of their biased variances plus the
    variance of their means: :class:`bnstudy.precise.PopulationStatistics`), which is the mean
    and biased variance of the whole input over the layer's statistic axes; the variance is
    then stored in the layer's convention over the whole input's count (unbiased ``M/(M-1)``
    for torch's BN). Updating once per sub-batch instead would take ``batch/norm_batch_size``
    momentum steps per forward, so the running statistics' effective momentum would change
    with the normalization batch size, a confound in a batch-size study.

    ``None`` (the default) normalizes the whole batch, exactly the wrapped layer; eval mode
    never splits. bnstudy sets the attribute only while training
    (:func:`bnstudy.train.normalization_batch`), so train-mode evaluation normalizes over the
    test batch it is given.
    """

    norm_batch_size: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size, normalize = self.norm_batch_size, super().forward
        if not (self.training and size is not None and size < x.shape[0]):
            return normalize(x)
        at_once = self._ghosts_at_once(x, size)
        if at_once is not None:
            if getattr(self, "running_mean", None) is not None:
                self._update_running_once(x)
            return at_once
        before = {name: buffer.clone() for name, buffer in self.named_buffers(recurse=False)}
        parts, tracked, batches = [], False, before.get("num_batches_tracked")
        try:
            for part in x.split(size):
                parts.append(normalize(part))
                # did the wrapped forward update (EvoNorm-B0 without activation does not)?
                tracked = tracked or (batches is not None and self.num_batches_tracked != batches)
                # fresh copies, never an in-place write: autograd saved the buffers the wrapped
                # forward saw (torch's BN does) and checks they are unchanged at backward
                for name, buffer in before.items():
                    setattr(self, name, buffer.clone())
        except BaseException:
            for name, buffer in before.items():
                setattr(self, name, buffer)
            raise
        if tracked:  # one update for the whole forward
            self._update_running_once(x)
        return torch.cat(parts)

    def _ghosts_at_once(self, x: torch.Tensor, size: int) -> torch.Tensor | None:
        """The sub-batches normalized in one kernel call, or None: the wrapped forward then
        normalizes them one call each (a layer without :class:`OneCallGhosts`)."""
        return None

    @torch.no_grad()
    def _update_running_once(self, x: torch.Tensor) -> None:
        """One update from the whole input's mean and biased variance over the layer's axes."""
        axes = module_spec(self).statistic_axes(self, x.dim())
        wide = at_least_float32(x.detach())
        count = math.prod(x.shape[a] for a in axes)
        mean, var = mean_and_variance(wide, axes)
        has_mean = getattr(self, "running_mean", None) is not None
        update_running_statistics(self, mean if has_mean else None, var, count)


def mean_and_variance(x: torch.Tensor, axes: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and biased variance of ``x`` over ``axes``. Per channel (over N and the spatial
    axes) they come from the batch-norm kernel's statistics, a third of the time of a variance
    over those axes on a CPU (the inverse standard deviation it keeps, squared and inverted: the
    same value to a few ulp; 0 where every value is equal)."""
    if axes != (0, *range(2, x.dim())):
        return x.mean(dim=axes), x.var(dim=axes, unbiased=False)
    _, mean, invstd = torch.native_batch_norm(x, None, None, None, None, True, 0.0, 0.0)
    return mean, torch.where(invstd > 0, invstd.pow(-2), 0.0)


def stores_unbiased_variance(module: nn.Module) -> bool:
    """Whether ``module``'s ``running_var`` holds the unbiased variance ``m/(m-1)·var`` (torch's
    BN, Batch Renorm, EvoNorm-B0, ``batch_manual`` by default) or the biased one
    (``unbiased_running_var=False``: ``batch_keras``, ``running_var: biased``)."""
    return getattr(module, "unbiased_running_var", True)


@torch.no_grad()
def update_running_statistics(
    module: nn.Module, mean: torch.Tensor | None, var: torch.Tensor, count: int
) -> None:
    """One update of a BN-family layer's running statistics toward a batch's ``mean`` and BIASED
    ``var`` over ``count`` values, as torch's BN does it: ``num_batches_tracked += 1``;
    ``running = (1 - m)·running + m·batch`` with ``m = momentum``, or ``1/num_batches_tracked``
    (cumulative average) when momentum is None; the variance stored in the layer's convention
    (:func:`stores_unbiased_variance`). ``mean`` None: the layer has no running mean
    (EvoNorm-B0). Running statistics whose shape differs from the batch's (per-activation
    statistics before the first training batch) are allocated as zeros and ones first.
    """
    if mean is not None and module.running_mean.shape != mean.shape:
        module.running_mean = torch.zeros_like(mean)
        module.running_var = torch.ones_like(var)
    module.num_batches_tracked += 1
    step = module.momentum
    weight = 1.0 / module.num_batches_tracked.item() if step is None else step
    if stores_unbiased_variance(module):
        # at count == 1 this is 0·inf = NaN, what the unbiased estimator gives (torch#1381)
        var = var * (count / (count - 1) if count > 1 else math.inf)
    if mean is not None:
        module.running_mean.mul_(1 - weight).add_(mean, alpha=weight)
    module.running_var.mul_(1 - weight).add_(var, alpha=weight)


class OneCallGhosts(VirtualBatches):
    """:class:`VirtualBatches` for torch's BN: the ghost batches normalized by one batch-norm
    call instead of one per sub-batch. The input ``(N, C, *spatial)`` is viewed as
    ``(s, N/s · C, *spatial)`` (s = the sub-batch size), so that each channel of each sub-batch
    is a channel of its own, whose statistics are over its s samples and the spatial axes:
    exactly what a call on that sub-batch computes, with the learned γ and β repeated for each
    sub-batch (their gradients sum over the sub-batches, as they do across separate calls).
    One kernel instead of N/s: a training step of the quickstart CNN at one image per
    statistic runs about 1.3× as fast on a CPU (scripts/bench_train_step.py). A remainder
    shorter than s is a call of its own; one value per statistic goes through the wrapped
    forward, so that PyTorch's error is raised as it is."""

    def _ghosts_at_once(self, x: torch.Tensor, size: int) -> torch.Tensor | None:
        spatial = x.shape[2:]
        if size * math.prod(spatial) < 2:
            return None
        whole = x.shape[0] - x.shape[0] % size
        groups, channels = whole // size, x.shape[1]
        ghosts = x[:whole].reshape(groups, size, channels, *spatial).transpose(0, 1)
        normalized = self._batch_statistics_norm(
            ghosts.reshape(size, groups * channels, *spatial), groups
        )
        out = normalized.reshape(size, groups, channels, *spatial).transpose(0, 1)
        parts = [out.reshape(whole, channels, *spatial)]
        if whole < x.shape[0]:
            parts.append(self._batch_statistics_norm(x[whole:], 1))
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def _batch_statistics_norm(self, x: torch.Tensor, repeats: int) -> torch.Tensor:
        """Normalize ``x`` with its own statistics per channel, γ and β repeated ``repeats``
        times along the channels; the running statistics untouched."""
        weight = self.weight.repeat(repeats) if self.weight is not None else None
        bias = self.bias.repeat(repeats) if self.bias is not None else None
        return nn.functional.batch_norm(x, None, None, weight, bias, True, 0.0, self.eps)


class BatchNorm1d(OneCallGhosts, nn.BatchNorm1d):
    """``torch.nn.BatchNorm1d`` with :class:`VirtualBatches`."""


class BatchNorm2d(OneCallGhosts, nn.BatchNorm2d):
    """``torch.nn.BatchNorm2d`` with :class:`VirtualBatches`."""


class BatchNorm3d(OneCallGhosts, nn.BatchNorm3d):
    """``torch.nn.BatchNorm3d`` with :class:`VirtualBatches`."""


TORCH_BATCH_NORM = {1: BatchNorm1d, 2: BatchNorm2d, 3: BatchNorm3d}


class _ManualBatchNormCore(nn.Module):
    """One BN call of :class:`ManualBatchNorm` (the whole batch, no ghost split)."""

    def __init__(
        self,
        num_features: int,
        spatial_dims: int,
        *,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        unbiased_running_var: bool = True,
        stats: str = "channel",
        single_value: str = "raise",
    ) -> None:
        super().__init__()
        if stats not in ("channel", "activation") or single_value not in ("raise", "beta"):
            raise ValueError(f"stats={stats!r}, single_value={single_value!r}: unknown option")
        self.num_features, self.spatial_dims = num_features, spatial_dims
        self.eps, self.momentum = eps, momentum
        self.unbiased_running_var, self.stats, self.single_value = (
            unbiased_running_var,
            stats,
            single_value,
        )
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object) -> None:
        """Per-activation running statistics take the shape of the saved ones first: they are
        (C,) until the first training batch makes them (C, *spatial), so that a trained
        model's statistics load into a freshly built layer (a kept model, a resumed run)."""
        for name in ("running_mean", "running_var"):
            saved = state_dict.get(prefix + name)
            current = getattr(self, name)
            if self.stats == "activation" and saved is not None:
                setattr(self, name, current.new_empty(saved.shape))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"unbiased_running_var={self.unbiased_running_var}, stats={self.stats}, "
            f"single_value={self.single_value}"
        )

    def reduced_axes(self, x: torch.Tensor) -> tuple[int, ...]:
        """The axes each statistic averages over: N and the spatial axes, or N only."""
        return (0,) if self.stats == "activation" else (0, *range(2, x.dim()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != self.spatial_dims + 2:
            raise ValueError(
                f"expected a {self.spatial_dims + 2}D input, got shape {tuple(x.shape)}"
            )
        wide = at_least_float32(x)  # statistics in float32 under reduced precision
        if self.training:
            mean, var = self._batch_statistics(wide)
        else:
            mean, var = self.running_mean, self.running_var
        shape = self._stat_shape(x)
        x_hat = (wide - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + self.eps)
        channel = (1, -1) + (1,) * (x.dim() - 2)
        return (self.weight.reshape(channel) * x_hat + self.bias.reshape(channel)).to(x.dtype)

    def _stat_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        # per-activation running stats are per channel (0 and 1) until the first training batch
        if self.stats == "activation" and (self.training or self.running_mean.dim() > 1):
            return (1, *x.shape[1:])
        return (1, -1) + (1,) * (x.dim() - 2)

    def _batch_statistics(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        axes = self.reduced_axes(x)
        count = math.prod(x.shape[a] for a in axes)
        if count == 1 and self.single_value == "raise":
            raise ValueError(
                f"Expected more than 1 value per channel when training, got input size {x.size()}"
            )
        mean = x.mean(dim=axes)
        var = x.var(dim=axes, unbiased=False)
        update_running_statistics(self, mean.detach(), var.detach(), count)
        return mean, var


class ManualBatchNorm(VirtualBatches, _ManualBatchNormCore):
    """BN over inputs of shape (N, C, *spatial) with framework conventions as arguments.

    ``spatial_dims`` fixes the input rank (0 for (N, C) inputs, as BatchNorm1d accepts). Running
    statistics have shape (C,) for ``stats="channel"``; for ``stats="activation"`` they have
    shape (C, *spatial), allocated on the first training batch. In training it normalizes in
    ghost batches when ``norm_batch_size`` is set (:class:`VirtualBatches`).
    """


class BatchOptions(NormOptions):
    """Options of the BN family (``model.batch``, and the base of its relatives' options)."""

    eps: float = Field(1e-5, gt=0)
    """added to the variance inside the sqrt (torch 1e-5, Keras 1e-3)"""
    momentum: float | None = Field(0.1, gt=0, le=1)
    """running-stat update weight on the NEW batch, PyTorch convention: running = (1 - m)·running +
    m·batch. Keras momentum 0.99 is 0.01 here; null = cumulative
    """
    momentum_convention: Literal["torch", "keras"] = "torch"
    """how momentum is written: torch (weight of the new batch, 0.1) or keras (weight of the running
    value: Keras 0.99, old d2l 0.9); keras m is used as torch 1 - m
    """

    @model_validator(mode="after")
    def _keras_momentum_below_one(self) -> BatchOptions:
        if self.momentum_convention == "keras" and self.momentum in (None, 1):
            raise ValueError("momentum in the keras convention must be in (0, 1)")
        return self

    @property
    def torch_momentum(self) -> float | None:
        """The momentum as torch's layers take it (weight of the new batch)."""
        if self.momentum is not None and self.momentum_convention == "keras":
            return 1 - self.momentum
        return self.momentum


class ManualBatchOptions(BatchOptions):
    """``model.batch_manual``: BN's options plus the framework knobs (defaults: PyTorch's)."""

    running_var: Literal["unbiased", "biased"] = "unbiased"
    """what running_var stores"""
    stats: Literal["channel", "activation"] = "channel"
    """per channel, or per position too"""
    single_value: Literal["raise", "beta"] = "raise"
    """one value per statistic: raise or β"""


BATCH_LEGACY_KEYS = {
    "eps": "norm_eps",
    "momentum": "bn_momentum",
    "momentum_convention": "bn_momentum_convention",
}


def _manual_axes(module: nn.Module, ndim: int) -> tuple[int, ...]:
    return (0,) if module.stats == "activation" else batch_axes(module, ndim)


def _manual_at_one_value(module: nn.Module) -> str:
    return "raises, as PyTorch" if module.single_value == "raise" else "gives β, as TF"


@register_norm(
    name="batch",
    summary="per channel over N and the spatial axes (Ioffe & Szegedy 2015, arXiv 1502.03167); "
    "eval mode uses running estimates; torch's layer with ghost batches",
    options=BatchOptions,
    modules=(_BatchNorm,),
    statistic_axes=batch_axes,
    at_one_value=fixed("PyTorch raises, TF gives β"),
    running_statistics=True,
    spatial_dims=(0, 1, 2, 3),
    legacy_keys=BATCH_LEGACY_KEYS,
)
def _batch(channels: int, spatial_dims: int, options: BatchOptions) -> nn.Module:
    layer = TORCH_BATCH_NORM[max(spatial_dims, 1)]
    return layer(channels, eps=options.eps, momentum=options.torch_momentum)


@register_norm(
    name="batch_manual",
    summary="BN written out (this module): the same as batch by default, with the framework "
    "knobs (per-activation statistics, biased running variance, β instead of a raise)",
    options=ManualBatchOptions,
    modules=(ManualBatchNorm,),
    statistic_axes=_manual_axes,
    at_one_value=_manual_at_one_value,
    running_statistics=True,
    spatial_dims=(0, 1, 2, 3),
    legacy_keys={
        **BATCH_LEGACY_KEYS,
        "running_var": "bn_running_var",
        "stats": "bn_stats",
        "single_value": "bn_single_value",
    },
)
def _batch_manual(channels: int, spatial_dims: int, options: ManualBatchOptions) -> nn.Module:
    return ManualBatchNorm(
        channels,
        spatial_dims,
        eps=options.eps,
        momentum=options.torch_momentum,
        unbiased_running_var=options.running_var == "unbiased",
        stats=options.stats,
        single_value=options.single_value,
    )


@register_norm(
    name="batch_keras",
    summary="batch_manual with Keras/TF defaults: ε 1e-3, momentum 0.99 in the Keras form "
    "(0.01 here), biased running variance, β at one value per channel (StackOverflow q. "
    "48320854)",
    options=NoOptions,
    modules=(ManualBatchNorm,),
    statistic_axes=_manual_axes,
    at_one_value=_manual_at_one_value,
    running_statistics=True,
    spatial_dims=(0, 1, 2, 3),
)
def _batch_keras(channels: int, spatial_dims: int, options: NoOptions) -> nn.Module:
    return ManualBatchNorm(
        channels,
        spatial_dims,
        eps=1e-3,
        momentum=0.01,
        unbiased_running_var=False,
        single_value="beta",
    )
