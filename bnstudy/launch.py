"""What ``bnstudy run`` and ``bnstudy inspect`` do with a study file, as library calls that
return what the command line prints: plan the study with its overrides, then list its runs,
submit those still to do to a cluster, train them here, or look at its norm layers without
training. A problem the user must fix raises :class:`LaunchError`, one line per problem."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.console import Console

from bnstudy import store
from bnstudy.cluster import ClusterError, SlurmSettings, Submission, submit
from bnstudy.config import (
    ConfigError,
    StudyConfig,
    apply_overrides,
    read_config_file,
    validate_study,
)
from bnstudy.device import resolve_devices
from bnstudy.diagnostics import LayerReport, layer_reports
from bnstudy.estimate import PROBE_STEPS, Estimate, estimate
from bnstudy.options import CLUSTER_OF, LOCAL, RunOptions
from bnstudy.preflight import data_facts, make_model, statistics_batch
from bnstudy.study import Interrupted, SetupFailures, pending_runs, run_study
from bnstudy.sweep import Run, order_runs, plan, swept_keys
from bnstudy.tracking import TrackerUnavailable, check_tracker


class LaunchError(Exception):
    """The command cannot go on: an invalid study file, override or option, unreadable data,
    or an environment to fix (no cluster, an unwritable folder); ``lines``, one per problem."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class Stopped(Exception):
    """Ctrl-C stopped the training: ``trained`` runs were trained by this process, and
    ``done`` of the ``planned`` runs have a result (finished runs are kept)."""

    def __init__(self, trained: int, done: int, planned: int) -> None:
        super().__init__(f"interrupted after {trained} runs")
        self.trained, self.done, self.planned = trained, done, planned


@dataclass(frozen=True)
class Listing:
    """A dry run: the runs in run order, the config keys the sweep varies, the run_ids still
    to run (no result, or an outcome to retry), and what they will cost on the ``device``."""

    runs: list[Run]
    keys: list[str]
    todo: set[str]
    estimate: Estimate
    device: torch.device
    untimed: str  # why a run without a finished run of its cell and a probe is not timed


@dataclass(frozen=True)
class Submitted:
    """The runs still to do, submitted to ``cluster`` (bnstudy.cluster's name) with
    ``settings``; ``finished``: the planned runs left out because they have a result."""

    name: str
    sweep_dir: Path
    cluster: str
    settings: SlurmSettings
    submission: Submission
    finished: int


@dataclass(frozen=True)
class Ran:
    """The runs trained here: the outcome counts of the ``planned`` runs, how many of them this
    process trained, the sweep's table, and its status afterwards (failures included)."""

    name: str
    sweep_dir: Path
    planned: int
    counts: Counter
    trained: int
    table: Path
    status: store.SweepStatus
    lease: float  # seconds after which a silent claim is stale (--lease)


@dataclass(frozen=True)
class InspectedCell:
    """What each norm layer of one model sees at ``batch_size`` samples per statistic, and the
    swept values that set that model and batch (empty for the study as written)."""

    swept: dict[str, Any]
    batch_size: int
    layers: list[LayerReport]


@dataclass(frozen=True)
class Inspection:
    """The study's norm layers, one cell per model and samples per statistic its sweep runs
    (one cell for a study without a sweep, or at a ``--batch-size``)."""

    study: StudyConfig
    cells: list[InspectedCell]


def launch(options: RunOptions, console: Console) -> Listing | Submitted | Ran:
    """Plan the study of ``options``, then list its runs (a dry run), submit those still to do
    to a cluster, or train them here with their progress on ``console``. Raises
    :class:`LaunchError`, and :class:`Stopped` on Ctrl-C."""
    study, runs = _plan(options.config, options.overrides)
    sweep_dir = options.out_root / study.name
    if options.dry_run:
        return _listing(sweep_dir, runs, options, console)
    if options.executor != LOCAL:
        if options.log:
            raise LaunchError(
                [
                    f"--log {options.log}: follows the runs this process trains, "
                    f"not a cluster's (--executor {options.executor})"
                ]
            )
        return _submit(sweep_dir, study, runs, options)
    if options.log:
        try:
            check_tracker(options.log)
        except TrackerUnavailable as error:
            raise LaunchError([str(error)]) from None
    return _train(sweep_dir, study, runs, options, console)


def _listing(sweep_dir: Path, runs: list[Run], options: RunOptions, console: Console) -> Listing:
    """The dry run: the runs and their state, and the cost of those to do, timed by the
    sweep's finished runs or a probe per cell (bnstudy.estimate; ``options.probe``)."""
    todo = pending_runs(sweep_dir, runs, options.retry)
    devices = _devices(options)
    jobs = options.jobs or len(devices)
    here = options.executor == LOCAL  # a cluster's nodes are not this machine: no probe

    def probing(index: int, count: int) -> None:
        console.print(f"timing: probe {index} of {count} ({PROBE_STEPS} steps, then the tests)")

    cost = estimate(sweep_dir, runs, todo, devices[0], jobs, options.probe and here, probing)
    untimed = (
        "no finished run of their cell, and --no-probe"
        if here
        else f"no finished run of their cell (--executor {options.executor}: not probed here)"
    )
    keys, ids = swept_keys(runs), {run.run_id for run in todo}
    return Listing(order_runs(runs, options.order), keys, ids, cost, devices[0], untimed)


