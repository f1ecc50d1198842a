"""Training curves where people already look: each run of a sweep in TensorBoard
(``bnstudy run --log tensorboard``), grouped by study.

The tracker follows the run folders, which are the source of truth: while runs train, a thread
of the process that launched them reads each in-flight run's ``history.jsonl`` and writes the
epochs it has not written yet; when a run finishes, its test accuracies and its config follow.
So it sees every run this process launches, whatever trains it (worker processes, packed
networks), and a killed sweep leaves event files that hold what was done. The events of a run
go to ``<sweep>/tensorboard/<run id>/`` (``tensorboard --logdir results`` shows every study,
one folder each); the run's swept values are its text ``swept``.

TensorBoard is an optional extra (``pip install -e '.[tensorboard]'``): without it, ``--log
tensorboard`` is one line naming the package.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import yaml

from bnstudy import store
from bnstudy.results import OK, STATUS, TEST_ACC, TEST_BATCH, TEST_MODE
from bnstudy.sweep import Run

TRACKERS = {"tensorboard": "tensorboard"}  # --log name -> the package it needs
FOLDER = "tensorboard"  # under the sweep folder
FOLLOW_SECONDS = 2.0  # how often the in-flight runs' histories are read
# history.jsonl fields that are counts or positions, not curves
NOT_CURVES = ("epoch", "steps", "samples", "skipped_steps")


class TrackerUnavailable(Exception):
    """The tracker's package is not installed: the line to show."""


def check_tracker(name: str) -> None:
    """Raise :class:`TrackerUnavailable` when the package of tracker ``name`` is missing."""
    try:
        __import__(TRACKERS[name])
    except ImportError:
        raise TrackerUnavailable(
            f"--log {name} needs the {TRACKERS[name]} package: pip install -e '.[{name}]' "
            f"(or pip install {TRACKERS[name]})"
        ) from None


class TensorBoardLog:
    """Event files of a sweep's runs (:mod:`bnstudy.tracking`): per run, a scalar per history
    field (``train/train_loss``, ...) at the optimizer steps done by each epoch's end, the test
    accuracies in percent (``test/eval``, ``test/train@same``), its swept values and config
    as text."""

    def __init__(self, sweep_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.sweep_dir, self.writer_type = sweep_dir, SummaryWriter
        self.writers: dict[str, Any] = {}
        self.epochs: dict[str, int] = {}  # run id -> epochs written
        self.steps: dict[str, int] = {}  # run id -> optimizer steps by the last written epoch
        self.lock = threading.Lock()

    def follow(self, run: Run) -> None:
        """Write the epochs of ``run``'s history that are not written yet."""
        with self.lock:
            self._follow(run)

    def _follow(self, run: Run) -> None:
        folder = store.run_dir(self.sweep_dir, run.run_id)
        try:
            lines = (folder / store.HISTORY).read_text().splitlines()
        except OSError:  # not started yet
            return
        writer = self._writer(run)
        done = self.epochs.get(run.run_id, 0)
        for line in lines[done:]:
            try:
                epoch = json.loads(line)
            except ValueError:  # a line being written: read again next time
                break
            step = self.steps.get(run.run_id, 0) + int(epoch.get("steps", 0))
            for field, value in epoch.items():
                if field not in NOT_CURVES and isinstance(value, int | float):
                    writer.add_scalar(f"train/{field}", value, step)
            self.steps[run.run_id], self.epochs[run.run_id] = step, done + 1
            done += 1
        writer.flush()

    def finish(self, run: Run) -> None:
        """Write what is left of ``run``'s history, its test accuracies and config; close it."""
        result = store.read_result(self.sweep_dir, run.run_id)
        with self.lock:
            self._follow(run)
            writer = self._writer(run)
            step = self.steps.get(run.run_id, 0)
            for test in (result or {}).get("tests", []):
                if test[STATUS] == OK:
                    setting = f"{test[TEST_MODE]}@{test[TEST_BATCH]}"
                    name = test[TEST_MODE] if test[TEST_MODE] == test[TEST_BATCH] else setting
                    writer.add_scalar(f"test/{name}", 100 * test[TEST_ACC], step)
            config = yaml.safe_dump(store.resolved_config(run.config), sort_keys=False)
            writer.add_text("config", f"```\n{config}```", step)
            writer.add_text("outcome", (result or {}).get(STATUS, "no result"), step)
            writer.close()
            del self.writers[run.run_id]

    def _writer(self, run: Run) -> Any:
        if run.run_id not in self.writers:
            log_dir = self.sweep_dir / FOLDER / run.run_id
            writer = self.writer_type(log_dir=str(log_dir))
            swept = ", ".join(f"{key}={value}" for key, value in run.swept.items())
            writer.add_text("swept", swept or "(one run)", 0)
            self.writers[run.run_id] = writer
        return self.writers[run.run_id]

    def close(self) -> None:
        """Close the writers of runs that did not finish (a stopped sweep)."""
        with self.lock:
            for writer in self.writers.values():
                writer.close()
            self.writers.clear()


class Following:
    """While open, a daemon thread calls ``log.follow`` for each run of ``in_flight`` (a dict
    of run id -> (run, start), read at each pass) every ``interval`` seconds."""

    def __init__(
        self, log: TensorBoardLog, in_flight: dict[str, Any], interval: float = FOLLOW_SECONDS
    ) -> None:
        self.log, self.in_flight, self.interval = log, in_flight, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="bnstudy-tracking", daemon=True)

    def __enter__(self) -> Following:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.log.close()

    def _loop(self) -> None:
        while not self.stop.wait(self.interval):
            for run, _ in list(self.in_flight.values()):
                self.log.follow(run)
