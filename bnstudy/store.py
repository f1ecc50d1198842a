"""Results on disk: one folder per sweep, one per run, one tidy table rebuilt from the runs.

::

    results/<name>/
      study.yaml            the study config as run (after command-line overrides)
      plan.json             the expanded runs: run_id and swept values
      runs/<run_id>/
        config.json         resolved config of the run
        history.jsonl       one JSON object per finished epoch
        progress.json       while the run trains: the epoch under way, its optimizer steps
                            done and in all, its samples so far (:class:`StepMarks`)
        predictions.json    per test image: its label, the prediction of each test setting
                            and how many reshuffles flipped it (:class:`TestOutputs`)
        result.json         status, error, train metrics, test metrics, provenance
        error.txt           traceback, when the run failed
        model.pt            the trained model (train.save_model; bnstudy.checkpoint)
        evaluations.json    test settings evaluated later from model.pt (bnstudy evaluate):
                            a list of {"eval": what was asked, "tests": [...],
                            "provenance": {...}}; their predictions join predictions.json
        checkpoint.pt       the latest mid-run training state, while the run is unfinished
                            (train.checkpoint_every)
      runs.csv              one row per run × test setting, rebuilt from runs/
      report/index.html     the report (bnstudy.report), with its tables and figures

Run folders are the source of truth: ``result.json`` is written last and atomically, so a run
is finished exactly when it exists, and a killed sweep resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import pandas as pd
import yaml

from bnstudy.claims import HOST, Claim, pid_alive, read_claim
from bnstudy.norm_catalog import NORM_NAMES, uses_batch_statistics
from bnstudy.results import (
    ACCUMULATE,
    COLUMNS,
    ERROR_AT,
    ERROR_MESSAGE,
    EVALUATED_LATER,
    FAILURES,
    NORM_BATCH_SIZE,
    OK,
    OPTIMIZER_BATCH_SIZE,
    PACK_NOTE,
    PACKED,
    RUN_ID,
    STATUS,
    TEST_BATCH,
    TEST_MODE,
    columns_of,
    setting_key,
)

if TYPE_CHECKING:  # planning imports torch; reading results never does
    from bnstudy.config import StudyConfig
    from bnstudy.sweep import Run
    from bnstudy.train import Position

RESULT = "result.json"
CONFIG = "config.json"
HISTORY = "history.jsonl"
PROGRESS = "progress.json"  # where training is within its epoch, while it trains
PROGRESS_KEYS = ("epoch", "steps_done", "steps", "samples_done")  # its fields (StepMarks)
PLAN = "plan.json"
PREDICTIONS = "predictions.json"
MODEL = "model.pt"  # the trained model (bnstudy.checkpoint)
CHECKPOINT = "checkpoint.pt"  # the latest mid-run training state (bnstudy.checkpoint)
LATER = "evaluations.json"  # test settings evaluated after training (bnstudy.evaluate_saved)
TABLE = "runs.csv"
REPORT_DIR = "report"
INDEX_HTML = "index.html"

# The provenance columns of runs.csv (bnstudy.results.COLUMNS), read from result.json.
PROVENANCE_COLUMNS = columns_of("provenance")
PROVENANCE_TEXT_COLUMNS = [c for c in PROVENANCE_COLUMNS if COLUMNS[c].dtype == "str"]


_UMASK = os.umask(0)
os.umask(_UMASK)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`atomic_file`)."""
    with atomic_file(path) as file:
        file.write(text.encode())


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new content to: a temporary file, flushed to disk
    and renamed to ``path`` when the block ends without error (removed if it raises), so
    readers (and a resumed sweep) see the old file or the new one, never half of one. The
    temporary file's name says whose it is (:func:`remove_partial_writes`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}~{HOST}~{os.getpid()}~"
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp creates 0600; results are for sharing
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def remove_partial_writes(sweep_dir: Path) -> None:
    """Delete the temporary files that writers on this host left when killed mid-write
    (``.<name>~<host>~<pid>~<random>.tmp`` of a pid that is gone: :func:`write_atomic`'s and
    bnstudy.claims'); another process's temporary file, or one from another host, is left
    alone."""
    for temp in sweep_dir.rglob(".*~*~*~*.tmp"):
        *_, host, pid, _ = temp.name.split("~")
        if host == HOST and pid.isdigit() and not pid_alive(int(pid)):
            temp.unlink(missing_ok=True)


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, json.dumps(value, indent=2, allow_nan=True) + "\n")


