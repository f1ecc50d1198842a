"""Run a study's pending runs as one SLURM job array, through submitit (``pip install
'bnstudy[slurm]'``).

Each array task trains one run as a local worker does (bnstudy.study.run_one): it claims
the run (bnstudy.claims), trains it and writes to the run's folder, so the sweep folder must be
on a filesystem the nodes share. The driver submits and returns; ``status``, ``report`` and a
re-submission read the run folders as for a local sweep. What was submitted is recorded in
``<sweep>/slurm/submitted.jsonl`` (a line per run: run_id, job_id, cluster, host, epoch s), and
submitit keeps each job's pickles and logs in ``<sweep>/slurm/<job_id>/``.

A run is submitted when it has no result (or an outcome in ``retry``), no live claim, and no
job of an earlier submission that the scheduler still has queued or running. A task that is
preempted or about to time out is requeued by submitit (see :class:`RunTask`).

``cluster="local"`` is submitit's local executor: every run a process on this machine, all at
once, with the files SLURM would use. It rehearses a submission without a cluster.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bnstudy import claims, store, study
from bnstudy.claims import Claim
from bnstudy.config import StudyConfig
from bnstudy.device import resolve_device
from bnstudy.options import DEFAULT_SLURM, SlurmSettings
from bnstudy.sweep import Run, plan_record

if TYPE_CHECKING:
    import submitit
    from submitit.helpers import DelayedSubmission

CLUSTERS = ("slurm", "local")
SUBMITTED = "submitted.jsonl"
# SLURM job states (sacct, squeue) in which a job may still train its run; any other state
# (COMPLETED, FAILED, CANCELLED, TIMEOUT, PREEMPTED, NODE_FAIL, OUT_OF_MEMORY, ...) or a job
# sacct does not know (UNKNOWN) is over.
ACTIVE_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESIZING",
        "SUSPENDED",
        "STOPPED",
        "SIGNALING",
        "STAGE_OUT",
    }
)


class ClusterError(Exception):
    """Nothing can be submitted from here: submitit is not installed, or there is no SLURM."""


@dataclass(frozen=True)
class Submission:
    """The outcome of :func:`submit`: the runs submitted (``run_ids``, one job each, in order),
    and the pending runs left out because a live process holds their claim (``claimed``:
    run_id -> claim) or a job of an earlier submission still has them (``queued``: run_id ->
    job id)."""

    cluster: str
    run_ids: list[str]
    jobs: list[submitit.Job] = field(repr=False)
    claimed: dict[str, Claim]
    queued: dict[str, str]

    @property
    def job_ids(self) -> list[str]:
        """The scheduler's ids of what was submitted: on SLURM the one array job (its tasks are
        ``<id>_<index>``; a single run is a plain job), on the local executor one process id
        per run. Empty when nothing was submitted."""
        return list(dict.fromkeys(job.job_id.split("_")[0] for job in self.jobs))


class RunTask:
    """The callable each array task runs: claim, train and record one run, as a local worker
    does, on the task's device (``auto``: the GPU SLURM gave the task, else the CPU).

    Checkpointable in submitit's sense: when the task is signalled (USR2, 90 s before its time
    limit, and at a preemption where SLURM is configured to signal one), submitit calls
    :meth:`checkpoint` and requeues the task with what it returns. The requeued task goes on
    from the run's latest mid-run checkpoint when the study sets ``train.checkpoint_every``
    (bnstudy.checkpoint), else trains the run again from the start. A signal after min(0.8 × limit,
    limit − 10 min) of runtime counts as a timeout; after 3 timeouts the task is not requeued
    and the run ends as ``error`` ("Job not requeued because: timed-out too many times"), to
    retry with a longer limit. A task killed without a signal leaves its claim: the same task
    requeued by SLURM takes it over (the claim names its job and attempt, bnstudy.claims), any
    other process once its heartbeat is older than the lease.

    Not derived from ``submitit.helpers.Checkpointable``, which would import submitit with this
    module; submitit needs only the ``checkpoint`` method."""

    def __call__(
        self, sweep_dir: Path, run: Run, device: str, lease: float, retry: tuple[str, ...]
    ) -> dict[str, Any]:
        """Train ``run`` unless another process holds or has finished it; the run_id, whether
        this task trained it, and the run's outcome (None when it has none)."""
        trained = study.run_one(sweep_dir, run, resolve_device(device), lease, retry)
        result = store.read_result(sweep_dir, run.run_id)
        return {"run_id": run.run_id, "trained": trained, "status": result and result["status"]}

    def checkpoint(
        self, sweep_dir: Path, run: Run, device: str, lease: float, retry: tuple[str, ...]
    ) -> DelayedSubmission:
        """Release this process's claim on the run, so that the requeued task (on any node)
        can claim it at once instead of waiting out the lease, and return the same call."""
        from submitit.helpers import DelayedSubmission

        claims.release(store.run_dir(sweep_dir, run.run_id))
        return DelayedSubmission(self, sweep_dir, run, device, lease, retry)


