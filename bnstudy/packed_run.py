"""Runs of one cell as one packed network: the protocol of bnstudy.run for K runs that differ
only in seed, with their K models trained side by side (bnstudy.packing).

Each run keeps what it would have alone: its model's initialization (its seed), its data order
and augmentation (its seed), its BN running statistics and ghost batches, its optimizer state
and its diagnostics. Only training is shared: the packed network steps the K models at once,
each on its own loss. After training, each model gets its weights back from the pack
(:func:`bnstudy.packing.copy_state`) and goes through the rest of the protocol alone, so each
run's record is the one it would have written alone, with ``packed`` = K in its provenance.
A run whose loss stops being finite is ``diverged`` alone; the others train on.

If the pack fails as a whole (it does not fit in memory, a module cannot pack), its runs
train one by one, each record saying why (``pack_note``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from bnstudy import packing
from bnstudy.config import StudyConfig
from bnstudy.data import Dataset
from bnstudy.device import (
    free_memory,
    is_out_of_memory,
    reset_peak_memory,
    run_flags,
    synchronized_clock,
)
from bnstudy.evaluation import not_tested
from bnstudy.record import failure, new_record, provenance
from bnstudy.results import DIVERGED, ERROR_AT, ERROR_MESSAGE, LR, PACK_NOTE, PACKED, STATUS
from bnstudy.run import (
    batching,
    conclude_run,
    execute_run,
    make_schedule,
    prepare_run,
    run_augment,
    run_compute,
    train_section,
)
from bnstudy.train import (
    CopyResult,
    EpochStats,
    Position,
    Stream,
    make_optimizer,
    train_pack,
)

PACKABLE_MODELS = ("cnn", "zeros_net")  # bnstudy.packing.PACKABLE, by their config names


def alone_reason(config: StudyConfig) -> str | None:
    """Why a run of this config cannot train in a pack, or None if it can."""
    if config.model.name not in PACKABLE_MODELS:
        return (
            f"model {config.model.name} does not pack (only {', '.join(PACKABLE_MODELS)}: "
            "a ResNet's shortcut or a user's forward may mix channels)"
        )
    if config.train.precision == "fp16":
        return "fp16's loss scaler skips a step for every copy when one copy overflows"
    return None


def cell_of(config: StudyConfig) -> str:
    """What runs must share to train in one pack: everything but the seed."""
    return config.model_copy(update={"seed": 0, "name": ""}).model_dump_json()


def execute_pack(
    configs: Sequence[StudyConfig],
    device: torch.device,
    on_epoch: Callable[[int, EpochStats], None] = lambda index, stats: None,
) -> list[dict[str, Any]]:
    """Train and evaluate the runs ``configs`` (of one cell: :func:`cell_of`) as one packed
    network; their records, as :func:`bnstudy.run.execute_run` returns them, in order.
    ``on_epoch(k, stats)`` gets run k's epochs."""
    if len(configs) == 1:
        return [execute_run(configs[0], device, lambda stats: on_epoch(0, stats))]
    compute = run_compute(configs[0])
    records = [new_record() for _ in configs]
    with run_flags(configs[0].train.deterministic, device) as flags:
        started, start = time.time(), synchronized_clock(device)
        reset_peak_memory(device)
        try:
            tests = _pack_protocol(configs, device, records, on_epoch)
        except Exception as error:  # noqa: BLE001 - the runs then train alone
            if is_out_of_memory(error):
                free_memory(device)
            return _one_by_one(configs, device, on_epoch, f"{type(error).__name__}: {error}")
    shared = provenance(device, started, compute, flags)
    shared |= {"seconds": synchronized_clock(device) - start, PACKED: len(configs)}
    for record, test in zip(records, tests, strict=True):
        record["tests"] = test
        record["provenance"] = dict(shared)
    return records


def _one_by_one(
    configs: Sequence[StudyConfig],
    device: torch.device,
    on_epoch: Callable[[int, EpochStats], None],
    why: str,
) -> list[dict[str, Any]]:
    """The runs trained alone, one after the other, after their pack failed with ``why``."""
    records = []
    for index, config in enumerate(configs):
        record = execute_run(config, device, lambda stats, k=index: on_epoch(k, stats))
        record["provenance"][PACK_NOTE] = (
            f"trained alone: its pack of {len(configs)} failed ({why})"
        )
        records.append(record)
    return records


def _pack_protocol(
    configs: Sequence[StudyConfig],
    device: torch.device,
    records: list[dict[str, Any]],
    on_epoch: Callable[[int, EpochStats], None],
) -> list[list[dict[str, Any]]]:
    """Each run prepared alone, the K trained as one pack, each concluded alone; the runs'
    test records. An exception before training ends is the pack's; after it, the run's."""
    compute = run_compute(configs[0])
    prepared = [
        prepare_run(config, device, compute, record, Position())
        for config, record in zip(configs, records, strict=True)
    ]
    models = [model for _, model, _ in prepared]
    datas = [data for data, _, _ in prepared]
    packed, copies = train_together(configs, datas, models, records[0]["train"][LR], on_epoch)
    tests = []
    for index, (config, record, copy) in enumerate(zip(configs, records, copies, strict=True)):
        tests.append(not_tested(config))
        if copy.diverged is not None:
            record.update(_diverged(copy))
            continue
        model, data = models[index], datas[index]
        model.load_state_dict(packing.copy_state(packed, model, index, len(configs)))
        record["train"].update(train_section(copy.result))
        position = Position()
        try:
            tests[-1] = conclude_run(config, device, compute, model, data, record, position)
        except Exception as error:  # noqa: BLE001 - any failure of the run is its outcome
            record.update(failure(error, position.describe()))
    return tests


def train_together(
    configs: Sequence[StudyConfig],
    datas: list[Dataset],
    models: list[nn.Module],
    lr: float,
    on_epoch: Callable[[int, EpochStats], None],
) -> tuple[nn.Module, list[CopyResult]]:
    """The K runs' ``models`` packed (one model: as it is) and trained at ``lr``, each on its
    own data order and augmentation (bnstudy.train.train_pack); the packed model and each
    copy's training."""
    config, data, compute = configs[0], datas[0], run_compute(configs[0])
    packed = models[0]
    if len(models) > 1:
        packed = compute.prepare(packing.pack(models), data.spatial_dims)
    cfg = config.train
    optimizer = make_optimizer(
        cfg.optimizer, packed.parameters(), lr, cfg.momentum, cfg.weight_decay
    )
    streams = [
        Stream(data.train, torch.Generator().manual_seed(c.seed), run_augment(c, data))
        for c, data in zip(configs, datas, strict=True)
    ]
    position = Position(phase="train")
    copies = train_pack(
        packed,
        streams,
        optimizer,
        batching=batching(config),
        schedule=make_schedule(config, len(data.train.y)),
        position=position,
        on_epoch=on_epoch,
        compute=compute,
    )
    return packed, copies


def _diverged(copy: CopyResult) -> dict[str, str]:
    """The outcome of a run whose loss stopped being finite in its pack, as
    :func:`bnstudy.run.execute_run` records a divergence."""
    return {
        STATUS: DIVERGED,
        ERROR_MESSAGE: f"Diverged: {copy.diverged}",
        ERROR_AT: f"train epoch {copy.result.epochs} (loss not finite by its end)",
    }
