"""Normalization layers by name: one registry, every constructor takes channels first.

A factory receives ``(channels, spatial_dims, options)`` and returns a module that maps
``(N, C, *spatial)`` to the same shape. ``spatial_dims`` is 1, 2 or 3 (the number of axes after
C), so one name builds the 1D, 2D or 3D variant. Adding a norm is one decorated function here.

What each norm averages over, for an input of shape (N, C, *S):

- ``batch``    per channel over N and S (Ioffe & Szegedy 2015, arXiv 1502.03167); in eval mode
               it uses running estimates instead. PyTorch raises when N·∏S == 1 in training.
               torch's class with ghost batches (:class:`bnstudy.batchnorm.VirtualBatches`):
               N is the normalization batch, ``train.norm_batch_size``.
- ``group``    per sample, per group of C/G channels, over those channels and S
               (Wu & He 2018, arXiv 1803.08494). Independent of N.
- ``instance`` per sample and channel over S (Ulyanov et al. 2016, arXiv 1607.08022), with a
               learned affine (as nnU-Net uses it); no running statistics.
- ``layer``    per sample over C and S: GroupNorm with one group (Ba et al. 2016, arXiv 1607.06450).
- ``none``     identity.
- ``batch_manual`` BN written out (:mod:`bnstudy.batchnorm`), same as ``batch`` by default, with
               the framework knobs of :class:`NormOptions` (per-activation statistics, no raise).
- ``batch_keras`` ``batch_manual`` preset with Keras/TF defaults: ε 1e-3, momentum 0.99 in the
               Keras form (0.01 here), biased running variance, no raise: one value per channel
               gives β, as in StackOverflow q. 48320854.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from bnstudy.batchnorm import TORCH_BATCH_NORM, ManualBatchNorm


@dataclass(frozen=True)
class NormOptions:
    """Settings shared by the norm factories; each factory reads the ones it uses.

    groups:   number of channel groups for ``group`` (must divide the channel count).
    eps:      added to the variance inside the square root (PyTorch default 1e-5; Keras 1e-3).
    momentum: weight of the NEW batch in the running-statistic update, PyTorch convention:
              ``running = (1 - momentum) * running + momentum * batch`` (default 0.1; Keras'
              momentum 0.99 is 0.01 here). ``None`` means a cumulative average over all batches.
    unbiased_running_var, stats, single_value: ``batch_manual`` only; see
              :class:`bnstudy.batchnorm.ManualBatchNorm` (defaults are PyTorch's behaviour).
    """

    groups: int = 8
    eps: float = 1e-5
    momentum: float | None = 0.1
    unbiased_running_var: bool = True
    stats: str = "channel"
    single_value: str = "raise"


NormFactory = Callable[[int, int, NormOptions], nn.Module]
NORMS: dict[str, NormFactory] = {}
NORM_READS: dict[str, tuple[str, ...]] = {}  # name -> the NormOptions fields its factory uses
# norms whose training statistics mix the samples of a batch (train.norm_batch_size applies)
BATCH_STATISTIC_NORMS: set[str] = set()

_INSTANCE_NORM = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}


def register_norm(
    name: str, reads: tuple[str, ...] = (), batch_statistics: bool = False
) -> Callable[[NormFactory], NormFactory]:
    """Add a factory to :data:`NORMS` under ``name``; ``reads`` names the :class:`NormOptions`
    fields it uses, so that settings it ignores are dropped from a run's config.
    ``batch_statistics``: its training statistics mix samples, so its module honours
    :class:`bnstudy.batchnorm.VirtualBatches` and the normalization batch size applies."""

    def add(factory: NormFactory) -> NormFactory:
        NORMS[name] = factory
        NORM_READS[name] = reads
        if batch_statistics:
            BATCH_STATISTIC_NORMS.add(name)
        return factory

    return add


def uses_batch_statistics(name: str) -> bool:
    """Whether norm ``name`` normalizes with statistics over the samples of a batch (BN family):
    the others compute the same thing at every batch size, so they are a study's controls."""
    return name in BATCH_STATISTIC_NORMS


def create_norm(name: str, channels: int, spatial_dims: int, options: NormOptions) -> nn.Module:
    """Build the norm called ``name`` for ``channels`` channels and ``spatial_dims`` axes."""
    if name not in NORMS:
        raise ValueError(f"unknown norm {name!r}; known: {', '.join(sorted(NORMS))}")
    return NORMS[name](channels, spatial_dims, options)


@register_norm("none")
def _identity(channels: int, spatial_dims: int, options: NormOptions) -> nn.Module:
    return nn.Identity()


@register_norm("batch", reads=("eps", "momentum"), batch_statistics=True)
def _batch(channels: int, spatial_dims: int, options: NormOptions) -> nn.Module:
    return TORCH_BATCH_NORM[spatial_dims](channels, eps=options.eps, momentum=options.momentum)


@register_norm("group", reads=("groups", "eps"))
def _group(channels: int, spatial_dims: int, options: NormOptions) -> nn.Module:
    if channels % options.groups:
        raise ValueError(
            f"group norm: {options.groups} groups do not divide {channels} channels "
            "(choose model.norm_groups dividing every layer width)"
        )
    return nn.GroupNorm(options.groups, channels, eps=options.eps)


@register_norm("instance", reads=("eps",))
def _instance(channels: int, spatial_dims: int, options: NormOptions) -> nn.Module:
    return _INSTANCE_NORM[spatial_dims](channels, eps=options.eps, affine=True)


@register_norm("layer", reads=("eps",))
def _layer(channels: int, spatial_dims: int, options: NormOptions) -> nn.Module:
    return nn.GroupNorm(1, channels, eps=options.eps)


@register_norm(
    "batch_manual",
    reads=("eps", "momentum", "unbiased_running_var", "stats", "single_value"),
    batch_statistics=True,
)
def _batch_manual(channels: int, spatial_dims: int, options: NormOptions) -> nn.Module:
    return ManualBatchNorm(
        channels,
        spatial_dims,
        eps=options.eps,
        momentum=options.momentum,
        unbiased_running_var=options.unbiased_running_var,
        stats=options.stats,
        single_value=options.single_value,
    )


@register_norm("batch_keras", batch_statistics=True)
def _batch_keras(channels: int, spatial_dims: int, options: NormOptions) -> nn.Module:
    return ManualBatchNorm(
        channels,
        spatial_dims,
        eps=1e-3,
        momentum=0.01,
        unbiased_running_var=False,
        single_value="beta",
    )
