"""Execute a planned study: skip finished runs, run the rest, keep the table current."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import asdict
from pathlib import Path

import torch
from rich.console import Console

from bnstudy import claims, store
from bnstudy.checkpoint import RunFiles
from bnstudy.config import StudyConfig
from bnstudy.device import device_label, worker_environment
from bnstudy.options import MAX_SETUP_FAILURES, STAGGER_SECONDS
from bnstudy.packed_run import Pack, execute_pack, packs
from bnstudy.progress import SweepView
from bnstudy.results import ERROR_AT, ERROR_MESSAGE, PACK_NOTE, STATUS
from bnstudy.run import crashed_record
from bnstudy.sweep import Run, order_runs, plan_record
from bnstudy.tracking import Following, SweepLog, sweep_log
from bnstudy.workers import WorkerPool

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
    return [run for run in runs if _needs_training(sweep_dir, run, retry)]


def _needs_training(sweep_dir: Path, run: Run, retry: Collection[str]) -> bool:
    result = store.read_result(sweep_dir, run.run_id)
    return result is None or result[STATUS] in retry


def run_study(
    study: StudyConfig,
    runs: list[Run],
    out_root: Path,
    device: torch.device | list[torch.device],
    order: str = "shuffled",
    console: Console | None = None,
    jobs: int | None = None,
    lease: float = claims.LEASE_SECONDS,
    retry: Collection[str] = (),
    max_setup_failures: int = MAX_SETUP_FAILURES,
    stagger: float = STAGGER_SECONDS,
    pack: str = "off",
    log: str | None = None,
) -> tuple[Counter, int]:
    """Run every run of the study that has no result (or an outcome in ``retry``) and that no
    other live process has claimed (bnstudy.claims; a claim silent for ``lease`` seconds is
    taken over), ``jobs`` at a time (default: one per device), worker i on device
    ``i % len(devices)``; return the outcome counts of all its runs and how many of them this
    process trained. Runs that were claimed by a process that has since died are picked up at
    the end. Ctrl-C stops the in-flight runs, writes the table and raises
    :class:`Interrupted`; a second Ctrl-C exits at once. After ``max_setup_failures`` runs in a
    row fail before training (0: never) it stops likewise and raises :class:`SetupFailures`.
    ``pack`` (``off``, ``auto`` or a number) trains runs of one cell in packs
    (bnstudy.packed_run.packs). ``log`` (``tensorboard``) writes each run's curves, test
    accuracies and config to that tracker as it trains (bnstudy.tracking)."""
    devices = [device] if isinstance(device, torch.device) else device
    workers = _worker_devices(devices, jobs or len(devices))
    console = console or Console(stderr=True)
    sweep_dir = out_root / study.name
    store.prepare_sweep(sweep_dir, study, plan_record(runs))
    todo = pending_runs(sweep_dir, order_runs(runs, order), retry)
    sweep = _Sweep(sweep_dir, max_setup_failures)
    on = ", ".join(dict.fromkeys(str(d) for d in devices))
    console.print(
        f"{study.name}: {len(todo)} of {len(runs)} runs to run, {len(workers)} at a time on {on}",
        markup=False,
    )
    try:
        tracker = _tracker(log, sweep_dir, study.name, console) if log else None
        with (
            _interrupts(),
            SweepView(console, sweep_dir, len(runs), len(runs) - len(todo), log=tracker) as view,
            Following(tracker, view.in_flight) if tracker else contextlib.nullcontext(),
        ):
            while todo:
                held = []
                work = packs(todo, pack, workers[0].type)
                finished = _finished_runs(sweep_dir, work, workers, lease, retry, stagger, view)
                with contextlib.closing(finished):  # on an error too: stop workers, release
                    for run, trained in finished:
                        sweep.record(run, trained)
                        if not trained and _needs_training(sweep_dir, run, retry):
                            held.append(run)  # another process trains it
                            view.handed_off(run)
                            continue
                        view.finished(run, trained)
                todo = [run for run in held if _abandoned(sweep_dir, run, lease, retry)]
    except KeyboardInterrupt:  # a second Ctrl-C now exits at once (_interrupts)
        store.write_table(sweep_dir)
        raise Interrupted(sweep.trained) from None
    store.write_table(sweep_dir)  # with the runs other processes finished meanwhile
    return store.sweep_status(sweep_dir).counts, sweep.trained


def _tracker(log: str, sweep_dir: Path, study: str, console: Console) -> SweepLog | None:
    """The sweep's tracker (bnstudy.tracking), or None, said in one line, when it cannot start
    (a tracking server that does not answer): the sweep goes on without it."""
    try:
        return sweep_log(log, sweep_dir, study)
    except Exception as error:  # noqa: BLE001 - any tracker's failure: train without it
        first = (str(error).splitlines() or [""])[0]
        console.print(
            f"--log {log}: cannot start, the sweep goes on without it: "
            f"{type(error).__name__}: {first}",
            markup=False,
        )
        return None


@contextlib.contextmanager
def _interrupts() -> Iterator[None]:
    """While the sweep runs, Ctrl-C raises KeyboardInterrupt once (the sweep stops in order:
    workers stopped, claims released, the table written) and from then on exits at once
    (:func:`_exit_now`), also while the workers are being stopped. SIGINT is left as it is
    where it is not Python's default (ignored in a background job, or the caller's own) and
    outside the main thread."""
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def first(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, _exit_now)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:  # after a Ctrl-C, _exit_now stays: the process is stopping (the command exits 130)
        if signal.getsignal(signal.SIGINT) is first:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _exit_now(signum: int, frame: object) -> None:
    """A second Ctrl-C while the first one's stop is under way: leave now, exit code 130
    (finished runs are kept; claims of the runs in flight go stale and are taken over)."""
    sys.stderr.write("interrupted again: exiting now; resume with the same command\n")
    sys.stderr.flush()
    os._exit(130)


def _worker_devices(devices: list[torch.device], jobs: int) -> list[torch.device]:
    """The device of each of ``jobs`` workers: the devices in turn."""
    if jobs < len(devices):
        raise ValueError(f"--jobs {jobs} is fewer than the {len(devices)} devices listed")
    return [devices[i % len(devices)] for i in range(jobs)]


class _Sweep:
    """What this process has done so far: the runs it trained (added to the table at once)
    and the count of the latest runs in a row that failed before training."""

    def __init__(self, sweep_dir: Path, max_setup_failures: int) -> None:
        self.sweep_dir, self.max_setup_failures = sweep_dir, max_setup_failures
        self.table, self.trained, self.setup_failures = store.RunTable(sweep_dir), 0, 0

    def record(self, run: Run, trained: bool) -> None:
        """Note a run this process was done with, and whether it trained it. Raises
        :class:`SetupFailures` when the guard trips."""
        if not trained:
            return
        self.trained += 1
        self.table.add(run.run_id)
        self.table.write()
        result = store.read_result(self.sweep_dir, run.run_id) or {}
        self.setup_failures = self.setup_failures + 1 if result.get(ERROR_AT) == SETUP else 0
        if self.max_setup_failures and self.setup_failures >= self.max_setup_failures:
            store.write_table(self.sweep_dir)
            raise SetupFailures(
                f"stopped: {self.setup_failures} runs in a row failed before training (the last: "
                f"{result.get(ERROR_MESSAGE, '')}); fix the cause and rerun with --retry error"
            )


def _abandoned(sweep_dir: Path, run: Run, lease: float, retry: Collection[str]) -> bool:
    """Whether ``run``, which another process had claimed, still needs training and has no
    live owner any more (its claim released without a result, or stale)."""
    if not _needs_training(sweep_dir, run, retry):
        return False
    return claims.live_claim(store.run_dir(sweep_dir, run.run_id), lease) is None


def _finished_runs(
    sweep_dir: Path,
    work: list[Pack],
    workers: list[torch.device],
    lease: float,
    retry: Collection[str],
    stagger: float,
    view: SweepView,
) -> Iterator[tuple[Run, bool]]:
    """Execute the packs of ``work`` in this process (one worker) or in a worker process per
    entry of ``workers`` (its device; the CPU threads shared equally); yield each run when it
    is done, with whether this process trained it (False: another process had claimed or
    finished it). A worker that dies costs its pack only, each run recorded as ``crashed``; on
    any exit the workers are stopped and the claims of the runs they held released."""
    if len(workers) == 1:
        for pack in work:
            _started(view, pack)
            yield from zip(
                pack.runs, run_pack(sweep_dir, pack, workers[0], lease, retry), strict=True
            )
        return
    threads = max(1, torch.get_num_threads() // len(workers))
    pool = WorkerPool(run_pack, threads, [worker_environment(d) for d in workers], stagger)
    on = torch.device(workers[0].type)  # a CUDA worker sees its own GPU alone, as cuda:0
    jobs = [(pack, (sweep_dir, pack, on, lease, retry)) for pack in work]
    try:
        for pack, trained, exitcode in pool.map(jobs, started=lambda p: _started(view, p)):
            if exitcode is not None:
                trained = [_record_crash(sweep_dir, r, exitcode, lease, retry) for r in pack.runs]
            yield from zip(pack.runs, trained, strict=True)
        pool.close()
    finally:
        for pack, pid in pool.stop():
            for run in pack.runs:
                folder = store.run_dir(sweep_dir, run.run_id)
                store.remove_partial_writes(folder)  # a file the worker was writing when killed
                claims.release(folder, pid)


def _started(view: SweepView, pack: Pack) -> None:
    for run in pack.runs:
        view.started(run)


def _record_crash(
    sweep_dir: Path, run: Run, exitcode: int, lease: float, retry: Collection[str]
) -> bool:
    """Record that the worker training ``run`` died, as ``crashed``: its claim (now a dead
    process's) is taken over, its half-written files removed, and the folder completed as
    store.start_run would have (an earlier result set aside, the config written). A result
    the worker wrote before it died is kept (True too); False if another process got to the
    run first."""
    folder = store.run_dir(sweep_dir, run.run_id)
    if not claims.try_claim(folder, lease):
        return False
    try:
        if not _needs_training(sweep_dir, run, retry):
            return True  # finished before the worker could report it
        store.remove_partial_writes(folder)
        store.set_previous_aside(folder)
        if not (folder / store.CONFIG).exists():  # died before store.start_run wrote it
            store.write_config(folder, run)
        store.finish_run(folder, crashed_record(run.config, exitcode))
    finally:
        claims.release(folder)
    return True


def run_one(
    sweep_dir: Path, run: Run, device: torch.device, lease: float, retry: Collection[str] = ()
) -> bool:
    """Claim, train and record ``run``: what each cluster task does. False when another
    process holds its claim or has finished it since the sweep listed it."""
    (trained,) = run_pack(sweep_dir, Pack((run,)), device, lease, retry)
    return trained


def run_pack(
    sweep_dir: Path, pack: Pack, device: torch.device, lease: float, retry: Collection[str] = ()
) -> list[bool]:
    """Claim, train and record the runs of ``pack`` (as one packed network when more than one
    is left to train: bnstudy.packed_run): what each local worker does. For each run, whether
    it was trained here (False: another process holds its claim or has finished it since the
    sweep listed it). Each run's result is written when all are trained, one after the other:
    a pack that is killed leaves its runs without results, never half-written."""
    folders = {run.run_id: store.run_dir(sweep_dir, run.run_id) for run in pack.runs}
    label = device_label(device)
    claimed = [run for run in pack.runs if claims.try_claim(folders[run.run_id], lease, label)]
    try:
        todo = [run for run in claimed if _needs_training(sweep_dir, run, retry)]
        if not todo:
            return [False] * len(pack.runs)
        for run in todo:
            store.start_run(sweep_dir, run)
        with contextlib.ExitStack() as beating:
            for run in todo:
                beating.enter_context(claims.heartbeat(folders[run.run_id], lease))
            files = [RunFiles.of(folders[run.run_id], run) for run in todo]
            results = execute_pack(
                [run.config for run in todo],
                device,
                on_epoch=lambda k, stats: store.append_history(
                    folders[todo[k].run_id], asdict(stats)
                ),
                files=files,
                on_step=store.StepMarks([folders[run.run_id] for run in todo]),
            )
        for run, result, kept in zip(todo, results, files, strict=True):
            if pack.note:
                result["provenance"][PACK_NOTE] = pack.note
            store.finish_run(folders[run.run_id], result)
            kept.discard_state()  # a finished run never resumes
        return [run in todo for run in pack.runs]
    finally:
        for run in claimed:
            claims.release(folders[run.run_id])
