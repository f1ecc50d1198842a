"""Training curves where people already look: each run of a sweep in TensorBoard or MLflow
(``bnstudy run --log tensorboard|mlflow``), grouped by study.

The tracker follows the run folders, which are the source of truth: while runs train, a thread
of the process that launched them reads each in-flight run's ``history.jsonl`` and writes the
epochs it has not written yet; when a run finishes, its test accuracies and its config follow.
So it sees every run this process launches, whatever trains it (worker processes, packed
networks), and a killed sweep leaves a log that holds what was done.

- TensorBoard: the events of a run go to ``<sweep>/tensorboard/<run id>/``
  (``tensorboard --logdir results`` shows every study, one folder each).
- MLflow: one experiment per study (its name), one MLflow run per run (named by its run id,
  its swept values as parameters, its config as the artifact ``config.yaml``), at the
  tracking URI of ``MLFLOW_TRACKING_URI``, else ``sqlite:///<sweep>/mlflow.db`` with the
  artifacts in ``<sweep>/mlartifacts/``
  (``mlflow ui --backend-store-uri sqlite:///results/<study>/mlflow.db``).

Both trackers are optional extras (``pip install -e '.[tensorboard]'``, ``'.[mlflow]'``):
without the package, ``--log`` is one line naming it.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import yaml

from bnstudy import store
from bnstudy.results import OK, STATUS, TEST_ACC, TEST_BATCH, TEST_MODE
from bnstudy.sweep import Run

TRACKERS = {"tensorboard": "tensorboard", "mlflow": "mlflow"}  # --log name -> its package
FOLDER = "tensorboard"  # under the sweep folder
MLFLOW_DB = "mlflow.db"  # under the sweep folder, without MLFLOW_TRACKING_URI
MLFLOW_ARTIFACTS = "mlartifacts"  # under the sweep folder: that store's artifacts
# how long MLflow's client waits for a server, unless the environment says otherwise (its own
# defaults retry 7 times, minutes in all, for each call)
MLFLOW_PATIENCE = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
FOLLOW_SECONDS = 2.0  # how often the in-flight runs' histories are read
# history.jsonl fields that are counts or positions, not curves
NOT_CURVES = ("epoch", "steps", "samples", "skipped_steps")


class TrackerUnavailable(Exception):
    """The tracker's package is not installed: the line to show."""


def check_tracker(name: str) -> None:
    """Raise :class:`TrackerUnavailable` when the package of tracker ``name`` is missing, or,
    for MLflow without ``MLFLOW_TRACKING_URI``, what its default SQLite store needs (the
    full ``mlflow``, not ``mlflow-skinny``)."""
    try:
        __import__(TRACKERS[name])
    except ImportError:
        raise TrackerUnavailable(
            f"--log {name} needs the {TRACKERS[name]} package: pip install -e '.[{name}]' "
            f"(or pip install {TRACKERS[name]})"
        ) from None
    if name == "mlflow" and not os.environ.get("MLFLOW_TRACKING_URI"):
        try:
            __import__("sqlalchemy")
        except ImportError:
            raise TrackerUnavailable(
                f"--log mlflow keeps the runs in sqlite:///<sweep>/{MLFLOW_DB}, which needs the "
                "full mlflow package (pip install mlflow; mlflow-skinny has no SQL store), or "
                "set MLFLOW_TRACKING_URI to your tracking server"
            ) from None


class Tracker(Protocol):
    """Where a :class:`SweepLog` writes: a handle per run, its scalars at optimizer steps, its
    texts, and its end (``outcome`` None: unfinished, a stopped sweep)."""

    def open(self, run: Run) -> Any: ...
    def scalar(self, handle: Any, name: str, value: float, step: int) -> None: ...
    def text(self, handle: Any, name: str, text: str, step: int) -> None: ...
    def flush(self, handle: Any) -> None: ...
    def close(self, handle: Any, outcome: str | None) -> None: ...


