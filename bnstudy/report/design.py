"""What was run, in words: the study's design (runs, norms, batch-axis values, seeds, test
settings), its data, model, training, testing, budget and machine, from the runs table and the
runs' config.json and result.json; and which planned runs are missing. The page's "What was
run" table and findings.md's introduction."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from bnstudy import store
from bnstudy.norm_catalog import ordered_norms
from bnstudy.report.load import run_settings
from bnstudy.report.runs_table import (
    AXIS_LABELS,
    axis_values,
    batch_axis,
    counts_line,
    setting_names,
    shared_norms,
)
from bnstudy.results import (
    CPU_CAPABILITY,
    CUDA,
    DATASET,
    DEVICE,
    DEVICE_NAME,
    ERROR_MESSAGE,
    MODEL,
    NORM,
    NORM_BATCH_SIZE,
    NUM_CLASSES,
    OK,
    PRECISE,
    PRECISION,
    RUN_ID,
    SEED,
    STATUS,
    STEPS,
    TEST_MODE,
    TORCH,
    TRAIN,
    TRAIN_SECONDS,
    count_text,
    counts_text,
    duration_text,
    training_budget,
)

BUDGET_KEYS = ("train.steps", "train.samples")  # set, either replaces train.epochs
# Provenance columns of runs.csv (bnstudy.store) that tell environments apart: float results
# are bit-identical only with the same device, kernels, versions and precision.
ENVIRONMENT_COLUMNS = (DEVICE_NAME, TORCH, DEVICE, CUDA, CPU_CAPABILITY, PRECISION)


def design_text(df: pd.DataFrame) -> str:
    """Run counts, norms, batch-axis values, seeds, test settings, and which norms one trained model
    per seed serves at every axis value (call before :func:`bnstudy.report.runs_table.along_axis`);
    just the counts for a table without rows."""
    if df.empty:
        return f"{counts_line(df)}: no run has finished yet."
    axis = batch_axis(df)
    seeds = sorted(int(s) for s in df[SEED].dropna().unique())
    text = (
        f"{counts_line(df)}. Norms: {', '.join(ordered_norms(df[NORM].dropna()))}; "
        f"{AXIS_LABELS[axis]}: {', '.join(map(str, axis_values(df)))}; "
        f"seeds: {', '.join(map(str, seeds))}; test settings: {', '.join(setting_names(df))}."
    )
    shared = shared_norms(df)
    if shared and axis == NORM_BATCH_SIZE:
        text += (
            f" {', '.join(shared)}: no batch statistics, so one trained model per seed serves "
            "every normalization batch size; its results are repeated at each value."
        )
    return text


def environments(df: pd.DataFrame) -> list[tuple[str, int]]:
    """The distinct environments the runs computed in, in order of appearance, each with its
    number of runs: ``<device name> (torch <version>, CUDA <version> | <ISA> kernels,
    <precision>)``; CUDA for GPU runs, torch's CPU kernel set for CPU runs, and each part only
    where the table records it (older tables have device name and torch only)."""
    columns = [col for col in ENVIRONMENT_COLUMNS if col in df.columns]
    if not {DEVICE_NAME, TORCH} <= set(columns):
        return []
    runs = df.drop_duplicates(RUN_ID).dropna(subset=[DEVICE_NAME, TORCH])
    keys = runs[columns].astype(object).where(runs[columns].notna(), None)
    labels = [_environment_label(dict(zip(columns, row, strict=True))) for row in keys.values]
    counts = pd.Series(labels, dtype=object).value_counts(sort=False)
    return list(counts.items())


def _environment_label(env: dict[str, object]) -> str:
    on_gpu = str(env.get(DEVICE) or "").startswith("cuda")
    parts = [f"torch {env[TORCH]}"]
    if on_gpu and env.get(CUDA):
        parts.append(f"CUDA {env[CUDA]}")
    if not on_gpu and env.get(CPU_CAPABILITY):
        parts.append(f"{env[CPU_CAPABILITY]} kernels")
    if env.get(PRECISION):
        parts.append(str(env[PRECISION]))
    return f"{env[DEVICE_NAME]} ({', '.join(parts)})"


def _number_text(value: object) -> str:
    """A config value as text: integers without a decimal point, floats in ``g`` format."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _values(frame: pd.DataFrame, key: str) -> str:
    """The distinct non-null values of column ``key`` (a config key or a runs-table column), as
    text, in ascending order, comma-separated; empty if there are none."""
    if key not in frame.columns:
        return ""
    values = frame[key].dropna()
    values = values.sort_values() if values.map(type).nunique() == 1 else values
    return ", ".join(dict.fromkeys(_number_text(v) for v in values))


