"""One run: data, model and optimizer from a resolved config; train once; evaluate the trained
model in every test setting; return the result record.

A failure inside a run is an outcome, not a crash: an exception becomes status ``error`` with
its message verbatim and where it happened, a non-finite loss becomes ``diverged``, running out
of memory becomes ``oom`` (bnstudy.results), and the memory is freed for the next run.
"""

from __future__ import annotations

import functools
import importlib.metadata
import math
import platform
import signal
import subprocess
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import bnstudy
from bnstudy import diagnostics
from bnstudy.augment import make_augment
from bnstudy.config import DataConfig, ModelConfig, StudyConfig
from bnstudy.data import Dataset, Split, data_fingerprint, download_dataset, load_dataset
from bnstudy.device import (
    device_label,
    free_memory,
    is_out_of_memory,
    peak_memory,
    reset_peak_memory,
    run_flags,
    synchronized_clock,
)
from bnstudy.external import build_external, is_external
from bnstudy.models import InputShape, build_model
from bnstudy.norms import NormOptions, conv_layer, create_norm, create_norm_act, norm_spec
from bnstudy.precise import recompute_bn_statistics
from bnstudy.results import CRASHED, DIVERGED, ERROR, NOT_RUN, OK, OOM, TEST_MODES, setting_key
from bnstudy.train import (
    Batching,
    Compute,
    Diverged,
    EpochStats,
    EvalProgress,
    Position,
    Schedule,
    check_ghost_remainder,
    evaluate,
    make_optimizer,
    optimizer_steps,
    preserved_buffers,
    scaled_lr,
    train,
)

NOISE_SAMPLES = 1024  # training samples, in batches of the statistics batch, for the noise
# seeds of the flip rate's reshuffles, per run seed (see reshuffle_seed), above 2**32 so that
# they never meet eval.test_order_seed, the one order of the train-mode test batches
ORDER_SEEDS_PER_RUN = 1000
RESHUFFLE_SEEDS = 2**32


@dataclass(frozen=True)
class EvalSetting:
    """One way of evaluating a trained model: test ``mode`` (bnstudy.results) at a test
    ``batch_size``.

    ``label`` is the mode's name for modes evaluated once, else the configured test batch size
    (``same`` for the normalization batch size, or a number)."""

    mode: str
    label: str
    batch_size: int

    @property
    def key(self) -> str:
        """The setting's name in predictions.json (bnstudy.results.setting_key)."""
        return setting_key(self.mode, self.label)


def evaluation_settings(config: StudyConfig) -> list[EvalSetting]:
    """The test settings of a run, in the order of ``eval.test_modes``."""
    settings = []
    for mode in config.eval.test_modes:
        if not TEST_MODES[mode].per_test_batch:
            settings.append(EvalSetting(mode, mode, config.eval.batch_size))
            continue
        for spec in config.eval.train_mode_batch_sizes:
            size = statistics_batch(config) if spec == "same" else spec
            settings.append(EvalSetting(mode, str(spec), size))
    return settings


def statistics_batch(config: StudyConfig) -> int:
    """Samples per norm statistic in training: the normalization batch of BN-family norms,
    else the batch size (for per-sample norms it only sets the probe and test batch)."""
    return config.norm_batch_size or config.train.batch_size


def make_model(model: ModelConfig, shape: InputShape, num_classes: int) -> nn.Module:
    """Build the configured model with its norm (and the convolution it pairs with) resolved
    from the registry: a built-in model gets norm-activation units, a torchvision or user
    model (bnstudy.external) a ``norm_layer`` or its own norms replaced."""
    dims = shape.spatial_dims
    if is_external(model.name):
        norm = functools.partial(_plain_norm, model.norm, model.norm_options)
        return build_external(
            model.name,
            shape.channels,
            dims,
            shape.size,
            num_classes,
            norm,
            model.replace_norms,
            norm_spec(model.norm).conv,
        )
    norm_act = functools.partial(_norm_act, model.norm, dims, model.norm_options)
    return build_model(
        model.name, shape, num_classes, model.widths, norm_act, conv_layer(model.norm, dims)
    )


def _norm_act(
    norm: str, spatial_dims: int, options: NormOptions, channels: int, activation: str
) -> nn.Sequential:
    return create_norm_act(norm, channels, spatial_dims, options, activation)


def _plain_norm(norm: str, options: NormOptions, channels: int, spatial_dims: int) -> nn.Module:
    return create_norm(norm, channels, spatial_dims, options)


# DataConfig fields the loaders do not read (augmentation happens per batch in training)
_NOT_READ_BY_LOADERS = {
    name: DataConfig.model_fields[name].default
    for name in ("augment", "augment_padding", "download")
}


