"""Expand a study's ``sweep`` section into validated runs, each with a stable identity.

::

    sweep:
      model.norm: [batch, group]          # an axis: key path -> values
      seed: [0, 1]
      zip:                                # keys whose lists advance together
        - train.batch_size: [1, 4, 16]
          train.lr: [0.002, 0.008, 0.032]
      exclude:                            # drop runs matching every key of a rule
        - {model.norm: group, train.batch_size: 1}

The runs are the Cartesian product of the axes (each zip group is one axis). A swept value that
a run ignores (``train.norm_batch_size`` for group norm, ``model.group.groups`` for batch norm)
is dropped from that run: cells that differ only in ignored values are one run, trained once.
A key that every run ignores is an error. Each run is also built once without training
(bnstudy.preflight: its data against its batch sizes, its model), so that a run that cannot
be built is a problem of the plan, not an error of every run.

A run's identity is a short hash of its resolved config without ``name``, ``sweep``,
``analysis`` (how the report tests, not what is run) and the fields left at their defaults,
plus a fingerprint of the files a data set reads. Re-running a study skips finished runs,
editing one value re-runs only the runs it changes, and a new config field with a default
leaves every existing identity as it was. :data:`IDENTITY_VERSION` (in
plan.json) is bumped when the meaning of a default changes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
from dataclasses import dataclass
from typing import Any

from bnstudy.config import (
    ConfigError,
    StudyConfig,
    check_key_path,
    check_study,
    ignores,
    locate,
    set_path,
    within,
)
from bnstudy.data import data_fingerprint
from bnstudy.external import source_fingerprint
from bnstudy.finetune import init_fingerprint
from bnstudy.norms import norm_spec
from bnstudy.preflight import build_problem
from bnstudy.results import RUN_ID

# 1: hash of every field, defaults included; 3: ghost BN updates its running statistics once
# per forward, PreciseBN/AdaBN estimate the population variance, train-mode test batches are a
# seeded permutation of the test set and only the norms go to train mode (runs of version 2
# measured something else)
IDENTITY_VERSION = 3
RESERVED = ("zip", "exclude")
UNSWEEPABLE = ("name", "sweep", "analysis")  # the study's folder, the sweep, the report's tests


@dataclass(frozen=True)
class Run:
    """One cell of the sweep: its resolved config, the swept values, and its identity."""

    config: StudyConfig
    swept: dict[str, Any]
    run_id: str


# config fields that do not change what a run computes: left out of its identity
NOT_IDENTITY = {
    "name": True,
    "sweep": True,
    "analysis": True,
    "train": {"save_model", "checkpoint_every"},
}


def run_identity(config: StudyConfig) -> str:
    """Ten hex digits of the SHA-256 of the settings that affect results: the non-default
    fields except those of :data:`NOT_IDENTITY`, and the content fingerprints of file-based
    data and of a user model's source file."""
    settings = config.model_dump(mode="json", exclude=NOT_IDENTITY, exclude_defaults=True)
    if "model" in settings:
        settings["model"] = _flat_norm_options(settings["model"], config.model.norm)
    if config.data.root is not None:
        settings["data_fingerprint"] = data_fingerprint(config.data.name, config.data.root)
    if config.train.init_from is not None:
        settings["init_from_model"] = init_fingerprint(config)
    if (source := source_fingerprint(config.model.name)) is not None:
        settings["model_fingerprint"] = source
    if IDENTITY_VERSION > 2:  # version 2 ids are the hash without it; later versions differ
        settings["identity_version"] = IDENTITY_VERSION
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


def _flat_norm_options(model: dict[str, Any], norm: str) -> dict[str, Any]:
    """Version 2 hashed norm options as flat model.* keys (norm_groups, bn_momentum, ...): the
    run's norm section is written back under those names, so ids from before per-norm options
    stay the same. Options without an old name stay in the section."""
    section = model.pop(norm, {})
    old = norm_spec(norm).legacy_keys
    model |= {old[key]: value for key, value in section.items() if key in old}
    rest = {key: value for key, value in section.items() if key not in old}
    return model | ({norm: rest} if rest else {})