def inspect_study(config: Path, overrides: list[str], batch_size: int | None = None) -> Inspection:
    """The norm layers of the study's models, built without training: one cell per distinct
    model and samples per statistic of its sweep (bnstudy.preflight.statistics_batch), or, at
    ``batch_size``, the study as written (its sweep ignored). Raises :class:`LaunchError`."""
    study, runs = _plan(config, overrides, with_sweep=batch_size is None)
    if batch_size is not None:
        return Inspection(study, [_inspected(config, study, batch_size, {})])
    cells: dict[tuple[str, str, int], InspectedCell] = {}
    for run in runs:
        size = statistics_batch(run.config)
        key = (run.config.model.model_dump_json(), run.config.data.model_dump_json(), size)
        if key not in cells:
            shaping = {k: v for k, v in run.swept.items() if k.startswith(_SHAPING)}
            cells[key] = _inspected(config, run.config, size, shaping)
    return Inspection(study, list(cells.values()))


# the swept keys that set what a norm layer sees (the others, seed included, do not)
_SHAPING = ("model.", "data.", "train.norm_batch_size", "train.batch_size")


def _inspected(
    path: Path, config: StudyConfig, batch_size: int, swept: dict[str, Any]
) -> InspectedCell:
    try:
        facts = data_facts(config)
        torch.manual_seed(config.seed)
        model = make_model(config.model, facts.shape, facts.num_classes)
    except (OSError, ValueError) as error:
        raise LaunchError([f"{path}: {type(error).__name__}: {error}"]) from None
    shape = facts.shape
    sample = (shape.channels, *(shape.size,) * shape.spatial_dims)
    return InspectedCell(swept, batch_size, layer_reports(model, torch.zeros(batch_size, *sample)))


def resolved_study(config: Path | None, overrides: list[str]) -> str:
    """The study in ``config`` with ``overrides``, every default filled in, as YAML (its sweep
    as written; of the norms' options, only its own norm's section, as a run's config.json);
    without a file, the defaults, named ``my-study``. Raises :class:`LaunchError`."""
    try:
        raw = read_config_file(config) if config is not None else {"name": "my-study"}
        study = validate_study(apply_overrides(raw, overrides), str(config or "defaults"))
    except ConfigError as error:
        raise LaunchError(error.lines()) from None
    return yaml.safe_dump(store.resolved_config(study), sort_keys=False, allow_unicode=True)


def _plan(
    config: Path, overrides: tuple[str, ...] | list[str], with_sweep: bool = True
) -> tuple[StudyConfig, list[Run]]:
    """The study in ``config`` with ``overrides``, and its runs (one without ``with_sweep``)."""
    try:
        raw = apply_overrides(read_config_file(config), list(overrides))
        if not with_sweep:
            raw.pop("sweep", None)  # the same RawStudy: it knows which override set each key
        return plan(raw, str(config))
    except ConfigError as error:
        raise LaunchError(error.lines()) from None


def _submit(sweep_dir: Path, study: StudyConfig, runs: list[Run], options: RunOptions) -> Submitted:
    """Submit the runs still to do as one job array on the cluster of ``options.executor``."""
    settings = options.slurm
    cluster = CLUSTER_OF[options.executor]
    args = (options.devices, options.lease, options.retry, settings, cluster)
    try:
        submission = submit(sweep_dir, study, runs, *args)
    except (ClusterError, ValueError) as error:
        raise LaunchError([str(error)]) from None
    except OSError as error:
        raise LaunchError([f"{error.filename or sweep_dir}: {error.strerror or error}"]) from None
    finished = len(runs) - len(pending_runs(sweep_dir, runs, options.retry))
    return Submitted(study.name, sweep_dir, cluster, settings, submission, finished)


def _train(
    sweep_dir: Path, study: StudyConfig, runs: list[Run], options: RunOptions, console: Console
) -> Ran:
    """Train the runs still to do here, on the devices of ``options``."""
    devices = _devices(options)
    try:
        counts, trained = run_study(
            study,
            runs,
            options.out_root,
            devices,
            options.order,
            console,
            options.jobs,
            options.lease,
            options.retry,
            options.max_setup_failures,
            options.stagger,
            options.pack,
            options.log,
        )
    except SetupFailures as error:
        raise LaunchError([str(error)]) from None
    except OSError as error:  # --out unwritable or a file, disk full, ...
        where = error.filename or sweep_dir
        fix = "fix it (--out, free space) and rerun the same command; finished runs are kept"
        raise LaunchError([f"{where}: {error.strerror or error}: {fix}"]) from None
    except Interrupted as stop:
        done = len(runs) - len(store.sweep_status(sweep_dir).missing)
        raise Stopped(stop.trained, done, len(runs)) from None
    status = store.sweep_status(sweep_dir)
    table = sweep_dir / store.TABLE
    return Ran(study.name, sweep_dir, len(runs), counts, trained, table, status, options.lease)


def _devices(options: RunOptions) -> list[torch.device]:
    """The devices of ``options.devices``, at least one per job."""
    try:
        devices = resolve_devices(options.devices)
    except ValueError as error:
        raise LaunchError([f"--devices: {error}"]) from None
    if options.jobs is not None and options.jobs < len(devices):
        raise LaunchError(
            [f"--jobs {options.jobs} is fewer than the {len(devices)} devices listed in --devices"]
        )
    return devices