def _parts(*parts: tuple[str, str]) -> str:
    """``template.format(value)`` for each (template, value) with a value, comma-separated."""
    return ", ".join(template.format(value) for template, value in parts if value)


def _data_setup(settings: pd.DataFrame, df: pd.DataFrame) -> str:
    """Data: the data set, its sizes (as the runs recorded them, else as configured), the split
    tested on, classes, image size, augmentation and intensity step."""
    tested_on = _values(settings, "result_data.tested_on") or "test"
    chosen = _values(settings, "data.classes")  # data.classes: labels kept from the files
    details = _parts(
        ("{} training samples", _recorded_or_configured(settings, "train_size")),
        (f"{{}} {tested_on} samples", _recorded_or_configured(settings, "test_size")),
        ("{} classes" + (f" (the files' {chosen})" if chosen else ""), _values(df, NUM_CLASSES)),
        ("image size {}", _values(settings, "data.image_size")),
        ("augmentation {}", _unless(_values(settings, "data.augment"), "none")),
        ("intensity {}", _unless(_values(settings, "data.intensity"), "none")),
    )
    name = _values(settings, "data.name") or _values(df, DATASET)
    return f"{name}: {details}" if details else name


def _recorded_or_configured(settings: pd.DataFrame, key: str) -> str:
    """A data size as the runs' result.json recorded it, else as their config set it."""
    return _values(settings, f"result_data.{key}") or _values(settings, f"data.{key}")


def _norm_options(settings: pd.DataFrame, norm: str) -> str:
    """A norm's options from the ``model.<norm>.*`` keys of its runs, ``key value`` each."""
    prefix = f"model.{norm}."
    runs = settings[settings["model.norm"].eq(norm)] if "model.norm" in settings else settings
    keys = [col for col in runs.columns if col.startswith(prefix)]
    options = _parts(*((f"{key[len(prefix) :]} {{}}", _values(runs, key)) for key in keys))
    return f"{norm} ({options})" if options else norm


def _model_setup(settings: pd.DataFrame, df: pd.DataFrame) -> str:
    """Model: its name, widths and each norm with its options; empty without runs."""
    norms = "; ".join(_norm_options(settings, n) for n in ordered_norms(df[NORM].dropna()))
    name = _values(settings, "model.name") or _values(df, MODEL)
    widths = _values(settings, "model.widths")
    return _clauses(name + (f", widths {widths}" if widths else ""), norms and f"norms: {norms}")


def _unless(text: str, *blank: str) -> str:
    """``text``, or empty if it is one of ``blank`` (a setting at its "off" value)."""
    return "" if text in blank else text


def _schedule(settings: pd.DataFrame) -> str:
    """The lr schedule: peak lr, scaling, schedule, warm-up."""
    base = _values(settings, "train.base_batch_size")
    return _parts(
        ("peak lr {}", _values(settings, "train.lr")),
        ("{} scaling from batch " + base, _unless(_values(settings, "train.lr_scaling"), "none")),
        ("{} schedule", _values(settings, "train.schedule")),
        ("warm-up over {} of the steps", _unless(_values(settings, "train.warmup_fraction"), "0")),
        ("warm-up {} steps", _unless(_values(settings, "train.warmup_steps"), "0")),
    )


