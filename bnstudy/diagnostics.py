"""Measurements that explain what each norm layer sees at a batch size.

- How many values each statistic averages over (for BN: N × spatial size per channel), with a
  verdict: 1 value is degenerate (x − μ = 0 exactly, the output is β; PyTorch raises instead),
  fewer than 16 is noisy.
- How far batch statistics stray from the population at this batch size: for each BN layer,
  the std across batches of the per-channel batch mean, relative to the population std, and of
  the batch variance, relative to the population variance. The quantitative form of "batch
  statistics averaged over a single sample vary greatly" (StackOverflow q. 59648509).
- Whether the output collapses: on a fixed probe batch in train mode, the std of the outputs,
  the fraction exactly 0, the fraction of the last norm's outputs exactly equal to its β, and
  how much the output moves when the input does (StackOverflow q. 48320854).

Layer inputs are captured with forward pre-hooks, so a layer that raises (PyTorch's
one-value-per-channel guard) is still measured. Buffers and modes are restored afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from bnstudy.batchnorm import ManualBatchNorm
from bnstudy.train import preserved_buffers

NOISY_BELOW = 16  # values per statistic under which batch statistics count as noisy
_SPATIAL_NAMES = {0: (), 1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


def _batch_axes(module: nn.Module, ndim: int) -> tuple[int, ...]:
    if isinstance(module, ManualBatchNorm) and module.stats == "activation":
        return (0,)
    return (0, *range(2, ndim))


def _per_sample_axes(module: nn.Module, ndim: int) -> tuple[int, ...]:
    return tuple(range(2, ndim))


def _group_axes(module: nn.Module, ndim: int) -> tuple[int, ...]:
    return (1, *range(2, ndim))


# Norm types whose statistics this module understands: type -> axes reduced per statistic.
# For group norm axis 1 means "the C/G channels of a group".
_REDUCTIONS: list[tuple[type, Callable[[nn.Module, int], tuple[int, ...]]]] = [
    (_BatchNorm, _batch_axes),
    (ManualBatchNorm, _batch_axes),
    (_InstanceNorm, _per_sample_axes),
    (nn.GroupNorm, _group_axes),
]


def reduced_axes(module: nn.Module, ndim: int) -> tuple[int, ...] | None:
    """Axes of an ``ndim`` input that one statistic of ``module`` averages over, or None."""
    for kind, axes in _REDUCTIONS:
        if isinstance(module, kind):
            return axes(module, ndim)
    return None


def uses_batch_statistics(module: nn.Module) -> bool:
    """True for layers whose training statistics mix the samples of a batch."""
    return isinstance(module, (_BatchNorm, ManualBatchNorm))


def norm_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The named norm layers of ``model``, in forward order of registration."""
    return [(name, m) for name, m in model.named_modules() if reduced_axes(m, 4) is not None]


def values_per_statistic(module: nn.Module, shape: tuple[int, ...]) -> int:
    """How many values each mean/variance of ``module`` averages for an input ``shape``."""
    axes = reduced_axes(module, len(shape))
    count = math.prod(shape[a] for a in axes if a != 1)
    if 1 in axes:  # group norm: C/G channels per group
        count *= shape[1] // module.num_groups
    return count


def axis_names(module: nn.Module, shape: tuple[int, ...]) -> str:
    """The reduced axes by name, e.g. 'N,H,W' for BatchNorm2d, 'C/G,H,W' for GroupNorm."""
    names = (
        "N",
        "C/G" if isinstance(module, nn.GroupNorm) else "C",
        *_SPATIAL_NAMES[len(shape) - 2],
    )
    return ",".join(names[a] for a in reduced_axes(module, len(shape)))


def verdict(count: int, module: nn.Module) -> str:
    """fine / noisy / degenerate for a statistic over ``count`` values."""
    if count == 1:
        return f"degenerate: 1 value ({_what_happens_at_one_value(module)})"
    return f"noisy (< {NOISY_BELOW} values)" if count < NOISY_BELOW else "fine"


def _what_happens_at_one_value(module: nn.Module) -> str:
    if isinstance(module, ManualBatchNorm):
        return "raises, as PyTorch" if module.single_value == "raise" else "gives β, as TF"
    if isinstance(module, _BatchNorm):
        return "PyTorch raises, TF gives β"
    if isinstance(module, _InstanceNorm):
        return "PyTorch raises in training"
    return "gives β"


