"""Who is training a run: a claim file in the run's folder, so that processes sharing a sweep
(two ``bnstudy run`` of one study, overlapping scheduled sweeps, one process per GPU, cluster
tasks on a shared filesystem) never train one run twice.

A claim is ``runs/<run_id>/claim.json``, created by hard-linking a file of the creator's
(exactly one creator succeeds, as with ``O_EXCL``, and also on NFS, where ``link`` is atomic;
the claim is never seen without its content), holding the owner's host, pid, start time and
device, and its SLURM job and attempt.
While the run trains, its owner touches the file every :data:`HEARTBEAT_SECONDS` (a third of
the lease when that is shorter); the file's mtime is the heartbeat. A claim is stale when its
owner is known dead (same host, pid gone) or its heartbeat is older than the lease (any host: a
crashed node, a killed job), or it was made by an earlier attempt of this very SLURM job
(requeued after a preemption: a lower ``SLURM_RESTART_COUNT``). A stale claim
is taken over by renaming it aside (``claim.json.stale-...``, kept as evidence): a rename
succeeds for one process only, which then creates its own claim.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CLAIM = "claim.json"
HEARTBEAT_SECONDS = 30.0
LEASE_SECONDS = 300.0  # a heartbeat older than this marks the claim stale on any host
HOST = socket.gethostname()


@dataclass(frozen=True)
class Claim:
    """The owner of a run: host, pid, start time (epoch s), heartbeat age (s), the device it
    trains on (empty when unknown), its SLURM job and that job's attempt."""

    host: str
    pid: int
    started: float
    heartbeat_age: float
    device: str = ""
    job: str = ""  # the SLURM job (array task) of the owner; empty outside SLURM
    restart: int = 0  # the job's SLURM_RESTART_COUNT when the claim was made (0: first attempt)

    def describe(self) -> str:
        on = f" on {self.device}" if self.device else ""
        job = f" (SLURM job {self.job})" if self.job else ""
        return f"{self.host} pid {self.pid}{on}{job}, heartbeat {self.heartbeat_age:.0f} s ago"


def slurm_job() -> str:
    """This process's SLURM job: ``<array job>_<task>`` for an array task, else the job id;
    empty outside SLURM. A requeued job keeps its id."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID", "")


def slurm_restart() -> int:
    """How many times SLURM has requeued this process's job (``SLURM_RESTART_COUNT``); 0 for
    the first attempt and outside SLURM."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (signal 0 checks without signalling)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def read_claim(folder: Path) -> Claim | None:
    """The claim on the run in ``folder``, or None when there is none. An unreadable claim
    file (damaged) is a claim by nobody alive: pid 0."""
    claim = _read(folder / CLAIM)
    return None if claim is None else claim[0]


def _read(path: Path) -> tuple[Claim, int] | None:
    """The claim at ``path`` and the inode it was read from."""
    try:
        stat = path.stat()
        owner = json.loads(path.read_text())
        host, pid, started = str(owner["host"]), int(owner["pid"]), float(owner["started"])
        device, job = str(owner.get("device", "")), str(owner.get("job", ""))
        restart = int(owner.get("restart", 0))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, AttributeError):
        host, pid, started, device, job, restart = "", 0, 0.0, "", "", 0
    age = time.time() - stat.st_mtime
    return Claim(host, pid, started, age, device, job, restart), stat.st_ino


def is_stale(claim: Claim, lease: float = LEASE_SECONDS) -> bool:
    """Whether ``claim``'s owner is gone: dead on this host, unknown, silent for ``lease``, or
    an earlier attempt of this process's own SLURM job (another process of the same attempt,
    as under ``srun -n2``, is live)."""
    if claim.heartbeat_age > lease or claim.pid == 0:
        return True
    if claim.job and claim.job == slurm_job() and claim.restart < slurm_restart():
        return True
    return claim.host == HOST and not pid_alive(claim.pid)


def live_claim(folder: Path, lease: float = LEASE_SECONDS) -> Claim | None:
    """The claim on the run in ``folder`` when its owner is live (not :func:`is_stale`), else
    None."""
    claim = read_claim(folder)
    return None if claim is None or is_stale(claim, lease) else claim


def try_claim(folder: Path, lease: float = LEASE_SECONDS, device: str = "") -> bool:
    """Claim the run in ``folder`` for this process, training on ``device`` (a label for
    ``bnstudy status``); False when a live owner holds it. A stale claim is set aside and
    replaced."""
    folder.mkdir(parents=True, exist_ok=True)
    for _ in range(2):  # a fresh attempt, then one after taking over a stale claim
        if _create(folder / CLAIM, device):
            return True
        found = _read(folder / CLAIM)
        if found is not None and not is_stale(found[0], lease):
            return False
        if found is not None and not _set_aside(folder / CLAIM, inode=found[1]):
            return False  # another process took it over first
    return False


def _create(path: Path, device: str) -> bool:
    """Create the claim with its content in one step: written to a file of this process, then
    hard-linked to ``path``, which fails if ``path`` exists (so no reader ever sees a claim
    without its owner). The file is named like bnstudy.store's temporary files, so that
    ``store.remove_partial_writes`` removes one that a killed process left."""
    own = path.with_name(f".{CLAIM}~{HOST}~{os.getpid()}~claim.tmp")
    owner = {
        "host": HOST,
        "pid": os.getpid(),
        "started": time.time(),
        "device": device,
        "job": slurm_job(),
        "restart": slurm_restart(),
    }
    own.write_text(json.dumps(owner))
    try:
        os.link(own, path)
    except FileExistsError:
        return False
    finally:
        own.unlink()
    return True


def _set_aside(path: Path, inode: int) -> bool:
    """Rename the stale claim (the file with ``inode``) out of the way. False when it was
    already gone, or when the file renamed was a newer claim that another process created
    after taking the stale one over: that one is put back (unless a third claim is there)."""
    aside = path.with_name(f"{CLAIM}.stale-{HOST}-{os.getpid()}-{time.time():.0f}")
    try:
        path.rename(aside)
    except FileNotFoundError:
        return False
    if aside.stat().st_ino == inode:
        return True
    with contextlib.suppress(FileExistsError):
        os.link(aside, path)
    aside.unlink()
    return False


def release(folder: Path, pid: int | None = None) -> None:
    """Drop the claim of process ``pid`` on this host (None: this process) on the run in
    ``folder``, after its result is written or the process was stopped."""
    claim = read_claim(folder)
    if claim is not None and (claim.host, claim.pid) == (HOST, pid or os.getpid()):
        (folder / CLAIM).unlink(missing_ok=True)


@contextlib.contextmanager
def heartbeat(folder: Path, lease: float = LEASE_SECONDS) -> Iterator[None]:
    """Touch the claim in ``folder`` while the block runs, every :data:`HEARTBEAT_SECONDS` or a
    third of ``lease`` when that is shorter, so the claim never looks stale to a process that
    uses the same lease."""
    every = min(HEARTBEAT_SECONDS, lease / 3)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            with contextlib.suppress(FileNotFoundError):
                os.utime(folder / CLAIM)

    thread = threading.Thread(target=beat, name=f"heartbeat {folder.name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