def _clauses(*texts: str) -> str:
    """The non-empty ``texts`` joined with semicolons."""
    return "; ".join(text for text in texts if text)


def _training_setup(settings: pd.DataFrame, df: pd.DataFrame) -> str:
    """Training: the runs a fine-tuning study starts from, batch, accumulation, optimizer with
    momentum and weight decay, lr schedule, the length of training and the numerics."""
    accumulate = _unless(_values(settings, "train.accumulate"), "1")
    return _clauses(
        _source(settings),
        _parts(
            ("{} samples per batch", _values(settings, "train.batch_size")),
            ("{} batches per optimizer step", accumulate),
            ("BN statistics over {} samples", _values(df, NORM_BATCH_SIZE)),
        ),
        _parts(
            ("{}", _values(settings, "train.optimizer")),
            ("momentum {}", _values(settings, "train.momentum")),
            ("weight decay {}", _values(settings, "train.weight_decay")),
        ),
        _schedule(settings),
        _parts(
            ("{}", _budget(settings)),
            ("{}", _values(settings, "train.precision")),
        ),
    )


def _source(settings: pd.DataFrame) -> str:
    """Where fine-tuning runs start (train.init_from), e.g. ``fine-tuned from the model of
    the run of results/pre with model.norm=batch and the same seed`` (``3 of 5 runs
    fine-tuned ...`` when not all are); empty when no run is."""
    prefix = "train.init_from."
    study = _values(settings, prefix + "study")
    if not study:
        return ""
    keys = [col for col in settings.columns if col.startswith(prefix + "select.")]
    select = [f"{key.removeprefix(prefix + 'select.')}={_values(settings, key)}" for key in keys]
    seed = _values(settings, prefix + "seed")
    select.append("the same seed" if seed == "same" else f"seed {seed}")
    tuned = int(settings[prefix + "study"].notna().sum())
    which = "" if tuned == len(settings) else f"{tuned} of {len(settings)} runs "
    return f"{which}fine-tuned from the model of the run of {study} with {' and '.join(select)}"


def _budget(settings: pd.DataFrame) -> str:
    """The length of training of the runs (:func:`training_budget`): the
    distinct amounts per unit, e.g. ``40 steps`` or ``1, 2 epochs``; empty without configs."""
    if "train.epochs" not in settings:
        return ""
    settings = settings.dropna(subset=["train.epochs"])
    unset = pd.Series(np.nan, index=settings.index)
    keys = (settings["train.epochs"], *(settings.get(k, unset) for k in BUDGET_KEYS))
    budgets = pd.DataFrame(
        [training_budget(*run) for run in zip(*keys, strict=True)], columns=["amount", "unit"]
    )
    return ", ".join(
        count_text(_values(runs, "amount"), unit)
        for unit, runs in budgets.groupby("unit", sort=False)
    )


def _testing_setup(settings: pd.DataFrame, df: pd.DataFrame) -> str:
    """Testing: the test settings, and how precise statistics and flip rates are measured
    (where those modes were tested)."""
    modes = set(df[TEST_MODE].dropna())
    return _parts(
        ("{}", ", ".join(setting_names(df))),
        (
            "precise statistics from {} training samples",
            _values(settings, "eval.precise_samples") if PRECISE in modes else "",
        ),
        (
            "train-mode flip rate over {} reshuffles of the test set",
            _values(settings, "eval.flip_reshuffles") if TRAIN in modes else "",
        ),
    )


def _budget_setup(settings: pd.DataFrame, df: pd.DataFrame) -> str:
    """Budget: optimizer steps and training time per ok run, and the time of all runs."""
    runs = df[df[STATUS].eq(OK)].drop_duplicates(RUN_ID)
    seconds = runs[TRAIN_SECONDS].mean() if TRAIN_SECONDS in runs else np.nan
    parts = [
        ("{} optimizer steps per run", _values(runs, STEPS)),
        ("{} of training per run (mean)", "" if pd.isna(seconds) else duration_text(seconds)),
    ]
    if {"provenance.started", "provenance.seconds"} <= set(settings.columns):
        started, took = settings["provenance.started"], settings["provenance.seconds"]
        parts += [
            ("{} for all runs with their tests", duration_text(took.sum())),
            (
                "{} from the first start to the last end",
                duration_text((started + took).max() - started.min()),
            ),
        ]
    return _parts(*parts)


