"""Training and evaluation loops over tensors that already live on the device.

An epoch is a seeded permutation sliced into batches (no DataLoader, no workers), as in
airbench. Losses and accuracies accumulate on the device and are read once per epoch, so a GPU
never waits on a per-step host sync (except under fp16, where torch's GradScaler reads whether
the gradients were finite at every step).

:class:`Compute` says how forward passes run: their precision (autocast) and memory format.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import random
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bnstudy.data import Split
from bnstudy.device import synchronized_clock
from bnstudy.norms import module_spec, progress_layers
from bnstudy.packing import pack_inputs, unpack_outputs

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


def step_groups(n: int, batch_size: int, accumulate: int, drop_last: bool) -> list[list[slice]]:
    """One epoch's optimizer steps: each a list of up to ``accumulate`` consecutive batches
    (the last step of an epoch may have fewer)."""
    slices = batch_slices(n, batch_size, drop_last)
    return [slices[i : i + accumulate] for i in range(0, len(slices), accumulate)]


def optimizer_steps(
    n: int,
    *,
    batch_size: int,
    accumulate: int,
    drop_last: bool,
    epochs: int,
    steps: int | None,
    samples: int | None,
) -> int:
    """The run's optimizer-step budget: ``steps``; or the fewest steps that see at least
    ``samples`` training samples (counting the short last step of an epoch as it is); or
    ``epochs`` passes over ``n`` samples."""
    groups = step_groups(n, batch_size, accumulate, drop_last)
    if steps is not None:
        return steps
    if samples is None:
        return epochs * len(groups)
    sizes = [sum(part.stop - part.start for part in group) for group in groups]
    full_epochs, rest = divmod(samples, sum(sizes))
    seen, extra = 0, 0
    while seen < rest:
        seen += sizes[extra]
        extra += 1
    return full_epochs * len(groups) + extra


@dataclass(frozen=True)
class Schedule:
    """Learning-rate multiplier per optimizer step: a linear warm-up from lr/warmup to lr over
    ``warmup`` steps, then ``kind``: ``constant``; ``cosine`` decay toward 0, reached just after
    the last step (Loshchilov & Hutter 2017, arXiv 1608.03983, without restarts; as torch's
    CosineAnnealingLR with T_max = the steps after warm-up); or ``step``: × ``gamma`` at each
    milestone (fractions of the total steps)."""

    total: int
    warmup: int = 0
    kind: str = "constant"
    milestones: tuple[float, ...] = ()
    gamma: float = 0.1

    def factor(self, step: int) -> float:
        """Multiplier of the base lr for the optimizer step with index ``step`` (from 0)."""
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.total - self.warmup)
        if self.kind == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        if self.kind == "step":
            return self.gamma ** sum(step >= m * self.total for m in self.milestones)
        return 1.0


# autocast dtype per train.precision; None: no autocast (float32 as the model's parameters)
PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
MEMORY_FORMATS = {4: torch.channels_last, 5: torch.channels_last_3d}  # by tensor rank


@dataclass(frozen=True)
class Compute:
    """How forward passes run (``train.precision``, ``train.channels_last``).

    ``precision`` ``bf16``/``fp16``: ``torch.autocast(device type, dtype)`` around the forward
    pass and the loss, never the backward pass (as torch's AMP recipe says); parameters,
    gradients and optimizer state stay float32, and the norms compute their statistics in
    float32 (bnstudy.norms.precision; torch's BatchNorm keeps float32 running statistics).
    ``fp16`` also scales the loss (:func:`grad_scaler`). ``channels_last``: 4D/5D inputs in
    channels-last memory format (the model is converted by :meth:`prepare`).
    """

    precision: str = "fp32"
    channels_last: bool = False

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The autocast region of a forward pass on ``device`` (a null context for fp32).

        Raises ValueError when this torch cannot autocast to the dtype on that device (torch
        itself would warn and silently run in float32)."""
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        if not autocast_supported(device.type, dtype):
            raise ValueError(
                f"train.precision {self.precision}: torch {torch.__version__} cannot autocast "
                f"to {dtype} on {device.type}"
            )
        return torch.autocast(device.type, dtype=dtype)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the memory format of the run (channels-last for a 4D or 5D batch)."""
        if self.channels_last and x.dim() in MEMORY_FORMATS:
            return x.contiguous(memory_format=MEMORY_FORMATS[x.dim()])
        return x

    def prepare(self, model: nn.Module, spatial_dims: int) -> nn.Module:
        """``model`` with its conv weights in channels-last format when asked (in place)."""
        if self.channels_last and spatial_dims + 2 in MEMORY_FORMATS:
            return model.to(memory_format=MEMORY_FORMATS[spatial_dims + 2])
        return model


@functools.cache
def autocast_supported(device_type: str, dtype: torch.dtype) -> bool:
    """Whether autocast to ``dtype`` really runs on ``device_type``: torch disables an
    unsupported one with only a warning, or raises (bfloat16 on a GPU without it); torch
    2.14's CPU autocast takes bfloat16 and float16."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.autocast(device_type, dtype=dtype):
                return (
                    torch.is_autocast_enabled(device_type)
                    and torch.get_autocast_dtype(device_type) == dtype
                )
        except RuntimeError:  # "Current CUDA Device does not support bfloat16"
            return False


def grad_scaler(compute: Compute, device: torch.device) -> torch.amp.GradScaler:
    """torch's loss scaler for fp16 (``enabled`` only then: otherwise its calls pass through).

    Each backward pass scales its loss; one ``step`` (unscale, skip if any gradient is inf or
    NaN) and one ``update`` (halve the scale after a skip, double it after 2000 clean steps)
    per optimizer step, so accumulated gradients are unscaled once, with one scale."""
    return torch.amp.GradScaler(device.type, enabled=compute.precision == "fp16")


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class Position:
    """Where a run is; read after an exception to say where it happened, and by a
    :data:`StepListener` after each optimizer step."""

    phase: str = "setup"
    epoch: int = 0  # the epoch under way, from 1
    step: int = 0  # its optimizer step under way (after the step: done), from 1
    batch_size: int = 0  # of the forward pass under way
    epoch_steps: int = 0  # the optimizer steps of the epoch under way, in all
    epoch_samples: int = 0  # the samples its steps done so far trained on

    def describe(self) -> str:
        if self.phase != "train":
            return self.phase
        return f"train epoch {self.epoch} step {self.step} (batch of {self.batch_size})"


StepListener = Callable[[Position], None]  # called with the run's position after each step


@dataclass
class EpochStats:
    epoch: int
    steps: int
    samples: int
    train_loss: float
    train_acc: float
    lr: float  # the lr of the epoch's last optimizer step
    seconds: float
    skipped_steps: int = 0  # fp16: optimizer steps skipped for inf/NaN gradients (GradScaler)


@dataclass
class TrainResult:
    epochs: int = 0
    steps: int = 0
    samples: int = 0
    seconds: float = 0.0
    skipped_steps: int = 0
    history: list[EpochStats] = field(default_factory=list)


@dataclass(frozen=True)
class Batching:
    """How samples reach the model: ``batch_size`` per forward/backward pass, ``accumulate``
    passes per optimizer step, BN statistics over ``norm_batch_size`` samples (None: the
    whole pass), the short last batch of an epoch dropped or kept."""

    batch_size: int
    accumulate: int = 1
    norm_batch_size: int | None = None
    drop_last: bool = False


def check_ghost_remainder(n: int, batching: Batching) -> None:
    """Raise ValueError when the short last batch of an epoch would split into a shorter ghost
    batch: for those steps BN would see fewer samples than the study says."""
    size, rest = batching.norm_batch_size, n % batching.batch_size
    if size is None or batching.drop_last or rest % size == 0:
        return
    raise ValueError(
        f"{n} training samples end each epoch with a batch of {rest}, which splits into a "
        f"normalization batch of {rest % size} (not {size}): set train.drop_last true or a "
        f"train_size that leaves a multiple of {size}"
    )


@contextlib.contextmanager
def normalization_batch(model: nn.Module, size: int | None) -> Iterator[None]:
    """Set the ghost-batch size of every module with batch statistics
    (:class:`bnstudy.norms.batch.VirtualBatches`) for the duration of the block."""
    modules = [m for m in model.modules() if hasattr(m, "norm_batch_size")]
    saved = [m.norm_batch_size for m in modules]
    for module in modules:
        module.norm_batch_size = size
    try:
        yield
    finally:
        for module, value in zip(modules, saved, strict=True):
            module.norm_batch_size = value


@dataclass(frozen=True)
class Stream:
    """What one model of a pack trains on: its training split, the generator of its epochs'
    permutations, and its augmentation (None: none)."""

    split: Split
    generator: torch.Generator
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None


@dataclass
class CopyResult:
    """One model's training in a pack: its epochs (losses and accuracies its own, steps,
    samples and seconds those of the pack), and why it stopped early (None: it did not)."""

    result: TrainResult = field(default_factory=TrainResult)
    diverged: str | None = None


@dataclass(frozen=True)
class Checkpoints:
    """Mid-run checkpoints of one model's training (``train.checkpoint_every``): ``save`` gets
    the training state (what ``_Loop.state`` gathers) after every ``every``-th optimizer step
    but the last; given a state saved so as ``resume``, training goes on from it and ends as
    if it had never stopped: same weights, same history (whose epochs before the state are
    reported to ``on_epoch`` again), bit for bit where the kernels are deterministic."""

    every: int
    save: Callable[[dict[str, Any]], None]
    resume: dict[str, Any] | None = None


def train(
    model: nn.Module,
    split: Split,
    optimizer: torch.optim.Optimizer,
    *,
    batching: Batching,
    schedule: Schedule,
    generator: torch.Generator,
    position: Position,
    on_epoch: Callable[[EpochStats], None] = lambda stats: None,
    on_step: StepListener = lambda position: None,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    compute: Compute = Compute(),
    checkpoints: Checkpoints | None = None,
) -> TrainResult:
    """Train with cross-entropy for ``schedule.total`` optimizer steps, epoch after epoch of
    seeded permutations, the lr multiplied by ``schedule.factor(step)``. Before each step,
    layers whose norm needs it learn the fraction of the steps done
    (:func:`bnstudy.norms.progress_layers`: Batch Renorm's clipping schedule).

    ``augment``, if given, maps each batch of inputs to the batch the model sees (under
    ``torch.no_grad()``, before the forward pass; batched tensor ops on the device, as in
    airbench); it draws its randomness from wherever it keeps it, not from ``generator``.

    ``compute`` sets the precision and memory format of the forward passes (:class:`Compute`;
    the model must already be converted with :meth:`Compute.prepare`). Under fp16 a step whose
    gradients are not finite is skipped by the scaler and counted (``skipped_steps``), not
    treated as a divergence: the lr schedule moves on, and the step counts toward the budget.

    ``checkpoints``: save the training state every so many steps, or resume from one
    (:class:`Checkpoints`). ``on_step(position)`` follows each optimizer step, ``position``
    saying where in its epoch training is (what a progress view shows).

    Raises :class:`Diverged` at the end of an epoch whose mean loss is not finite (under fp16
    too: a NaN loss is a divergence, not a skipped step).
    """
    (copy,) = train_pack(
        model,
        [Stream(split, generator, augment)],
        optimizer,
        batching=batching,
        schedule=schedule,
        position=position,
        on_epoch=lambda index, stats: on_epoch(stats),
        on_step=on_step,
        compute=compute,
        checkpoints=checkpoints,
    )
    if copy.diverged is not None:
        raise Diverged(copy.diverged)
    return copy.result


def train_pack(
    model: nn.Module,
    streams: Sequence[Stream],
    optimizer: torch.optim.Optimizer,
    *,
    batching: Batching,
    schedule: Schedule,
    position: Position,
    on_epoch: Callable[[int, EpochStats], None] = lambda index, stats: None,
    on_step: StepListener = lambda position: None,
    compute: Compute = Compute(),
    checkpoints: Checkpoints | None = None,
) -> list[CopyResult]:
    """:func:`train` for K models at once: ``model`` is one model (K = 1) or K packed ones
    (bnstudy.packing), copy k fed from ``streams[k]`` (its inputs in its channel group) and
    trained on its own loss; the loss backpropagated is the sum of the copies' losses, so each
    copy gets exactly its own gradients. A copy whose epoch loss is not finite is marked
    diverged at the end of that epoch and leaves the sum; training goes on while a copy is
    left. ``on_epoch(k, stats)`` gets each copy's epochs, ``on_step`` the pack's steps (as in
    :func:`train`). ``checkpoints`` only for K = 1."""
    copies = [CopyResult() for _ in streams]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule.factor)
    layers = progress_layers(model)
    scaler = grad_scaler(compute, streams[0].split.y.device)
    if len({len(stream.split.y) for stream in streams}) > 1:
        raise ValueError("the copies of a pack must have training splits of one size")
    if checkpoints is not None and len(streams) > 1:
        raise ValueError("mid-run checkpoints are per model: a pack cannot keep them")
    loop = _Loop(
        model,
        optimizer,
        scheduler,
        scaler,
        streams[0],
        copies[0],
        checkpoints,
        schedule.total,
        on_step,
    )

    def before_step() -> None:
        for layer in layers:
            layer.set_progress(scheduler.last_epoch / schedule.total)

    model.train()
    live, under_way = list(range(len(streams))), None
    if checkpoints is not None and checkpoints.resume is not None:
        under_way, history = loop.restore(checkpoints.resume)
        for stats in history:
            _add_epoch(copies[0], stats, stats.epoch)
            on_epoch(0, stats)
    with normalization_batch(model, batching.norm_batch_size), _progress_reset(layers):
        while loop.steps < schedule.total and live:
            loop.epochs += 1
            position.epoch = loop.epochs
            epoch = _train_epoch(
                loop,
                streams,
                live,
                batching,
                position,
                before_step=before_step,
                compute=compute,
                under_way=under_way or _EpochUnderWay(streams[0].generator.get_state()),
            )
            under_way = None
            loop.steps += epoch[0].steps
            for index in list(live):
                _add_epoch(copies[index], epoch[index], position.epoch)
                on_epoch(index, epoch[index])
                if copies[index].diverged is not None:
                    live.remove(index)
    return copies


@dataclass
class _EpochUnderWay:
    """An epoch in progress: the state of the order generator (of the first stream) before
    the epoch drew its permutation, its optimizer steps done so far, its tally, its skipped
    steps, the lr of its last step, and its seconds before this process took it up."""

    order_state: torch.Tensor
    steps_done: int = 0
    tally: _Tally = field(default_factory=lambda: _Tally())
    skipped: int = 0
    lr: float = math.nan
    seconds_before: float = 0.0


@dataclass
class _Loop:
    """What a training loop keeps across its epochs (optimizer steps done by the end of the
    last finished epoch, the epochs begun) and its mid-run checkpoints, which hold the
    training of ``stream`` into the model whose epochs ``copy`` collects (K = 1)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    stream: Stream
    copy: CopyResult
    checkpoints: Checkpoints | None
    total: int  # the run's optimizer steps
    on_step: StepListener
    steps: int = 0
    epochs: int = 0

    def after_step(self, epoch: _EpochUnderWay, seconds: Callable[[], float]) -> None:
        """Save the training state if the optimizer step just done is a checkpoint's."""
        done = self.steps + epoch.steps_done
        if self.checkpoints is None or done % self.checkpoints.every or done >= self.total:
            return
        self.checkpoints.save(self.state(epoch, seconds()))

    def state(self, epoch: _EpochUnderWay, seconds: float) -> dict[str, Any]:
        """The training state after ``epoch``'s last step done (what :meth:`restore` takes):
        optimizer steps done, finished epochs, the epoch under way, the model, optimizer, lr
        schedule and loss scaler, and every random number generator training draws from."""
        return {
            "steps": self.steps + epoch.steps_done,
            "history": [asdict(stats) for stats in self.copy.result.history],
            "epoch": {
                "order_state": epoch.order_state,
                "steps_done": epoch.steps_done,
                "tally": epoch.tally.state(),
                "skipped": epoch.skipped,
                "lr": epoch.lr,
                "seconds": seconds,
            },
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": random_states(self.stream),
        }

    def restore(self, state: dict[str, Any]) -> tuple[_EpochUnderWay, list[EpochStats]]:
        """Put the model, optimizer, schedule, scaler and generators back as :meth:`state`
        saved them, and the loop at the epoch that was under way; that epoch, and the
        finished ones."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        set_random_states(self.stream, state["rng"])
        history = [EpochStats(**stats) for stats in state["history"]]
        self.steps, self.epochs = sum(stats.steps for stats in history), len(history)
        epoch = state["epoch"]
        under_way = _EpochUnderWay(
            order_state=epoch["order_state"],
            steps_done=epoch["steps_done"],
            tally=_Tally.restored(epoch["tally"], self.stream.split.y.device),
            skipped=epoch["skipped"],
            lr=epoch["lr"],
            seconds_before=epoch["seconds"],
        )
        return under_way, history


TRAINING_STATE = ("steps", "history", "epoch", "model", "optimizer", "scheduler", "scaler", "rng")


def resume_problem(state: dict[str, Any], model: nn.Module) -> str | None:
    """Why training ``model`` cannot go on from ``state`` (what :meth:`_Loop.state` saves):
    parts missing, a model state that does not load into it, or CUDA generator states where
    this process has fewer GPUs; None if it can."""
    missing = [key for key in TRAINING_STATE if key not in state]
    if missing:
        return f"the training state lacks {', '.join(missing)}"
    try:
        copy.deepcopy(model).load_state_dict(state["model"])
    except RuntimeError as error:
        return f"its model does not fit this run's ({str(error).strip().splitlines()[-1].strip()})"
    gpus = len(state["rng"].get("cuda", []))
    if gpus > (torch.cuda.device_count() if torch.cuda.is_available() else 0):
        return f"it was saved with {gpus} GPUs' generators, more than this process has"
    return None


def random_states(stream: Stream) -> dict[str, Any]:
    """The state of every generator training draws from: torch's global ones (CPU, and each
    CUDA device once CUDA has started: dropout), Python's and NumPy's, and the stream's
    augmentation's (its ``generator`` attribute, bnstudy.augment.Augment)."""
    keys, position, has_gauss, gauss = np.random.get_state(legacy=True)[1:]
    states = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
    }
    if torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    if (augment := getattr(stream.augment, "generator", None)) is not None:
        states["augment"] = augment.get_state()
    return states


