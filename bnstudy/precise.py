"""PreciseBN and AdaBN: population statistics recomputed with frozen weights (Wu & Johnson 2021).

During training, BN's running statistics are an exponential moving average of batch statistics
taken while the weights were still moving, and at a small batch each term is noisy. PreciseBN
("Rethinking 'Batch' in BatchNorm", arXiv 2105.07576, §3 and appendix; fvcore's
``fvcore/nn/precise_bn.py:update_bn_stats``, which detectron2's PreciseBN hook calls) freezes
the weights, runs batches in train mode and sets each BN layer's running mean and variance to
the statistics of the *population* those batches sample: :class:`PopulationStatistics`, the
mean and variance of all the values the layer saw, pooled (law of total variance), stored in
the layer's own convention (unbiased for torch's BN, Batch Renorm, EvoNorm-B0 and
``batch_manual``; biased for ``batch_keras`` and ``running_var: biased``). AdaBN computes the
same on the test set.

The other estimator, ``variance="batch_average"`` (:class:`BatchAverageStatistics`), averages
the per-batch statistics as the layer stores them (its unbiased or biased variance per batch).
That is what pycls's ``compute_precise_bn_stats`` and ``torch.optim.swa_utils.update_bn``
compute and what the EMA converges to with frozen weights, but not the population variance:
it misses the variance of the batch means, ``Var = E[var_b] + Var[mean_b]``, all of the
between-image variance at one image per batch. So the two answer different questions: with
``batch_average``, eval mode recovering means the collapse was noise in the EMA (the same
estimator without its noise and lag); with ``population`` it tests whether the network works
with the statistics of the population at all (if not: train/test inconsistency, the
network relies on statistics that differ between its training batches and the population).
Each run records which one it used (``eval.precise_variance``).

Why not ``torch.optim.swa_utils.update_bn``: besides its estimator, it recognizes only
``torch.nn.modules.batchnorm._BatchNorm`` (not bnstudy's hand-written BN), it overwrites the
trained model's statistics for good, and it calls ``model.train()``, so a batch with one value
per channel raises mid-way, leaving the model half recalibrated. Here the caller restores
everything with :func:`bnstudy.train.preserved_buffers`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import torch
from torch import nn

from bnstudy.norms import module_spec
from bnstudy.norms.batch import stores_unbiased_variance
from bnstudy.train import norms_in_train_mode

VarianceEstimator = Literal["population", "batch_average"]


def running_statistic_layers(model: nn.Module) -> list[nn.Module]:
    """The modules of ``model`` whose norm keeps running statistics (the registry says which)."""
    return [m for m in model.modules() if (spec := module_spec(m)) and spec.running_statistics]


class _Statistics:
    """Per-channel statistics accumulated over batches of a layer's input (float64)."""

    def __init__(self) -> None:
        self.batches = 0  # batches added
        self.mean: torch.Tensor | None = None

    @torch.no_grad()
    def add(self, x: torch.Tensor, axes: tuple[int, ...]) -> None:
        """Add one batch ``x`` of the layer's input, reduced over ``axes`` (its statistic axes)."""
        wide = x.detach().to(torch.float64)
        count = math.prod(x.shape[a] for a in axes)
        self.add_statistics(wide.mean(dim=axes), wide.var(dim=axes, unbiased=False), count)

    def add_statistics(self, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
        """Add a batch by its mean and BIASED variance over ``count`` values."""
        raise NotImplementedError

    def variance(self, unbiased: bool) -> torch.Tensor:
        """The variance as a layer stores it: unbiased or biased."""
        raise NotImplementedError


class PopulationStatistics(_Statistics):
    """Mean and variance of all the values of all the batches pooled (the population estimator
    of Wu & Johnson 2021, arXiv 2105.07576, appendix; fvcore's ``_PopulationVarianceEstimator``).

    For batches b with n_b values, mean μ_b and biased variance σ²_b, and M = Σ n_b::

        μ  = Σ n_b μ_b / M
        σ² = Σ n_b σ²_b / M  +  Σ n_b (μ_b − μ)² / M      (law of total variance:
                                                            E[var_b] + Var[mean_b])

    both count-weighted, so batches of different sizes weigh by their values. σ² is the
    biased variance of the M pooled values; :meth:`variance` gives it or the unbiased
    ``M/(M−1)·σ²``, the layer's convention over the TOTAL count (NaN at M = 1). The sums are
    accumulated by the pairwise update of Chan, Golub & LeVeque (1979), which computes the same
    quantities without the cancellation of ``E[x²] − μ²`` (fvcore's form).
    """

    def __init__(self) -> None:
        super().__init__()
        self.count = 0  # M, values per statistic over all batches
        self._squares: torch.Tensor | None = None  # Σ (x − μ)² over all values = M·σ²

    def add_statistics(self, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
        self.batches += 1
        if self.mean is None:
            self.count, self.mean, self._squares = count, mean.clone(), var * count
            return
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self._squares = self._squares + var * count + delta.square() * (self.count * count / total)
        self.count = total

    def variance(self, unbiased: bool) -> torch.Tensor:
        return self._squares / (self.count - 1 if unbiased else self.count)


class BatchAverageStatistics(_Statistics):
    """The average over batches of the per-batch mean and of the per-batch variance as the layer
    stores it (unbiased ``n_b/(n_b−1)·σ²_b``, or biased ``σ²_b``), each batch weighing the
    same: what ``momentum=None`` cumulative averaging gives, and the EMA in expectation with
    frozen weights (pycls, ``torch.optim.swa_utils.update_bn``; fvcore's
    ``_MeanOfBatchVarianceEstimator``). It lacks the variance of the batch means, so it
    underestimates the population variance, the more the fewer samples per batch."""

    def __init__(self) -> None:
        super().__init__()
        self._biased: torch.Tensor | None = None
        self._unbiased: torch.Tensor | None = None

    def add_statistics(self, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
        self.batches += 1
        # at count == 1 the unbiased variance is 0·inf = NaN, as torch's BN would store it
        unbiased = var * (count / (count - 1) if count > 1 else math.inf)
        if self.mean is None:
            self.mean, self._biased, self._unbiased = mean.clone(), var, unbiased
            return
        weight = 1.0 / self.batches
        self.mean = self.mean + (mean - self.mean) * weight
        self._biased = self._biased + (var - self._biased) * weight
        self._unbiased = self._unbiased + (unbiased - self._unbiased) * weight

    def variance(self, unbiased: bool) -> torch.Tensor:
        return self._unbiased if unbiased else self._biased


ESTIMATORS: dict[str, type[_Statistics]] = {
    "population": PopulationStatistics,
    "batch_average": BatchAverageStatistics,
}


@torch.no_grad()
def recompute_bn_statistics(
    model: nn.Module, batches: Iterable[torch.Tensor], variance: VarianceEstimator = "population"
) -> int:
    """Set every BN layer's running mean and variance to statistics estimated over ``batches``;
    weights are not touched. Returns the number of batches used.

    ``variance``: ``"population"`` (:class:`PopulationStatistics`, the mean and variance of
    all the values pooled) or ``"batch_average"`` (:class:`BatchAverageStatistics`, the
    average of per-batch statistics). The batches run in train mode, one BN call each (no
    ghost split); each layer's input is captured by a forward pre-hook and reduced over the
    layer's statistic axes (the registry's ``statistic_axes``: per channel, or per channel and
    position for ``batch_manual`` with ``stats: activation``) in float64. The layer's
    ``num_batches_tracked`` becomes the number of batches it saw; a layer without a running
    mean (EvoNorm-B0 keeps only a running variance) has only its variance set; a layer no batch
    reached keeps its statistics.

    Changes the model's buffers and mode: call it inside :func:`bnstudy.train.preserved_buffers`.
    """
    if variance not in ESTIMATORS:
        raise ValueError(f"unknown variance estimator {variance!r}; known: {', '.join(ESTIMATORS)}")
    layers = running_statistic_layers(model)
    estimators = {layer: ESTIMATORS[variance]() for layer in layers}

    def capture(layer: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0]
        estimators[layer].add(x, module_spec(layer).statistic_axes(layer, x.dim()))

    hooks = [layer.register_forward_pre_hook(capture) for layer in layers]
    norms_in_train_mode(model)  # the norms only: dropout stays off
    count = 0
    try:
        for batch in batches:
            model(batch)
            count += 1
    finally:
        for hook in hooks:
            hook.remove()
    for layer, estimate in estimators.items():
        if estimate.batches:
            _store(layer, estimate)
    return count


def _store(layer: nn.Module, estimate: _Statistics) -> None:
    """Write ``estimate`` into ``layer``'s running statistics, in its dtype and convention."""
    values = {"running_var": estimate.variance(stores_unbiased_variance(layer))}
    if getattr(layer, "running_mean", None) is not None:
        values["running_mean"] = estimate.mean
    for name, value in values.items():
        buffer = getattr(layer, name)
        # per-activation statistics (C, *spatial) replace the (C,) buffers of an untrained layer
        setattr(layer, name, value.to(device=buffer.device, dtype=buffer.dtype))
    layer.num_batches_tracked.fill_(estimate.batches)
