"""The options of ``bnstudy run`` as one frozen value, built once from the command line and
passed to :func:`bnstudy.launch.launch`.

Light to import (no torch): the command line reads the defaults below while it builds its help,
before it loads the library.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bnstudy.claims import LEASE_SECONDS

STAGGER_SECONDS = 1.0  # between the starts of the first workers
MAX_SETUP_FAILURES = 3  # runs in a row failing before training that stop a sweep
LOCAL = "local"  # the executor that trains in worker processes here
# executor -> the cluster of bnstudy.cluster that submits its runs
CLUSTER_OF = {"slurm": "slurm", "submitit-local": "local"}
EXECUTORS = (LOCAL, *CLUSTER_OF)  # the choices of ``bnstudy run --executor``


@dataclass(frozen=True)
class SlurmSettings:
    """What each task of the array asks SLURM for. None leaves a setting to the cluster."""

    partition: str | None = None
    gpus_per_task: int = 1  # GPUs per run; 0: CPU only
    cpus_per_task: int = 4  # CPU cores per run
    mem_gb: float | None = None  # memory per run, GiB (SLURM's "G")
    time_min: int = 60  # wall-clock limit per run, minutes: the longest run must fit in it
    array_parallelism: int = 256  # runs of the array running at once, at most
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None  # node features, SLURM's --constraint syntax


DEFAULT_SLURM = SlurmSettings()


@dataclass(frozen=True)
class RunOptions:
    """What ``bnstudy run`` is asked to do: which study, where its results go, and how its
    runs are trained (here, or submitted to a cluster)."""

    config: Path
    """The study file (YAML)."""
    overrides: tuple[str, ...] = ()
    """``KEY=VALUE`` overrides of the study file, values in YAML, applied in order."""
    out_root: Path = Path("results")
    """The results root: the sweep folder is ``out_root/<study name>``."""
    devices: str = "auto"
    """Where the runs train: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, or one CUDA device per
    worker, comma-separated (``cuda:0,cuda:1``); on a cluster ``auto``, ``cpu`` or ``cuda``."""
    order: str = "shuffled"
    """Run order: ``shuffled`` (seeded by the study) or ``grid`` (the sweep's order)."""
    dry_run: bool = False
    """List the runs with their state (done, to run) and their cost, and train nothing."""
    probe: bool = True
    """With ``dry_run``: time the cells without finished runs by a short probe each
    (bnstudy.estimate); False: only from finished runs."""
    jobs: int | None = None
    """Runs at a time, each in its own worker process; None: one per device listed."""
    stagger: float = STAGGER_SECONDS
    """Seconds between the starts of the first workers."""
    lease: float = LEASE_SECONDS
    """Seconds without a heartbeat after which another process's claim on a run is stale and
    taken over (bnstudy.claims)."""
    retry: tuple[str, ...] = ()
    """Outcomes (``error``, ``oom``, ``crashed``, ``diverged``) whose runs are trained again."""
    max_setup_failures: int = MAX_SETUP_FAILURES
    """Runs in a row failing before training after which no more are launched; 0: never."""
    executor: str = LOCAL
    """``local``: worker processes here; ``slurm``: submit the runs still to do as one SLURM
    job array and return; ``submitit-local``: that submission as processes on this machine."""
    slurm: SlurmSettings = DEFAULT_SLURM
    """What each task of a submitted array asks for."""
    pack: str = "auto"
    """Runs of one cell (differing only in seed) trained as one packed network
    (bnstudy.packed_run): ``off``, at most K (a number), or ``auto``: where packing pays on
    the device (bnstudy.study.pack_size). Local executor only."""
    log: str | None = None
    """A tracker each run's curves, test accuracies and config go to as it trains
    (bnstudy.tracking: ``tensorboard``, ``mlflow``), or None. Local executor only."""
