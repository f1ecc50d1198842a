"""Execute a planned study: skip finished runs, run the rest, keep the table current."""

from __future__ import annotations

import ctypes
import multiprocessing
import re
import signal
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
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
from bnstudy.run import execute_run
from bnstudy.sweep import Run, order_runs

_PR_SET_PDEATHSIG = 1  # prctl option, <linux/prctl.h>


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


def pending_runs(sweep_dir: Path, runs: list[Run]) -> list[Run]:
    """The runs without a result in ``sweep_dir``."""
    return [run for run in runs if store.read_result(sweep_dir, run.run_id) is None]


def run_study(
    study: StudyConfig,
    runs: list[Run],
    out_root: Path,
    device: torch.device,
    order: str = "shuffled",
    console: Console | None = None,
    jobs: int = 1,
    lease: float = claims.LEASE_SECONDS,
) -> tuple[Counter, int]:
    """Run every unfinished run of the study that no other live process has claimed
    (bnstudy.claims; a claim silent for ``lease`` seconds is taken over), ``jobs`` at a time;
    return the outcome counts of all its runs and how many of them this process trained."""
    console = console or Console(stderr=True)
    sweep_dir = out_root / study.name
    store.remove_partial_writes(sweep_dir)
    store.write_plan(sweep_dir, study, runs)
    todo = pending_runs(sweep_dir, order_runs(runs, order))
    trained_here, table = 0, store.RunTable(sweep_dir)
    with _progress(console) as progress:
        task = progress.add_task("", total=len(runs), completed=len(runs) - len(todo))
        for run, trained in _finished_runs(sweep_dir, todo, device, jobs, lease):
            trained_here += trained
            if trained:
                table.add(run.run_id)
                table.write()
            done = "done" if trained else "claimed by another process:"
            progress.update(task, advance=1, description=f"{done} {_label(run)}")
    store.write_table(sweep_dir)  # with the runs other processes finished meanwhile
    return store.sweep_status(sweep_dir).counts, trained_here


def _finished_runs(
    sweep_dir: Path, todo: list[Run], device: torch.device, jobs: int, lease: float
) -> Iterator[tuple[Run, bool]]:
    """Execute ``todo`` in this process (jobs=1) or in ``jobs`` worker processes, each with an
    equal share of the CPU threads; yield each run when it is done, with whether this process
    trained it (False: another process had claimed or finished it)."""
    if jobs == 1:
        for run in todo:
            yield run, _run_one(sweep_dir, run, device, lease)
        return
    threads = max(1, torch.get_num_threads() // jobs)
    with ProcessPoolExecutor(
        jobs,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(threads,),
    ) as pool:
        futures = {pool.submit(_run_one, sweep_dir, run, device, lease): run for run in todo}
        for future in as_completed(futures):
            yield futures[future], future.result()


def _init_worker(threads: int) -> None:
    """Give the worker its share of CPU threads, and on Linux have it killed with its parent,
    so that a SIGKILLed sweep leaves no orphan writing into run folders."""
    torch.set_num_threads(threads)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _run_one(sweep_dir: Path, run: Run, device: torch.device, lease: float) -> bool:
    """Claim, train and record ``run``; False when another process holds its claim or has
    finished it since the sweep listed it."""
    folder = store.run_dir(sweep_dir, run.run_id)
    if not claims.try_claim(folder, lease):
        return False
    try:
        if store.read_result(sweep_dir, run.run_id) is not None:
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