@functools.lru_cache(maxsize=2)
def _dataset(data: DataConfig, device: str, fingerprint: str | None) -> Dataset:
    """``fingerprint`` (of the files read) is part of the cache key: an edited file reloads."""
    return load_dataset(
        data.name,
        train_size=data.train_size,
        test_size=data.test_size,
        seed=data.seed,
        root=data.root,
        image_size=data.image_size,
        intensity=data.intensity,
        device=device,
        layout=data.layout,
    )


def load_data(config: StudyConfig, device: torch.device) -> Dataset:
    """The run's data set on ``device``; the runs of a sweep in one process share it. With
    data.download the files are fetched first (if missing), so that they can be fingerprinted;
    with files missing the loader is left to say where it looked and how to get them."""
    data = config.data
    if data.download:
        download_dataset(data.name, data.root)
    data = data.model_copy(update=_NOT_READ_BY_LOADERS)  # one cache entry per loaded data set
    fingerprint = None
    if data.root is not None:
        try:
            fingerprint = data_fingerprint(data.name, data.root)
        except FileNotFoundError:  # the loader raises its own one-line message
            return _dataset.__wrapped__(data, str(device), None)
    return _dataset(data, str(device), fingerprint)


def execute_run(
    config: StudyConfig,
    device: torch.device,
    on_epoch: Callable[[EpochStats], None] = lambda stats: None,
) -> dict[str, Any]:
    """Train and evaluate one run; the returned record is what ``result.json`` holds.

    Diagnostics (bnstudy.diagnostics) are taken at initialization, so that they explain a run
    that fails in training, and again after training."""
    position, record = Position(), _record()
    settings, compute = evaluation_settings(config), run_compute(config)
    tests = [_untested(setting) for setting in settings]
    model = optimizer = None
    with run_flags(config.train.deterministic, device) as flags:  # before any CUDA call
        started, start = time.time(), synchronized_clock(device)
        reset_peak_memory(device)
        try:
            data = load_data(config, device)
            record["data"] = {"num_classes": data.num_classes, "train_size": len(data.train.y)}
            model, optimizer, record["train"]["lr"] = _setup(config, data, compute)
            position.phase = "diagnostics at init"
            with compute.autocast(device):
                record["layers"], record["diagnostics"] = _initial_diagnostics(model, data, config)
            position.phase = "train"
            trained = _train(config, model, optimizer, data, position, on_epoch, compute)
            record["train"].update(trained)
            position.phase = "diagnostics after training"
            with compute.autocast(device):
                record["diagnostics"].update(
                    _final_diagnostics(model, data, config, record["layers"])
                )
            tested = [_test(model, data, s, config, compute) for s in settings]
            tests = [test for test, _, _ in tested]
            record["predictions"] = _test_outputs(data, settings, tested, config)
        except Diverged as error:
            record.update(
                status=DIVERGED,
                error=f"Diverged: {error}",
                error_at=f"train epoch {position.epoch} (loss not finite by its end)",
            )
        except Exception as error:  # noqa: BLE001 - any failure of the run is its outcome
            record.update(_failure(error, position.describe()))
        model = optimizer = None  # the failed step's tensors went with the exception
        if record["status"] == OOM:
            free_memory(device)
    record["tests"] = tests
    record["provenance"] = _provenance(device, started, compute, flags)
    record["provenance"]["seconds"] = synchronized_clock(device) - start
    return record


