"""Local worker processes for ``bnstudy run --jobs N``: each trains one run at a time.

The parent hands each worker one run at a time over its own pipe, so it always knows which
run a worker holds. A worker that dies (SIGKILL, a segfault, the kernel's OOM killer) costs
exactly that run: the parent records it as ``crashed`` with the signal, starts a fresh
worker in its place (same device) and goes on. A worker for which no run is left is told to
exit at once, which frees its memory while the others finish. Each worker slot has its
environment (a CUDA worker sees only its GPU: ``CUDA_VISIBLE_DEVICES``), and the first workers
start staggered so that they don't all load data and initialize CUDA at the same moment.
Workers ignore Ctrl-C (the terminal sends it to the whole process group); the parent stops
them (:meth:`WorkerPool.stop`). On Linux each worker asks to be killed with its parent
(``PR_SET_PDEATHSIG``) and then checks that the parent is still the one that started it,
since a parent that died before the request was made would not be noticed.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from typing import Any

import torch

_PR_SET_PDEATHSIG = 1  # prctl option, <linux/prctl.h>
_START = multiprocessing.get_context("spawn")


def _worker(
    conn: Connection,
    parent: int,
    threads: int,
    task: Callable[..., Any],
    environment: dict[str, str],
    delay: float,
) -> None:
    """After ``delay`` seconds, serve ``task(*args)`` for each ``args`` received until None;
    reply (True, its return) or (False, the exception it raised)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)
    os.environ.update(environment)  # before anything initializes CUDA
    torch.set_num_threads(threads)
    time.sleep(delay)
    while (args := conn.recv()) is not None:
        try:
            conn.send((True, task(*args)))
        except Exception as error:  # noqa: BLE001 - the parent raises it (disk full, ...)
            conn.send((False, error))


class WorkerPool:
    """A worker process per entry of ``environments`` (its environment variables) running
    ``task``, each with ``threads`` CPU threads; worker i waits ``i * stagger`` seconds before
    its first job."""

    def __init__(
        self,
        task: Callable[..., Any],
        threads: int,
        environments: list[dict[str, str]],
        stagger: float = 0.0,
    ) -> None:
        self.task, self.threads, self.environments = task, threads, environments
        self.stagger = stagger
        self.workers: dict[Any, tuple[Connection, Any]] = {}  # process -> (pipe, its job)
        self.slots: dict[Any, int] = {}  # process -> its index in environments
        self.exiting: list[Any] = []  # processes told to exit, not joined yet

    def _start_worker(self, slot: int, delay: float = 0.0) -> Any:
        ours, theirs = _START.Pipe()
        process = _START.Process(
            target=_worker,
            args=(theirs, os.getpid(), self.threads, self.task, self.environments[slot], delay),
            daemon=True,
        )
        process.start()
        theirs.close()
        self.workers[process], self.slots[process] = (ours, None), slot
        return process

    def map(
        self, jobs: list[tuple[Any, tuple]], started: Callable[[Any], None] = lambda key: None
    ) -> Iterator[tuple[Any, Any, int | None]]:
        """Run ``task(*args)`` for each ``(key, args)``, calling ``started(key)`` as a worker
        gets it; yield ``(key, returned, None)`` as each finishes, or ``(key, None, exitcode)``
        when its worker died (a negative exitcode is the signal that killed it). An exception
        raised by ``task`` is raised here."""
        self.started = started
        pending = list(reversed(jobs))
        for slot in range(min(len(self.environments), len(jobs))):
            self._start_worker(slot, slot * self.stagger)
        for process in list(self.workers):
            self._hand_out(process, pending)
        while self.workers:
            yield from self._collect(pending)

    def _hand_out(self, process: Any, pending: list) -> None:
        """Send ``process`` the next job, or tell it to exit when none is left. A worker found
        dead here never started the job, which goes back to the queue for a fresh worker."""
        if not pending:
            self._retire(process)
            return
        conn, _ = self.workers[process]
        job = pending.pop()
        self.workers[process] = (conn, job)
        try:
            conn.send(job[1])
        except (BrokenPipeError, ConnectionResetError):
            pending.append(job)
            self._replace(process, pending)
            return
        self.started(job[0])

    def _retire(self, process: Any) -> None:
        """Tell an idle worker to exit (a dead one needs no telling); it is joined later."""
        conn, _ = self.workers.pop(process)
        del self.slots[process]
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.send(None)
        conn.close()
        self.exiting.append(process)

    def _replace(self, process: Any, pending: list) -> None:
        """Forget a dead worker; start a fresh one in its slot if jobs are left."""
        process.join()
        self.workers.pop(process)[0].close()
        slot = self.slots.pop(process)
        if pending:
            self._hand_out(self._start_worker(slot), pending)

    def _collect(self, pending: list) -> Iterator[tuple[Any, Any, int | None]]:
        busy = {p: conn for p, (conn, _) in self.workers.items()}
        ready = set(wait([*busy.values(), *(p.sentinel for p in busy)]))
        for process, conn in busy.items():
            if conn not in ready and process.sentinel not in ready:
                continue
            key = self.workers[process][1][0]
            try:
                returned = conn.recv()
            except EOFError:  # the worker died with the job
                self._replace(process, pending)
                yield key, None, process.exitcode
                continue
            succeeded, value = returned
            if not succeeded:
                raise value  # the parent's failure too (e.g. disk full): stop() cleans up
            self._hand_out(process, pending)  # busy again while the caller takes the result
            yield key, value, None

    def stop(self) -> list[tuple[Any, int]]:
        """End every worker now (SIGKILL; used on Ctrl-C and on any failure of the parent);
        the keys of the jobs they held, with their pids."""
        held = [(job[0], process.pid) for process, (_, job) in self.workers.items() if job]
        for process, (conn, _) in self.workers.items():
            process.kill()
            process.join()
            conn.close()
        for process in self.exiting:
            process.kill()
            process.join()
        self.workers.clear()
        self.slots.clear()
        self.exiting.clear()
        return held

    def close(self) -> None:
        """Let the workers exit, once :meth:`map` is done, and wait for them."""
        for process in list(self.workers):
            self._retire(process)
        for process in self.exiting:
            process.join()
        self.exiting.clear()