@contextmanager
def captured_inputs(layers: list[tuple[str, nn.Module]]) -> Iterator[dict[str, torch.Tensor]]:
    """Record the latest input of each layer (pre-hooks: recorded even if the layer raises)."""
    seen: dict[str, torch.Tensor] = {}

    def hook(name: str) -> Callable:
        return lambda module, args: seen.__setitem__(name, args[0].detach())

    handles = [module.register_forward_pre_hook(hook(name)) for name, module in layers]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def forward_quietly(model: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """The model's output, or None when a layer raises (the hooks have fired up to there)."""
    try:
        return model(x)
    except (ValueError, RuntimeError):
        return None


@dataclass
class LayerReport:
    """What one norm layer sees at a batch size."""

    name: str
    kind: str
    input_shape: tuple[int, ...]
    axes: str
    values: int
    verdict: str


@torch.no_grad()
def layer_reports(model: nn.Module, x: torch.Tensor) -> list[LayerReport]:
    """Per norm layer: input shape for batch ``x``, reduced axes, values per statistic."""
    layers = norm_layers(model)
    with preserved_buffers(model), captured_inputs(layers) as seen:
        model.eval()
        forward_quietly(model, x)
    reports = []
    for name, module in layers:
        if name in seen:
            shape = tuple(seen[name].shape)
            count = values_per_statistic(module, shape)
            reports.append(
                LayerReport(
                    name,
                    type(module).__name__,
                    shape,
                    axis_names(module, shape),
                    count,
                    verdict(count, module),
                )
            )
    return reports


@torch.no_grad()
def batch_statistic_noise(
    model: nn.Module, batches: list[torch.Tensor]
) -> dict[str, dict[str, float]]:
    """For each layer using batch statistics, over ``batches`` run in train mode:

    ``mean_noise``: std across batches of the per-channel batch mean / population std;
    ``var_noise``: std across batches of the per-channel batch variance / population variance;
    ``min_var``: the smallest per-channel batch variance seen. Averaged over channels; the
    population is all values of all batches pooled.
    """
    layers = [(n, m) for n, m in norm_layers(model) if uses_batch_statistics(m)]
    means: dict[str, list[torch.Tensor]] = {name: [] for name, _ in layers}
    variances: dict[str, list[torch.Tensor]] = {name: [] for name, _ in layers}
    with preserved_buffers(model), captured_inputs(layers) as seen:
        model.train()
        for batch in batches:
            seen.clear()
            forward_quietly(model, batch)
            for name, module in layers:
                if name in seen:
                    x = seen[name].double()
                    axes = reduced_axes(module, x.dim())
                    means[name].append(x.mean(dim=axes).flatten())
                    variances[name].append(x.var(dim=axes, unbiased=False).flatten())
    return {
        name: _noise(torch.stack(means[name]), torch.stack(variances[name]))
        for name, _ in layers
        if means[name]
    }


def _noise(means: torch.Tensor, variances: torch.Tensor) -> dict[str, float]:
    """means, variances: (batches, statistics) of equal-size batches."""
    population_mean = means.mean(0)
    population_var = (variances + means**2).mean(0) - population_mean**2
    spread = (lambda t: t.std(0)) if len(means) > 1 else (lambda t: torch.full_like(t[0], math.nan))
    # nanmean: a channel constant over the whole population (a dead unit) has 0/0 noise
    return {
        "mean_noise": (spread(means) / population_var.sqrt()).nanmean().item(),
        "var_noise": (spread(variances) / population_var).nanmean().item(),
        "min_var": variances.min().item(),
    }


@torch.no_grad()
def output_probe(model: nn.Module, probe: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    """Train-mode outputs on a fixed ``probe`` batch: their std, the fraction exactly 0, the
    fraction of the last norm's outputs exactly equal to its β, and the largest output change
    when the input is replaced by ``other`` (0 means the output ignores the input)."""
    layers = norm_layers(model)
    last_norm = layers[-1][1] if layers else None
    captured: list[torch.Tensor] = []
    handle = (
        last_norm.register_forward_hook(lambda module, args, out: captured.append(out.detach()))
        if last_norm
        else None
    )
    try:
        with preserved_buffers(model):
            model.train()
            output = forward_quietly(model, probe)
            changed = forward_quietly(model, other)
    finally:
        if handle is not None:
            handle.remove()
    if output is None or changed is None:
        nan = math.nan
        return {"output_std": nan, "zero_fraction": nan, "beta_fraction": nan, "output_change": nan}
    return {
        "output_std": output.float().std().item() if output.numel() > 1 else 0.0,
        "zero_fraction": (output == 0).float().mean().item(),
        "beta_fraction": _beta_fraction(last_norm, captured[0] if captured else None),
        "output_change": (output - changed).abs().max().item(),
    }


def _beta_fraction(module: nn.Module | None, out: torch.Tensor | None) -> float:
    bias = getattr(module, "bias", None)
    if out is None or bias is None:
        return math.nan
    beta = bias.detach().reshape((1, -1) + (1,) * (out.dim() - 2))
    return (out == beta).float().mean().item()