def run_dir(sweep_dir: Path, run_id: str) -> Path:
    return sweep_dir / "runs" / run_id


def prepare_sweep(sweep_dir: Path, study: StudyConfig, plan: dict[str, Any]) -> None:
    """Start (or resume) a sweep: remove what killed writers left half-written, record the
    plan."""
    remove_partial_writes(sweep_dir)
    write_plan(sweep_dir, study, plan)


def write_plan(sweep_dir: Path, study: StudyConfig, plan: dict[str, Any]) -> None:
    """Record the study and its expanded runs, ``plan`` (:func:`bnstudy.sweep.plan_record`:
    what ``status`` compares against)."""
    write_atomic(
        sweep_dir / "study.yaml", yaml.safe_dump(study.model_dump(mode="json"), sort_keys=False)
    )
    write_json(sweep_dir / PLAN, plan)


def read_plan(sweep_dir: Path) -> list[dict[str, Any]]:
    """The planned runs (run_id and swept values); a version-1 plan is a bare list."""
    path = sweep_dir / PLAN
    if not path.exists():
        raise FileNotFoundError(f"{sweep_dir} is not a sweep folder (no {PLAN})")
    plan = json.loads(path.read_text())
    return plan if isinstance(plan, list) else plan["runs"]


def resolved_config(config: StudyConfig) -> dict[str, Any]:
    """A run's config as config.json holds it: every field, with only its own norm's options
    section (the others are at their defaults and unused)."""
    others = {name for name in NORM_NAMES if name != config.model.norm}
    return config.model_dump(mode="json", exclude={"model": others})


def start_run(sweep_dir: Path, run: Run) -> Path:
    """Prepare the run's folder: its config, and an empty history (a killed attempt's
    partial history is discarded; an earlier result, damaged or retried, is set aside)."""
    folder = run_dir(sweep_dir, run.run_id)
    set_previous_aside(folder)
    write_config(folder, run)
    write_atomic(folder / HISTORY, "")
    (folder / "error.txt").unlink(missing_ok=True)
    (folder / PROGRESS).unlink(missing_ok=True)
    return folder


def write_config(folder: Path, run: Run) -> None:
    """Write the run's resolved config (:func:`resolved_config`) to its folder."""
    write_json(folder / CONFIG, resolved_config(run.config))


def append_history(folder: Path, record: dict[str, Any]) -> None:
    with open(folder / HISTORY, "a") as file:
        file.write(json.dumps(record) + "\n")


def finish_run(folder: Path, result: dict[str, Any]) -> None:
    """Write the run's outcome; the run counts as finished from here on."""
    trace = result.pop("traceback", "")
    if trace:
        write_atomic(folder / "error.txt", trace)
    write_atomic(folder / PREDICTIONS, json.dumps(result.pop("predictions", {})) + "\n")
    write_json(folder / RESULT, result)
    (folder / PROGRESS).unlink(missing_ok=True)


