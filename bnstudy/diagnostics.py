"""Measurements that explain what each norm layer sees at a batch size.

- How many values and how many images each statistic averages over (for BN: N × spatial size
  values of N images per channel), with a verdict: 1 value is degenerate (x − μ = 0 exactly,
  the output is β; PyTorch raises instead); for BN, 1 image per statistic makes train mode
  InstanceNorm and eval mode something else, and few images are noisy whatever the map size,
  because the pixels of one image are correlated: the noise of a batch mean follows
  1/√(images), not 1/√(values).
- How far batch statistics stray from the population at this batch size: for each BN layer,
  the std across batches of the per-channel batch mean, relative to the population std, and of
  the batch variance, relative to the population variance. The quantitative form of "batch
  statistics averaged over a single sample vary greatly" (StackOverflow q. 59648509). Beside
  it, two predictions: from between-image variation (std of per-image means / population std
  / √images per batch, what independent images give) and from the values law
  (1/√values per statistic, what independent pixels would give).
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

from bnstudy.device import is_out_of_memory
from bnstudy.norms import module_spec
from bnstudy.norms.registry import no_axes
from bnstudy.results import BETA_FRACTION, OUTPUT_CHANGE, OUTPUT_STD, ZERO_FRACTION
from bnstudy.train import norms_in_train_mode, preserved_buffers

NOISY_BELOW = 16  # values per statistic under which batch statistics count as noisy
# Images per BN statistic, with what the shipped Fashion-MNIST study measured of BN in eval mode
# against BN at 32 images (results/example/fashion-nbs, docs/findings.md): at 1 image −51.9 pp,
# at 2 −1.4 pp (both supported), at 4 −0.5 pp (not resolved), from 8 on equivalent within
# ±1 pp; above 1 image train mode at test was never shown better than eval mode. Larger nets on
# larger data lose more: the GroupNorm paper's ImageNet ResNet-50, 3.7 points of error at 4
# images per GPU and 1.2 at 8 (arXiv 1803.08494).
FEW_IMAGES_BELOW = 4  # eval mode measurably short
SMALL_BELOW = 8  # within about a point on these studies, not on ImageNet
_SPATIAL_NAMES = {0: (), 1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


def reduced_axes(module: nn.Module, ndim: int) -> tuple[int, ...] | None:
    """Axes of an ``ndim`` input that one statistic of ``module`` averages over (axis 1: the
    C/G channels of a group), or None for a module no registered norm builds."""
    spec = module_spec(module)
    return None if spec is None else spec.statistic_axes(module, ndim)


def module_uses_batch_statistics(module: nn.Module) -> bool:
    """True for layers whose training statistics mix the samples of a batch."""
    spec = module_spec(module)
    return spec is not None and spec.batch_statistics


def norm_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The named norm layers of ``model`` (those a registered norm builds), in the model's
    module order."""
    return [(name, m) for name, m in model.named_modules() if module_spec(m) is not None]


def computes_statistics(module: nn.Module) -> bool:
    """Whether ``module`` normalizes with statistics of its input (every registered norm but a
    frozen BN, whose registry ``statistic_axes`` is ``no_axes``: its statistics are fixed)."""
    spec = module_spec(module)
    return spec is not None and spec.statistic_axes is not no_axes


def values_per_statistic(module: nn.Module, shape: tuple[int, ...]) -> int | None:
    """How many values each mean/variance of ``module`` averages for an input ``shape``; None
    for a module that computes no statistic (a frozen BN)."""
    if not computes_statistics(module):
        return None
    axes = reduced_axes(module, len(shape))
    count = math.prod(shape[a] for a in axes if a != 1)
    if 1 in axes:  # C/G channels per group
        count *= shape[1] // module.num_groups
    return count


