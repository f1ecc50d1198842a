"""Execute a planned study: skip finished runs, run the rest, keep the table current."""

from __future__ import annotations

import os
import re
import signal
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import asdict
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from bnstudy import claims, store
from bnstudy.config import StudyConfig
from bnstudy.run import crashed_record, execute_run
from bnstudy.sweep import Run, order_runs
from bnstudy.workers import WorkerPool


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; otherwise ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise ValueError(f"device {name!r}: use auto, cpu, cuda or cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    device = torch.device(name)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA devices")
    return device


SETUP = "setup"  # error_at of a run that failed before training (data, device, model)


class SetupFailures(Exception):
    """Runs in a row failed before training: the cause is the environment or the code, not a
    result (a missing file, a bad device, an import error), so launching more would fail too."""


class Interrupted(Exception):
    """Ctrl-C stopped the sweep; ``trained`` runs were trained by this process before it."""

    def __init__(self, trained: int) -> None:
        super().__init__(f"interrupted after {trained} runs")
        self.trained = trained


def pending_runs(sweep_dir: Path, runs: list[Run], retry: Collection[str] = ()) -> list[Run]:
    """The runs without a result in ``sweep_dir``, and those whose outcome is in ``retry``."""
    return [run for run in runs if _needs_training(sweep_dir, run.run_id, retry)]


def _needs_training(sweep_dir: Path, run_id: str, retry: Collection[str]) -> bool:
    result = store.read_result(sweep_dir, run_id)
    return result is None or result["status"] in retry


def run_study(
    study: StudyConfig,
    runs: list[Run],
    out_root: Path,
    device: torch.device,
    order: str = "shuffled",
    console: Console | None = None,
    jobs: int = 1,
    lease: float = claims.LEASE_SECONDS,
    retry: Collection[str] = (),
    max_setup_failures: int = 3,
) -> tuple[Counter, int]:
    """Run every run of the study that has no result (or an outcome in ``retry``) and that no
    other live process has claimed (bnstudy.claims; a claim silent for ``lease`` seconds is
    taken over), ``jobs`` at a time; return the outcome counts of all its runs and how many of
    them this process trained. Ctrl-C stops the in-flight runs, writes the table and raises
    :class:`Interrupted`; a second Ctrl-C exits at once. After ``max_setup_failures`` runs in a
    row fail before training (0: never) it stops likewise and raises :class:`SetupFailures`."""
    console = console or Console(stderr=True)
    sweep_dir = out_root / study.name
    store.remove_partial_writes(sweep_dir)
    store.write_plan(sweep_dir, study, runs)
    todo = pending_runs(sweep_dir, order_runs(runs, order), retry)
    trained_here, table, setup_failures = 0, store.RunTable(sweep_dir), 0
    try:
        with _progress(console) as progress:
            task = progress.add_task("", total=len(runs), completed=len(runs) - len(todo))
            for run, trained in _finished_runs(sweep_dir, todo, device, jobs, lease, retry):
                trained_here += trained
                if trained:
                    table.add(run.run_id)
                    table.write()
                    setup_failures = _setup_failures(sweep_dir, run, setup_failures)
                    if setup_failures == max_setup_failures:
                        store.write_table(sweep_dir)
                        raise SetupFailures(_setup_failure_text(sweep_dir, run, setup_failures))
                done = "done" if trained else "claimed by another process:"
                progress.update(task, advance=1, description=f"{done} {_label(run)}")
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, lambda *_: os._exit(130))  # a second Ctrl-C: now
        store.write_table(sweep_dir)
        raise Interrupted(trained_here) from None
    store.write_table(sweep_dir)  # with the runs other processes finished meanwhile
    return store.sweep_status(sweep_dir).counts, trained_here


def _setup_failures(sweep_dir: Path, run: Run, before: int) -> int:
    """The count of consecutive runs that failed before training, after ``run``."""
    result = store.read_result(sweep_dir, run.run_id) or {}
    return before + 1 if result.get("error_at") == SETUP else 0


def _setup_failure_text(sweep_dir: Path, run: Run, count: int) -> str:
    error = (store.read_result(sweep_dir, run.run_id) or {}).get("error", "")
    return (
        f"stopped: {count} runs in a row failed before training (the last: {error}); fix the "
        "cause and rerun with --retry error"
    )


def _finished_runs(
    sweep_dir: Path,
    todo: list[Run],
    device: torch.device,
    jobs: int,
    lease: float,
    retry: Collection[str],
) -> Iterator[tuple[Run, bool]]:
    """Execute ``todo`` in this process (jobs=1) or in ``jobs`` worker processes, each with an
    equal share of the CPU threads; yield each run when it is done, with whether this process
    trained it (False: another process had claimed or finished it). A worker that dies costs
    its run only, recorded as ``crashed``; on any exit the workers are stopped and the claims
    of the runs they held released."""
    if jobs == 1:
        for run in todo:
            yield run, _run_one(sweep_dir, run, device, lease, retry)
        return
    pool = WorkerPool(jobs, max(1, torch.get_num_threads() // jobs), _run_one)
    work = [(run, (sweep_dir, run, device, lease, retry)) for run in todo]
    try:
        for run, trained, exitcode in pool.map(work):
            if exitcode is not None:
                trained = _record_crash(sweep_dir, run, exitcode, lease)
            yield run, trained
        pool.close()
    finally:
        for run, pid in pool.stop():
            claims.release(store.run_dir(sweep_dir, run.run_id), pid)


def _record_crash(sweep_dir: Path, run: Run, exitcode: int, lease: float) -> bool:
    """Record that the worker training ``run`` died (its claim, now a dead process's, is
    taken over first); False if another process got to the run first."""
    folder = store.run_dir(sweep_dir, run.run_id)
    if not claims.try_claim(folder, lease):
        return False
    try:
        store.finish_run(folder, crashed_record(run.config, exitcode))
    finally:
        claims.release(folder)
    return True


def _run_one(
    sweep_dir: Path, run: Run, device: torch.device, lease: float, retry: Collection[str] = ()
) -> bool:
    """Claim, train and record ``run``; False when another process holds its claim or has
    finished it since the sweep listed it."""
    folder = store.run_dir(sweep_dir, run.run_id)
    if not claims.try_claim(folder, lease):
        return False
    try:
        if not _needs_training(sweep_dir, run.run_id, retry):
            return False
        store.start_run(sweep_dir, run)
        with claims.heartbeat(folder):
            result = execute_run(
                run.config,
                device,
                on_epoch=lambda stats: store.append_history(folder, asdict(stats)),
            )
        store.finish_run(folder, result)
        return True
    finally:
        claims.release(folder)


def _label(run: Run) -> str:
    values = " ".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in run.swept.items())
    return f"{run.run_id} {values}"


def _progress(console: Console) -> Progress:
    """Runs done/total, the current run and an ETA; silent when output is not a terminal."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    )
