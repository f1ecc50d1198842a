"""PreciseBN: population statistics recomputed with frozen weights (Wu & Johnson 2021).

During training, BN's running statistics are an exponential moving average of batch statistics
taken while the weights were still moving, and at a small batch each term is noisy. PreciseBN
("Rethinking 'Batch' in BatchNorm", arXiv 2105.07576, §3; fvcore's
``fvcore/nn/precise_bn.py:update_bn_stats``) freezes the weights, runs training batches in
train mode and sets each BN layer's running mean and variance to the *true average of the
per-batch* means and variances (the variance as the layer stores it: unbiased per batch for
torch's BN, biased for ``batch_keras`` and ``bn_running_var: biased``). That is
the same estimator as the EMA without its noise and lag: if eval mode recovers with these
statistics, the eval-mode collapse was EMA noise; if it does not, the network relies on
statistics that differ between training batches and the population (train/test inconsistency).

Why not ``torch.optim.swa_utils.update_bn``: it computes the same cumulative average, but it
recognizes only ``torch.nn.modules.batchnorm._BatchNorm`` (not bnstudy's hand-written BN), it
overwrites the trained model's statistics for good, and it calls ``model.train()``, so a batch
with one value per channel raises mid-way, leaving the model half recalibrated. Here the caller
restores everything with :func:`bnstudy.train.preserved_buffers`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from bnstudy.norms import module_spec


def running_statistic_layers(model: nn.Module) -> list[nn.Module]:
    """The modules of ``model`` whose norm keeps running statistics (the registry says which)."""
    return [m for m in model.modules() if (spec := module_spec(m)) and spec.running_statistics]


@torch.no_grad()
def recompute_bn_statistics(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Set every BN layer's running mean and variance to the average over ``batches`` of its
    per-batch mean and (unbiased) variance; weights are not touched. Returns the number of
    batches used.

    Changes the model's buffers, momentum and mode: call it inside
    :func:`bnstudy.train.preserved_buffers`. Batches should have equal sizes, so that every
    batch weighs the same (fvcore's estimator). Each batch is one BN call (no ghost split).
    A layer without a running mean (EvoNorm-B0 keeps only a running variance) has only its
    variance recomputed.
    """
    layers = running_statistic_layers(model)
    saved_momenta = [layer.momentum for layer in layers]
    for layer in layers:
        if getattr(layer, "running_mean", None) is not None:
            layer.running_mean.zero_()
        layer.running_var.fill_(1)
        layer.num_batches_tracked.zero_()
        layer.momentum = None  # cumulative average: running = mean of the batch statistics
    model.train()
    count = 0
    try:
        for batch in batches:
            model(batch)
            count += 1
    finally:
        for layer, momentum in zip(layers, saved_momenta, strict=True):
            layer.momentum = momentum
    return count