def axis_names(module: nn.Module, shape: tuple[int, ...]) -> str:
    """The reduced axes by name, e.g. 'N,H,W' for BatchNorm2d, 'C/G,H,W' for GroupNorm;
    'none' for a module that computes no statistic."""
    if not computes_statistics(module):
        return "none"
    grouped = getattr(module, "num_groups", 1) > 1
    names = ("N", "C/G" if grouped else "C", *_SPATIAL_NAMES[len(shape) - 2])
    return ",".join(names[a] for a in reduced_axes(module, len(shape)))


def verdict(count: int | None, module: nn.Module, images: int = 1) -> str:
    """What to expect from a statistic over ``count`` values of ``images`` images, in train
    mode and in eval mode, as the shipped studies measured it (:data:`FEW_IMAGES_BELOW`):
    degenerate / per-sample / few images / small / noisy / fine (``count`` None: the module
    computes no statistic)."""
    if count is None:
        return f"fixed: {_what_happens_at_one_value(module)}"
    if count == 1:
        return f"degenerate: 1 value ({_what_happens_at_one_value(module)})"
    if module_uses_batch_statistics(module):
        if images == 1:
            return (
                "per-sample: train mode is InstanceNorm and eval mode collapses (Fashion-MNIST: "
                "−51.9 pp against 32 images; PreciseBN does not repair it)"
            )
        if images < FEW_IMAGES_BELOW:
            return (
                f"few images ({images}): eval mode a point or two short of large batches "
                "(Fashion-MNIST at 2: −1.4 pp); test in eval mode, not train mode"
            )
        if images < SMALL_BELOW:
            return (
                f"small ({images} images): eval mode within about a point of large batches "
                "here (Fashion-MNIST at 4: −0.5 pp, not resolved), more on ImageNet (GroupNorm "
                "paper: 3.7 points at 4); test in eval mode"
            )
    if count < NOISY_BELOW:
        return f"noisy (< {NOISY_BELOW} values)"
    if module_uses_batch_statistics(module):
        return "fine: from 8 images, BN at 32 within ±1 pp (Fashion-MNIST)"
    return "fine: per-sample statistics, the same in train and eval mode"


def decisive_layer(reports: list[LayerReport]) -> LayerReport | None:
    """The layer whose verdict speaks for the model: the one computing its statistics over the
    fewest values (a degenerate one first; in BN every layer sees the same images), else the
    first; None for a model without norm layers."""
    computing = [report for report in reports if report.values is not None]
    if computing:
        return min(computing, key=lambda report: report.values)
    return reports[0] if reports else None


def _what_happens_at_one_value(module: nn.Module) -> str:
    spec = module_spec(module)
    return spec.at_one_value(module) if spec is not None else "unknown"


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
    """The model's output, or None when a layer raises (the hooks have fired up to there);
    running out of memory is the run's outcome, not a diagnostic, and propagates."""
    try:
        return model(x)
    except (ValueError, RuntimeError) as error:
        if is_out_of_memory(error):
            raise
        return None


@dataclass
class LayerReport:
    """What one norm layer sees at a batch size."""

    name: str
    kind: str
    input_shape: tuple[int, ...]
    axes: str
    values: int | None  # values per statistic; None: the layer computes none (a frozen BN)
    images: int | None  # images per statistic: N for batch statistics, 1 per sample, None: none
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
            images = shape[0] if module_uses_batch_statistics(module) else 1
            images = images if count is not None else None
            reports.append(
                LayerReport(
                    name,
                    type(module).__name__,
                    shape,
                    axis_names(module, shape),
                    count,
                    images,
                    verdict(count, module, images),
                )
            )
    return reports