def set_random_states(stream: Stream, states: dict[str, Any]) -> None:
    """Set the generators :func:`random_states` read back to ``states``."""
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    if "cuda" in states:
        torch.cuda.set_rng_state_all(states["cuda"])
    if "augment" in states:
        stream.augment.generator.set_state(states["augment"])


def _add_epoch(copy: CopyResult, stats: EpochStats, epoch: int) -> None:
    result = copy.result
    result.history.append(stats)
    result.epochs, result.steps = epoch, result.steps + stats.steps
    result.samples += stats.samples
    result.seconds += stats.seconds
    result.skipped_steps += stats.skipped_steps
    if not math.isfinite(stats.train_loss):
        copy.diverged = f"loss {stats.train_loss} in epoch {epoch}"


@contextlib.contextmanager
def _progress_reset(layers: list[nn.Module]) -> Iterator[None]:
    """Leave the training progress of ``layers`` unset (None: outside training steps) on exit."""
    try:
        yield
    finally:
        for layer in layers:
            layer.set_progress(None)


def _train_epoch(
    loop: _Loop,
    streams: Sequence[Stream],
    live: list[int],
    batching: Batching,
    position: Position,
    before_step: Callable[[], None],
    compute: Compute,
    under_way: _EpochUnderWay,
) -> list[EpochStats]:
    """One epoch of every stream (each its own permutation) through ``loop``'s model, at most
    the optimizer steps left of its budget, from the steps ``under_way`` has done (a resumed
    epoch: its first stream's permutation drawn again from the generator state it began
    with); the epoch's stats per copy. Only the ``live`` copies' losses are backpropagated.
    ``loop.after_step`` follows each optimizer step (mid-run checkpoints)."""
    model, optimizer, scheduler, scaler = loop.model, loop.optimizer, loop.scheduler, loop.scaler
    budget = loop.total - loop.steps
    device = streams[0].split.y.device
    start = synchronized_clock(device) - under_way.seconds_before
    streams[0].generator.set_state(under_way.order_state)
    orders = [torch.randperm(len(s.split.y), generator=s.generator).to(device) for s in streams]
    groups = step_groups(
        len(orders[0]), batching.batch_size, batching.accumulate, batching.drop_last
    )
    if not groups:
        raise ValueError(
            f"{len(orders[0])} training samples make no batch of {batching.batch_size} "
            "(drop_last is true)"
        )
    groups = groups[:budget]
    tally, scale = under_way.tally, scaler.get_scale()  # then read once per step, after its update
    position.epoch_steps, position.epoch_samples = len(groups), tally.samples
    for step, group in enumerate(groups[under_way.steps_done :], start=under_way.steps_done + 1):
        position.step = step
        before_step()
        step_samples = sum(part.stop - part.start for part in group)
        optimizer.zero_grad(set_to_none=True)
        for part in group:
            position.batch_size = part.stop - part.start
            inputs, targets = _batches(streams, orders, part)
            with compute.autocast(device):
                logits = unpack_outputs(model(compute.inputs(inputs)), len(streams))
                losses = [F.cross_entropy(out, y) for out, y in zip(logits, targets, strict=True)]
            loss = functools.reduce(torch.add, [losses[k] for k in live])
            if len(group) > 1:  # so that the accumulated gradient is the step's mean's
                loss = loss * (position.batch_size / step_samples)
            scaler.scale(loss).backward()
            tally.add(losses, logits, targets)
        was_skipped, scale = _scaled_step(scaler, optimizer, scale)
        under_way.skipped += was_skipped
        under_way.lr = optimizer.param_groups[0]["lr"]
        _advance_schedule(scheduler, after_skipped_step=was_skipped)
        under_way.steps_done, position.epoch_samples = step, position.epoch_samples + step_samples
        loop.after_step(under_way, lambda: synchronized_clock(device) - start)
        loop.on_step(position)
    losses, accuracies = tally.means()
    seconds = synchronized_clock(device) - start
    return [
        EpochStats(
            epoch=position.epoch,
            steps=len(groups),
            samples=tally.samples,
            train_loss=loss,
            train_acc=accuracy,
            lr=under_way.lr,
            seconds=seconds,
            skipped_steps=under_way.skipped,
        )
        for loss, accuracy in zip(losses, accuracies, strict=True)
    ]


