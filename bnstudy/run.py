"""One run, as its protocol: the data and the model from the resolved config
(bnstudy.preflight), diagnostics at initialization, training (bnstudy.train; resumed from the
run's mid-run checkpoint when it has one), the trained model kept (bnstudy.checkpoint),
diagnostics after training, the model tested in every test setting (bnstudy.evaluation), and
the record of it all (bnstudy.record), which is what ``result.json`` holds.

A failure inside a run is an outcome, not a crash: an exception becomes status ``error`` with
its message verbatim and where it happened, a non-finite loss becomes ``diverged``, running out
of memory becomes ``oom`` (bnstudy.results), and the memory is freed for the next run.
"""

from __future__ import annotations

import math
import platform
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from bnstudy import diagnostics
from bnstudy.augment import Augment, make_augment
from bnstudy.checkpoint import CheckpointError, RunFiles
from bnstudy.config import StudyConfig
from bnstudy.data import Dataset
from bnstudy.device import free_memory, reset_peak_memory, run_flags, synchronized_clock
from bnstudy.evaluation import evaluate_all, not_tested, seeded_batches
from bnstudy.finetune import initialize_from_source
from bnstudy.preflight import load_data, model_for_data, statistics_batch
from bnstudy.record import failure, new_record, provenance
from bnstudy.results import (
    BETA_FRACTION,
    BN_MEAN_NOISE,
    BN_MEAN_NOISE_BETWEEN_IMAGES,
    BN_MEAN_NOISE_VALUES_LAW,
    BN_MIN_VAR,
    BN_VAR_NOISE,
    CHECKPOINT_IGNORED,
    CRASHED,
    DIVERGED,
    EPOCHS,
    ERROR_AT,
    ERROR_MESSAGE,
    INIT_BETA_FRACTION,
    INIT_OUTPUT_CHANGE,
    INIT_OUTPUT_STD,
    INIT_ZERO_FRACTION,
    LR,
    MIN_VALUES_PER_STAT,
    NOISE_IMAGES,
    NUM_CLASSES,
    OOM,
    OUTPUT_CHANGE,
    OUTPUT_STD,
    RESUMED_AT_STEP,
    SAMPLES_PER_SEC,
    SKIPPED_STEPS,
    STATUS,
    STEPS,
    TRAIN_ACC,
    TRAIN_LOSS,
    TRAIN_SECONDS,
    ZERO_FRACTION,
)
from bnstudy.train import (
    Batching,
    Checkpoints,
    Compute,
    Diverged,
    EpochStats,
    Position,
    Schedule,
    StepListener,
    TrainResult,
    check_ghost_remainder,
    make_optimizer,
    optimizer_steps,
    resume_problem,
    scaled_lr,
    train,
)

NOISE_SAMPLES = 1024  # training samples, in batches of the statistics batch, for the noise
# the diagnostics' column of each output probe measure (bnstudy.diagnostics.output_probe)
# taken at initialization
_AT_INIT = {
    OUTPUT_STD: INIT_OUTPUT_STD,
    ZERO_FRACTION: INIT_ZERO_FRACTION,
    BETA_FRACTION: INIT_BETA_FRACTION,
    OUTPUT_CHANGE: INIT_OUTPUT_CHANGE,
}
# the diagnostics' column of each measure of bnstudy.diagnostics.batch_statistic_noise,
# averaged over the BN layers
_NOISE_COLUMNS = {
    BN_MEAN_NOISE: "mean_noise",
    BN_VAR_NOISE: "var_noise",
    BN_MEAN_NOISE_BETWEEN_IMAGES: "mean_noise_between_images",
    BN_MEAN_NOISE_VALUES_LAW: "mean_noise_values_law",
}


def execute_run(
    config: StudyConfig,
    device: torch.device,
    on_epoch: Callable[[EpochStats], None] = lambda stats: None,
    files: RunFiles | None = None,
    on_step: StepListener = lambda position: None,
) -> dict[str, Any]:
    """Train and evaluate one run; the returned record is what ``result.json`` holds: what
    the protocol measured (:func:`_protocol`), its outcome, and its provenance, timed and with
    its peak memory, under the numerics flags of the run (bnstudy.device.run_flags).
    ``files``: where the run keeps its trained model and mid-run checkpoints, and resumes
    from one (bnstudy.checkpoint); None: nothing is kept. ``on_epoch`` gets each finished
    epoch, ``on_step`` each optimizer step (bnstudy.train.train)."""
    record, position, compute = new_record(), Position(), run_compute(config)
    tests = not_tested(config)
    with run_flags(config.train.deterministic, device) as flags:  # before any CUDA call
        started, start = time.time(), synchronized_clock(device)
        reset_peak_memory(device)
        try:
            tests = _protocol(config, device, compute, record, position, (on_epoch, on_step), files)
        except Diverged as error:
            record.update(
                {
                    STATUS: DIVERGED,
                    ERROR_MESSAGE: f"Diverged: {error}",
                    ERROR_AT: f"train epoch {position.epoch} (loss not finite by its end)",
                }
            )
        except Exception as error:  # noqa: BLE001 - any failure of the run is its outcome
            record.update(failure(error, position.describe()))
        if record[STATUS] == OOM:  # the failed step's tensors went with the exception
            free_memory(device)
    record["tests"] = tests
    record["provenance"] = provenance(device, started, compute, flags)
    record["provenance"]["seconds"] = synchronized_clock(device) - start
    return record


