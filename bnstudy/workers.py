"""Local worker processes for ``bnstudy run --jobs N``: each trains one run at a time.

The parent hands each worker one run at a time over its own pipe, so it always knows which
run a worker holds. A worker that dies (SIGKILL, a segfault, the kernel's OOM killer) costs
exactly that run: the parent records it as ``crashed`` with the signal, starts a fresh
worker and goes on. Workers ignore Ctrl-C (the terminal sends it to the whole process group);
the parent stops them (:meth:`WorkerPool.stop`). On Linux each worker asks to be killed with
its parent (``PR_SET_PDEATHSIG``) and then checks that the parent is still the one that
started it, since a parent that died before the request was made would not be noticed.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from typing import Any

import torch

_PR_SET_PDEATHSIG = 1  # prctl option, <linux/prctl.h>
_START = multiprocessing.get_context("spawn")


def _worker(conn: Connection, parent: int, threads: int, task: Callable[..., Any]) -> None:
    """Serve ``task(*args)`` for each ``args`` received until None; reply (True, its return)
    or (False, the exception it raised)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)
    torch.set_num_threads(threads)
    while (args := conn.recv()) is not None:
        try:
            conn.send((True, task(*args)))
        except Exception as error:  # noqa: BLE001 - the parent raises it (disk full, ...)
            conn.send((False, error))


class WorkerPool:
    """``jobs`` worker processes running ``task``, each with ``threads`` CPU threads."""

    def __init__(self, jobs: int, threads: int, task: Callable[..., Any]) -> None:
        self.jobs, self.threads, self.task = jobs, threads, task
        self.workers: dict[Any, tuple[Connection, Any]] = {}  # process -> (pipe, its job)

    def _start_worker(self) -> Any:
        ours, theirs = _START.Pipe()
        process = _START.Process(
            target=_worker, args=(theirs, os.getpid(), self.threads, self.task), daemon=True
        )
        process.start()
        theirs.close()
        self.workers[process] = (ours, None)
        return process

    def map(self, jobs: list[tuple[Any, tuple]]) -> Iterator[tuple[Any, Any, int | None]]:
        """Run ``task(*args)`` for each ``(key, args)``; yield ``(key, returned, None)`` as each
        finishes, or ``(key, None, exitcode)`` when its worker died (a negative exitcode is
        the signal that killed it). An exception raised by ``task`` is raised here."""
        pending = list(reversed(jobs))
        for _ in range(min(self.jobs, len(jobs))):
            self._start_worker()
        for process in list(self.workers):
            self._hand_out(process, pending)
        while any(job is not None for _, job in self.workers.values()):
            yield from self._collect(pending)

    def _hand_out(self, process: Any, pending: list) -> None:
        """Send ``process`` the next job, or leave it idle when none is left. A worker found
        dead here never started the job, which goes back to the queue for a fresh worker."""
        conn, _ = self.workers[process]
        job = pending.pop() if pending else None
        self.workers[process] = (conn, job)
        if job is None:
            return
        try:
            conn.send(job[1])
        except (BrokenPipeError, ConnectionResetError):
            pending.append(job)
            self._replace(process)
            self._hand_out(self._start_worker(), pending)

    def _replace(self, process: Any) -> int | None:
        """Forget a dead worker; its exit code."""
        process.join()
        self.workers.pop(process)[0].close()
        return process.exitcode

    def _collect(self, pending: list) -> Iterator[tuple[Any, Any, int | None]]:
        busy = {p: conn for p, (conn, job) in self.workers.items() if job is not None}
        ready = set(wait([*busy.values(), *(p.sentinel for p in busy)]))
        for process, conn in busy.items():
            if conn not in ready and process.sentinel not in ready:
                continue
            key = self.workers[process][1][0]
            try:
                returned = conn.recv()
            except EOFError:  # the worker died with the job
                yield key, None, self._replace(process)
                if pending:
                    self._hand_out(self._start_worker(), pending)
                continue
            succeeded, value = returned
            if not succeeded:
                raise value  # the parent's failure too (e.g. disk full): stop() cleans up
            yield key, value, None
            self._hand_out(process, pending)

    def stop(self) -> list[tuple[Any, int]]:
        """End every worker now (SIGKILL; used on Ctrl-C and on any failure of the parent);
        the keys of the jobs they held, with their pids."""
        held = [(job[0], process.pid) for process, (_, job) in self.workers.items() if job]
        for process, (conn, _) in self.workers.items():
            process.kill()
            process.join()
            conn.close()
        self.workers.clear()
        return held

    def close(self) -> None:
        """Let idle workers exit."""
        for process, (conn, _) in self.workers.items():
            conn.send(None)
            process.join()
            conn.close()
        self.workers.clear()