def plan(raw: dict[str, Any], source: str) -> tuple[StudyConfig, list[Run]]:
    """Validate the study and every run it expands to; raise ConfigError listing, in one go,
    every problem of the file, of its command-line overrides (:class:`bnstudy.config.RawStudy`)
    and of the sweep: its keys, and each run's values. Only what an earlier problem hides is
    left out: the axes of a malformed part of the sweep, and a run's data and model checks
    while its config is invalid."""
    study, problems = check_study(raw)
    axes, excludes, sweep_problems = _parse_sweep(raw.get("sweep", {}))
    problems += sweep_problems
    runs, run_problems = _expand(raw, axes, excludes, known=problems)
    problems += run_problems
    if not problems:  # a key looks unused when the runs that would use it are invalid
        problems += _unused_keys(runs, _keys(axes))
    runs, duplicates = _merge_duplicates(runs)
    problems += duplicates
    if not problems and not runs:
        problems.append(("sweep", "every run is excluded"))
    if problems:
        raise ConfigError(locate(problems, source, raw))
    return study, runs


def _expand(
    raw: dict[str, Any],
    axes: list[dict[str, list]],
    excludes: list[dict[str, list]],
    known: list[tuple[str, str]],
) -> tuple[list[Run], list[tuple[str, str]]]:
    """The valid runs of the sweep, and the problems of the others, each once, leaving out
    those the study itself has (``known``) unless a swept value is the problem."""
    base = {key: value for key, value in raw.items() if key != "sweep"}
    runs, problems, tried = [], [], 0
    for swept in _combinations(axes):
        if any(_matches(rule, swept) for rule in excludes):
            continue
        tried += 1
        run, run_problems = _resolve(base, swept, known)
        problems += run_problems
        if run is not None:
            runs.append(run)
    return runs, _collapsed(problems, tried)


_RUN_SUFFIX = re.compile(r"^(?P<message>.*) \(run (?P<run>[^()]*)\)$", re.DOTALL)


def _collapsed(problems: list[tuple[str, str]], runs: int) -> list[tuple[str, str]]:
    """The runs' problems (one per run that has it), each once: a message that more than
    :data:`COLLAPSE_ABOVE` runs share (a missing source folder is the same for every run) is
    one line, ``<message> (every run)`` or ``(<n> of the sweep's <combinations>
    combinations, the first: <values>)`` (combinations of swept values: before the values a
    run ignores are dropped, several may be one run)."""
    shared: dict[tuple[str, str], list[str | None]] = {}
    for key, message in problems:
        found = _RUN_SUFFIX.match(message)
        base, run = (found["message"], found["run"]) if found else (message, None)
        shared.setdefault((key, base), []).append(run)
    lines = []
    for (key, base), where in shared.items():
        distinct = list(dict.fromkeys(where))
        if len(distinct) <= COLLAPSE_ABOVE:  # a line per run's values, as few as they are
            lines += [(key, base if run is None else f"{base} (run {run})") for run in distinct]
            continue
        which = f"{len(where)} of the sweep's {runs} combinations, the first: {where[0]}"
        lines.append((key, f"{base} ({'every run' if len(where) == runs else which})"))
    return lines


COLLAPSE_ABOVE = 3  # runs sharing a problem named one by one; more: one line


def _unused_keys(runs: list[Run], keys: list[str]) -> list[tuple[str, str]]:
    """A swept key that no run uses (every run dropped it) sweeps nothing."""
    used = {key for run in runs for key in run.swept}
    return [
        (f"sweep.{key}", "no run uses it (every run of the sweep ignores this setting)")
        for key in keys
        if runs and key not in used
    ]


