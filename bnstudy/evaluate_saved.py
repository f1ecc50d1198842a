"""``bnstudy evaluate``: finished runs tested again from their saved models (model.pt), in
test settings their study did not test, without training anything.

A run's test settings are those of its config's ``eval`` section with ``test_modes`` and
``train_mode_batch_sizes`` replaced as asked (:func:`later_config`); the settings it already
has (tested ``ok`` at training, or by an earlier evaluation) are skipped, so an evaluation
asked twice adds nothing the second time. Each setting is evaluated as at the end of training
(bnstudy.evaluation.evaluate_setting: the same seeded test order, flip rate and
recalibration; only dropout in pix2pix mode draws from another state of torch's generator),
and recorded in the run folder (bnstudy.store.add_later): its rows join runs.csv marked
``evaluated_later``, with the evaluation's provenance, replacing a failed row of the same
setting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bnstudy import checkpoint, claims, store
from bnstudy.checkpoint import CheckpointError
from bnstudy.config import (
    ConfigError,
    Problem,
    StudyConfig,
    read_config_file,
    validate_study,
)
from bnstudy.device import reset_peak_memory, run_flags, synchronized_clock, worker_environment
from bnstudy.evaluation import evaluate_setting, test_outputs
from bnstudy.preflight import EvalSetting, evaluation_settings, load_data, model_for_data
from bnstudy.record import provenance
from bnstudy.results import OK, RUN_ID, STATUS, TEST_BATCH, TEST_MODE
from bnstudy.run import run_compute
from bnstudy.workers import WorkerPool

ASKABLE = ("test_modes", "train_mode_batch_sizes")  # the eval keys a later evaluation sets


@dataclass(frozen=True)
class Evaluated:
    """What a later evaluation did with one run: the settings it added (their keys in
    predictions.json), or why it added none (``note``)."""

    run_id: str
    added: tuple[str, ...] = ()
    failed: int = 0  # of the settings added, those whose outcome is not ok
    note: str = ""


def checked_request(request: dict[str, Any], source: str) -> dict[str, Any]:
    """``request`` (eval keys of :data:`ASKABLE`) validated as a study's ``eval`` section is:
    :class:`bnstudy.config.ConfigError` naming ``source`` and each key that is wrong."""
    unknown = sorted(set(request) - set(ASKABLE))
    if unknown:
        problems = [
            Problem(source, f"eval.{key}", f"not one of {', '.join(ASKABLE)}") for key in unknown
        ]
        raise ConfigError(problems)
    checked = validate_study({"name": "evaluation", "eval": request}, source).eval
    return {key: getattr(checked, key) for key in request}


def request_file(path: Path) -> dict[str, Any]:
    """The ``eval`` section of a small YAML file (``eval: {test_modes: [adabn]}``), as a
    request for :func:`checked_request`; :class:`bnstudy.config.ConfigError` naming the file
    and key when it holds anything else."""
    raw = read_config_file(path)
    others = [key for key in raw if key != "eval"]
    if others:
        raise ConfigError([Problem(str(path), others[0], "an evaluation file holds only eval")])
    if not isinstance(raw.get("eval"), dict):
        raise ConfigError([Problem(str(path), "eval", "a mapping of eval keys is needed")])
    return raw["eval"]


def later_config(folder: Path, request: dict[str, Any]) -> StudyConfig:
    """The run's config (its config.json) with the ``eval`` keys of ``request`` replaced."""
    raw = store.read_config(folder)
    raw["eval"] = {**raw["eval"], **request}
    return validate_study(raw, str(folder / store.CONFIG))


def new_settings(folder: Path, result: dict[str, Any], config: StudyConfig) -> list[EvalSetting]:
    """The test settings of ``config`` the run has no outcome for yet: neither an ``ok`` one
    from training (a failed one is tried again, once) nor any from a later evaluation."""
    done = {(t[TEST_MODE], t[TEST_BATCH]) for t in result["tests"] if t[STATUS] == OK}
    done |= {(t[TEST_MODE], t[TEST_BATCH]) for e in store.read_later(folder) for t in e["tests"]}
    return [s for s in evaluation_settings(config) if (s.mode, s.label) not in done]