def _protocol(
    config: StudyConfig,
    device: torch.device,
    compute: Compute,
    record: dict[str, Any],
    position: Position,
    listeners: tuple[Callable[[EpochStats], None], StepListener],
    files: RunFiles | None,
) -> list[dict[str, Any]]:
    """The steps of a run in order, each adding to ``record`` what it measured, with
    ``position`` at the step under way, ``listeners`` following training's epochs and steps;
    returns the test records. Diagnostics
    (bnstudy.diagnostics) are taken at initialization, so that they explain a run that fails
    in training, and again after training."""
    data, model, optimizer = prepare_run(config, device, compute, record, position)
    position.phase = "train"
    checkpoints = _checkpoints(files, record["train"], model)
    trained = _train(config, model, optimizer, data, position, listeners, compute, checkpoints)
    record["train"].update(trained)
    return conclude_run(config, device, compute, model, data, record, position, files)


def _checkpoints(
    files: RunFiles | None, train_record: dict[str, Any], model: nn.Module
) -> Checkpoints | None:
    """The run's mid-run checkpoints (``train.checkpoint_every``), resuming from the one it
    has; records where training resumed (``resumed_at_step``). A checkpoint that cannot be
    used for ``model`` (bnstudy.checkpoint, bnstudy.train.resume_problem) is named on stderr
    and in the record (``checkpoint_ignored``), and training starts from step 0."""
    if files is None or files.checkpoint_every is None:
        return None
    try:
        state = files.saved_state()
        if state is not None and (problem := resume_problem(state, model)):
            raise CheckpointError(f"{files.state_path}: {problem}")
    except CheckpointError as error:
        print(f"bnstudy: {error}; run {files.run_id} trains from step 0", file=sys.stderr)
        train_record[CHECKPOINT_IGNORED] = str(error)
        state = None
    train_record[RESUMED_AT_STEP] = None if state is None else state["steps"]
    return Checkpoints(files.checkpoint_every, files.keep_state, resume=state)


def prepare_run(
    config: StudyConfig,
    device: torch.device,
    compute: Compute,
    record: dict[str, Any],
    position: Position,
) -> tuple[Dataset, nn.Module, torch.optim.Optimizer]:
    """The run's data, its model and optimizer, and its diagnostics at initialization."""
    data = load_data(config, device)
    record["data"] = {
        NUM_CLASSES: data.num_classes,
        "train_size": len(data.train.y),
        "tested_on": "validation" if config.data.validation_size else "test",
        "test_size": len(data.test.y),
        "standardized_with": {"mean": list(data.mean), "std": list(data.std)},
    }
    model, optimizer, record["train"][LR] = setup_model(config, data, compute, record["train"])
    position.phase = "diagnostics at init"
    with compute.autocast(device):
        record["layers"], record["diagnostics"] = _initial_diagnostics(model, data, config)
    return data, model, optimizer


def conclude_run(
    config: StudyConfig,
    device: torch.device,
    compute: Compute,
    model: nn.Module,
    data: Dataset,
    record: dict[str, Any],
    position: Position,
    files: RunFiles | None = None,
) -> list[dict[str, Any]]:
    """The trained model saved (where ``files`` keep it), its diagnostics, then its tests in
    every test setting."""
    if files is not None:
        position.phase = "saving the model"
        files.keep_model(model)
    position.phase = "diagnostics after training"
    with compute.autocast(device):
        record["diagnostics"].update(_final_diagnostics(model, data, config, record["layers"]))
    tests, record["predictions"] = evaluate_all(model, data, config, compute)
    return tests


def run_compute(config: StudyConfig) -> Compute:
    """How the run's forward passes compute (train.precision, train.channels_last)."""
    return Compute(config.train.precision, config.train.channels_last)


def setup_model(
    config: StudyConfig, data: Dataset, compute: Compute, train_record: dict[str, Any]
) -> tuple[nn.Module, torch.optim.Optimizer, float]:
    """The run's model (bnstudy.preflight.model_for_data; with ``train.init_from``, loaded
    from the source run's model: bnstudy.finetune, said in ``train_record``), its optimizer and
    scaled lr."""
    check_ghost_remainder(len(data.train.y), batching(config))
    model = model_for_data(config, data)
    if config.train.init_from is not None:
        train_record.update(initialize_from_source(model, config))
    model = compute.prepare(model, data.spatial_dims)
    train_cfg = config.train
    lr = scaled_lr(
        train_cfg.lr,
        train_cfg.optimizer_batch_size,
        train_cfg.base_batch_size,
        train_cfg.lr_scaling,
    )
    optimizer = make_optimizer(
        train_cfg.optimizer, model.parameters(), lr, train_cfg.momentum, train_cfg.weight_decay
    )
    return model, optimizer, lr


