"""The test-time protocol: a trained model evaluated in every test setting of its run
(bnstudy.preflight.evaluation_settings), each as the flags of its test mode say
(bnstudy.results.ModeSpec; no mode is special-cased by its name):

- ``population``: the norms' running statistics are first recomputed (bnstudy.precise) from
  seeded batches of that split, by the estimator eval.precise_variance; the trained ones are
  restored afterwards.
- ``layers_train``: the norms with batch statistics (``whole_model``: every module) are in
  train mode, the test batches are a seeded permutation of the test split, and the flip rate
  counts the predictions that change when it is reshuffled into other batches.
- otherwise eval mode, in the split's order.

A failure in one setting is that setting's outcome only. Every setting's predictions and
per-image flips are kept for predictions.json (bnstudy.store.TestOutputs).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import nn

from bnstudy.config import StudyConfig
from bnstudy.data import Dataset, Split
from bnstudy.device import free_memory
from bnstudy.precise import recompute_bn_statistics
from bnstudy.preflight import EvalSetting, evaluation_settings, statistics_batch
from bnstudy.record import failure
from bnstudy.results import (
    ERROR_AT,
    ERROR_MESSAGE,
    NOT_RUN,
    OK,
    OOM,
    PRECISE_VARIANCE,
    SAME,
    STATUS,
    TEST_ACC,
    TEST_BATCH,
    TEST_BATCH_SIZE,
    TEST_FLIP_RATE,
    TEST_LOSS,
    TEST_MODE,
    TEST_MODES,
)
from bnstudy.train import Compute, EvalProgress, evaluate, preserved_buffers

# seeds of the flip rate's reshuffles, per run seed (see reshuffle_seed), above 2**32 so that
# they never meet eval.test_order_seed, the one order of the train-mode test batches
ORDER_SEEDS_PER_RUN = 1000
RESHUFFLE_SEEDS = 2**32


class Tested(NamedTuple):
    """One test setting evaluated: its test record, the predictions (empty on failure) and the
    per-image flip counts (None without a flip rate), both in the test split's order."""

    test: dict[str, Any]
    predictions: list[int]
    flips: list[int] | None


