"""What a sweep will cost before it runs (``bnstudy run --dry-run``): the optimizer steps of
the runs still to do, and their time on this machine.

A run's time is a fixed part (data, model, diagnostics, the tests of every test mode,
recalibration) plus its optimizer steps at a rate. Both are measured per cell (the runs that
differ only in seed, bnstudy.packed_run.cell_of): from the finished runs of the cell when the
sweep has some (their mean duration, scaled by steps), else by a probe, one run of the cell
trained for :data:`PROBE_STEPS` steps and tested in full, with the CPU threads a worker of
``--jobs`` gets. Runs are assumed trained one by one (not packed); the sweep's wall time is
the work shared among the workers, or the longest run when that is longer.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bnstudy import store
from bnstudy.config import StudyConfig
from bnstudy.device import synchronized_clock
from bnstudy.packed_run import cell_of
from bnstudy.preflight import train_split_size
from bnstudy.progress import run_label
from bnstudy.results import OK, PACKED, RESUMED_AT_STEP, STATUS
from bnstudy.run import execute_run, make_schedule
from bnstudy.sweep import Run

PROBE_STEPS = 20  # optimizer steps a probe trains
WARM_UP_STEPS = 5  # of them, the first ones, left out of its rate per step


@dataclass(frozen=True)
class CellCost:
    """One cell's fixed seconds per run and seconds per optimizer step, and where they come
    from: ``finished`` runs of the sweep or a ``probe``."""

    fixed: float
    per_step: float
    source: str

    def seconds(self, steps: int) -> float:
        return self.fixed + self.per_step * steps


@dataclass(frozen=True)
class Estimate:
    """The runs to do: their optimizer steps in all and each run's estimated seconds, the
    workers they share, and how the cells were timed (cell sources counted; probe problems,
    one line each)."""

    steps: int
    run_seconds: list[float]
    jobs: int
    sources: dict[str, int]
    problems: list[str]

    @property
    def wall_seconds(self) -> float:
        """The timed runs' seconds shared among the workers, or the longest run where that is
        longer; NaN when no run is timed."""
        timed = [seconds for seconds in self.run_seconds if not math.isnan(seconds)]
        if not timed:
            return math.nan
        return max(sum(timed) / self.jobs, max(timed))


def run_steps(config: StudyConfig) -> int:
    """The run's optimizer-step budget (bnstudy.run.make_schedule) on its training split."""
    return make_schedule(config, train_split_size(config)).total


def estimate(
    sweep_dir: Path,
    runs: list[Run],
    todo: list[Run],
    device: torch.device,
    jobs: int,
    probe: bool = True,
    on_probe: Callable[[int, int], None] = lambda index, count: None,
) -> Estimate:
    """The cost of training ``todo`` (of the planned ``runs`` of ``sweep_dir``) with ``jobs``
    workers on ``device``: cells timed by their finished runs, else (``probe``) by a probe each
    (``on_probe(i, n)`` before the i-th of n); without either a run's time is unknown (NaN)."""
    steps = {run.run_id: run_steps(run.config) for run in todo}
    costs = finished_costs(_finished(sweep_dir, runs))
    cells = {cell_of(run.config): run for run in todo}
    to_probe = [cell for cell in cells if cell not in costs] if probe else []
    problems = []
    for index, cell in enumerate(to_probe, start=1):
        on_probe(index, len(to_probe))
        try:
            costs[cell] = probe_cost(cells[cell], device, torch.get_num_threads() // jobs or 1)
        except ProbeFailed as error:
            problems.append(str(error))
    nan = CellCost(math.nan, math.nan, "unknown")
    run_costs = [costs.get(cell_of(run.config), nan) for run in todo]
    sources: dict[str, int] = defaultdict(int)
    for cost in run_costs:
        sources[cost.source] += 1
    return Estimate(
        steps=sum(steps.values()),
        run_seconds=[c.seconds(steps[r.run_id]) for c, r in zip(run_costs, todo, strict=True)],
        jobs=jobs,
        sources=dict(sources),
        problems=problems,
    )


def _finished(sweep_dir: Path, runs: list[Run]) -> Iterable[tuple[Run, dict[str, Any]]]:
    """The planned runs that finished ``ok`` in ``sweep_dir``, with their results."""
    for run in runs:
        result = store.read_result(sweep_dir, run.run_id)
        if result is not None and result.get(STATUS) == OK:
            yield run, result


def finished_costs(finished: Iterable[tuple[Run, dict[str, Any]]]) -> dict[str, CellCost]:
    """Each cell's cost from its finished runs that trained alone and in one go: the mean
    fixed seconds (a run's seconds less its training seconds) and the mean seconds per
    optimizer step. A packed run's record holds its pack's times, and a resumed run's training
    seconds include its earlier attempts: neither is one run's cost."""
    fixed, per_step = defaultdict(list), defaultdict(list)
    for run, result in finished:
        try:
            train, provenance = result["train"], result["provenance"]
            total, trained = float(provenance["seconds"]), float(train["train_seconds"])
            steps = int(train["steps"])
        except (KeyError, TypeError, ValueError):  # an older result: not a timing
            continue
        if (provenance.get(PACKED) or 1) > 1 or train.get(RESUMED_AT_STEP) is not None:
            continue
        cell = cell_of(run.config)
        fixed[cell].append(total - trained)
        per_step[cell].append(trained / max(steps, 1))
    return {
        cell: CellCost(statistics.mean(fixed[cell]), statistics.mean(per_step[cell]), "finished")
        for cell in fixed
    }


class ProbeFailed(Exception):
    """A probe run did not finish: its outcome and error, one line."""


def probe_cost(run: Run, device: torch.device, threads: int) -> CellCost:
    """Time a run of ``run``'s cell: trained for at most :data:`PROBE_STEPS` steps, then
    tested in full (nothing kept), with ``threads`` CPU threads. The rate per step is taken
    after the first :data:`WARM_UP_STEPS` (allocations, kernel selection, cuDNN's autotuning),
    which count in the fixed part, as they do in every run."""
    config = run.config
    steps = min(PROBE_STEPS, run_steps(config))
    train = config.train.model_copy(
        update={"steps": steps, "samples": None, "save_model": False, "checkpoint_every": None}
    )
    warm = min(WARM_UP_STEPS, steps - 1)  # steps left out of the rate; at least one is timed
    done: list[int] = []
    clock: dict[int, float] = {}  # after step k: only at the two that time the rate, since a
    # device sync after every step would cost what training does not (CPU/GPU overlap)

    def timed(position: object) -> None:
        done.append(1)
        if len(done) in (warm, steps):
            clock[len(done)] = synchronized_clock(device)

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        record = execute_run(config.model_copy(update={"train": train}), device, on_step=timed)
    finally:
        torch.set_num_threads(before)
    if record[STATUS] != OK:
        raise ProbeFailed(f"probe of {run_label(run)}: {record[STATUS]}: {record['error']}")
    if warm >= 1:
        per_step = (clock[steps] - clock[warm]) / (steps - warm)
    else:  # a run of one step: no rate but that step's
        per_step = float(record["train"]["train_seconds"])
    fixed = float(record["provenance"]["seconds"]) - per_step * steps
    return CellCost(fixed, per_step, "probe")
