"""What ``bnstudy run`` shows while a sweep runs: runs done of all with an ETA, the runs in
flight (their swept values, epoch and last training loss, read from each run's history), and
a line per run this process finishes, with its test accuracies or its one-line error.

In a terminal the bar and the in-flight table redraw in place and the finished-run lines
scroll above them; otherwise (a log file, a scheduled sweep) only the lines are written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from bnstudy import store
from bnstudy.config import TrainConfig
from bnstudy.results import (
    EPOCH,
    OK,
    SAME,
    SAMPLE,
    STATUS,
    STEP,
    TEST_ACC,
    TEST_BATCH,
    TEST_MODE,
    TRAIN_LOSS,
    count_text,
    training_budget,
)
from bnstudy.sweep import Run


def swept_text(swept: dict[str, Any]) -> str:
    """A run's swept values as ``key=value ...``, each key by its last part
    (``norm_batch_size=4``, not ``train.norm_batch_size=4``)."""
    return " ".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in swept.items())


def run_label(run: Run) -> str:
    """``<run_id> key=value ...`` (:func:`swept_text`)."""
    return f"{run.run_id} {swept_text(run.swept)}".strip()


def result_line(result: dict[str, Any]) -> str:
    """A finished run's outcome on one line: ``ok: eval 83.1%, train 80.4%`` or the error."""
    if result[STATUS] != OK:
        return f"{result[STATUS]}: {store.error_line(result)}"
    return "ok: " + ", ".join(
        f"{_setting(test)} {100 * test[TEST_ACC]:.1f}%"
        if test[STATUS] == OK
        else f"{_setting(test)} {test[STATUS]}"
        for test in result["tests"]
    )


def _setting(test: dict[str, Any]) -> str:
    mode, batch = test[TEST_MODE], str(test[TEST_BATCH])
    return mode if batch in (mode, SAME) else f"{mode}/{batch}"  # eval/eval, train/same: mode


class SweepView:
    """The terminal view of a sweep with ``total`` runs of which ``done`` are finished."""

    def __init__(self, console: Console, sweep_dir: Path, total: int, done: int) -> None:
        self.console, self.sweep_dir = console, sweep_dir
        self.in_flight: dict[str, tuple[Run, float]] = {}  # run_id -> (run, start time)
        self.progress = _Progress(self, console)
        self.task = self.progress.add_task("runs", total=total, completed=done)

    def __enter__(self) -> SweepView:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def started(self, run: Run) -> None:
        self.in_flight[run.run_id] = (run, time.monotonic())

    def finished(self, run: Run, trained: bool) -> None:
        """``run`` is done; print its line if this process trained it."""
        self.in_flight.pop(run.run_id, None)
        self.progress.advance(self.task)
        result = store.read_result(self.sweep_dir, run.run_id) if trained else None
        if result is not None:
            self.console.print(f"{run_label(run)}: {result_line(result)}", markup=False)

    def handed_off(self, run: Run) -> None:
        """Another live process holds ``run``: not in flight here, not done either."""
        self.in_flight.pop(run.run_id, None)

    def in_flight_table(self) -> Table:
        table = Table.grid(padding=(0, 2))
        for run, start in list(self.in_flight.values()):
            done, loss = _epochs_done(store.run_dir(self.sweep_dir, run.run_id))
            table.add_row(
                f"  {run_label(run)}",
                progress_text(run.config.train, done),
                "" if loss is None else f"loss {loss:.3f}",
                _clock(time.monotonic() - start),
            )
        return table


class _Progress(Progress):
    """The bar, then the runs in flight (rich redraws both from its refresh thread)."""

    def __init__(self, view: SweepView, console: Console) -> None:
        self.view = view  # before Progress's own __init__, which renders once
        super().__init__(
            TextColumn("[bold]runs"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,
            refresh_per_second=2,
        )

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        yield self.view.in_flight_table()


def progress_text(train: TrainConfig, done: dict[str, int]) -> str:
    """How far a run is, ``done`` counting finished epochs, steps and samples: ``epoch 2/5``
    when epochs set its length, else ``epoch 2, 24/40 steps`` (or samples; the epochs the
    budget takes are not known ahead)."""
    amount, unit = training_budget(train.epochs, train.steps, train.samples)
    if unit == EPOCH:
        return f"epoch {done[EPOCH]}/{amount}"
    return f"epoch {done[EPOCH]}, {done[unit]}/{count_text(amount, unit)}"


def _epochs_done(folder: Path) -> tuple[dict[str, int], float | None]:
    """The epochs, optimizer steps and samples that the run training in ``folder`` has finished
    (epoch, step, sample -> count), and the training loss of its last epoch."""
    done = {EPOCH: 0, STEP: 0, SAMPLE: 0}
    try:
        epochs = [json.loads(line) for line in (folder / store.HISTORY).read_text().splitlines()]
    except (OSError, ValueError):  # not started yet, or a line being written
        return done, None
    for epoch in epochs:
        done[STEP] += int(epoch.get("steps", 0))
        done[SAMPLE] += int(epoch.get("samples", 0))
    last = epochs[-1] if epochs else {}
    done[EPOCH] = int(last.get("epoch", 0))
    return done, last.get(TRAIN_LOSS)


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}:{seconds:02d}"
