"""Training and evaluation loops over tensors that already live on the device.

An epoch is a seeded permutation sliced into batches (no DataLoader, no workers), as in
airbench. Losses and accuracies accumulate on the device and are read once per epoch, so a GPU
never waits on a per-step host sync.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from bnstudy.data import Split

LR_SCALING_POWER = {"none": 0.0, "linear": 1.0, "sqrt": 0.5}


def scaled_lr(lr: float, batch_size: int, base_batch_size: int, rule: str) -> float:
    """``lr · (batch_size / base_batch_size)^p`` with p from :data:`LR_SCALING_POWER`.

    ``linear`` is the rule of Goyal et al. 2017 (arXiv 1706.02677) used by the GroupNorm paper.
    """
    return lr * (batch_size / base_batch_size) ** LR_SCALING_POWER[rule]


def make_optimizer(
    name: str, params: Iterator[nn.Parameter], lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """SGD with (heavy-ball) momentum, or Adam with L2 weight decay."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def batch_slices(n: int, batch_size: int, drop_last: bool) -> list[slice]:
    """Consecutive slices of ``batch_size``; the last one is shorter unless ``drop_last``."""
    stop = n - n % batch_size if drop_last else n
    return [slice(start, min(start + batch_size, n)) for start in range(0, stop, batch_size)]


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class Position:
    """Where a run is; read after an exception to say where it happened."""

    phase: str = "setup"
    epoch: int = 0
    step: int = 0
    batch_size: int = 0

    def describe(self) -> str:
        if self.phase != "train":
            return self.phase
        return f"train epoch {self.epoch} step {self.step} (batch of {self.batch_size})"


@dataclass
class EpochStats:
    epoch: int
    steps: int
    samples: int
    train_loss: float
    train_acc: float
    seconds: float


@dataclass
class TrainResult:
    epochs: int = 0
    steps: int = 0
    samples: int = 0
    seconds: float = 0.0
    history: list[EpochStats] = field(default_factory=list)


def train(
    model: nn.Module,
    split: Split,
    optimizer: torch.optim.Optimizer,
    *,
    batch_size: int,
    epochs: int,
    max_steps: int | None,
    drop_last: bool,
    generator: torch.Generator,
    position: Position,
    on_epoch: Callable[[EpochStats], None] = lambda stats: None,
) -> TrainResult:
    """Train with cross-entropy for ``epochs`` passes, or ``max_steps`` steps when given.

    Raises :class:`Diverged` at the end of an epoch whose mean loss is not finite.
    """
    result = TrainResult()
    epoch_count = (
        math.ceil(max_steps / _steps_per_epoch(split, batch_size, drop_last))
        if max_steps
        else epochs
    )
    model.train()
    for epoch in range(1, epoch_count + 1):
        position.epoch = epoch
        budget = max_steps - result.steps if max_steps else None
        stats = _train_epoch(
            model, split, optimizer, batch_size, drop_last, generator, position, budget
        )
        result.history.append(stats)
        result.epochs, result.steps = epoch, result.steps + stats.steps
        result.samples += stats.samples
        result.seconds += stats.seconds
        on_epoch(stats)
        if not math.isfinite(stats.train_loss):
            raise Diverged(f"loss {stats.train_loss} in epoch {epoch}")
    return result


def _steps_per_epoch(split: Split, batch_size: int, drop_last: bool) -> int:
    return len(batch_slices(len(split.y), batch_size, drop_last))


def _train_epoch(
    model: nn.Module,
    split: Split,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    drop_last: bool,
    generator: torch.Generator,
    position: Position,
    budget: int | None,
) -> EpochStats:
    start = time.perf_counter()
    order = torch.randperm(len(split.y), generator=generator).to(split.y.device)
    slices = batch_slices(len(order), batch_size, drop_last)[:budget]
    loss_sum = torch.zeros((), device=split.y.device)
    correct = torch.zeros((), device=split.y.device, dtype=torch.long)
    for step, part in enumerate(slices, start=1):
        index = order[part]
        targets = split.y[index]
        position.step, position.batch_size = step, len(index)
        logits = model(split.x[index])
        loss = F.cross_entropy(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(index)
        correct += (logits.argmax(1) == targets).sum()
    samples = sum(s.stop - s.start for s in slices)
    return EpochStats(
        epoch=position.epoch,
        steps=len(slices),
        samples=samples,
        train_loss=loss_sum.item() / samples,
        train_acc=correct.item() / samples,
        seconds=time.perf_counter() - start,
    )


@contextlib.contextmanager
def preserved_buffers(model: nn.Module) -> Iterator[None]:
    """Restore every buffer (BN running mean/var, batch counters) and the train/eval flags on
    exit, even on error: a forward pass in train mode updates running statistics even under
    ``torch.no_grad()``. Buffers are put back as objects, so one that a layer replaced (lazily
    shaped per-activation statistics) is restored too."""
    modules = dict(model.named_modules())
    saved = {
        (owner, name): buffer.clone()
        for owner, module in modules.items()
        for name, buffer in module.named_buffers(recurse=False)
    }
    modes = {owner: module.training for owner, module in modules.items()}
    try:
        yield
    finally:
        for (owner, name), buffer in saved.items():
            setattr(modules[owner], name, buffer)
        for owner, module in modules.items():
            module.training = modes[owner]


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    loss: float
    predictions: torch.Tensor


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, *, mode: str, batch_size: int) -> Evaluation:
    """Accuracy and mean cross-entropy on ``split`` in BN ``mode``.

    ``eval``: norms use running statistics. ``train``: norms normalize each test batch with its
    own statistics (the pix2pix choice), so predictions depend on batch composition. Batches are
    consecutive slices in the split's order. The model's buffers and modes are left unchanged.
    """
    with preserved_buffers(model):
        model.train(mode == "train")
        logits = torch.cat(
            [
                model(split.x[part])
                for part in batch_slices(len(split.y), batch_size, drop_last=False)
            ]
        )
    loss = F.cross_entropy(logits, split.y).item()
    predictions = logits.argmax(1)
    accuracy = (predictions == split.y).float().mean().item()
    return Evaluation(accuracy=accuracy, loss=loss, predictions=predictions)