@torch.no_grad()
def batch_statistic_noise(
    model: nn.Module, batches: list[torch.Tensor]
) -> dict[str, dict[str, float]]:
    """For each layer using batch statistics, over equal-size ``batches`` run in train mode:

    ``mean_noise``: std across batches of the per-channel batch mean / population std;
    ``var_noise``: std across batches of the per-channel batch variance / population variance;
    ``min_var``: the smallest per-channel batch variance seen;
    ``mean_noise_between_images``: the prediction of ``mean_noise`` from between-image
    variation, std of the per-image means / population std / √(images per batch);
    ``mean_noise_values_law``: the prediction if all values were independent,
    1/√(values per statistic). Averaged over channels; the population is all values of all
    batches pooled.
    """
    layers = [(n, m) for n, m in norm_layers(model) if module_uses_batch_statistics(m)]
    collected: dict[str, dict[str, list[torch.Tensor]]] = {
        name: {"means": [], "variances": [], "image_means": []} for name, _ in layers
    }
    counts: dict[str, int] = {}
    with preserved_buffers(model), captured_inputs(layers) as seen:
        norms_in_train_mode(model)
        for batch in batches:
            seen.clear()
            forward_quietly(model, batch)
            for name, module in layers:
                if name in seen:
                    counts[name] = _collect(collected[name], seen[name].double(), module)
    return {
        name: _noise(collected[name], len(batches[0]), counts[name])
        for name, _ in layers
        if collected[name]["means"]
    }


def _collect(store: dict[str, list[torch.Tensor]], x: torch.Tensor, module: nn.Module) -> int:
    """Append one batch's statistics of a layer input ``x``; return values per statistic."""
    axes = reduced_axes(module, x.dim())
    store["means"].append(x.mean(dim=axes).flatten())
    store["variances"].append(x.var(dim=axes, unbiased=False).flatten())
    per_image = tuple(a for a in axes if a != 0)
    image_means = x.mean(dim=per_image) if per_image else x
    store["image_means"].append(image_means.flatten(1))
    return math.prod(x.shape[a] for a in axes)


def _noise(collected: dict[str, list[torch.Tensor]], images: int, values: int) -> dict[str, float]:
    """Noise of one layer's batch statistics and its two predictions (see the caller)."""
    means, variances = torch.stack(collected["means"]), torch.stack(collected["variances"])
    image_means = torch.cat(collected["image_means"])
    population_mean = means.mean(0)
    population_std = ((variances + means**2).mean(0) - population_mean**2).sqrt()
    spread = (lambda t: t.std(0)) if len(means) > 1 else (lambda t: torch.full_like(t[0], math.nan))
    between = image_means.std(0, correction=0) / population_std / math.sqrt(images)
    # nanmean: a channel constant over the whole population (a dead unit) has 0/0 noise
    return {
        "mean_noise": (spread(means) / population_std).nanmean().item(),
        "var_noise": (spread(variances) / population_std**2).nanmean().item(),
        "min_var": variances.min().item(),
        "mean_noise_between_images": between.nanmean().item(),
        "mean_noise_values_law": 1 / math.sqrt(values),
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
            norms_in_train_mode(model)
            output = forward_quietly(model, probe)
            changed = forward_quietly(model, other)
    finally:
        if handle is not None:
            handle.remove()
    if output is None or changed is None:
        return dict.fromkeys((OUTPUT_STD, ZERO_FRACTION, BETA_FRACTION, OUTPUT_CHANGE), math.nan)
    return {
        OUTPUT_STD: output.float().std().item() if output.numel() > 1 else 0.0,
        ZERO_FRACTION: (output == 0).float().mean().item(),
        BETA_FRACTION: _beta_fraction(last_norm, captured[0] if captured else None),
        OUTPUT_CHANGE: (output - changed).abs().max().item(),
    }


def _beta_fraction(module: nn.Module | None, out: torch.Tensor | None) -> float:
    bias = getattr(module, "bias", None)
    if out is None or bias is None:
        return math.nan
    # in the output's dtype: under autocast a norm returns β rounded to bfloat16/float16
    beta = bias.detach().to(out.dtype).reshape((1, -1) + (1,) * (out.dim() - 2))
    return (out == beta).float().mean().item()