def _test_outputs(
    data: Dataset,
    settings: list[EvalSetting],
    tested: list[tuple[dict[str, Any], list[int], list[int] | None]],
    config: StudyConfig,
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


def _record() -> dict[str, Any]:
    """A run's record before it has an outcome: ok so far, nothing trained or measured yet
    (``tests`` and ``provenance`` are added last, as result.json lists them)."""
    return {
        "status": OK,
        "error": "",
        "error_at": "",
        "traceback": "",
        "train": {},
        "diagnostics": {},
        "layers": [],
        "predictions": {},
    }


def crashed_record(config: StudyConfig, exitcode: int | None) -> dict[str, Any]:
    """The result of a run whose worker process died under it (killed by a signal, a
    segfault, the kernel's OOM killer): status ``crashed`` and how the process ended."""
    how = f"exit code {exitcode}"
    if exitcode is not None and exitcode < 0:
        how = f"killed by {signal.Signals(-exitcode).name}"
    return _record() | {
        "status": CRASHED,
        "error": f"worker process died ({how})",
        "error_at": "worker process",
        "tests": [_untested(setting) for setting in evaluation_settings(config)],
        "provenance": {"host": platform.node()},
    }


def _failure(error: Exception, where: str) -> dict[str, str]:
    """The outcome fields of a run that raised ``error`` at ``where``: ``oom`` when memory ran
    out (bnstudy.device.is_out_of_memory), else ``error``; the message verbatim."""
    return {
        "status": OOM if is_out_of_memory(error) else ERROR,
        "error": f"{type(error).__name__}: {error}",
        "error_at": where,
        "traceback": traceback.format_exc(),
    }


def run_compute(config: StudyConfig) -> Compute:
    """How the run's forward passes compute (train.precision, train.channels_last)."""
    return Compute(config.train.precision, config.train.channels_last)


def _probe_batches(data: Dataset, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two fixed batches of ``batch_size`` (the statistics batch; fewer if a split is smaller):
    the first test samples, and the first train samples as the 'other input' of the probe."""
    size = min(batch_size, len(data.test.y), len(data.train.y))
    return data.test.x[:size], data.train.x[:size]


def _initial_diagnostics(
    model: nn.Module, data: Dataset, config: StudyConfig
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    probe, other = _probe_batches(data, statistics_batch(config))
    layers = [asdict(report) for report in diagnostics.layer_reports(model, probe)]
    summary = {"min_values_per_stat": min((r["values"] for r in layers), default=math.nan)}
    summary |= {f"init_{k}": v for k, v in diagnostics.output_probe(model, probe, other).items()}
    return layers, summary


def _final_diagnostics(
    model: nn.Module, data: Dataset, config: StudyConfig, layers: list[dict[str, Any]]
) -> dict[str, float]:
    """Batch-statistic noise over NOISE_SAMPLES training samples (seeded random order) in
    batches of the statistics batch, and the output probe. Adds each BN layer's noise to its
    entry in ``layers``."""
    size = statistics_batch(config)
    batches = _seeded_batches(data.train, size, NOISE_SAMPLES, config.seed)
    noise = diagnostics.batch_statistic_noise(model, batches)
    for layer in layers:
        layer.update(noise.get(layer["name"], {}))
    summary = {f"bn_{key}": _mean([n[key] for n in noise.values()]) for key in _NOISE_KEYS}
    summary["bn_min_var"] = min((n["min_var"] for n in noise.values()), default=math.nan)
    summary["noise_images"] = size if noise else math.nan
    return summary | diagnostics.output_probe(model, *_probe_batches(data, size))


_NOISE_KEYS = ("mean_noise", "var_noise", "mean_noise_between_images", "mean_noise_values_law")


def _seeded_batches(split: Split, size: int, samples: int, seed: int) -> list[torch.Tensor]:
    """Full batches of ``size`` from ``samples`` samples of ``split`` drawn in a seeded random
    order (files may be sorted by class; batches should be like training batches)."""
    order = torch.randperm(len(split.y), generator=torch.Generator().manual_seed(seed))
    chosen = split.x[order[: min(samples, len(order))].to(split.x.device)]
    return list(chosen[: len(chosen) // size * size].split(size))


def _mean(values: list[float]) -> float:
    """Mean of the finite values (a layer constant over the population has no noise)."""
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def model_for_data(config: StudyConfig, data: Dataset) -> nn.Module:
    """The run's model for ``data``'s input shape and classes, initialized from the run's seed."""
    torch.manual_seed(config.seed)
    shape = InputShape(data.in_channels, data.spatial_dims, data.train.x.shape[-1])
    return make_model(config.model, shape, data.num_classes).to(data.train.x.device)


def _setup(
    config: StudyConfig, data: Dataset, compute: Compute
) -> tuple[nn.Module, torch.optim.Optimizer, float]:
    check_ghost_remainder(len(data.train.y), batching(config))
    model = compute.prepare(model_for_data(config, data), data.spatial_dims)
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
    on_epoch: Callable[[EpochStats], None],
    compute: Compute,
) -> dict[str, Any]:
    result = train(
        model,
        data.train,
        optimizer,
        batching=batching(config),
        schedule=make_schedule(config, len(data.train.y)),
        generator=torch.Generator().manual_seed(config.seed),
        position=position,
        on_epoch=on_epoch,
        compute=compute,
        augment=make_augment(
            config.data.augment,
            config.data.augment_padding,
            seed=config.seed,
            device=data.train.x.device,
        ),
    )
    last = result.history[-1]
    return {
        "epochs": result.epochs,
        "steps": result.steps,
        "samples": result.samples,
        "train_seconds": result.seconds,
        "samples_per_sec": result.samples / result.seconds if result.seconds else float("nan"),
        "train_loss": last.train_loss,
        "train_acc": last.train_acc,
        "skipped_steps": result.skipped_steps,
    }


def _untested(setting: EvalSetting) -> dict[str, Any]:
    return {
        **_setting_fields(setting),
        "test_acc": None,
        "test_loss": None,
        "test_flip_rate": None,
        "test_order_seed": None,
        "status": NOT_RUN,
        "error": "",
        "error_at": "",
    }


def _setting_fields(setting: EvalSetting) -> dict[str, Any]:
    return {
        "test_mode": setting.mode,
        "test_batch": setting.label,
        "test_batch_size": setting.batch_size,
    }


def _test(
    model: nn.Module, data: Dataset, setting: EvalSetting, config: StudyConfig, compute: Compute
) -> tuple[dict[str, Any], list[int], list[int] | None]:
    """Evaluate one test setting; a failure here is this setting's outcome only. Returns the
    test record, the predictions (empty on failure) and the per-image flip counts (None
    without a flip rate), both in the test split's order.

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
        failed = {**_untested(setting), **_estimator(setting, config), **_failure(error, where)}
        del failed["traceback"]
    else:
        test = _untested(setting) | {
            "test_acc": result.accuracy,
            "test_loss": result.loss,
            "test_flip_rate": _flip_rate(flips, config.eval.flip_reshuffles),
            "test_order_seed": seed,
            **_estimator(setting, config),
            "status": OK,
        }
        return test, result.predictions.tolist(), None if flips is None else flips.tolist()
    if failed["status"] == OOM:  # out of the except block: the failed batch is unreachable
        free_memory(device)
    return failed, [], None


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
    size = statistics_batch(config) if spec == "same" else spec
    batches = _seeded_batches(split, size, config.eval.precise_samples, config.seed)
    if not batches:
        raise ValueError(f"no full batch of {size} in {len(split.y)} samples to recompute from")
    recompute_bn_statistics(model, batches, config.eval.precise_variance)


def _estimator(setting: EvalSetting, config: StudyConfig) -> dict[str, Any]:
    """``precise_variance``, the running-variance estimator (eval.precise_variance), in the
    record of a test mode that recomputes statistics (precise, adabn); nothing elsewhere."""
    if TEST_MODES[setting.mode].population is None:
        return {}
    return {"precise_variance": config.eval.precise_variance}


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


@functools.cache
def cpu_name() -> str:
    """The CPU model and whether it has AVX-512 (which changes speed and float rounding), from
    /proc/cpuinfo where there is one."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in info.splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    return f"{model}, {'with' if 'avx512f' in info else 'no'} AVX-512"


def cpu_capability() -> str | None:
    """The CPU kernel set torch dispatches to (``DEFAULT``, ``AVX2``, ``AVX512``, ...: another
    set, other float rounding), or None where this torch cannot say."""
    get = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    return get() if get is not None else None


@functools.cache
def source_commit() -> str | None:
    """The git commit of the bnstudy source tree, with ``+dirty`` when a file of the package
    differs from it (``git status --porcelain`` of the package folder, untracked files
    included); None when the package is not a tracked part of a git checkout (an installed
    copy, even one inside another repository) or git is missing. Once per process."""
    package = Path(bnstudy.__file__).resolve().parent

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=package, capture_output=True, text=True, check=True, timeout=30
        )
        return done.stdout.strip()

    try:
        git("ls-files", "--error-unmatch", "__init__.py")
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--", ".")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _provenance(
    device: torch.device, started: float, compute: Compute, flags: dict[str, Any]
) -> dict[str, Any]:
    """Where and how the run computed: versions, hardware, the numerics and kernel flags in
    effect (bnstudy.device.run_flags), and peak memory (bnstudy.device.peak_memory). ``device``
    is ``cpu`` or ``cuda:N`` with N the GPU's index on the machine (bnstudy.device.device_label:
    a pool worker trains on ``cuda``, the one GPU its environment leaves visible). The CUDA
    and cuDNN versions are those torch was built with (None in a CPU-only build); cuda_capability
    is the GPU's compute capability (CUDA runs only)."""
    cuda = device.type == "cuda"
    return {
        "bnstudy": bnstudy.__version__,
        "bnstudy_commit": source_commit(),
        "torch": torch.__version__,
        "torchvision": _package_version("torchvision"),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "host": platform.node(),
        "device": device_label(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else cpu_name(),
        "cuda_capability": ".".join(map(str, torch.cuda.get_device_capability(device)))
        if cuda
        else None,
        "cpu": cpu_name(),
        "cpu_capability": cpu_capability(),
        "threads": torch.get_num_threads(),
        "precision": compute.precision,
        "channels_last": compute.channels_last,
        **flags,
        **peak_memory(device),
        "started": started,
    }
