"""Frozen BatchNorm: BN whose statistics no longer come from the batch, for fine-tuning.

``frozen_bn`` is detectron2's ``FrozenBatchNorm2d`` (its ``get_norm("FrozenBN")``, the default
when detectors fine-tune at 2 images per GPU) and torchvision's ``ops.FrozenBatchNorm2d``: the
running mean and variance of a trained BN, and its γ and β, all fixed::

    y = (x - running_mean) / sqrt(running_var + eps) * weight + bias

in train and eval mode alike, one scale and shift per channel (the same computation as
torchvision's: ``scale = weight * rsqrt(running_var + eps)``, ``shift = bias - running_mean *
scale``). ``frozen_stats`` keeps the statistics fixed but trains γ and β: BN kept in eval
mode while the rest of the model fine-tunes.

Neither computes a statistic: the same output at every batch size, so in a study they are
controls like GroupNorm. Their state has BN's names, and a fine-tuning run (``train.init_from``
a BN run, or a frozen one, :mod:`bnstudy.finetune`) loads the source's running statistics and
affine into them; from scratch the statistics are 0 and 1 and the layer is an affine map, which
is why planning asks for ``train.init_from`` with these norms (bnstudy.preflight). PreciseBN
leaves them alone (``running_statistics`` false in the registry: they keep statistics, but
fixed ones).
"""

from __future__ import annotations

import torch
from torch import nn

from bnstudy.norms.precision import at_least_float32
from bnstudy.norms.registry import EpsOptions, fixed, no_axes, register_norm

# whose trained state a frozen BN takes over (same names, same meaning): a BN, or a frozen BN
SOURCE_NORMS = ("batch", "frozen_bn", "frozen_stats")


class _FrozenBatchNormBase(nn.Module):
    """BN with fixed running statistics (buffers); γ and β are parameters when
    ``train_affine``, else buffers too. Accepts (N, C, *spatial) with any number of spatial
    axes, including none; computes in at least float32 and returns the input's dtype, as the
    other norms do (:mod:`bnstudy.norms.precision`)."""

    train_affine = False

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        ones, zeros = torch.ones(channels), torch.zeros(channels)
        if self.train_affine:
            self.weight, self.bias = nn.Parameter(ones), nn.Parameter(zeros)
        else:
            self.register_buffer("weight", ones)
            self.register_buffer("bias", zeros)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        shift = self.bias - self.running_mean * scale
        shape = (1, -1) + (1,) * (x.dim() - 2)
        y = at_least_float32(x) * scale.reshape(shape) + shift.reshape(shape)
        return y.to(x.dtype)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object) -> None:
        """A BN's state loads as it is: its ``num_batches_tracked`` has no use here and is
        dropped (as torchvision's ``FrozenBatchNorm2d`` drops it)."""
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def extra_repr(self) -> str:
        return f"{self.running_mean.numel()}, eps={self.eps}"


class FrozenBatchNorm(_FrozenBatchNormBase):
    """``frozen_bn``: statistics, γ and β fixed (buffers)."""


class FrozenStatisticsBatchNorm(_FrozenBatchNormBase):
    """``frozen_stats``: statistics fixed (buffers), γ and β trained (parameters)."""

    train_affine = True


AT_ONE_VALUE = "no statistic: the fixed running statistics normalize any batch"


@register_norm(
    name="frozen_bn",
    summary="BN frozen (detectron2's FrozenBN, torchvision's FrozenBatchNorm2d): a trained BN's "
    "running statistics, γ and β fixed; for fine-tuning (train.init_from a BN run)",
    options=EpsOptions,
    modules=(FrozenBatchNorm,),
    statistic_axes=no_axes,
    at_one_value=fixed(AT_ONE_VALUE),
    spatial_dims=(0, 1, 2, 3),
    loads_state_of=SOURCE_NORMS,
)
def _frozen_bn(channels: int, spatial_dims: int, options: EpsOptions) -> nn.Module:
    return FrozenBatchNorm(channels, options.eps)


@register_norm(
    name="frozen_stats",
    summary="BN with frozen statistics: a trained BN's running statistics fixed (BN in eval "
    "mode while the model trains), γ and β trained; for fine-tuning (train.init_from a BN run)",
    options=EpsOptions,
    modules=(FrozenStatisticsBatchNorm,),
    statistic_axes=no_axes,
    at_one_value=fixed(AT_ONE_VALUE),
    spatial_dims=(0, 1, 2, 3),
    loads_state_of=SOURCE_NORMS,
)
def _frozen_stats(channels: int, spatial_dims: int, options: EpsOptions) -> nn.Module:
    return FrozenStatisticsBatchNorm(channels, options.eps)