class _Tally:
    """Each copy's mean loss and accuracy over an epoch's passes: the losses and predicted
    classes are kept on the device as they come and summed once, at the end, so that a pass
    adds one kernel (the argmax) and no host sync."""

    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []  # per pass, K mean losses
        self.predicted: list[torch.Tensor] = []  # per pass: (K, n) classes
        self.targets: list[list[torch.Tensor]] = []  # per pass: K × (n,)
        self.sizes: list[int] = []

    def add(
        self, losses: list[torch.Tensor], logits: torch.Tensor, targets: list[torch.Tensor]
    ) -> None:
        self.losses.extend(loss.detach() for loss in losses)
        self.predicted.append(logits.detach().argmax(-1))
        self.targets.append(targets)
        self.sizes.append(len(targets[0]))

    @property
    def samples(self) -> int:
        return sum(self.sizes)

    def state(self) -> dict[str, Any]:
        """What the tally holds after at least one pass, for a checkpoint, as a few tensors
        (:meth:`restored` takes it back): the losses per pass, and each copy's predicted
        classes and targets in order."""
        return {
            "losses": torch.stack(self.losses),
            "predicted": torch.cat(self.predicted, dim=1),
            "targets": [torch.cat(copy) for copy in zip(*self.targets, strict=True)],
            "sizes": self.sizes,
        }

    @classmethod
    def restored(cls, state: dict[str, Any], device: torch.device) -> _Tally:
        """The tally :meth:`state` saved, on ``device``: its passes as one, which sums the
        same."""
        tally = cls()
        tally.losses = list(state["losses"].to(device).unbind())
        tally.predicted = [state["predicted"].to(device)]
        tally.targets = [[target.to(device) for target in state["targets"]]]
        tally.sizes = list(state["sizes"])
        return tally

    def means(self) -> tuple[list[float], list[float]]:
        """Each copy's loss (the mean over samples) and accuracy, as floats."""
        held = self.state()
        losses = held["losses"].float().view(len(self.sizes), -1)  # (passes, K)
        sizes = torch.tensor(self.sizes, device=losses.device, dtype=losses.dtype)
        loss_sum = (losses * sizes[:, None]).sum(0)
        correct = (held["predicted"] == torch.stack(held["targets"])).sum(1)
        return (loss_sum / self.samples).tolist(), (correct / self.samples).tolist()


