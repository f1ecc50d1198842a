"""Reading a sweep folder for the report: the runs table (``runs.csv``), the run folders'
configs, provenance and histories, the study's analysis settings, and the resampler over the
runs' stored test outputs. Nothing here computes a statistic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from pydantic import ValidationError

from bnstudy import store
from bnstudy.analysis_config import AnalysisConfig
from bnstudy.report.runs_table import SETTING_COLUMNS
from bnstudy.resampling import Resampler
from bnstudy.results import (
    BATCH_SIZE,
    BN_MEAN_NOISE,
    BN_MEAN_NOISE_BETWEEN_IMAGES,
    BN_MEAN_NOISE_VALUES_LAW,
    BN_VAR_NOISE,
    DATASET,
    ERROR_AT,
    ERROR_MESSAGE,
    EVAL,
    INIT_OUTPUT_STD,
    INIT_ZERO_FRACTION,
    MIN_VALUES_PER_STAT,
    MODEL,
    NAME,
    NORM,
    OK,
    OUTPUT_STD,
    RUN_ID,
    SAMPLES_PER_SEC,
    SEED,
    STATUS,
    TEST_ACC,
    TEST_BATCH,
    TEST_FLIP_RATE,
    TEST_LOSS,
    TEST_MODE,
    TEST_MODES,
    TRAIN_ACC,
    ZERO_FRACTION,
)
from bnstudy.stats import Bootstrap

STUDY_YAML = "study.yaml"
# Reading runs.csv (its columns: bnstudy.results): the columns kept as text, those a report
# needs, and the metrics and diagnostics it summarizes.
TEXT_COLUMNS = (
    RUN_ID,
    NAME,
    DATASET,
    MODEL,
    NORM,
    STATUS,
    ERROR_MESSAGE,
    ERROR_AT,
    TEST_MODE,
    TEST_BATCH,
    *store.PROVENANCE_TEXT_COLUMNS,
)
REQUIRED_COLUMNS = (RUN_ID, NORM, BATCH_SIZE, STATUS, TEST_MODE)
NA_STRINGS = ("", "nan", "NaN")  # not pandas' full list: a norm called "none" stays text
METRICS = (TEST_ACC, TEST_LOSS, TRAIN_ACC, SAMPLES_PER_SEC)
# Diagnostics averaged into summary.csv; see bnstudy.diagnostics and bnstudy.run.
DIAGNOSTICS = (
    TEST_FLIP_RATE,
    MIN_VALUES_PER_STAT,
    BN_MEAN_NOISE,
    BN_MEAN_NOISE_BETWEEN_IMAGES,
    BN_MEAN_NOISE_VALUES_LAW,
    BN_VAR_NOISE,
    ZERO_FRACTION,
    INIT_ZERO_FRACTION,
    OUTPUT_STD,
    INIT_OUTPUT_STD,
)


def load_runs(csv_path: Path) -> pd.DataFrame:
    """Read a sweep's runs table: text columns stay text, empty cells become NaN, eval- and
    precise-mode rows get test_batch ``eval``/``precise``, and failed rows without a test setting
    are spread over all settings. Rows are as stored (see
    :func:`bnstudy.report.runs_table.along_axis`)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"{csv_path} not found: a report needs the runs table that a sweep writes"
        )
    df = pd.read_csv(
        csv_path,
        dtype=dict.fromkeys(TEXT_COLUMNS, str),
        keep_default_na=False,
        na_values=list(NA_STRINGS),
    )
    missing = [col for col in REQUIRED_COLUMNS if col not in df.columns]
    if missing:
        raise ValueError(f"{csv_path} lacks required columns: {', '.join(missing)}")
    return _spread_unplaced_failures(_with_defaults(df))


def _with_defaults(df: pd.DataFrame) -> pd.DataFrame:
    """Add the optional columns a table may lack and label the test batch of rows of modes
    evaluated once (eval, precise, adabn) with their mode."""
    defaults = {TEST_BATCH: np.nan, ERROR_MESSAGE: "", ERROR_AT: "", SEED: np.nan}
    defaults |= dict.fromkeys((*METRICS, *DIAGNOSTICS), np.nan)
    df = df.assign(**{col: value for col, value in defaults.items() if col not in df.columns})
    once = [name for name, mode in TEST_MODES.items() if not mode.per_test_batch]
    df[TEST_BATCH] = df[TEST_BATCH].mask(df[TEST_MODE].isin(once), df[TEST_MODE])
    df[[ERROR_MESSAGE, ERROR_AT]] = df[[ERROR_MESSAGE, ERROR_AT]].fillna("")
    return df