def _merge_duplicates(runs: list[Run]) -> tuple[list[Run], list[tuple[str, str]]]:
    """Cells that resolve to one config and one set of used swept values are one run; equal
    configs from different used values (e.g. lr 1 and 1.0) would share a folder: a problem."""
    first: dict[str, Run] = {}
    problems = []
    for run in runs:
        seen = first.setdefault(run.run_id, run)
        if seen is not run and json.dumps(seen.swept) != json.dumps(run.swept):
            problems.append(
                (
                    "sweep",
                    f"runs {_describe(seen.swept)} and {_describe(run.swept)} "
                    "resolve to the same config",
                )
            )
    return list(first.values()), problems


def order_runs(runs: list[Run], order: str, seed: int = 0) -> list[Run]:
    """``grid``: the expansion order. ``shuffled``: a seeded shuffle, so that a partial sweep
    already covers the whole grid coarsely."""
    if order == "grid":
        return list(runs)
    shuffled = list(runs)
    random.Random(seed).shuffle(shuffled)
    return shuffled


def plan_record(runs: list[Run]) -> dict[str, Any]:
    """What plan.json holds: the identity version the run ids were computed with, the swept
    keys, and each run's id and swept values."""
    return {
        "identity_version": IDENTITY_VERSION,
        "swept_keys": swept_keys(runs),
        "runs": [{RUN_ID: run.run_id, "swept": run.swept} for run in runs],
    }


def swept_keys(runs: list[Run]) -> list[str]:
    """The swept key paths used by some run, in sweep order."""
    return list(dict.fromkeys(key for run in runs for key in run.swept))


def _parse_sweep(
    sweep: Any,
) -> tuple[list[dict[str, list]], list[dict[str, list]], list[tuple[str, str]]]:
    """The valid axes (each a mapping of keys to equally long value lists), the exclude rules,
    and the problems of the sweep section. An axis with a problem is left out, so that the
    values of the others are still checked run by run."""
    if not isinstance(sweep, dict):
        return [], [], []  # validating the study reports it
    located, problems = _located_axes(sweep)
    axes = []
    for where, axis in located:
        axis_problems = _axis_problems(where, axis)
        problems += axis_problems
        axes += [] if axis_problems else [axis]
    keys = [key for _, axis in located for key in axis]
    problems += [
        (f"sweep.{key}", "swept twice (in a zip group and elsewhere)")
        for key in sorted({k for k in keys if keys.count(k) > 1})
    ]
    excludes, exclude_problems = _parse_excludes(sweep.get("exclude", []), keys)
    return axes, excludes, problems + exclude_problems


def _keys(axes: list[dict[str, list]]) -> list[str]:
    return [key for axis in axes for key in axis]


def _located_axes(sweep: dict[str, Any]) -> tuple[list[tuple[str, dict]], list[tuple[str, str]]]:
    """Each axis with where it is (``sweep.<key>``, or ``sweep.zip[i]`` for a zip group), and
    the problems of the zip list's form."""
    axes = [(f"sweep.{key}", {key: values}) for key, values in sweep.items() if key not in RESERVED]
    zips = sweep.get("zip", [])
    if not isinstance(zips, list):
        return axes, [("sweep.zip", "must be a list of mappings key -> values")]
    groups = [(f"sweep.zip[{index}]", group) for index, group in enumerate(zips)]
    problems = [
        (where, "must be a mapping key -> values")
        for where, group in groups
        if not isinstance(group, dict)
    ]
    return axes + [(where, group) for where, group in groups if isinstance(group, dict)], problems


def _axis_problems(where: str, axis: dict[str, Any]) -> list[tuple[str, str]]:
    """Keys of one axis that are not sweepable config keys or whose values are not a non-empty
    list, and lists of one zip group that differ in length or repeat a row."""
    zipped = where.startswith("sweep.zip[")
    problems = []
    for key, values in axis.items():
        message = check_key_path(key)
        if key in UNSWEEPABLE:
            message = "cannot be swept (one study has one name and one sweep)"
        if message is None and not (isinstance(values, list) and values):
            message = "must be a non-empty list of values"
        if message:
            problems.append((f"{where}.{key}" if zipped else where, message))
    return problems + _check_rows(axis, where)


