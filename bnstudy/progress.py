"""What ``bnstudy run`` shows while a sweep runs: runs done of all with an ETA, the runs in
flight (their swept values, epoch and step under way, last epoch's training loss, read from
each run's history.jsonl and progress.json), and
a line per run this process finishes, with its test accuracies or its one-line error.

In a terminal the bar and the in-flight table redraw in place and the finished-run lines
scroll above them; otherwise (a log file, a scheduled sweep) only the lines are written, each
with the runs done and the ETA.

The ETA comes from the runs themselves (:class:`Eta`): rich's ``TimeRemainingColumn`` estimates
a speed over its last 30 s (``speed_estimate_period``) and shows ``-:--:--`` whenever runs finish
further apart than that, which is every CPU sweep.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

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
from bnstudy.tracking import SweepLog


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


class Eta:
    """Time left in a sweep, from the runs this process saw from start to finish: the mean
    duration d of those runs; each run in flight needs d minus its time so far (at least 0),
    each run not started needs d; that work is shared by as many runs as this process has had
    in flight at once (its workers, times the pack size). None until a run has finished."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.durations: list[float] = []
        self.capacity = 1

    def seconds(self, started: Iterable[float], queued: int) -> float | None:
        """The ETA with runs in flight since ``started`` (clock times) and ``queued`` runs not
        started, or None without a finished run to time."""
        if not self.durations:
            return None
        mean, now = sum(self.durations) / len(self.durations), self.clock()
        work = sum(max(mean - (now - start), 0.0) for start in started) + max(queued, 0) * mean
        return work / self.capacity


def eta_text(seconds: float | None) -> str:
    """``h:mm:ss``, or ``-:--:--`` when unknown (rich's style)."""
    if seconds is None:
        return "-:--:--"
    minutes, second = divmod(round(seconds), 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours}:{minute:02d}:{second:02d}"


class SweepView:
    """The terminal view of a sweep with ``total`` runs of which ``done`` are finished;
    ``clock`` times the runs for the ETA (:class:`Eta`); ``log`` gets each run this process
    finishes (bnstudy.tracking)."""

    def __init__(
        self,
        console: Console,
        sweep_dir: Path,
        total: int,
        done: int,
        clock: Callable[[], float] = time.monotonic,
        log: SweepLog | None = None,
    ) -> None:
        self.console, self.sweep_dir, self.log = console, sweep_dir, log
        self.log_failure_said = False
        self.in_flight: dict[str, tuple[Run, float]] = {}  # run_id -> (run, start time)
        self.eta = Eta(clock)
        self.progress = _Progress(self, console)
        self.task = self.progress.add_task("runs", total=total, completed=done)

    def __enter__(self) -> SweepView:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
        self.report_log_failure()

    def started(self, run: Run) -> None:
        self.in_flight[run.run_id] = (run, self.eta.clock())
        self.eta.capacity = max(self.eta.capacity, len(self.in_flight))

    def finished(self, run: Run, trained: bool) -> None:
        """``run`` is done; print its line if this process trained it (with the runs done and
        the ETA when the output is not a terminal, which has the bar)."""
        _, start = self.in_flight.pop(run.run_id, (None, None))
        if trained and start is not None:
            self.eta.durations.append(self.eta.clock() - start)
        if trained and self.log is not None:
            self.log.finish(run)  # nothing once the tracker failed
            self.report_log_failure()
        self.progress.advance(self.task)
        result = store.read_result(self.sweep_dir, run.run_id) if trained else None
        if result is None:
            return
        line = f"{run_label(run)}: {result_line(result)}"
        if not self.console.is_terminal:
            task = self.progress.tasks[0]
            line += f" [{int(task.completed)}/{int(task.total)} runs, eta {self.eta_text()}]"
        self.console.print(line, markup=False)

    def eta_text(self) -> str:
        """The sweep's ETA as ``h:mm:ss`` (:class:`Eta`), ``-:--:--`` before a run finished."""
        task = self.progress.tasks[0]
        queued = int(task.total) - int(task.completed) - len(self.in_flight)
        return eta_text(self.eta.seconds([s for _, s in self.in_flight.values()], queued))

    def report_log_failure(self) -> None:
        """Say once that the tracker failed (in whichever thread), and that the sweep goes on."""
        if self.log is not None and self.log.failure is not None and not self.log_failure_said:
            self.console.print(f"--log stopped, the sweep goes on: {self.log.failure}")
            self.log_failure_said = True

    def handed_off(self, run: Run) -> None:
        """Another live process holds ``run``: not in flight here, not done either."""
        self.in_flight.pop(run.run_id, None)

    def in_flight_table(self) -> Table:
        table = Table.grid(padding=(0, 2))
        for run, start in list(self.in_flight.values()):
            folder = store.run_dir(self.sweep_dir, run.run_id)
            done, loss = _done_so_far(folder)
            table.add_row(
                f"  {run_label(run)}",
                progress_text(run.config.train, done, store.read_progress(folder)),
                "" if loss is None else f"loss {loss:.3f}",
                _clock(self.eta.clock() - start),
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
            _EtaColumn(view),
            console=console,
            disable=not console.is_terminal,
            refresh_per_second=2,
        )

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        yield self.view.in_flight_table()


class _EtaColumn(ProgressColumn):
    """The sweep's ETA from its runs' durations (:meth:`SweepView.eta_text`)."""

    def __init__(self, view: SweepView) -> None:
        self.view = view
        super().__init__()

    def render(self, task: Task) -> Text:
        return Text(self.view.eta_text(), style="progress.remaining")


def progress_text(train: TrainConfig, done: dict[str, int], mark: dict[str, int] | None) -> str:
    """How far a run is, from ``done`` (its finished epochs, steps and samples: history.jsonl)
    and ``mark`` (the epoch under way: progress.json, :class:`bnstudy.store.StepMarks`):
    ``epoch 2/5, step 12/40`` when epochs set its length, else ``epoch 2, 30/40 steps`` (or
    samples; the epochs a budget of steps takes are not known ahead); ``setting up`` before
    its first step, ``trained, testing`` once its budget is spent."""
    amount, unit = training_budget(train.epochs, train.steps, train.samples)
    if done[unit] >= amount:
        return "trained, testing"
    if mark is None and done[EPOCH] == 0:
        return "setting up"
    if mark is None or mark[EPOCH] <= done[EPOCH]:  # not begun, or between two epochs
        mark = {EPOCH: done[EPOCH] + 1, "steps_done": 0, "steps": 0, "samples_done": 0}
    if unit == EPOCH:
        step = f", step {mark['steps_done']}/{mark['steps']}" if mark["steps"] else ""
        return f"epoch {mark[EPOCH]}/{amount}{step}"
    so_far = done[unit] + mark["steps_done" if unit == STEP else "samples_done"]
    return f"epoch {mark[EPOCH]}, {so_far}/{count_text(amount, unit)}"


def _done_so_far(folder: Path) -> tuple[dict[str, int], float | None]:
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