class StepMarks:
    """Writes where training is within its epoch to each of ``folders`` (``progress.json``:
    the epoch under way, its optimizer steps done and in all, the samples they trained on),
    at most once per ``interval`` seconds: called after every optimizer step with the run's
    index and position (bnstudy.packed_run.PackStepListener), it costs a clock read, and a
    progress view learns more than the finished epochs of history.jsonl."""

    def __init__(
        self,
        folders: list[Path],
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.folders, self.interval, self.clock = folders, interval, clock
        self.last = -math.inf

    def __call__(self, index: int | None, position: Position) -> None:
        """Mark ``position`` in folder ``index`` (None: every folder, a pack training)."""
        now = self.clock()
        if now - self.last < self.interval:
            return
        self.last = now
        values = (position.epoch, position.step, position.epoch_steps, position.epoch_samples)
        mark = json.dumps(dict(zip(PROGRESS_KEYS, values, strict=True)))
        for folder in self.folders if index is None else [self.folders[index]]:
            with contextlib.suppress(OSError):  # a mark is for the eye: never fail a run for it
                write_atomic(folder / PROGRESS, mark)


def read_progress(folder: Path) -> dict[str, int] | None:
    """The last mark of :class:`StepMarks` in ``folder`` (epoch, steps_done, steps,
    samples_done), None before the first or when the file is unreadable."""
    try:
        mark = json.loads((folder / PROGRESS).read_text())
        return {key: int(mark[key]) for key in PROGRESS_KEYS}
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class TestOutputs:
    """What a run's predictions.json holds: per test image, in the test split's order, what
    the report's resampling needs (which images each setting got right, paired across runs).

    The file::

        {"test_labels": [int, ...],
         "predictions": {"<setting>": [int, ...]},
         "flips": {"<setting>": [int, ...]},
         "flip_reshuffles": int}

    ``<setting>``: the test_batch label (``eval``, ``precise``, ``same``, ``4``, ...);
    ``<mode>:<label>`` for a mode other than ``train`` evaluated per test batch (``pix2pix:same``;
    bnstudy.results.setting_key). A setting that failed has no predictions.

    labels: the test labels; None for a run written before they were stored (its file was the
        bare ``{"<setting>": predictions}``).
    predictions: per setting, the predicted class of each test image.
    flips: per setting with a flip rate (norms with batch statistics at test and a test batch
        above 1; pix2pix at any batch), how many of the ``reshuffles`` reshuffles of the test
        set into other batches changed each image's prediction (0 to ``reshuffles``; the
        test_flip_rate is their sum / (reshuffles × images)).
    reshuffles: eval.flip_reshuffles of the run; None before it was stored.
    """

    __test__ = False  # not a pytest test class, despite its name

    labels: list[int] | None
    predictions: dict[str, list[int]]
    flips: dict[str, list[int]]
    reshuffles: int | None


def read_test_outputs(sweep_dir: Path, run_id: str) -> TestOutputs | None:
    """A finished run's :class:`TestOutputs` (the current or the earlier bare format), or None
    when its predictions.json is missing or unreadable."""
    path = run_dir(sweep_dir, run_id) / PREDICTIONS
    try:
        stored = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(stored, dict):
        return None
    if not isinstance(stored.get("predictions"), dict):  # {setting: predictions}, or {}
        return TestOutputs(labels=None, predictions=stored, flips={}, reshuffles=None)
    return TestOutputs(
        labels=stored.get("test_labels"),
        predictions=stored["predictions"],
        flips=stored.get("flips", {}),
        reshuffles=stored.get("flip_reshuffles"),
    )


def read_predictions(sweep_dir: Path, run_id: str) -> dict[str, list[int]] | None:
    """A finished run's test predictions per test setting (``eval``, ``same``, ...; see
    :class:`TestOutputs`), or None when the run has none readable."""
    outputs = read_test_outputs(sweep_dir, run_id)
    return None if outputs is None else outputs.predictions


def read_result(sweep_dir: Path, run_id: str) -> dict[str, Any] | None:
    """The finished run's result, or None when it has none or its folder is damaged
    (:func:`damage`): such a run counts as not finished and is trained again."""
    return _checked(run_dir(sweep_dir, run_id))[0]


# what a finished run's files must hold for the table to be built from them
_RESULT_KEYS = ("status", "train", "diagnostics", "tests", "provenance")
_CONFIG_KEYS = ("name", "seed", "data", "model", "train")


def damage(folder: Path) -> str | None:
    """What is wrong with a run folder that has a result.json, or None: a result or config
    that is missing, unreadable, truncated, or lacks what the table reads."""
    return _checked(folder)[1]


def _checked(folder: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The run's result and None, or None and what is wrong (:func:`damage`); each file is
    read once."""
    values = {}
    for name, keys in ((RESULT, _RESULT_KEYS), (CONFIG, _CONFIG_KEYS)):
        try:
            value = json.loads((folder / name).read_text())
        except FileNotFoundError:
            return None, f"{name} is missing"
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            return None, f"{name} is unreadable ({type(error).__name__}: {error})"
        lacking = [key for key in keys if not isinstance(value, dict) or key not in value]
        if lacking:
            return None, f"{name} lacks {', '.join(lacking)}"
        values[name] = value
    return values[RESULT], None


def set_previous_aside(folder: Path) -> Path | None:
    """Move the files of an earlier attempt that has a result (damaged, or an outcome
    retried with ``--retry``) into ``folder/previous-<time>/``: the evidence is kept and the
    run is free to train again. The new folder, or None if there was nothing."""
    if not (folder / RESULT).exists():
        return None
    aside = folder / f"previous-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    aside.mkdir()
    for name in (RESULT, CONFIG, HISTORY, PREDICTIONS, MODEL, LATER, "error.txt"):
        if (folder / name).exists():
            (folder / name).rename(aside / name)
    return aside


def run_rows(sweep_dir: Path, entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The table rows of planned run ``entry`` (one per test setting; those evaluated later
    last, with the provenance of their evaluation, in place of a failed row of the same
    setting); none if unfinished."""
    result = read_result(sweep_dir, entry[RUN_ID])
    if result is None:
        return []
    folder = run_dir(sweep_dir, entry[RUN_ID])
    config = read_config(folder)
    base = {
        **run_fields(entry[RUN_ID], config, result),
        **result["train"],
        **result["diagnostics"],
    }
    base |= entry["swept"]
    later = [
        {**base, **_provenance(evaluation), **test, EVALUATED_LATER: True}
        for evaluation in read_later(folder)
        for test in evaluation["tests"]
    ]
    redone = {(row[TEST_MODE], row[TEST_BATCH]) for row in later}
    rows = [
        {**base, **_test_fields(result, test), EVALUATED_LATER: False}
        for test in result["tests"]
        if (test.get(TEST_MODE), test.get(TEST_BATCH)) not in redone
    ]
    return rows + later


def _provenance(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The provenance columns of a later evaluation (where and how it computed)."""
    return {name: evaluation["provenance"].get(name) for name in PROVENANCE_COLUMNS}


def read_config(folder: Path) -> dict[str, Any]:
    """The run's resolved config, as its config.json holds it."""
    return json.loads((folder / CONFIG).read_text())


def read_later(folder: Path) -> list[dict[str, Any]]:
    """The run's later evaluations (:data:`LATER`), oldest first; none without the file."""
    path = folder / LATER
    return json.loads(path.read_text()) if path.exists() else []


def add_later(folder: Path, evaluation: dict[str, Any], outputs: dict[str, Any]) -> None:
    """Record a later evaluation of a finished run: its settings' predictions and flips join
    predictions.json, then the evaluation (its ``eval`` request, ``tests`` and
    ``provenance``) joins :data:`LATER`, replacing earlier records of the same settings. Each
    file is written atomically; a later evaluation killed between the two left predictions
    that no row reads, and is redone."""
    stored = json.loads((folder / PREDICTIONS).read_text())
    for part in ("predictions", "flips"):
        stored.setdefault(part, {}).update(outputs[part])
    write_atomic(folder / PREDICTIONS, json.dumps(stored) + "\n")
    redone = {setting_key(t[TEST_MODE], t[TEST_BATCH]) for t in evaluation["tests"]}
    kept = []
    for earlier in read_later(folder):
        tests = [
            t for t in earlier["tests"] if setting_key(t[TEST_MODE], t[TEST_BATCH]) not in redone
        ]
        if tests:
            kept.append(earlier | {"tests": tests})
    write_json(folder / LATER, [*kept, evaluation])


def run_fields(run_id: str, config: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """The columns of a run's rows that hold for all its test settings and are not a section
    of result.json: those read from its config.json and result.json at their key
    (:class:`bnstudy.results.Column`), its provenance, and the ones derived here (``run``)."""
    sources = {"config": config, "result": result}
    read = {
        column.name: value_at(sources[column.part], column.key)
        for column in COLUMNS.values()
        if column.part in sources and column.key is not None
    }
    provenance = {name: result["provenance"].get(name) for name in PROVENANCE_COLUMNS}
    return {
        RUN_ID: run_id,
        **read,
        **_derived(config["model"]["norm"], config["train"]),
        **provenance,
    }


def _derived(norm: str, train: dict[str, Any]) -> dict[str, Any]:
    """The batch columns: samples per BN statistic (empty for norms without batch
    statistics), accumulation (1 for configs from before it) and the optimizer batch."""
    accumulate = train.get("accumulate", 1)
    per_statistic = train.get("norm_batch_size") or train["batch_size"]
    return {
        NORM_BATCH_SIZE: per_statistic if uses_batch_statistics(norm) else None,
        ACCUMULATE: accumulate,
        OPTIMIZER_BATCH_SIZE: train["batch_size"] * accumulate,
    }


def value_at(record: dict[str, Any], key: str) -> Any:
    """The value at dotted ``key`` of ``record``; None where a level is missing (a file from
    before the value was recorded)."""
    for part in key.split("."):
        if not isinstance(record, dict):
            return None
        record = record.get(part)
    return record


def _test_fields(result: dict[str, Any], test: dict[str, Any]) -> dict[str, Any]:
    """A training failure is the outcome of every test setting; else each has its own."""
    if result[STATUS] != OK:
        return {
            **test,
            STATUS: result[STATUS],
            ERROR_MESSAGE: result.get(ERROR_MESSAGE, ""),
            ERROR_AT: result.get(ERROR_AT, ""),
        }
    return test


def write_table(sweep_dir: Path) -> pd.DataFrame:
    """Rebuild ``runs.csv`` from the run folders of the current plan."""
    return RunTable(sweep_dir).write()


class RunTable:
    """``runs.csv`` kept current during a sweep: the finished runs' rows are read once, then
    each run that finishes adds its own, so a sweep of n runs reads n results, not n²/2."""

    def __init__(self, sweep_dir: Path) -> None:
        self.sweep_dir = sweep_dir
        self.planned = {entry[RUN_ID]: entry for entry in read_plan(sweep_dir)}
        self.rows = {run_id: run_rows(sweep_dir, e) for run_id, e in self.planned.items()}

    def add(self, run_id: str) -> None:
        """Read the rows of run ``run_id``, just finished."""
        self.rows[run_id] = run_rows(self.sweep_dir, self.planned[run_id])

    def write(self) -> pd.DataFrame:
        """Write ``runs.csv`` (planned order, swept keys after the fixed columns)."""
        entries = self.planned.values()
        swept = list(dict.fromkeys(key for entry in entries for key in entry["swept"]))
        columns = list(COLUMNS)
        columns += [key for key in swept if key not in columns]
        rows = [row for run_id in self.planned for row in self.rows[run_id]]
        table = pd.DataFrame(rows, columns=columns)
        write_atomic(self.sweep_dir / TABLE, table.to_csv(index=False))
        return table


@dataclass
class SweepStatus:
    """Where a sweep stands: outcome counts of its finished runs; the planned runs not
    finished (``missing``); of those, the ones claimed by a process (``running``: run_id ->
    claim, stale or not) and the damaged ones (run_id -> what is wrong); the run folders
    from earlier versions of the study, not in the current plan (``stale``); and the finished
    runs that failed (``failures``: their plan entries with ``status`` and ``error``); how
    the finished runs trained (``packing``: ``packs of K`` or the reason a run trained alone
    though packing was asked, with counts; runs trained alone unasked are not counted)."""

    counts: Counter
    missing: list[dict[str, Any]]
    running: dict[str, Claim]
    damaged: dict[str, str]
    stale: int
    failures: list[dict[str, Any]]
    packing: Counter = field(default_factory=Counter)


def error_line(result: dict[str, Any]) -> str:
    """A failed run's error on one line: its message, and where it happened."""
    message = " ".join(str(result.get(ERROR_MESSAGE, "")).split())
    return f"{message} ({result[ERROR_AT]})" if result.get(ERROR_AT) else message


def _packing(result: dict[str, Any]) -> str | None:
    """How a run trained, when it was asked to pack: in a pack of K, or alone and why."""
    provenance = result.get("provenance", {})
    if provenance.get(PACKED):
        return f"in packs of {provenance[PACKED]}"
    return f"alone: {provenance[PACK_NOTE]}" if provenance.get(PACK_NOTE) else None


def sweep_status(sweep_dir: Path) -> SweepStatus:
    """The :class:`SweepStatus` of ``sweep_dir``, from its run folders."""
    planned = read_plan(sweep_dir)
    status = SweepStatus(Counter(), [], {}, {}, 0, [])
    for entry in planned:
        folder = run_dir(sweep_dir, entry[RUN_ID])
        result = read_result(sweep_dir, entry[RUN_ID])
        if result is not None:
            status.counts[result[STATUS]] += 1
            if (packing := _packing(result)) is not None:
                status.packing[packing] += 1
            if result[STATUS] in FAILURES:
                failure = {STATUS: result[STATUS], ERROR_MESSAGE: error_line(result)}
                status.failures.append({**entry, **failure})
            continue
        status.missing.append(entry)
        if (folder / RESULT).exists():
            status.damaged[entry[RUN_ID]] = damage(folder) or "unreadable"
        if (claim := read_claim(folder)) is not None:
            status.running[entry[RUN_ID]] = claim
    planned_ids = {entry[RUN_ID] for entry in planned}
    runs_root = sweep_dir / "runs"
    if runs_root.exists():
        status.stale = sum(1 for d in runs_root.iterdir() if d.name not in planned_ids)
    return status