def _check_rows(axis: dict[str, list], where: str) -> list[tuple[str, str]]:
    """The lists of an axis must have one length, and its rows (value tuples) must differ."""
    lists = [v for v in axis.values() if isinstance(v, list)]
    if len(lists) != len(axis):
        return []
    if len({len(v) for v in lists}) > 1:
        return [(where, f"zipped lists differ in length: {sorted({len(v) for v in lists})}")]
    rows = [json.dumps(row) for row in zip(*lists, strict=True)]
    if len(set(rows)) != len(rows):
        return [(where, "values repeat" + (f": {lists[0]}" if len(lists) == 1 else " (rows)"))]
    return []


def _parse_excludes(
    rules: Any, keys: list[str]
) -> tuple[list[dict[str, list]], list[tuple[str, str]]]:
    """The exclude rules without problems, as mappings key -> values, and the problems."""
    if not isinstance(rules, list) or not all(isinstance(r, dict) and r for r in rules):
        return [], [("sweep.exclude", "must be a list of mappings key -> value(s)")]
    problems = [
        (f"sweep.exclude[{index}].{key}", "not a swept key")
        for index, rule in enumerate(rules)
        for key in rule
        if key not in keys
    ]
    valid = [
        {key: value if isinstance(value, list) else [value] for key, value in rule.items()}
        for rule in rules
        if all(key in keys for key in rule)
    ]
    return valid, problems


def _combinations(axes: list[dict[str, list]]) -> list[dict[str, Any]]:
    per_axis = [
        [dict(zip(axis, values, strict=True)) for values in zip(*axis.values(), strict=True)]
        for axis in axes
    ]
    return [
        {key: value for part in combo for key, value in part.items()}
        for combo in itertools.product(*per_axis)
    ]


def _matches(rule: dict[str, list], swept: dict[str, Any]) -> bool:
    """Whether a run matches every key of an exclude rule that it sweeps (a key of an axis left
    out for its problems matches: better to check fewer runs than runs the sweep excludes)."""
    return all(swept[key] in values for key, values in rule.items() if key in swept)


def _resolve(
    base: dict[str, Any], swept: dict[str, Any], known: list[tuple[str, str]]
) -> tuple[Run | None, list[tuple[str, str]]]:
    """The run of the swept values, or its problems other than the ``known`` ones of the study
    (unless a swept value is the problem), its config's or those of building it
    (bnstudy.preflight.build_problem)."""
    raw = json.loads(json.dumps(base))
    for key, value in swept.items():
        set_path(raw, key.split("."), value)
    config, problems = check_study(raw)
    if config is None:
        new = [(k, m) for k, m in problems if (k, m) not in known or _owner(k, swept)]
        return None, [_blame(key, message, swept) for key, message in new]
    problem = build_problem(config)
    if problem:
        keys = (problem.key, *problem.alternatives)
        key = next((k for k in keys if _owner(k, swept) is not None), problem.key)
        return None, [_blame(key, problem.message, swept, problem.depends)]
    used = {key: value for key, value in swept.items() if not ignores(config, key)}
    return Run(config=config, swept=used, run_id=run_identity(config)), []


def _blame(
    key: str, message: str, swept: dict[str, Any], depends: tuple[str, ...] = ("",)
) -> tuple[str, str]:
    """Name the swept key when a swept value is the problem (``model.widths[0]`` is a value
    of ``model.widths``); else the run's swept values under ``depends`` (key paths the
    problem depends on; "" all), none when the problem is the same for every run."""
    owner = _owner(key, swept)
    if owner is not None:
        return f"sweep.{owner}", f"{message} (value {swept[owner]!r})"
    relevant = {k: v for k, v in swept.items() if _under(k, depends)}
    return key, f"{message} (run {_describe(relevant)})" if relevant else message


def _owner(key: str, swept: dict[str, Any]) -> str | None:
    """The swept key whose value ``key`` is or is part of, if any."""
    return next((s for s in swept if within(key, s)), None)


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(p == "" or key == p or key.startswith(f"{p}.") for p in prefixes)


def _describe(swept: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in swept.items())