def _batches(
    streams: Sequence[Stream], orders: list[torch.Tensor], part: slice
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The batch ``part`` of each stream's order, augmented: the inputs side by side along
    the channels (bnstudy.packing.pack_inputs; one stream's as they are) and the targets."""
    inputs, targets = [], []
    for stream, order in zip(streams, orders, strict=True):
        index = order[part]
        x = stream.split.x[index]
        if stream.augment is not None:
            with torch.no_grad():
                x = stream.augment(x)
        inputs.append(x)
        targets.append(stream.split.y[index])
    return pack_inputs(inputs), targets


# torch warns when the scheduler steps after a skipped optimizer step (GradScaler)
_SCHEDULER_ORDER_WARNING = re.escape("Detected call of `lr_scheduler.step()` before")


def _advance_schedule(
    scheduler: torch.optim.lr_scheduler.LRScheduler, after_skipped_step: bool
) -> None:
    """``scheduler.step()``; after a step the fp16 scaler skipped, without torch's warning that
    the optimizer did not step first: by design a skipped step keeps its place in the
    schedule, so every run of a sweep follows the same lr curve."""
    if not after_skipped_step:
        scheduler.step()
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _SCHEDULER_ORDER_WARNING)
        scheduler.step()


def _scaled_step(
    scaler: torch.amp.GradScaler, optimizer: torch.optim.Optimizer, scale: float
) -> tuple[bool, float]:
    """One optimizer step through ``scaler``, whose scale is ``scale`` before it: whether it
    was skipped (inf/NaN gradients: the scaler then lowers its scale), and the scale after it.
    The scale is read once (a host sync on a GPU); a disabled scaler just steps."""
    if not scaler.is_enabled():
        optimizer.step()
        return False, scale
    scaler.step(optimizer)
    scaler.update()
    after = scaler.get_scale()
    return after < scale, after


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


def norms_in_train_mode(model: nn.Module, whole_model: bool = False) -> None:
    """Put ``model`` in eval mode and the layers whose norm uses batch statistics (the
    registry's ``batch_statistics``: the BN family) in train mode, as TENT's BN adaptation does
    (``DequanWang/tent``, ``norm.py``): dropout and every other module that acts differently in
    training stay as at test time, so train-mode results measure the norms alone.
    ``whole_model``: every module in train mode instead, dropout on (pix2pix, arXiv 1611.07004
    §3.3). Sets modes only; call it inside :func:`preserved_buffers`, which restores them."""
    if whole_model:
        model.train()
        return
    model.eval()
    for module in model.modules():
        spec = module_spec(module)
        if spec is not None and spec.batch_statistics:
            module.train()


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    loss: float
    predictions: torch.Tensor  # per sample of the split, in the split's order


@dataclass
class EvalProgress:
    """Which batch an evaluation is on; read after an exception to say which one failed."""

    batch: int = 0  # 1-based; 0 before the first
    batches: int = 0
    samples: int = 0  # in the current batch (the last one may be short)

    def describe(self) -> str:
        if not self.batch:
            return "before the first batch"
        plural = "" if self.samples == 1 else "s"
        return f"batch {self.batch} of {self.batches}: {self.samples} sample{plural}"


@torch.no_grad()
def evaluate(
    model: nn.Module,
    split: Split,
    *,
    mode: str,
    batch_size: int,
    compute: Compute = Compute(),
    progress: EvalProgress | None = None,
    order: torch.Tensor | None = None,
    whole_model: bool = False,
) -> Evaluation:
    """Accuracy and mean cross-entropy on ``split`` in BN ``mode``, forward passes run as
    ``compute`` says (the loss from float32 logits).

    ``eval``: the model in eval mode, norms use running statistics. ``train``: the norms with
    batch statistics in train mode, the rest in eval mode (:func:`norms_in_train_mode`; with
    ``whole_model`` every module, dropout on: pix2pix), so each test batch is normalized with
    its own statistics and predictions depend on batch composition.

    Batches are consecutive slices of ``order`` (a permutation of the split's indices; None:
    the split's own order), the last one short when ``batch_size`` does not divide the split.
    In train mode pass a seeded permutation: a split sorted by class would otherwise give
    single-class batches. Predictions come back in the split's order whatever ``order`` is.
    ``progress``, if given, is kept at the batch being evaluated. The model's buffers and modes
    are left unchanged.
    """
    if whole_model and mode != "train":
        raise ValueError("whole_model is a train-mode choice")
    order = _checked_order(order, len(split.y), split.y.device)
    with preserved_buffers(model):
        if mode == "train":
            norms_in_train_mode(model, whole_model)
        else:
            model.eval()
        with compute.autocast(split.y.device):
            logits = _batch_logits(
                model, split, batch_size, compute, progress or EvalProgress(), order
            )
    if order is not None:  # back to the split's order
        logits = torch.empty_like(logits).index_copy_(0, order, logits)
    loss = F.cross_entropy(logits, split.y).item()
    predictions = logits.argmax(1)
    accuracy = (predictions == split.y).float().mean().item()
    return Evaluation(accuracy=accuracy, loss=loss, predictions=predictions)


def _checked_order(order: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor | None:
    """``order`` on ``device``; ValueError unless it is a permutation of ``range(n)``."""
    if order is None:
        return None
    order = order.to(device)
    if order.shape != (n,) or not torch.equal(order.sort().values, torch.arange(n, device=device)):
        raise ValueError(f"order is not a permutation of the split's {n} indices")
    return order


def _batch_logits(
    model: nn.Module,
    split: Split,
    batch_size: int,
    compute: Compute,
    progress: EvalProgress,
    order: torch.Tensor | None = None,
) -> torch.Tensor:
    """The float32 logits of ``split`` in batches of ``batch_size`` taken along ``order`` (None:
    the split's order), in that order; ``progress`` at the current batch."""
    slices = batch_slices(len(split.y), batch_size, drop_last=False)
    progress.batch, progress.batches, outputs = 0, len(slices), []
    for index, part in enumerate(slices, start=1):
        progress.batch, progress.samples = index, part.stop - part.start
        inputs = split.x[part] if order is None else split.x[order[part]]
        outputs.append(model(compute.inputs(inputs)).float())
    return torch.cat(outputs)