def evaluate_run(
    sweep_dir: Path, run_id: str, request: dict[str, Any], device: torch.device
) -> Evaluated:
    """Evaluate one finished run's saved model in the settings of ``request`` it lacks, and
    record them; what it did. Runs not trained ``ok``, whose config no longer validates,
    without a usable model.pt, or held by another process are left as they are, with the
    reason."""
    folder = store.run_dir(sweep_dir, run_id)
    result = store.read_result(sweep_dir, run_id)
    if result is None or result[STATUS] != OK:
        return Evaluated(run_id, note=f"not trained ok ({result and result[STATUS]})")
    try:
        config = later_config(folder, request)
    except ConfigError as error:
        return Evaluated(run_id, note=f"its config does not validate: {error.lines()[0]}")
    if not claims.try_claim(folder):
        return Evaluated(run_id, note="another process holds the run")
    try:
        with claims.heartbeat(folder):
            return _evaluate_claimed(folder, run_id, result, config, request, device)
    finally:
        claims.release(folder)


def _evaluate_claimed(
    folder: Path,
    run_id: str,
    result: dict[str, Any],
    config: StudyConfig,
    request: dict[str, Any],
    device: torch.device,
) -> Evaluated:
    settings = new_settings(folder, result, config)
    if not settings:
        return Evaluated(run_id, note="already evaluated in every setting asked")
    try:
        weights = checkpoint.saved_model(folder, run_id).weights
    except CheckpointError as error:
        return Evaluated(run_id, note=f"no usable saved model: {error}")
    try:
        tests, outputs, where = _evaluate(config, weights, settings, device)
    except RuntimeError as error:  # each setting's own failure is its outcome: this is the load
        reason = str(error).strip().splitlines()[-1].strip()
        return Evaluated(run_id, note=f"its saved model does not load into its model: {reason}")
    store.add_later(folder, {"eval": request, "tests": tests, "provenance": where}, outputs)
    failed = sum(test[STATUS] != OK for test in tests)
    return Evaluated(run_id, added=tuple(s.key for s in settings), failed=failed)


def _evaluate(
    config: StudyConfig,
    weights: dict[str, torch.Tensor],
    settings: list[EvalSetting],
    device: torch.device,
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """The run's model with ``weights`` tested in ``settings`` under the run's numerics flags
    (set before anything touches the device, as for training): the test records, what joins
    predictions.json, and the evaluation's provenance."""
    compute = run_compute(config)
    with run_flags(config.train.deterministic, device) as flags:
        started, start = time.time(), synchronized_clock(device)
        reset_peak_memory(device)
        data = load_data(config, device)
        model = model_for_data(config, data)
        model.load_state_dict(weights)
        model = compute.prepare(model, data.spatial_dims)
        tested = [evaluate_setting(model, data, s, config, compute) for s in settings]
    where = provenance(device, started, compute, flags)
    where["seconds"] = synchronized_clock(device) - start
    return [t.test for t in tested], test_outputs(data, settings, tested, config), where


def evaluate_study(
    sweep_dir: Path,
    request: dict[str, Any],
    device: torch.device,
    jobs: int = 1,
    on_run: Callable[[Evaluated], None] = lambda evaluated: None,
) -> list[Evaluated]:
    """Evaluate every planned run of ``sweep_dir`` as :func:`evaluate_run` says, ``jobs`` at
    a time (each in a worker process, with an equal share of the CPU threads), calling
    ``on_run`` as each is done; then rebuild runs.csv."""
    run_ids = [entry[RUN_ID] for entry in store.read_plan(sweep_dir)]
    done = []
    for evaluated in _each(sweep_dir, run_ids, request, device, jobs):
        done.append(evaluated)
        on_run(evaluated)
    store.write_table(sweep_dir)
    return done


def _each(
    sweep_dir: Path, run_ids: list[str], request: dict[str, Any], device: torch.device, jobs: int
) -> Iterator[Evaluated]:
    if jobs == 1:
        for run_id in run_ids:
            yield evaluate_run(sweep_dir, run_id, request, device)
        return
    threads = max(1, torch.get_num_threads() // jobs)
    pool = WorkerPool(evaluate_run, threads, [worker_environment(device)] * jobs)
    on = torch.device(device.type)  # a CUDA worker sees its own GPU alone, as cuda:0
    work = [(run_id, (sweep_dir, run_id, request, on)) for run_id in run_ids]
    try:
        for run_id, evaluated, exitcode in pool.map(work):
            if exitcode is not None:
                evaluated = Evaluated(run_id, note=f"the worker died (exit code {exitcode})")
            yield evaluated
        pool.close()
    finally:
        for run_id, pid in pool.stop():
            claims.release(store.run_dir(sweep_dir, run_id), pid)