def batching(config: StudyConfig) -> Batching:
    """How the run's samples reach the model (bnstudy.train.Batching)."""
    cfg = config.train
    return Batching(cfg.batch_size, cfg.accumulate, cfg.norm_batch_size, cfg.drop_last)


def _probe_batches(data: Dataset, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two fixed batches of ``batch_size`` (the statistics batch; fewer if a split is smaller):
    the first test samples, and the first train samples as the 'other input' of the probe."""
    size = min(batch_size, len(data.test.y), len(data.train.y))
    return data.test.x[:size], data.train.x[:size]


def _initial_diagnostics(
    model: nn.Module, data: Dataset, config: StudyConfig
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Each norm layer's report on the probe batch (bnstudy.diagnostics.layer_reports), the
    fewest values any statistic averages over, and the output probe at initialization."""
    probe, other = _probe_batches(data, statistics_batch(config))
    layers = [asdict(report) for report in diagnostics.layer_reports(model, probe)]
    counts = [r["values"] for r in layers if r["values"] is not None]
    summary = {MIN_VALUES_PER_STAT: min(counts, default=math.nan)}
    summary |= {_AT_INIT[k]: v for k, v in diagnostics.output_probe(model, probe, other).items()}
    return layers, summary


def make_schedule(config: StudyConfig, train_samples: int) -> Schedule:
    """The run's optimizer-step budget and lr schedule."""
    cfg = config.train
    total = optimizer_steps(
        train_samples,
        batch_size=cfg.batch_size,
        accumulate=cfg.accumulate,
        drop_last=cfg.drop_last,
        epochs=cfg.epochs,
        steps=cfg.steps,
        samples=cfg.samples,
    )
    warmup = cfg.warmup_steps or round(cfg.warmup_fraction * total)
    return Schedule(total, warmup, cfg.schedule, tuple(cfg.step_milestones), cfg.step_gamma)


def _train(
    config: StudyConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Dataset,
    position: Position,
    listeners: tuple[Callable[[EpochStats], None], StepListener],
    compute: Compute,
    checkpoints: Checkpoints | None,
) -> dict[str, Any]:
    """Train the model as configured (bnstudy.train.train); the train section of the record."""
    return train_section(
        train(
            model,
            data.train,
            optimizer,
            batching=batching(config),
            schedule=make_schedule(config, len(data.train.y)),
            generator=torch.Generator().manual_seed(config.seed),
            position=position,
            on_epoch=listeners[0],
            on_step=listeners[1],
            compute=compute,
            augment=run_augment(config, data),
            checkpoints=checkpoints,
        )
    )


def run_augment(config: StudyConfig, data: Dataset) -> Augment | None:
    """The run's augmentation of training batches (bnstudy.augment), seeded by the run."""
    return make_augment(
        config.data.augment,
        config.data.augment_padding,
        seed=config.seed,
        device=data.train.x.device,
    )


def train_section(result: TrainResult) -> dict[str, Any]:
    """What the record's train section says of a finished training."""
    last = result.history[-1]
    return {
        EPOCHS: result.epochs,
        STEPS: result.steps,
        "samples": result.samples,
        TRAIN_SECONDS: result.seconds,
        SAMPLES_PER_SEC: result.samples / result.seconds if result.seconds else float("nan"),
        TRAIN_LOSS: last.train_loss,
        TRAIN_ACC: last.train_acc,
        SKIPPED_STEPS: result.skipped_steps,
    }


def _final_diagnostics(
    model: nn.Module, data: Dataset, config: StudyConfig, layers: list[dict[str, Any]]
) -> dict[str, float]:
    """Batch-statistic noise over NOISE_SAMPLES training samples (seeded random order) in
    batches of the statistics batch, and the output probe. Adds each BN layer's noise to its
    entry in ``layers``."""
    size = statistics_batch(config)
    batches = seeded_batches(data.train, size, NOISE_SAMPLES, config.seed)
    noise = diagnostics.batch_statistic_noise(model, batches)
    for layer in layers:
        layer.update(noise.get(layer["name"], {}))
    summary = {
        column: _mean([n[key] for n in noise.values()]) for column, key in _NOISE_COLUMNS.items()
    }
    summary[BN_MIN_VAR] = min((n["min_var"] for n in noise.values()), default=math.nan)
    summary[NOISE_IMAGES] = size if noise else math.nan
    return summary | diagnostics.output_probe(model, *_probe_batches(data, size))


def _mean(values: list[float]) -> float:
    """Mean of the finite values (a layer constant over the population has no noise)."""
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def crashed_record(config: StudyConfig, exitcode: int | None) -> dict[str, Any]:
    """The result of a run whose worker process died under it (killed by a signal, a
    segfault, the kernel's OOM killer): status ``crashed`` and how the process ended."""
    how = f"exit code {exitcode}"
    if exitcode is not None and exitcode < 0:
        how = f"killed by {signal.Signals(-exitcode).name}"
    return new_record() | {
        STATUS: CRASHED,
        ERROR_MESSAGE: f"worker process died ({how})",
        ERROR_AT: "worker process",
        "tests": not_tested(config),
        "provenance": {"host": platform.node()},
    }
