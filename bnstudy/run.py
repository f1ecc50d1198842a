"""One run: data, model and optimizer from a resolved config; train once; evaluate the trained
model in every test setting; return the result record.

A failure inside a run is an outcome, not a crash: an exception becomes status ``error`` with
its message verbatim and where it happened, a non-finite loss becomes ``diverged``.
"""

from __future__ import annotations

import functools
import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

import bnstudy
from bnstudy.config import DataConfig, ModelConfig, StudyConfig
from bnstudy.data import Dataset, load_dataset
from bnstudy.models import InputShape, build_model
from bnstudy.norms import create_norm
from bnstudy.train import (
    Diverged,
    EpochStats,
    Position,
    evaluate,
    make_optimizer,
    scaled_lr,
    train,
)


@dataclass(frozen=True)
class EvalSetting:
    """One way of evaluating a trained model: BN ``mode`` at a test ``batch_size``.

    ``label`` is ``eval`` for eval mode, else the configured train-mode batch size (``same``
    for the training batch size, or a number)."""

    mode: str
    label: str
    batch_size: int


def evaluation_settings(config: StudyConfig) -> list[EvalSetting]:
    """The test settings of a run, in the order of ``eval.test_modes``."""
    settings = []
    for mode in config.eval.test_modes:
        if mode == "eval":
            settings.append(EvalSetting("eval", "eval", config.eval.batch_size))
            continue
        for spec in config.eval.train_mode_batch_sizes:
            size = config.train.batch_size if spec == "same" else spec
            settings.append(EvalSetting("train", str(spec), size))
    return settings


def make_model(model: ModelConfig, shape: InputShape, num_classes: int) -> nn.Module:
    """Build the configured model with its norm layer resolved from the registry."""
    norm_layer = functools.partial(
        create_norm, model.norm, spatial_dims=shape.spatial_dims, options=model.norm_options()
    )
    return build_model(model.name, shape, num_classes, model.widths, norm_layer)


@functools.lru_cache(maxsize=2)
def _dataset(data: DataConfig, device: str) -> Dataset:
    return load_dataset(
        data.name,
        train_size=data.train_size,
        test_size=data.test_size,
        seed=data.seed,
        root=data.root,
        image_size=data.image_size,
        device=device,
    )


def load_data(config: StudyConfig, device: torch.device) -> Dataset:
    """The run's data set on ``device``; the runs of a sweep in one process share it."""
    return _dataset(config.data, str(device))


def execute_run(
    config: StudyConfig,
    device: torch.device,
    on_epoch: Callable[[EpochStats], None] = lambda stats: None,
) -> dict[str, Any]:
    """Train and evaluate one run; the returned record is what ``result.json`` holds."""
    started = time.time()
    position = Position()
    record: dict[str, Any] = {"status": "ok", "error": "", "error_at": "", "traceback": ""}
    tests = [_untested(setting) for setting in evaluation_settings(config)]
    try:
        record["where"] = "setup"
        data = load_data(config, device)
        model, optimizer, lr = _setup(config, data, device)
        record["train"] = {"lr": lr}
        record["where"] = "train"
        outcome = _train(config, model, optimizer, data, position, on_epoch)
        record["train"].update(outcome)
        tests = [_test(model, data, setting) for setting in evaluation_settings(config)]
    except Diverged as error:
        record.update(status="diverged", error=f"Diverged: {error}", error_at=position.describe())
    except Exception as error:  # noqa: BLE001 - any failure of the run is its outcome
        where = position.describe() if record["where"] == "train" else record["where"]
        record.update(status="error", error=f"{type(error).__name__}: {error}", error_at=where,
                      traceback=traceback.format_exc())
    del record["where"]
    record["tests"] = tests
    record["provenance"] = _provenance(device, started)
    return record


def _setup(
    config: StudyConfig, data: Dataset, device: torch.device
) -> tuple[nn.Module, torch.optim.Optimizer, float]:
    torch.manual_seed(config.seed)
    shape = InputShape(data.in_channels, data.spatial_dims, data.train.x.shape[-1])
    model = make_model(config.model, shape, data.num_classes).to(device)
    train_cfg = config.train
    lr = scaled_lr(train_cfg.lr, train_cfg.batch_size, train_cfg.base_batch_size,
                   train_cfg.lr_scaling)
    optimizer = make_optimizer(train_cfg.optimizer, model.parameters(), lr, train_cfg.momentum,
                               train_cfg.weight_decay)
    return model, optimizer, lr


def _train(
    config: StudyConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Dataset,
    position: Position,
    on_epoch: Callable[[EpochStats], None],
) -> dict[str, Any]:
    result = train(
        model,
        data.train,
        optimizer,
        batch_size=config.train.batch_size,
        epochs=config.train.epochs,
        max_steps=config.train.steps,
        drop_last=config.train.drop_last,
        generator=torch.Generator().manual_seed(config.seed),
        position=position,
        on_epoch=on_epoch,
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
    }


def _untested(setting: EvalSetting) -> dict[str, Any]:
    return {**_setting_fields(setting), "test_acc": None, "test_loss": None,
            "status": "not run", "error": "", "error_at": ""}


def _setting_fields(setting: EvalSetting) -> dict[str, Any]:
    return {"test_mode": setting.mode, "test_batch": setting.label,
            "test_batch_size": setting.batch_size}


def _test(model: nn.Module, data: Dataset, setting: EvalSetting) -> dict[str, Any]:
    """Evaluate one test setting; a failure here is this setting's outcome only."""
    try:
        result = evaluate(model, data.test, mode=setting.mode, batch_size=setting.batch_size)
    except Exception as error:  # noqa: BLE001 - e.g. BN's one-value-per-channel ValueError
        return {**_untested(setting), "status": "error",
                "error": f"{type(error).__name__}: {error}",
                "error_at": f"test {setting.mode} mode (batch of {setting.batch_size})"}
    return {**_setting_fields(setting), "test_acc": result.accuracy, "test_loss": result.loss,
            "status": "ok", "error": "", "error_at": ""}


def _provenance(device: torch.device, started: float) -> dict[str, Any]:
    return {
        "bnstudy": bnstudy.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "started": started,
        "seconds": time.time() - started,
    }