def _spread_unplaced_failures(df: pd.DataFrame) -> pd.DataFrame:
    """Copy each failed row that has no test setting (the run died before testing and wrote one
    row) to every test setting in the table, so it counts as a failure in each setting's group."""
    unplaced = df[TEST_MODE].isna() & df[STATUS].ne(OK)
    if not unplaced.any():
        return df
    settings = df.loc[~unplaced, list(SETTING_COLUMNS)].drop_duplicates()
    if settings.empty:
        settings = pd.DataFrame({TEST_MODE: [EVAL], TEST_BATCH: [EVAL]})
    spread = df[unplaced].drop(columns=list(SETTING_COLUMNS)).merge(settings, how="cross")
    return pd.concat([df[~unplaced], spread], ignore_index=True)


def run_settings(sweep_dir: Path, df: pd.DataFrame) -> pd.DataFrame:
    """One row per run of ``df`` whose folder has a config.json: ``run_id``, the resolved config
    flattened to dotted keys (``train.lr``), the provenance of its result.json
    (``provenance.python``, ...) and the data it was given (``result_data.train_size``: the sizes
    actually used where the config leaves them null); lists as ``a/b/c``. Empty without run
    folders."""
    rows = []
    for run_id in df[RUN_ID].unique():
        folder = store.run_dir(sweep_dir, run_id)
        if not (folder / store.CONFIG).is_file():
            continue
        record = store.read_config(folder)
        result = store.read_result(sweep_dir, run_id)  # None when missing or damaged
        if result is not None:
            record["provenance"] = result["provenance"]
            record["result_data"] = result.get("data") or {}
        rows.append({RUN_ID: run_id, **record})
    flat = pd.json_normalize(rows) if rows else pd.DataFrame(columns=[RUN_ID])
    return flat.map(lambda v: "/".join(map(str, v)) if isinstance(v, list) else v)


def history_table(sweep_dir: Path, df: pd.DataFrame) -> pd.DataFrame:
    """One row per epoch of each ok run that has a history.jsonl: the run's columns of the runs
    table (not its test columns), the history's fields (epoch, steps, train_loss, train_acc,
    ...) and ``step``, the optimizer steps done by the epoch's end. Empty if no run has one."""
    runs = df[df[STATUS].eq(OK)].drop_duplicates(RUN_ID)
    frames = []
    for run_id in runs[RUN_ID]:
        path = store.run_dir(sweep_dir, run_id) / store.HISTORY
        if path.is_file() and path.stat().st_size:
            frames.append(pd.read_json(path, lines=True).assign(**{RUN_ID: run_id}))
    if not frames:
        return pd.DataFrame()
    history = pd.concat(frames, ignore_index=True)
    history["step"] = history.groupby(RUN_ID)["steps"].cumsum()
    shared = [col for col in runs.columns if col not in history.columns or col == RUN_ID]
    return runs[shared].merge(history, on=RUN_ID)


def study_analysis(sweep_dir: Path) -> AnalysisConfig:
    """The ``analysis`` section of the study as run (``study.yaml``), or the defaults when the
    sweep folder has none."""
    path = Path(sweep_dir) / STUDY_YAML
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    section = (raw or {}).get("analysis") or {}
    try:
        return AnalysisConfig.model_validate(section)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise ValueError(f"{path}: analysis: {problems}") from None


def sweep_resampler(sweep_dir: Path, analysis: AnalysisConfig) -> Resampler:
    """The resampler of a sweep: its runs' stored test outputs, ``analysis``'s bootstrap and
    equivalence margin."""
    return Resampler(
        lambda run_id: store.read_test_outputs(sweep_dir, run_id),
        Bootstrap(analysis.bootstrap_resamples, analysis.bootstrap_seed),
        analysis.equivalence_margin,
    )


def sweep_name(df: pd.DataFrame, sweep_dir: Path) -> str:
    """The sweep name(s) recorded in the table, else the folder name."""
    names = df[NAME].dropna().unique() if NAME in df.columns else []
    return ", ".join(names) or sweep_dir.name
