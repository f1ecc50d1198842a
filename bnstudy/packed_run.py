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
train one by one, each record saying why (``pack_note``). :func:`packs` groups a sweep's
runs into packs as ``bnstudy run --pack`` asks.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bnstudy import packing
from bnstudy.checkpoint import RunFiles
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
from bnstudy.preflight import forward_flops
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
from bnstudy.sweep import Run
from bnstudy.train import (
    CopyResult,
    EpochStats,
    Position,
    StepListener,
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
    if config.train.checkpoint_every is not None:
        return "train.checkpoint_every: a mid-run checkpoint holds one run's training"
    return None


def cell_of(config: StudyConfig) -> str:
    """What runs must share to train in one pack: everything but the seed."""
    return config.model_copy(update={"seed": 0, "name": ""}).model_dump_json()


# ``--pack auto``: the most runs packed on a device type, and on the CPU the most floating-point
# operations of a forward pass (one model's batch, bnstudy.preflight.forward_flops) at which
# packing paid. scripts/bench.py (2-core AMD EPYC with AVX-512, torch 2.14; packed K = 8 /
# plain loop, medians): 1.89× at 21 MFLOP per pass (2D nbs cnn, 1 image), 1.39× at 41 (2
# images), 1.91× at 57 (3D cnn, one 32³ volume); 0.68× at 226 (4 volumes) and 0.62-0.64× at
# 660 (32 images). On a GPU a small step leaves the device idle between kernel launches,
# which packing fills: expected to pay at every size these studies train, not measured here.
AUTO_PACK = {"cpu": 8, "cuda": 8}
PackStepListener = Callable[[int | None, Position], None]  # (run k, or None: the pack's)
AUTO_PACK_CPU_MAX_FLOPS = 60e6


@dataclass(frozen=True)
class Pack:
    """Runs trained together as one packed network (one run: trained alone), and why a run
    trains alone though packing was asked (empty: it does not, or it was not asked)."""

    runs: tuple[Run, ...]
    note: str = ""


def pack_size(pack: str, device_type: str, config: StudyConfig) -> int:
    """The most runs of ``config``'s cell to train as one pack under ``--pack`` ``pack``:
    ``off`` 1, a number that number, ``auto`` :data:`AUTO_PACK` where packing pays (on the
    CPU, a forward pass of at most :data:`AUTO_PACK_CPU_MAX_FLOPS`), else 1."""
    if pack == "off":
        return 1
    if pack != "auto":
        return int(pack)
    if device_type != "cpu":
        return AUTO_PACK.get(device_type, 1)
    flops = forward_flops(config) * config.train.batch_size
    return AUTO_PACK["cpu"] if flops <= AUTO_PACK_CPU_MAX_FLOPS else 1


def packs(runs: list[Run], pack: str, device_type: str) -> list[Pack]:
    """``runs`` in packs of one cell (cell_of: they differ only in seed)
    of at most :func:`pack_size` runs each, in the order of their first runs; a run whose
    cell would pack but cannot (alone_reason) alone, with the reason."""
    grouped: list[list[Run] | Pack] = []
    filling: dict[str, list[Run]] = {}
    cells: dict[str, tuple[int, str]] = {}
    for run in runs:
        cell = cell_of(run.config)
        if cell not in cells:
            cells[cell] = _cell_pack(pack, device_type, run.config)
        size, note = cells[cell]
        if size == 1:
            grouped.append(Pack((run,), note))
            continue
        members = filling.get(cell)
        if members is None or len(members) == size:
            members = filling[cell] = []
            grouped.append(members)
        members.append(run)
    return [group if isinstance(group, Pack) else Pack(tuple(group)) for group in grouped]


def _cell_pack(pack: str, device_type: str, config: StudyConfig) -> tuple[int, str]:
    """The pack size of ``config``'s cell, and why its runs train alone where packing was
    asked of a model that cannot pack (``auto`` on the CPU packs only what it can measure)."""
    reason = alone_reason(config) if pack != "off" else None
    if reason is None:
        return pack_size(pack, device_type, config), ""
    if pack == "auto" and device_type == "cpu":
        return 1, ""
    return 1, reason if pack_size(pack, device_type, config) > 1 else ""


def execute_pack(
    configs: Sequence[StudyConfig],
    device: torch.device,
    on_epoch: Callable[[int, EpochStats], None] = lambda index, stats: None,
    files: Sequence[RunFiles | None] | None = None,
    on_step: PackStepListener = lambda index, position: None,
) -> list[dict[str, Any]]:
    """Train and evaluate the runs ``configs`` (of one cell: :func:`cell_of`) as one packed
    network; their records, as :func:`bnstudy.run.execute_run` returns them, in order.
    ``on_epoch(k, stats)`` gets run k's epochs, ``on_step(k, position)`` its optimizer steps
    (k None: the pack's, every run's); ``files[k]`` is where run k keeps its model (None:
    nowhere)."""
    files = list(files or [None] * len(configs))
    if len(configs) == 1:
        return [
            execute_run(
                configs[0],
                device,
                lambda stats: on_epoch(0, stats),
                files[0],
                lambda position: on_step(0, position),
            )
        ]
    compute = run_compute(configs[0])
    records = [new_record() for _ in configs]
    with run_flags(configs[0].train.deterministic, device) as flags:
        started, start = time.time(), synchronized_clock(device)
        reset_peak_memory(device)
        try:
            pack_steps = functools.partial(on_step, None)
            tests = _pack_protocol(configs, device, records, (on_epoch, pack_steps), files)
        except Exception as error:  # noqa: BLE001 - the runs then train alone
            if is_out_of_memory(error):
                free_memory(device)
            why = f"{type(error).__name__}: {error}"
            return _one_by_one(configs, device, (on_epoch, on_step), files, why)
    shared = provenance(device, started, compute, flags)
    shared |= {"seconds": synchronized_clock(device) - start, PACKED: len(configs)}
    for record, test in zip(records, tests, strict=True):
        record["tests"] = test
        record["provenance"] = dict(shared)
    return records


def _one_by_one(
    configs: Sequence[StudyConfig],
    device: torch.device,
    listeners: tuple[Callable[[int, EpochStats], None], PackStepListener],
    files: Sequence[RunFiles | None],
    why: str,
) -> list[dict[str, Any]]:
    """The runs trained alone, one after the other, after their pack failed with ``why``,
    each from a clean history (the pack's epochs are forgotten)."""
    records = []
    on_epoch, on_step = listeners
    for kept in files:
        if kept is not None:
            kept.start_over()
    for index, config in enumerate(configs):
        record = execute_run(
            config,
            device,
            lambda stats, k=index: on_epoch(k, stats),
            files[index],
            functools.partial(on_step, index),
        )
        record["provenance"][PACK_NOTE] = (
            f"trained alone: its pack of {len(configs)} failed ({why})"
        )
        records.append(record)
    return records


def _pack_protocol(
    configs: Sequence[StudyConfig],
    device: torch.device,
    records: list[dict[str, Any]],
    listeners: tuple[Callable[[int, EpochStats], None], StepListener],
    files: Sequence[RunFiles | None],
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
    packed, copies = train_together(configs, datas, models, records[0]["train"][LR], listeners)
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
            tests[-1] = conclude_run(
                config, device, compute, model, data, record, position, files[index]
            )
        except Exception as error:  # noqa: BLE001 - any failure of the run is its outcome
            record.update(failure(error, position.describe()))
    return tests


def train_together(
    configs: Sequence[StudyConfig],
    datas: list[Dataset],
    models: list[nn.Module],
    lr: float,
    listeners: tuple[Callable[[int, EpochStats], None], StepListener],
) -> tuple[nn.Module, list[CopyResult]]:
    """The K runs' ``models`` packed (one model: as it is) and trained at ``lr``, each on its
    own data order and augmentation (bnstudy.train.train_pack), followed by ``listeners`` (its
    ``on_epoch`` and ``on_step``); the packed model and each copy's training."""
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
        on_epoch=listeners[0],
        on_step=listeners[1],
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