class SweepLog:
    """A sweep's runs in a tracker (:mod:`bnstudy.tracking`): per run, a scalar per history
    field (``train/train_loss``, ...) at the optimizer steps done by each epoch's end, the test
    accuracies in percent (``test/eval``, ``test/train@same``), its swept values and config."""

    def __init__(self, sweep_dir: Path, tracker: Tracker) -> None:
        self.sweep_dir, self.tracker = sweep_dir, tracker
        self.failure: str | None = None  # the tracker's first error: nothing is written after it
        self.handles: dict[str, Any] = {}
        self.finished: set[str] = set()  # run ids closed: a late follow must not reopen them
        self.epochs: dict[str, int] = {}  # run id -> epochs written
        self.steps: dict[str, int] = {}  # run id -> optimizer steps by the last written epoch
        self.lock = threading.Lock()

    def follow(self, run: Run) -> None:
        """Write the epochs of ``run``'s history that are not written yet."""
        with self.lock:
            self._guarded(lambda: self._follow(run))

    def _guarded(self, write: Callable[[], None]) -> None:
        """``write()`` unless the tracker failed before; its error ends the log, not the sweep
        (a tracking server down, a name it refuses): kept in ``failure``."""
        if self.failure is not None:
            return
        try:
            write()
        except Exception as error:  # noqa: BLE001 - any tracker error: the sweep goes on
            self.failure = f"{type(error).__name__}: {error}"

    def _follow(self, run: Run) -> None:
        if run.run_id in self.finished:  # the follower thread's copy of in-flight runs is late
            return
        folder = store.run_dir(self.sweep_dir, run.run_id)
        try:
            lines = (folder / store.HISTORY).read_text().splitlines()
        except OSError:  # not started yet
            return
        handle = self._handle(run)
        done = self.epochs.get(run.run_id, 0)
        if len(lines) < done:  # the history started over (its pack failed): so do the curves
            done, self.steps[run.run_id] = 0, 0
        for line in lines[done:]:
            try:
                epoch = json.loads(line)
            except ValueError:  # a line being written: read again next time
                break
            step = self.steps.get(run.run_id, 0) + int(epoch.get("steps", 0))
            for field, value in epoch.items():
                if field not in NOT_CURVES and isinstance(value, int | float):
                    self.tracker.scalar(handle, f"train/{field}", value, step)
            self.steps[run.run_id], self.epochs[run.run_id] = step, done + 1
            done += 1
        self.tracker.flush(handle)

    def finish(self, run: Run) -> None:
        """Write what is left of ``run``'s history, its test accuracies and config; close it."""
        result = store.read_result(self.sweep_dir, run.run_id) or {}
        with self.lock:
            self._guarded(lambda: self._finish(run, result))

    def _finish(self, run: Run, result: dict[str, Any]) -> None:
        self._follow(run)
        handle = self._handle(run)
        step = self.steps.get(run.run_id, 0)
        for test in result.get("tests", []):
            if test[STATUS] == OK:
                setting = f"{test[TEST_MODE]}@{test[TEST_BATCH]}"
                name = test[TEST_MODE] if test[TEST_MODE] == test[TEST_BATCH] else setting
                self.tracker.scalar(handle, f"test/{name}", 100 * test[TEST_ACC], step)
        config = yaml.safe_dump(store.resolved_config(run.config), sort_keys=False)
        self.tracker.text(handle, "config", config, step)
        self.finished.add(run.run_id)
        self.tracker.close(self.handles.pop(run.run_id), result.get(STATUS, "no result"))

    def _handle(self, run: Run) -> Any:
        if run.run_id not in self.handles:
            self.handles[run.run_id] = self.tracker.open(run)
        return self.handles[run.run_id]

    def close(self) -> None:
        """Close the runs that did not finish (a stopped sweep, or a tracker that failed), as
        far as the tracker still can: after a close that fails, the others are not tried."""
        with self.lock:
            for handle in self.handles.values():
                try:
                    self.tracker.close(handle, None)
                except Exception:  # noqa: BLE001 - closing what is left, best effort
                    break
            self.handles.clear()


