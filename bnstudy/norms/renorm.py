"""Batch Renormalization: BN whose training output is corrected toward the running statistics.

Ioffe 2017 (arXiv 1702.03275), Algorithm 1. In training mode, for each channel c, over N and
the spatial axes (m values)::

    mu_B    = mean of x                               sigma_B = sqrt(var_B + eps)
    var_B   = mean of (x - mu_B)^2 (biased)           sigma   = sqrt(running_var + eps)
    r       = clip(sigma_B / sigma, 1/r_max, r_max)           (no gradient)
    d       = clip((mu_B - running_mean) / sigma, -d_max, d_max)  (no gradient)
    y       = gamma * ((x - mu_B) / sigma_B * r + d) + beta

with ``running_mean``/``running_var`` as they were before this batch; then they move toward the
batch statistics. In eval mode ``y = gamma * (x - running_mean) / sqrt(running_var + eps) +
beta``, as in BN. Gradients flow through ``mu_B`` and ``sigma_B`` exactly as in BN; ``r`` and
``d`` are constants, so with ``r_max = 1, d_max = 0`` (r = 1, d = 0) this is BN: outputs,
gradients and running statistics equal ``torch.nn.BatchNorm{1,2,3}d(eps, momentum)``.

Where this differs from the paper: the paper keeps moving averages of the mean and of the
standard deviation (``sigma := sigma + alpha (sigma_B - sigma)``, alpha = 0.01). Here the
running statistics are kept exactly as torch's BN keeps them: ``running_mean`` and
``running_var`` (the UNBIASED batch variance ``m/(m-1) var_B`` is stored), ``momentum`` = weight
of the new batch (default 0.1, see below), ``None`` = cumulative average over
``num_batches_tracked``; and ``sigma = sqrt(running_var + eps)``. So the module is a drop-in BN:
PreciseBN recalibration (:mod:`bnstudy.precise`), eval mode and ``momentum=None`` work as for BN.

Schedule of the clipping limits (``schedule="fractions"``, the default). The paper trains with
plain BN (r_max 1, d_max 0) for the first 5k steps, then relaxes the limits gradually to reach
d_max 5 at 25k steps and r_max 3 at 40k steps. It counts absolute steps, so on a short run its
schedule would be plain BN throughout. The defaults here read those step counts as fractions of
a 100k-step run: plain BN while ``progress < relax_start`` (0.05); then r_max_now rises linearly
from 1 at ``relax_start`` to ``r_max`` at ``r_max_at`` (0.4) and d_max_now from 0 at
``relax_start`` to ``d_max`` at ``d_max_at`` (0.25), and both stay there. The linear ramp is
this module's reading of "gradually". ``progress`` is the fraction of the run's optimizer
steps done, set by the training loop through :meth:`set_progress` before each step.
``schedule="fixed"``: ``r_max`` and ``d_max`` apply from the first step. (The GroupNorm paper's
Batch Renorm baseline, arXiv 1803.08494, used r_max 1.5 and d_max 0.5.)

The correction belongs to training steps only. Outside them (``progress`` None: at
construction, and after the loop resets it) train mode is plain batch statistics, r = 1 and
d = 0: so train-mode testing normalizes with each test batch's statistics, and PreciseBN/AdaBN
recalibration runs its batches through plain BN, as for BN (with the correction, each layer's
output, the next layer's input, would be renormalized toward running statistics that the
recalibration is replacing).

Momentum: 0.1 by default, torch BN's, not the paper's alpha = 0.01. Like the schedule, alpha
counts steps: its moving averages forget their initial values (0 and 1) over about 1/alpha =
100 steps, which the paper's 5k plain-BN steps cover 50 times over; in a run of a few thousand
steps the correction would start while the averages still hold mostly their initial values
and lag weights that move fast. Measured on the quickstart protocol (3,000 images, 752 steps,
lr 0.1 cosine, 32 images per statistic, 1 seed, CPU): momentum 0.01 gave 66.2%,
0.1 gave 80.1%, plain BN 95.0%. Set ``momentum: 0.01`` for the paper's value on long runs.

One value per channel in training (N·∏spatial == 1) raises PyTorch's ``ValueError``, as BN does.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from bnstudy.norms.batch import BatchOptions, VirtualBatches, update_running_statistics
from bnstudy.norms.precision import at_least_float32
from bnstudy.norms.registry import batch_axes, fixed, register_norm

SCHEDULES = ("fractions", "fixed")


def _check_limits(r_max: float, d_max: float, schedule: str) -> None:
    if r_max < 1:
        raise ValueError(f"r_max must be >= 1 (r is clipped to [1/r_max, r_max]), got {r_max}")
    if d_max < 0:
        raise ValueError(f"d_max must be >= 0 (d is clipped to [-d_max, d_max]), got {d_max}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")


def _check_fractions(relax_start: float, d_max_at: float, r_max_at: float) -> None:
    if not 0 <= relax_start < 1:
        raise ValueError(f"relax_start must be in [0, 1), got {relax_start}")
    if not relax_start < d_max_at <= 1:
        raise ValueError(f"d_max_at must be in (relax_start={relax_start}, 1], got {d_max_at}")
    if not relax_start < r_max_at <= 1:
        raise ValueError(f"r_max_at must be in (relax_start={relax_start}, 1], got {r_max_at}")


class _BatchRenormCore(nn.Module):
    """One Batch Renorm call of :class:`BatchRenorm` (the whole batch, no ghost split)."""

    def __init__(
        self,
        num_features: int,
        spatial_dims: int,
        *,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        r_max: float = 3.0,
        d_max: float = 5.0,
        schedule: str = "fractions",
        relax_start: float = 0.05,
        d_max_at: float = 0.25,
        r_max_at: float = 0.4,
    ) -> None:
        super().__init__()
        _check_limits(r_max, d_max, schedule)
        _check_fractions(relax_start, d_max_at, r_max_at)
        if momentum is not None and not 0 <= momentum <= 1:
            raise ValueError(f"momentum must be in [0, 1] or None, got {momentum}")
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.num_features, self.spatial_dims = num_features, spatial_dims
        self.eps, self.momentum = eps, momentum
        self.r_max, self.d_max, self.schedule = float(r_max), float(d_max), schedule
        self.relax_start, self.d_max_at, self.r_max_at = relax_start, d_max_at, r_max_at
        self.progress: float | None = None
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def extra_repr(self) -> str:
        text = (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"r_max={self.r_max}, d_max={self.d_max}, schedule={self.schedule}"
        )
        if self.schedule == "fractions":
            text += (
                f", relax_start={self.relax_start}, d_max_at={self.d_max_at}, "
                f"r_max_at={self.r_max_at}"
            )
        return text

    def set_progress(self, fraction: float | None) -> None:
        """Record the fraction of the run's optimizer steps done (0 to 1); the clipping limits
        of the ``fractions`` schedule follow it. ``None``: not inside a training step."""
        if fraction is not None and not 0 <= fraction <= 1:
            raise ValueError(f"progress must be a fraction in [0, 1], got {fraction}")
        self.progress = None if fraction is None else float(fraction)

    def clip_limits(self) -> tuple[float, float]:
        """``(r_max_now, d_max_now)`` at the current :attr:`progress`; (1, 0), plain batch
        statistics, outside training steps (progress None)."""
        if self.progress is None:
            return 1.0, 0.0
        if self.schedule == "fixed":
            return self.r_max, self.d_max
        if self.progress < self.relax_start:
            return 1.0, 0.0
        done = self.progress - self.relax_start
        r_ramp = min(1.0, done / (self.r_max_at - self.relax_start))
        d_ramp = min(1.0, done / (self.d_max_at - self.relax_start))
        return 1.0 + (self.r_max - 1.0) * r_ramp, self.d_max * d_ramp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != self.spatial_dims + 2:
            raise ValueError(
                f"expected a {self.spatial_dims + 2}D input, got shape {tuple(x.shape)}"
            )
        channel = (1, -1) + (1,) * (x.dim() - 2)
        xf = at_least_float32(x)
        if self.training:
            x_hat = self._renormalize(xf, channel)
        else:
            scale = torch.rsqrt(self.running_var + self.eps).reshape(channel)
            x_hat = (xf - self.running_mean.reshape(channel)) * scale
        y = self.weight.reshape(channel) * x_hat + self.bias.reshape(channel)
        return y.to(x.dtype)

    def _renormalize(self, x: torch.Tensor, channel: tuple[int, ...]) -> torch.Tensor:
        axes = (0, *range(2, x.dim()))
        count = x.numel() // x.shape[1]
        if count == 1:
            raise ValueError(
                f"Expected more than 1 value per channel when training, got input size {x.size()}"
            )
        mean = x.mean(dim=axes)
        var = x.var(dim=axes, unbiased=False)
        std = torch.sqrt(var + self.eps)
        r, d = self._corrections(mean.detach(), std.detach())
        update_running_statistics(self, mean.detach(), var.detach(), count)
        x_hat = (x - mean.reshape(channel)) / std.reshape(channel)
        return x_hat * r.reshape(channel) + d.reshape(channel)

    def _corrections(
        self, mean: torch.Tensor, std: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """r and d from the (detached) batch statistics and the running ones before this batch."""
        r_max, d_max = self.clip_limits()
        running_std = torch.sqrt(self.running_var + self.eps)
        r = (std / running_std).clamp(1.0 / r_max, r_max)
        d = ((mean - self.running_mean) / running_std).clamp(-d_max, d_max)
        return r, d


class BatchRenorm(VirtualBatches, _BatchRenormCore):
    """Batch Renorm over inputs of shape (N, C, *spatial), torch BN's running statistics.

    ``BatchRenorm(num_features, spatial_dims, *, eps=1e-5, momentum=0.1, r_max=3.0,
    d_max=5.0, schedule="fractions", relax_start=0.05, d_max_at=0.25, r_max_at=0.4)``.
    ``spatial_dims`` fixes the input rank (0 for (N, C) inputs). ``r_max``/``d_max`` are the
    final clipping limits; with the ``fractions`` schedule they are reached at the fractions
    ``r_max_at``/``d_max_at`` of the run (module docstring). :meth:`clip_limits` gives the
    limits now. In training it normalizes in ghost batches when ``norm_batch_size`` is set
    (:class:`VirtualBatches`): every ghost batch computes its r and d from the running
    statistics as they were before the forward, and the running statistics are updated once
    per forward, from all the ghost batches together.
    """


class RenormOptions(BatchOptions):
    """``model.batch_renorm``: BN's options plus the clipping limits and their schedule (see
    the module docstring)."""

    r_max: float = Field(3.0, ge=1)
    """r is clipped to [1/r_max, r_max] (paper: 3)"""
    d_max: float = Field(5.0, ge=0)
    """d is clipped to [-d_max, d_max] (paper: 5)"""
    schedule: Literal["fractions", "fixed"] = "fractions"
    """fractions: plain BN until relax_start, then linear ramps reaching d_max at d_max_at and r_max
    at r_max_at (fractions of the run's optimizer steps; the defaults are the paper's 5k/25k/40k
    steps read as fractions of 100k); fixed: r_max and d_max from the first step
    """
    relax_start: float = Field(0.05, ge=0, lt=1)
    """schedule fractions: the fraction of the run's optimizer steps from which r and d relax"""
    d_max_at: float = Field(0.25, gt=0, le=1)
    """schedule fractions: the fraction of the steps at which d reaches d_max"""
    r_max_at: float = Field(0.4, gt=0, le=1)
    """schedule fractions: the fraction of the steps at which r reaches r_max"""

    @model_validator(mode="after")
    def _ordered_fractions(self) -> RenormOptions:
        _check_fractions(self.relax_start, self.d_max_at, self.r_max_at)
        return self


@register_norm(
    name="batch_renorm",
    summary="BN with the batch statistics corrected toward the running ones by r and d, clipped "
    "(Ioffe 2017, arXiv 1702.03275); eval mode uses the running statistics",
    options=RenormOptions,
    modules=(BatchRenorm,),
    statistic_axes=batch_axes,
    at_one_value=fixed("raises, as PyTorch's BN"),
    running_statistics=True,
    needs_progress=True,
    spatial_dims=(0, 1, 2, 3),
)
def _batch_renorm(channels: int, spatial_dims: int, options: RenormOptions) -> nn.Module:
    return BatchRenorm(
        channels,
        spatial_dims,
        eps=options.eps,
        momentum=options.torch_momentum,
        r_max=options.r_max,
        d_max=options.d_max,
        schedule=options.schedule,
        relax_start=options.relax_start,
        d_max_at=options.d_max_at,
        r_max_at=options.r_max_at,
    )