def evaluate_all(
    model: nn.Module, data: Dataset, config: StudyConfig, compute: Compute
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The test records of every test setting of the run, in order, and what predictions.json
    holds (:func:`test_outputs`)."""
    settings = evaluation_settings(config)
    tested = [evaluate_setting(model, data, setting, config, compute) for setting in settings]
    return [t.test for t in tested], test_outputs(data, settings, tested, config)


def not_tested(config: StudyConfig) -> list[dict[str, Any]]:
    """The test records of a run whose test settings were never reached: ``not run``."""
    return [_untested(setting) for setting in evaluation_settings(config)]


def test_outputs(
    data: Dataset, settings: list[EvalSetting], tested: list[Tested], config: StudyConfig
) -> dict[str, Any]:
    """What predictions.json holds (bnstudy.store.TestOutputs), all in the test split's order:
    the labels; per test setting that succeeded (:attr:`EvalSetting.key`), the predictions;
    per setting with a flip rate, how many of the eval.flip_reshuffles reshuffles changed each
    image's prediction."""
    outputs: dict[str, Any] = {"test_labels": data.test.y.tolist(), "predictions": {}, "flips": {}}
    for setting, (_, predictions, flips) in zip(settings, tested, strict=True):
        if predictions:
            outputs["predictions"][setting.key] = predictions
        if flips is not None:
            outputs["flips"][setting.key] = flips
    return outputs | {"flip_reshuffles": config.eval.flip_reshuffles}


def _untested(setting: EvalSetting) -> dict[str, Any]:
    return {
        **_setting_fields(setting),
        TEST_ACC: None,
        TEST_LOSS: None,
        TEST_FLIP_RATE: None,
        "test_order_seed": None,
        STATUS: NOT_RUN,
        ERROR_MESSAGE: "",
        ERROR_AT: "",
    }


def _setting_fields(setting: EvalSetting) -> dict[str, Any]:
    return {
        TEST_MODE: setting.mode,
        TEST_BATCH: setting.label,
        TEST_BATCH_SIZE: setting.batch_size,
    }


def evaluate_setting(
    model: nn.Module, data: Dataset, setting: EvalSetting, config: StudyConfig, compute: Compute
) -> Tested:
    """Evaluate one test setting; a failure here is this setting's outcome only.

    Where the norms use batch statistics at test (``layers_train``), the test batches follow a
    seeded permutation of the test split (``test_order_seed``: eval.test_order_seed, the same
    for every run, so that runs of different seeds are tested on the same batches), not its
    file order, which may be sorted by class; elsewhere the order does not matter and is the
    split's (``test_order_seed`` None).

    ``test_flip_rate`` is the mean fraction of test predictions that change when the test set
    is reshuffled into different batches (eval.flip_reshuffles times; 0 in eval mode; in train
    mode a sample's prediction depends on the other samples of its batch)."""
    mode, device = TEST_MODES[setting.mode], data.test.y.device
    progress, stage = EvalProgress(), "recalibration" if mode.population else "evaluation"
    seed = config.eval.test_order_seed if mode.layers_train else None
    try:
        with preserved_buffers(model), compute.autocast(device):  # recalibration included
            if mode.population is not None:
                _recalibrate(model, getattr(data, mode.population), config)
            layers, stage = ("train" if mode.layers_train else "eval"), "evaluation"
            result = evaluate(
                model,
                data.test,
                mode=layers,
                batch_size=setting.batch_size,
                compute=compute,
                progress=progress,
                order=None if seed is None else seeded_order(len(data.test.y), seed, device),
                whole_model=mode.whole_model,
            )
            if not math.isfinite(result.loss):
                stage = "outputs"
                raise FloatingPointError(
                    f"non-finite outputs in {setting.mode} mode (a NaN running variance?)"
                )
            stage, progress = "flip rate", EvalProgress()
            flips = _flips(model, data, setting, result.predictions, config, compute, progress)
    except Exception as error:  # noqa: BLE001 - e.g. BN's one-value-per-channel ValueError
        where = _test_position(setting, stage, progress)
        failed = {**_untested(setting), **_estimator(setting, config), **failure(error, where)}
        del failed["traceback"]
    else:
        test = _untested(setting) | {
            TEST_ACC: result.accuracy,
            TEST_LOSS: result.loss,
            TEST_FLIP_RATE: _flip_rate(flips, config.eval.flip_reshuffles),
            "test_order_seed": seed,
            **_estimator(setting, config),
            STATUS: OK,
        }
        return Tested(test, result.predictions.tolist(), None if flips is None else flips.tolist())
    if failed[STATUS] == OOM:  # out of the except block: the failed batch is unreachable
        free_memory(device)
    return Tested(failed, [], None)


def _test_position(setting: EvalSetting, stage: str, progress: EvalProgress) -> str:
    """Where a test setting failed, e.g. ``test train mode (batch 4 of 4: 1 sample; test batch
    size 32)``: the batch that failed, which is short when the test batch size does not divide
    the test split."""
    size, population = f"test batch size {setting.batch_size}", TEST_MODES[setting.mode].population
    where = {
        "recalibration": f"recomputing statistics on the {population} split",
        "evaluation": f"{progress.describe()}; {size}",
        "outputs": f"outputs of all {progress.batches} batches; {size}",
        "flip rate": f"flip rate, reshuffled test set, {progress.describe()}; {size}",
    }[stage]
    return f"test {setting.mode} mode ({where})"


def _recalibrate(model: nn.Module, split: Split, config: StudyConfig) -> None:
    """Recomputed running statistics (bnstudy.precise, by the estimator eval.precise_variance:
    population or batch_average) from eval.precise_samples samples of ``split`` in batches of
    eval.precise_batch_size (``same``: the normalization batch)."""
    spec = config.eval.precise_batch_size
    size = statistics_batch(config) if spec == SAME else spec
    batches = seeded_batches(split, size, config.eval.precise_samples, config.seed)
    if not batches:
        raise ValueError(f"no full batch of {size} in {len(split.y)} samples to recompute from")
    recompute_bn_statistics(model, batches, config.eval.precise_variance)


def _estimator(setting: EvalSetting, config: StudyConfig) -> dict[str, Any]:
    """``precise_variance``, the running-variance estimator (eval.precise_variance), in the
    record of a test mode that recomputes statistics (precise, adabn); nothing elsewhere."""
    if TEST_MODES[setting.mode].population is None:
        return {}
    return {PRECISE_VARIANCE: config.eval.precise_variance}


def seeded_batches(split: Split, size: int, samples: int, seed: int) -> list[torch.Tensor]:
    """Full batches of ``size`` from ``samples`` samples of ``split`` drawn in a seeded random
    order (files may be sorted by class; batches should be like training batches)."""
    order = torch.randperm(len(split.y), generator=torch.Generator().manual_seed(seed))
    chosen = split.x[order[: min(samples, len(order))].to(split.x.device)]
    return list(chosen[: len(chosen) // size * size].split(size))


def reshuffle_seed(seed: int, reshuffle: int) -> int:
    """The seed of the flip rate's ``reshuffle``-th permutation (1, 2, ...) of the test set in
    a run with seed ``seed``: distinct for every run seed and reshuffle (fewer than
    :data:`ORDER_SEEDS_PER_RUN`), and apart from eval.test_order_seed, so each is a permutation
    independent of the test order and of the others."""
    return RESHUFFLE_SEEDS + seed * ORDER_SEEDS_PER_RUN + reshuffle


def seeded_order(n: int, seed: int, device: torch.device) -> torch.Tensor:
    """A permutation of ``range(n)`` drawn by a CPU generator seeded with ``seed`` (the same on
    every device), on ``device``."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(device)


def _flips(
    model: nn.Module,
    data: Dataset,
    setting: EvalSetting,
    predictions: torch.Tensor,
    config: StudyConfig,
    compute: Compute,
    progress: EvalProgress | None = None,
) -> torch.Tensor | None:
    """Per test image (split order), how many of eval.flip_reshuffles reshuffles (independent
    seeded permutations, :func:`reshuffle_seed`) change its prediction from
    ``predictions``; None where nothing can flip: no batch statistics at test, or a test
    batch of 1 (no other sample in it) unless the whole model is in train mode (dropout)."""
    mode = TEST_MODES[setting.mode]
    if not mode.layers_train or (setting.batch_size == 1 and not mode.whole_model):
        return None
    n, device = len(data.test.y), data.test.y.device
    flips = torch.zeros(n, dtype=torch.long, device=device)
    for reshuffle in range(1, config.eval.flip_reshuffles + 1):
        again = evaluate(
            model,
            data.test,
            mode="train",
            batch_size=setting.batch_size,
            compute=compute,
            progress=progress,
            order=seeded_order(n, reshuffle_seed(config.seed, reshuffle), device),
            whole_model=mode.whole_model,
        )
        flips += again.predictions != predictions  # both in the split's order
    return flips


def _flip_rate(flips: torch.Tensor | None, reshuffles: int) -> float:
    """The mean fraction of test predictions a reshuffle changes (0 where none can change)."""
    return 0.0 if flips is None else flips.sum().item() / (reshuffles * len(flips))