def sweep_log(name: str, sweep_dir: Path, study: str) -> SweepLog:
    """The :class:`SweepLog` of tracker ``name`` (``tensorboard``, ``mlflow``) for the sweep of
    study ``study`` in ``sweep_dir``."""
    trackers = {"tensorboard": TensorBoard, "mlflow": MLflow}
    return SweepLog(sweep_dir, trackers[name](sweep_dir, study))


class TensorBoard:
    """Event files under ``<sweep>/tensorboard/<run id>/``; texts as markdown code blocks."""

    def __init__(self, sweep_dir: Path, study: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.folder, self.writer_type = sweep_dir / FOLDER, SummaryWriter

    def open(self, run: Run) -> Any:
        writer = self.writer_type(log_dir=str(self.folder / run.run_id))
        writer.add_text("swept", swept_text(run) or "(one run)", 0)
        return writer

    def scalar(self, handle: Any, name: str, value: float, step: int) -> None:
        handle.add_scalar(name, value, step)

    def text(self, handle: Any, name: str, text: str, step: int) -> None:
        handle.add_text(name, f"```\n{text}```", step)

    def flush(self, handle: Any) -> None:
        handle.flush()

    def close(self, handle: Any, outcome: str | None) -> None:
        if outcome is not None:
            handle.add_text("outcome", outcome, 0)
        handle.close()


class MLflow:
    """An MLflow experiment named after the study, one MLflow run per run (its name the run
    id, its swept values as parameters and the tag ``bnstudy.swept``), ended ``FINISHED`` when
    the run is ok, ``FAILED`` when it failed, ``KILLED`` when the sweep stopped first."""

    def __init__(self, sweep_dir: Path, study: str) -> None:
        from mlflow.tracking import MlflowClient

        server = os.environ.get("MLFLOW_TRACKING_URI")
        for name, value in MLFLOW_PATIENCE.items():  # a server down: fail in seconds, not minutes
            os.environ.setdefault(name, value)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=server or f"sqlite:///{sweep_dir / MLFLOW_DB}")
        found = self.client.get_experiment_by_name(study)
        # the local store keeps its artifacts in the sweep folder, not in ./mlruns
        where = None if server else (sweep_dir / MLFLOW_ARTIFACTS).resolve().as_uri()
        self.experiment = (
            found.experiment_id if found else self.client.create_experiment(study, where)
        )

    def open(self, run: Run) -> Any:
        tags = {"bnstudy.run_id": run.run_id, "bnstudy.swept": swept_text(run)}
        handle = self.client.create_run(self.experiment, run_name=run.run_id, tags=tags)
        for key, value in run.swept.items():
            self.client.log_param(handle.info.run_id, key, value)
        return handle.info.run_id

    def scalar(self, handle: Any, name: str, value: float, step: int) -> None:
        # MLflow's names allow no "@": test/train@same is test/train:same
        self.client.log_metric(handle, name.replace("@", ":"), value, step=step)

    def text(self, handle: Any, name: str, text: str, step: int) -> None:
        self.client.log_text(handle, text, f"{name}.yaml")

    def flush(self, handle: Any) -> None:
        """Nothing to do: the client logs each value as it comes."""

    def close(self, handle: Any, outcome: str | None) -> None:
        state = "KILLED" if outcome is None else "FINISHED" if outcome == OK else "FAILED"
        self.client.set_terminated(handle, state)


def swept_text(run: Run) -> str:
    return ", ".join(f"{key}={value}" for key, value in run.swept.items())


class Following:
    """While open, a daemon thread calls ``log.follow`` for each run of ``in_flight`` (a dict
    of run id -> (run, start), read at each pass) every ``interval`` seconds."""

    def __init__(
        self, log: SweepLog, in_flight: dict[str, Any], interval: float = FOLLOW_SECONDS
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