def _commit(settings: pd.DataFrame) -> str:
    """The bnstudy commit(s) the runs computed with, shortened to 10 hex digits."""
    if "provenance.bnstudy_commit" not in settings:
        return ""
    commits = (
        settings["provenance.bnstudy_commit"]
        .dropna()
        .str.replace(r"^([0-9a-f]{10})[0-9a-f]*", r"\1", regex=True)
    )
    return ", ".join(dict.fromkeys(commits))


def _machine_setup(settings: pd.DataFrame, df: pd.DataFrame) -> str:
    """Machine and software: each environment with its run count, then Python, torchvision,
    threads per run and the bnstudy commit."""
    machines = "; ".join(
        f"{label}, {count} run{'s' * (count != 1)}" for label, count in environments(df)
    )
    software = _parts(
        ("Python {}", _values(settings, "provenance.python")),
        ("torchvision {}", _values(settings, "provenance.torchvision")),
        ("CPU threads per run: {}", _values(settings, "provenance.threads")),
        ("bnstudy commit {}", _commit(settings)),
    )
    return _clauses(machines, software)


SETUP_ROWS: dict[str, Callable[[pd.DataFrame, pd.DataFrame], str]] = {
    "Design": lambda settings, df: design_text(df),
    "Data": _data_setup,
    "Model": _model_setup,
    "Training": _training_setup,
    "Testing": _testing_setup,
    "Budget": _budget_setup,
    "Machine and software": _machine_setup,
}


def setup_rows(sweep_dir: Path, df: pd.DataFrame) -> dict[str, str]:
    """What was run, one line per SETUP_ROWS entry (heading -> text), from the runs table and the
    runs' config.json and result.json (:func:`bnstudy.report.load.run_settings`); entries with
    nothing to say are left out."""
    settings = run_settings(sweep_dir, df)
    rows = {heading: describe(settings, df) for heading, describe in SETUP_ROWS.items()}
    return {heading: text for heading, text in rows.items() if text}


def setup_markdown(rows: dict[str, str]) -> str:
    """What was run as a markdown list (findings.md's introduction)."""
    return "\n".join(f"- **{heading}:** {text}" for heading, text in rows.items())


def completeness(sweep_dir: Path) -> str:
    """Planned against present runs, naming each planned run without a result (missing,
    damaged: what is wrong, or running) and each failed one; empty for a folder without a
    plan (a runs table alone) or a complete sweep without failures."""
    if not (Path(sweep_dir) / store.PLAN).is_file():
        return ""
    status = store.sweep_status(sweep_dir)
    planned = len(status.missing) + sum(status.counts.values())
    if not status.missing and not status.failures:
        return ""
    text = f"{sum(status.counts.values())} of {planned} planned runs have a result"
    text += f" ({counts_text(status.counts)})." if status.counts else "."
    for entry in status.missing:
        run_id = entry[RUN_ID]
        why = (
            f"damaged: {status.damaged[run_id]}"
            if run_id in status.damaged
            else "running"
            if run_id in status.running
            else "missing"
        )
        text += f" {run_id} ({_swept_text(entry)}): {why}."
    for entry in status.failures:
        text += f" {entry[RUN_ID]} ({_swept_text(entry)}): {entry[STATUS]}, {entry[ERROR_MESSAGE]}."
    return text


def _swept_text(entry: dict) -> str:
    """``model.norm=batch, seed=3``: a planned run's swept values."""
    return ", ".join(f"{key}={value}" for key, value in entry.get("swept", {}).items())