def submit(
    sweep_dir: Path,
    study_config: StudyConfig,
    runs: list[Run],
    device: str = "auto",
    lease: float = claims.LEASE_SECONDS,
    retry: Collection[str] = (),
    settings: SlurmSettings = DEFAULT_SLURM,
    cluster: str = "slurm",
) -> Submission:
    """Submit the runs of the study that are still to do as one job array on ``cluster``
    (``slurm``, or ``local`` to rehearse on this machine) and record them; return without
    waiting. ``device`` is what each task trains on: ``auto``, ``cpu`` or ``cuda`` (a task
    sees only its own GPUs)."""
    _check_device(device, settings)
    sweep_dir = sweep_dir.absolute()  # the tasks may start in another directory
    name = f"bnstudy-{study_config.name}"
    executor = make_executor(sweep_dir / "slurm", settings, cluster, name)
    store.prepare_sweep(sweep_dir, study_config, plan_record(runs))
    todo, claimed = [], {}
    for run in study.pending_runs(sweep_dir, runs, retry):
        claim = claims.live_claim(store.run_dir(sweep_dir, run.run_id), lease)
        if claim is not None:
            claimed[run.run_id] = claim
        else:
            todo.append(run)
    queued = _queued(sweep_dir, {run.run_id for run in todo})
    todo = [run for run in todo if run.run_id not in queued]
    jobs = []
    if todo:
        n = len(todo)
        args = ([sweep_dir] * n, todo, [device] * n, [lease] * n, [tuple(retry)] * n)
        jobs = executor.map_array(RunTask(), *args)
        _record(sweep_dir, cluster, todo, jobs)
    return Submission(cluster, [run.run_id for run in todo], jobs, claimed, queued)


def make_executor(
    folder: Path, settings: SlurmSettings, cluster: str, name: str
) -> submitit.AutoExecutor:
    """A submitit executor for ``cluster`` that keeps each job's files in ``folder/<job_id>``,
    with ``settings`` as submitit parameters: generic ones (``timeout_min``, ``cpus_per_task``,
    ``mem_gb``, ``name``) for both clusters, ``slurm_*`` for SLURM only, and the GPU count as
    ``slurm_gpus_per_task`` (SLURM) or ``local_gpus_per_node`` (the local executor shows the
    job GPUs 0..n-1)."""
    if cluster not in CLUSTERS:
        raise ValueError(f"cluster {cluster!r}: use {' or '.join(CLUSTERS)}")
    submitit = _import_submitit()
    if cluster == "slurm" and shutil.which("srun") is None:  # what submitit looks for
        raise ClusterError("SLURM not found (no srun on PATH): submit from a SLURM login node")
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
    executor.update_parameters(
        name=name,
        timeout_min=settings.time_min,
        cpus_per_task=settings.cpus_per_task,
        mem_gb=settings.mem_gb,  # None: not set
        local_gpus_per_node=settings.gpus_per_task,
        slurm_gpus_per_task=settings.gpus_per_task or None,
        slurm_array_parallelism=settings.array_parallelism,
        slurm_partition=settings.partition,
        slurm_account=settings.account,
        slurm_qos=settings.qos,
        slurm_constraint=settings.constraint,
    )
    return executor


def _import_submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise ClusterError(
            "submitting to a cluster needs submitit: pip install 'bnstudy[slurm]'"
        ) from None
    return submitit


def _check_device(device: str, settings: SlurmSettings) -> None:
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device {device!r}: a cluster task uses auto, cpu or cuda")
    if device == "cuda" and settings.gpus_per_task == 0:
        raise ValueError("device cuda, but the tasks ask for no GPU (gpus_per_task 0)")


def _record(sweep_dir: Path, cluster: str, runs: list[Run], jobs: list[submitit.Job]) -> None:
    """Append one line per submitted run to ``slurm/submitted.jsonl``, in one write."""
    now = time.time()
    lines = "".join(
        json.dumps(
            {
                "run_id": run.run_id,
                "job_id": job.job_id,
                "cluster": cluster,
                "host": claims.HOST,
                "submitted": now,
            }
        )
        + "\n"
        for run, job in zip(runs, jobs, strict=True)
    )
    with open(sweep_dir / "slurm" / SUBMITTED, "a") as file:
        file.write(lines)


def _queued(sweep_dir: Path, run_ids: set[str]) -> dict[str, str]:
    """Of ``run_ids``, those submitted before in a job the scheduler still has queued or
    running: run_id -> job id."""
    path = sweep_dir / "slurm" / SUBMITTED
    if not path.exists():
        return {}
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:  # an append cut short by a crash
            continue
    records = [record for record in records if record["run_id"] in run_ids]
    slurm = _active_slurm_jobs([r["job_id"] for r in records if r["cluster"] == "slurm"])

    def active(record: dict[str, Any]) -> bool:
        return record["job_id"] in slurm if record["cluster"] == "slurm" else _local_alive(record)

    return {r["run_id"]: r["job_id"] for r in records if active(r)}


def _active_slurm_jobs(job_ids: list[str]) -> set[str]:
    """The jobs (``<array>_<index>`` or plain ids) in an :data:`ACTIVE_STATES` state, from one
    sacct call through submitit. When sacct fails (submitit logs a warning) every job counts
    as over: a run submitted twice is still trained once (claims), the duplicate task exits."""
    if not job_ids:
        return set()
    from submitit.slurm.slurm import SlurmInfoWatcher

    watcher = SlurmInfoWatcher()
    for job_id in job_ids:
        watcher.register_job(job_id)
    watcher.update()
    return {
        job_id
        for job_id in job_ids
        if watcher.get_state(job_id, mode="cache").split(" ")[0] in ACTIVE_STATES
    }


def _local_alive(record: dict[str, Any]) -> bool:
    """Whether a local executor's job is running: its id is the pid of the job's controller
    process, alive until the job ends."""
    return record["host"] == claims.HOST and claims.pid_alive(int(record["job_id"]))
