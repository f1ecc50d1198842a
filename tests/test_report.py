"""Tests for bnstudy.report (tables, figures, page) on a small synthetic runs.csv, and on one real
tiny sweep (run folders with config.json, result.json and history.jsonl) for what the page says
was run, the learning curves and the comparison of studies.

The main table is old-style (no norm_batch_size, accumulate, num_classes or noise predictions):
batch size is the batch axis. Normalization-batch studies come from tests/test_findings.py.

Synthetic accuracies (exact, so expected values can be worked out by hand):
    eval-mode acc  = BASE[norm] + 0.01 * log2(batch_size) + 0.04 * seed
    train-mode acc = eval-mode acc - DROP[norm][test_batch] - 0.01 * seed
Failures: batch norm at batch size 1 errors for both seeds, group norm at batch size 4 seed 1
diverges, group norm at batch size 16 seed 1 is missing (partial sweep), and batch norm at batch
size 16 seed 1 trains but its train-mode test at batch 1 errors.

Synthetic diagnostics (per run, repeated on its rows; after-training ones NaN for failed runs):
    min_values_per_stat = batch_size for batch norm, 4 for group norm
    init_output_std = 1 + 0.2 * seed, init_zero_fraction = 0.1 * seed; for batch norm at
        batch size 1 (the collapse) 0 and 1
    output_std = 2 + 0.2 * seed, zero_fraction = 0.1 + 0.1 * seed
    bn_mean_noise = 1 / sqrt(batch_size) + 0.1 * seed, bn_var_noise = 2 * bn_mean_noise,
        NaN for group norm
    test_flip_rate = 0 in eval mode, FLIP[test_batch] + 0.02 * seed in train mode (ok rows)
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest
import torch
import yaml
from conftest import TINY_STUDY
from matplotlib.figure import Figure
from rich.console import Console
from test_findings import PREDICTIONS, batch_size_runs, nbs_runs

from bnstudy import report, store
from bnstudy.report import drawing, figure_data, figures
from bnstudy.report.figure_data import BATCH_STATS_PANELS, COLLAPSE_PANELS
from bnstudy.results import columns_of
from bnstudy.study import run_study
from bnstudy.sweep import plan

NORMS = ("batch", "group")
BATCH_SIZES = (1, 4, 16)
SEEDS = (0, 1)
SETTINGS = (("eval", "eval"), ("train", "same"), ("train", "1"))
BASE = {"batch": 0.80, "group": 0.70, "instance": 0.60}
DROP = {"same": 0.05, "1": 0.20}
FLIP = {"same": 0.10, "1": 0.30}
TEST_ERROR = ("batch", 16, 1, "1")  # (norm, batch_size, seed, test_batch) whose test errors
DIAGNOSTIC_COLUMNS = ("test_flip_rate", *columns_of("diagnostics"))
NEW_PLOTS = ("output_collapse.png", "batch_statistics.png", "flip_rate.png")
T_975_1 = 12.706204736174694  # t quantile 0.975 at 1 degree of freedom
BN_ERROR = (
    "ValueError: Expected more than 1 value per channel when training, "
    "got input size torch.Size([1, 8, 1, 1])"
)
DIVERGED_MSG = "FloatingPointError: loss <nan> & 'inf' at step 7"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# the columns of the runs.csv that bnstudy.store writes before any run has finished
STORE_COLUMNS = [
    *columns_of("run", "config", "result", "provenance"),
    *columns_of("test"),
    *columns_of("train"),
    *columns_of("diagnostics"),
    "model.norm",
]


def outcome(norm: str, batch_size: int, seed: int) -> tuple[str, str, str] | None:
    """(status, error, error_at) of a synthetic run, or None if the run is missing."""
    if norm == "batch" and batch_size == 1:
        return "error", BN_ERROR, "train epoch 1 step 0"
    if norm == "instance":
        return "error", "ValueError: Expected more than 1 spatial element", "train epoch 1 step 0"
    if (norm, batch_size, seed) == ("group", 4, 1):
        return "diverged", DIVERGED_MSG, "train epoch 2 step 7"
    if (norm, batch_size, seed) == ("group", 16, 1):
        return None
    return "ok", "", ""


def diagnostics(norm: str, batch_size: int, seed: int, trained: bool) -> dict:
    """The run's diagnostic columns (see the module docstring)."""
    collapsed = (norm, batch_size) == ("batch", 1)
    noise = 1 / math.sqrt(batch_size) + 0.1 * seed if norm == "batch" and trained else math.nan
    after = 1.0 if trained else math.nan
    return {
        "min_values_per_stat": batch_size if norm == "batch" else 4,
        "bn_mean_noise": noise,
        "bn_var_noise": 2 * noise,
        "bn_min_var": 0.01 * after,
        "output_std": (2 + 0.2 * seed) * after,
        "zero_fraction": (0.1 + 0.1 * seed) * after,
        "beta_fraction": 0.0 * after,
        "output_change": 3.0 * after,
        "init_output_std": 0.0 if collapsed else 1 + 0.2 * seed,
        "init_zero_fraction": 1.0 if collapsed else 0.1 * seed,
        "init_beta_fraction": 1.0 if collapsed else 0.0,
        "init_output_change": 0.0 if collapsed else 1.0,
    }


def row(norm: str, batch_size: int, seed: int, test_mode: str, test_batch: str) -> dict | None:
    """One runs.csv row, shaped like the table the sweep writes."""
    result = outcome(norm, batch_size, seed)
    if result is None:
        return None
    trained = result[0] == "ok"
    if (norm, batch_size, seed, test_batch) == TEST_ERROR:
        result = "error", BN_ERROR, "test train mode (batch of 1)"
    status, error, error_at = result
    acc = BASE[norm] + 0.01 * math.log2(batch_size) + 0.04 * seed
    flip = 0.0
    if test_mode == "train":
        acc -= DROP[test_batch] + 0.01 * seed
        flip = FLIP[test_batch] + 0.02 * seed
    ok = status == "ok"
    lr = 0.1 * batch_size / 16
    return {
        "run_id": f"{norm}-bs{batch_size}-s{seed}",
        "name": "demo",
        "dataset": "synthetic",
        "model": "convnet",
        "norm": norm,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "status": status,
        "error": error,
        "error_at": error_at,
        "test_mode": test_mode,
        "test_batch": test_batch,
        "test_batch_size": batch_size if test_batch in ("same", "eval") else int(test_batch),
        "test_acc": acc if ok else math.nan,
        "test_loss": 1 - acc if ok else math.nan,
        "test_flip_rate": flip if ok else math.nan,
        "train_loss": 0.5 if ok else math.nan,
        "train_acc": acc + 0.05 if ok else math.nan,
        "epochs": 2,
        "steps": 64 // batch_size,
        "train_seconds": 1.5,
        "samples_per_sec": 100.0 * batch_size,
        **diagnostics(norm, batch_size, seed, trained),
        "model.norm": norm,
        "train.batch_size": batch_size,
        "train.lr": lr,
    }


def make_runs(norms=NORMS, settings=SETTINGS) -> pd.DataFrame:
    """The synthetic tidy table for the given norms and test settings."""
    rows = [
        row(norm, bs, seed, mode, batch)
        for norm in norms
        for bs in BATCH_SIZES
        for seed in SEEDS
        for mode, batch in settings
    ]
    return pd.DataFrame([r for r in rows if r is not None])


def write_runs(sweep_dir: Path, runs: pd.DataFrame) -> Path:
    """Write ``runs`` as sweep_dir/runs.csv and return sweep_dir."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    runs.to_csv(sweep_dir / "runs.csv", index=False)
    return sweep_dir


def cell(table: pd.DataFrame, **where) -> pd.Series:
    """The single row of ``table`` matching all ``column=value`` pairs."""
    mask = pd.Series(True, index=table.index)
    for col, value in where.items():
        mask &= table[col] == value
    assert mask.sum() == 1, where
    return table[mask].iloc[0]


def assert_png(path: Path) -> None:
    """``path`` is a non-empty PNG that decodes to an RGB(A) image."""
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def plant_stale(out: Path, names: tuple[str, ...]) -> None:
    """Leave placeholder PNGs from an "earlier report" in ``out`` that must not go stale."""
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        (out / name).write_bytes(PNG_MAGIC)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A report written once from the synthetic sweep; returns the report folder."""
    sweep_dir = write_runs(tmp_path_factory.mktemp("results") / "demo", make_runs())
    return report.write_report(sweep_dir)


@pytest.fixture(scope="module")
def runs(built: Path) -> pd.DataFrame:
    """The synthetic runs table as the report module reads it."""
    return report.load_runs(built.parent / "runs.csv")


def titles(figure: Figure) -> list[str]:
    """Panel titles of ``figure`` with their line wraps undone."""
    return [ax.get_title().replace("\n", " ") for ax in figure.axes]


def test_write_report_creates_all_files(built: Path) -> None:
    assert built.name == "report"
    for name in ("summary.csv", "summary.md", "index.html", "findings.md", "paired.csv"):
        assert (built / name).stat().st_size > 0
    for png in ("accuracy_vs_batch_size.png", "test_mode_gap.png", *NEW_PLOTS):
        assert_png(built / png)
    assert not (built / "noise_law.png").exists()  # an old table has no noise predictions


def test_factors_skip_aliases_and_lr_zipped_with_batch_size(runs: pd.DataFrame) -> None:
    assert report.factor_columns(runs) == ["norm", "batch_size", "test_mode", "test_batch"]
    varied = runs.assign(**{"data.train_size": runs["seed"].map({0: 500, 1: 1000})})
    assert report.factor_columns(varied)[-1] == "data.train_size"


def test_summary_groups_and_values(built: Path) -> None:
    summary = pd.read_csv(built / "summary.csv", dtype={"test_batch": str})
    assert len(summary) == len(NORMS) * len(BATCH_SIZES) * len(SETTINGS)
    # batch norm, batch size 4, eval: seeds give 0.82 and 0.86
    bn4 = cell(summary, norm="batch", batch_size=4, test_batch="eval")
    assert bn4["test_acc_mean"] == pytest.approx(0.84)
    assert bn4["test_acc_std"] == pytest.approx(0.04 / math.sqrt(2))
    # seeds only (no stored predictions): the t-interval's half-width t(0.975, 1) * std / sqrt(2)
    # = t * 0.02 up to the bootstrap's noise, cut at 100 %
    assert bn4["test_acc_ci_low"] == pytest.approx(0.84 - 0.02 * T_975_1, abs=0.01)
    assert bn4["test_acc_ci_high"] == 1.0
    assert bn4["samples_per_sec_mean"] == pytest.approx(400)
    assert (bn4["n"], bn4["n_error"], bn4["n_diverged"]) == (2, 0, 0)
    # group norm, batch size 4, train/1: only seed 0 ok (0.72 - 0.20), seed 1 diverged
    gn4 = cell(summary, norm="group", batch_size=4, test_batch="1")
    assert gn4["test_acc_mean"] == pytest.approx(0.52)
    assert math.isnan(gn4["test_acc_std"]) and math.isnan(gn4["test_acc_ci_low"])
    assert (gn4["n"], gn4["n_diverged"]) == (1, 1)
    # partial group: group norm, batch size 16 has only seed 0 so far
    assert cell(summary, norm="group", batch_size=16, test_batch="same")["n"] == 1


def test_error_only_group_is_kept(built: Path) -> None:
    summary = pd.read_csv(built / "summary.csv", dtype={"test_batch": str})
    failed = summary[(summary["norm"] == "batch") & (summary["batch_size"] == 1)]
    assert len(failed) == len(SETTINGS)
    assert (failed["n"] == 0).all() and (failed["n_error"] == 2).all()
    assert failed["test_acc_mean"].isna().all()


def test_summary_sorted_by_factors(built: Path) -> None:
    summary = pd.read_csv(built / "summary.csv", dtype={"test_batch": str})
    assert list(summary["norm"].unique()) == ["batch", "group"]
    first = summary[(summary["norm"] == "batch") & (summary["batch_size"] == 1)]
    assert list(first["test_batch"]) == ["eval", "same", "1"]


def test_summary_diagnostic_means(built: Path) -> None:
    summary = pd.read_csv(built / "summary.csv", dtype={"test_batch": str})
    # flip rate per test setting: batch norm, batch size 4, seeds 0.30 and 0.32 at test batch 1
    flips = [
        cell(summary, norm="batch", batch_size=4, test_batch=b)["test_flip_rate_mean"]
        for b in ("eval", "same", "1")
    ]
    assert flips == pytest.approx([0.0, 0.11, 0.31])
    # batch norm at batch size 1 errored in training: pre-training diagnostics still count
    bn1 = cell(summary, norm="batch", batch_size=1, test_batch="eval")
    assert bn1["min_values_per_stat_mean"] == 1
    assert (bn1["init_zero_fraction_mean"], bn1["init_output_std_mean"]) == (1.0, 0.0)
    for col in ("test_flip_rate", "zero_fraction", "output_std", "bn_mean_noise"):
        assert math.isnan(bn1[f"{col}_mean"]), col
    # group norm, batch size 4: seed 1 diverged; init over both seeds, after training seed 0
    gn4 = cell(summary, norm="group", batch_size=4, test_batch="eval")
    assert gn4["init_output_std_mean"] == pytest.approx(1.1)
    assert gn4["init_zero_fraction_mean"] == pytest.approx(0.05)
    assert (gn4["output_std_mean"], gn4["zero_fraction_mean"]) == pytest.approx((2.0, 0.1))
    assert gn4["min_values_per_stat_mean"] == 4 and math.isnan(gn4["bn_mean_noise_mean"])
    # batch norm, batch size 16: noise 0.25 + 0.1 * seed; seed 1's test at batch 1 errored,
    # so that group averages seed 0 only for after-training diagnostics, both for init ones
    bn16 = cell(summary, norm="batch", batch_size=16, test_batch="eval")
    assert (bn16["bn_mean_noise_mean"], bn16["bn_var_noise_mean"]) == pytest.approx((0.3, 0.6))
    bn16_1 = cell(summary, norm="batch", batch_size=16, test_batch="1")
    assert (bn16_1["bn_mean_noise_mean"], bn16_1["output_std_mean"]) == pytest.approx((0.25, 2))
    assert bn16_1["init_output_std_mean"] == pytest.approx(1.1)
    assert (bn16_1["n"], bn16_1["n_error"]) == (1, 1)


def test_summary_markdown_formats_percentages(built: Path) -> None:
    text = (built / "summary.md").read_text(encoding="utf-8")
    # batch norm, batch size 4, eval: 84 ± 0.02 t(0.975, 1), cut at 100
    assert re.search(r"\| 84\.0 \[5[89]\.\d, 100\.0\] \|", text)
    assert "| 72.0 |" in text  # group norm, batch size 4, eval: one seed, no interval
    header = next(line for line in text.splitlines() if line.startswith("| norm"))
    assert header.endswith("| samples/s | flip (%) | min values/stat | n | n_error | n_diverged |")
    # batch norm, batch size 4, test batch 1: 400 samples/s, flip 31.0 %, 4 values per statistic
    assert "| 400 | 31.0 | 4 | 2 | 0 | 0 |" in text


def test_norm_order_puts_batch_variants_after_batch(runs: pd.DataFrame) -> None:
    renamed = runs.assign(norm=runs["norm"].map({"batch": "batch_keras", "group": "layer"}))
    variants = pd.concat([runs, renamed, runs.assign(norm="batch_manual")])
    order = list(report.summarize(variants)["norm"].unique())
    assert order == ["batch", "batch_manual", "batch_keras", "group", "layer"]


def test_gap_matches_hand_computation(runs: pd.DataFrame) -> None:
    gap = figure_data.compute_gap(runs)
    # batch norm, batch size 4, test batch 1: seed 0 gap 20 pp, seed 1 gap 21 pp
    bn = cell(gap, norm="batch", batch_size=4, test_batch="1")
    assert bn["gap_mean"] == pytest.approx(20.5)
    assert bn["gap_std"] == pytest.approx(1 / math.sqrt(2))
    assert bn["gap_ci_low"] == pytest.approx(20.5 - 0.5 * T_975_1, abs=0.2)
    assert bn["n"] == 2
    assert not ((gap["norm"] == "batch") & (gap["batch_size"] == 1)).any()
    assert set(gap["norm"]) == {"batch"}  # group norm's test modes are the same computation


def test_paired_csv_has_one_row_per_pair(built: Path) -> None:
    paired = pd.read_csv(built / "paired.csv", dtype={"test_batch": str})
    gap = paired[paired["comparison"] == "eval mode − train mode (test batch = 1)"]
    assert sorted(gap["difference"]) == pytest.approx([20.0, 20.0, 21.0])  # bs 4 s0, s1; 16 s0
    control = paired[paired["comparison"] == "batch (eval mode) − group"]
    # batch norm minus group norm, same seed and batch size: 0.10 at bs 4 and 16 (seed 0 only)
    assert list(control["difference"]) == pytest.approx([10.0, 10.0])
    assert set(control["seed"]) == {0}


def test_plot_functions_return_figures_with_one_panel_per_setting(runs: pd.DataFrame) -> None:
    classes = runs.assign(num_classes=10)
    accuracy = figures.plot_accuracy_vs_batch_size(classes, figure_data.accuracy_data(classes))
    assert titles(accuracy) == [
        "eval mode (running stats)",
        "train mode (batch stats, test batch = training batch)",
        "train mode (batch stats, test batch = 1)",
    ]
    assert [t.get_text() for t in accuracy.axes[0].get_xticklabels()] == ["1", "4", "16"]
    for ax in accuracy.axes:
        assert ax.get_xlabel() == "training batch size"
        assert ax.get_ylabel() == "test accuracy (%)"
    chance = [line for line in accuracy.axes[0].get_lines() if line.get_linestyle() == "--"]
    assert [list(line.get_ydata()) for line in chance] == [[10.0, 10.0]]
    gap = figures.plot_test_mode_gap(runs, figure_data.gap_data(runs))
    assert titles(gap) == [
        "eval mode − train mode (test batch = training batch)",
        "eval mode − train mode (test batch = 1)",
    ]
    assert legend_labels(gap) == ["BatchNorm", drawing.BAND_LABEL]  # no line for group norm


def legend_labels(figure: Figure) -> list[str]:
    """The labels of ``figure``'s legend."""
    return [text.get_text() for text in figure.legends[0].get_texts()]


def test_accuracy_bands_are_95_percent_intervals(runs: pd.DataFrame) -> None:
    eval_panel = figures.plot_accuracy_vs_batch_size(runs, figure_data.accuracy_data(runs)).axes[0]
    band = eval_panel.collections[0]  # batch norm's band: batch sizes 4 and 16
    (path,) = band.get_paths()
    low, high = path.vertices[:, 1].min(), path.vertices[:, 1].max()
    # seeds 82 and 86 at batch size 4: 84 ± 2 t(0.975, 1) (clipped at 100), 86 ± ... at 16
    assert low == pytest.approx(84 - 2 * T_975_1, abs=1)  # seeds only: the bootstrap's se
    assert high == pytest.approx(100.0)


def test_diagnostic_plots_have_one_panel_per_quantity(runs: pd.DataFrame) -> None:
    collapse = figures.plot_run_panels(runs, figure_data.panel_data(runs, COLLAPSE_PANELS))
    assert [ax.get_title() for ax in collapse.axes] == [
        "output std",
        "fraction of outputs exactly 0",
    ]
    statistics = figures.plot_run_panels(runs, figure_data.panel_data(runs, BATCH_STATS_PANELS))
    assert len(statistics.axes) == 3
    assert statistics.axes[0].get_yscale() == "log"
    flip = figures.plot_flip_rate(runs, *figure_data.flip_data(runs))
    assert titles(flip) == [
        "train mode (batch stats, test batch = training batch)",
        "train mode (batch stats, test batch = 1)",
    ]
    assert legend_labels(flip) == [
        "BatchNorm",
        drawing.BAND_LABEL,
        "no result (error/diverged/oom/crashed)",
    ]  # bs 1
    assert all(ax.get_ylabel() == "predictions flipped (%)" for ax in flip.axes)


def mean_lines(ax, color: str, linestyle: str) -> list:
    """The mean lines (not the 'x' markers) drawn on ``ax`` in ``color`` and ``linestyle``."""
    return [
        line
        for line in ax.get_lines()
        if line.get_color() == color and line.get_linestyle() == linestyle
    ]


def test_diagnostic_plots_show_init_of_failed_runs_and_skip_unmeasured_norms(
    runs: pd.DataFrame,
) -> None:
    zeros = figures.plot_run_panels(runs, figure_data.panel_data(runs, COLLAPSE_PANELS)).axes[1]
    # batch norm (C0): at init all outputs are 0 at batch size 1 (a run that then errored)
    (init,) = mean_lines(zeros, "C0", "--")
    assert list(init.get_xdata()) == [1, 4, 16]
    assert list(init.get_ydata()) == pytest.approx([1.0, 0.05, 0.05])
    (trained,) = mean_lines(zeros, "C0", "-")
    assert math.isnan(trained.get_ydata()[0])
    assert list(trained.get_ydata()[1:]) == pytest.approx([0.15, 0.15])
    # batch-statistic noise: only batch norm has it; group norm (C1) draws nothing
    noise = figures.plot_run_panels(runs, figure_data.panel_data(runs, BATCH_STATS_PANELS)).axes[1]
    (line,) = mean_lines(noise, "C0", "-")
    assert list(line.get_ydata()[1:]) == pytest.approx([0.55, 0.3])
    assert not any(line.get_color() == "C1" for line in noise.get_lines())


def test_index_html_references_plots_and_escapes_errors(built: Path) -> None:
    page = (built / "index.html").read_text(encoding="utf-8")
    assert "<title>bnstudy report: demo</title>" in page
    assert '<img src="accuracy_vs_batch_size.png"' in page
    assert '<img src="test_mode_gap.png"' in page
    for png in NEW_PLOTS:
        assert f'<img src="{png}"' in page
    assert "relative to the population std" in page
    assert "reshuffled into different batches" in page
    assert "11 runs: 8 ok, 2 error, 1 diverged; 33 rows" in page
    assert "Not drawn: group (no running statistics" in page
    assert 'class="warning"' not in page  # group norm is flat along batch size
    assert BN_ERROR in page
    assert "loss &lt;nan&gt; &amp; " in page
    assert "<nan>" not in page
    assert "<script" not in page and "stylesheet" not in page


def test_whole_norm_errored(tmp_path: Path) -> None:
    sweep_dir = write_runs(tmp_path / "demo", make_runs(norms=("batch", "group", "instance")))
    runs = report.load_runs(sweep_dir / "runs.csv")
    summary = report.summarize(runs)
    instance = summary[summary["norm"] == "instance"]
    assert len(instance) == len(BATCH_SIZES) * len(SETTINGS)
    assert (instance["n"] == 0).all() and (instance["n_error"] == 2).all()
    accuracy = figures.plot_accuracy_vs_batch_size(runs, figure_data.accuracy_data(runs))
    assert legend_labels(accuracy) == [
        "BatchNorm",
        "GroupNorm",
        "InstanceNorm",
        drawing.BAND_LABEL,
        drawing.NO_VALUE_LABEL,
    ]
    gap = figures.plot_test_mode_gap(runs, figure_data.gap_data(runs))
    assert legend_labels(gap) == ["BatchNorm", drawing.BAND_LABEL]


def test_eval_only_sweep_skips_train_mode_plots(tmp_path: Path) -> None:
    sweep_dir = write_runs(tmp_path / "demo", make_runs(settings=SETTINGS[:1]))
    plant_stale(sweep_dir / "report", ("test_mode_gap.png", "flip_rate.png"))
    out = report.write_report(sweep_dir)
    assert not (out / "test_mode_gap.png").exists()
    assert not (out / "flip_rate.png").exists()
    page = (out / "index.html").read_text(encoding="utf-8")
    assert page.count("Plot skipped: the sweep has no train-mode test rows.") == 2
    assert_png(out / "output_collapse.png")
    runs = report.load_runs(sweep_dir / "runs.csv")
    assert len(figures.plot_accuracy_vs_batch_size(runs, figure_data.accuracy_data(runs)).axes) == 1
    with pytest.raises(figure_data.NothingToPlot, match="no train-mode test rows"):
        figures.plot_test_mode_gap(runs, figure_data.gap_data(runs))


def test_runs_table_without_diagnostics_still_reports(tmp_path: Path) -> None:
    runs = make_runs()
    old = runs.drop(columns=[col for col in DIAGNOSTIC_COLUMNS if col in runs])
    sweep_dir = write_runs(tmp_path / "demo", old)
    plant_stale(sweep_dir / "report", NEW_PLOTS)
    out = report.write_report(sweep_dir)
    assert_png(out / "accuracy_vs_batch_size.png")
    assert_png(out / "test_mode_gap.png")
    for png in NEW_PLOTS:
        assert not (out / png).exists(), png
    page = (out / "index.html").read_text(encoding="utf-8")
    assert page.count("Plot skipped: the runs table has no values of") == 4  # with noise_law
    assert (out / "findings.md").stat().st_size > 0
    summary = pd.read_csv(out / "summary.csv")
    assert summary["test_flip_rate_mean"].isna().all()
    assert summary["init_output_std_mean"].isna().all()
    loaded = report.load_runs(sweep_dir / "runs.csv")
    with pytest.raises(figure_data.NothingToPlot, match="no values of init_output_std, output_std"):
        figures.plot_run_panels(loaded, figure_data.panel_data(loaded, COLLAPSE_PANELS))


def test_failed_run_without_test_setting_counts_in_every_setting(tmp_path: Path) -> None:
    runs = make_runs()
    crashed = runs[runs["run_id"] == "batch-bs1-s0"].head(1).assign(test_mode="", test_batch="")
    runs = pd.concat([runs[runs["run_id"] != "batch-bs1-s0"], crashed])
    loaded = report.load_runs(write_runs(tmp_path / "demo", runs) / "runs.csv")
    summary = report.summarize(loaded)
    failed = summary[(summary["norm"] == "batch") & (summary["batch_size"] == 1)]
    assert list(failed["n_error"]) == [2, 2, 2]


def test_missing_runs_csv_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="runs.csv"):
        report.write_report(tmp_path / "nothing-here")


def write_predictions(sweep_dir: Path, run_id: str, predictions: dict[str, list[int]]) -> None:
    """Store a run's test predictions where bnstudy.store keeps them."""
    path = store.run_dir(sweep_dir, run_id) / store.PREDICTIONS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(predictions))


@pytest.fixture(scope="module")
def nbs_report(tmp_path_factory) -> Path:
    """The report of the normalization-batch study of tests/test_findings.py, with eval-mode
    predictions stored for BN at norm_batch_size 4."""
    sweep_dir = write_runs(tmp_path_factory.mktemp("results") / "nbs", nbs_runs())
    for seed, predictions in PREDICTIONS.items():
        write_predictions(sweep_dir, f"batch-nbs4-s{seed}", {"same": predictions})
    return report.write_report(sweep_dir)


def test_norm_batch_study_broadcasts_controls_in_the_summary(nbs_report: Path) -> None:
    summary = pd.read_csv(nbs_report / "summary.csv", dtype={"test_batch": str})
    assert list(summary.columns[:4]) == ["norm", "norm_batch_size", "test_mode", "test_batch"]
    group = summary[(summary["norm"] == "group") & (summary["test_mode"] == "eval")]
    assert list(group["norm_batch_size"]) == [1, 4, 16]
    assert list(group["n"]) == [3, 3, 3]
    assert group["test_acc_mean"].tolist() == pytest.approx([0.73] * 3)
    page = (nbs_report / "index.html").read_text(encoding="utf-8")
    assert "group, none: no batch statistics, so one trained model per seed serves" in page
    assert "normalization batch size (samples per BN statistic): 1, 4, 16" in page


def test_norm_batch_study_plots_along_the_norm_batch_axis(tmp_path: Path) -> None:
    runs = report.load_runs(write_runs(tmp_path / "nbs", nbs_runs()) / "runs.csv")
    accuracy = figures.plot_accuracy_vs_batch_size(runs, figure_data.accuracy_data(runs))
    xlabel = accuracy.axes[0].get_xlabel().replace("\n", " ")
    assert xlabel == "normalization batch size (samples per BN statistic)"
    assert legend_labels(accuracy)[1] == "GroupNorm (one model per seed)"
    assert legend_labels(accuracy)[-2] == "chance (100 / classes)"  # the table has num_classes
    assert titles(figures.plot_test_mode_gap(runs, figure_data.gap_data(runs))) == [
        "eval mode − train mode (test batch = normalization batch)",
        "precise mode − eval mode",
        "precise mode − train mode (test batch = normalization batch)",
    ]
    noise = figures.plot_noise_law(runs, figure_data.noise_data(runs)).axes[0]
    assert (noise.get_xscale(), noise.get_yscale()) == ("log", "log")
    styles = [line.get_linestyle() for line in noise.get_lines()]
    assert sorted(s for s in styles if s != "None") == ["-", "--", ":"]  # measured, predictions


def test_norm_batch_study_findings_use_stored_predictions(nbs_report: Path) -> None:
    text = (nbs_report / "findings.md").read_text(encoding="utf-8")
    assert text.startswith("# bnstudy findings: nbs")
    assert "flip 11.0%, seeds disagree on 33.3%" in text
    assert "noise follows 1/√images" in text and "**supported**" in text
    assert_png(nbs_report / "noise_law.png")
    assert "seeds disagree on 33.3%" in (nbs_report / "index.html").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("group_acc", "warned"),
    [
        ({1: [0.50, 0.51], 4: [0.60, 0.61], 16: [0.70, 0.71]}, True),
        ({1: [0.70, 0.71], 4: [0.71, 0.70], 16: [0.70, 0.71]}, False),
    ],
)
def test_controls_drift_warning_at_the_top(
    tmp_path: Path, group_acc: dict[int, list[float]], warned: bool
) -> None:
    sweep_dir = write_runs(tmp_path / "drift", batch_size_runs(group_acc))
    out = report.write_report(sweep_dir)
    page = (out / "index.html").read_text(encoding="utf-8")
    text = (out / "findings.md").read_text(encoding="utf-8")
    assert ('<div class="warning">' in page) is warned
    assert ("controls drift: the batch-size effects" in text) is warned
    if warned:
        assert page.index('class="warning"') < page.index("What was run")
        assert text.index("controls drift") < text.index("runs:") < text.index("## ")


# ------------------------------------------------------------------- the page, on a real sweep


VOID_TAGS = {"area", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


class PageParser(HTMLParser):
    """Collects the references of a page and checks that every element is closed in order."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.section_ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.images += [values["src"]] if tag == "img" else []
        self.links += [values["href"]] if "href" in values else []
        self.section_ids += [values["id"]] if tag == "section" else []
        if tag not in VOID_TAGS:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1:]}>"
        self.open.pop()


def parse_page(path: Path) -> PageParser:
    """The page at ``path`` parsed: balanced tags, every image in its folder, no external URL."""
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    assert parser.open == [], f"unclosed: {parser.open}"
    for src in parser.images:
        assert (path.parent / src).is_file(), src
    for ref in parser.images + parser.links:
        assert not re.match(r"([a-z]+:)?//", ref), f"external reference {ref}"
    return parser


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A real tiny normalization-batch sweep (BN at 2 and 4 samples per statistic, GroupNorm
    once per seed, 2 seeds, eval/train/precise) with its report written; returns the sweep."""
    raw = yaml.safe_load(yaml.safe_dump(TINY_STUDY))
    raw["eval"] |= {"test_modes": ["eval", "train", "precise"], "precise_samples": 16}
    raw["sweep"] = {
        "model.norm": ["batch", "group"],
        "train.norm_batch_size": [2, 4],
        "seed": [0, 1],
    }
    study, runs = plan(raw, "tiny")
    out = tmp_path_factory.mktemp("results")
    run_study(study, runs, out, torch.device("cpu"), console=Console(file=io.StringIO()))
    report.write_report(out / study.name)
    return out / study.name


def test_page_parses_and_every_image_is_in_the_folder(sweep: Path, built: Path) -> None:
    for page in (sweep / "report" / "index.html", built / "index.html"):
        parser = parse_page(page)
        assert "accuracy_vs_batch_size.png" in parser.images


def test_page_opens_on_the_answer_beside_the_headline_figure(sweep: Path) -> None:
    parser = parse_page(sweep / "report" / "index.html")
    assert parser.section_ids[:5] == [
        "answer",
        "accuracy_vs_batch_size",
        "setup",
        "findings",
        "pivot",
    ]
    assert parser.section_ids[-1] == "summary"  # the full table last
    page = (sweep / "report" / "index.html").read_text(encoding="utf-8")
    answer = page[page.index('id="answer"') : page.index('id="setup"')]
    assert "Where BN breaks (eval mode): BatchNorm:" in answer
    assert "Best batch-independent alternative (the highest mean" in answer
    assert "optimistic): GroupNorm @ any" in answer
    findings = page[page.index('id="findings"') :]
    # the secondary findings folded by group, the controls check first
    assert findings.index("Controls check") < findings.index(
        "<summary>", 1 + findings.index("<summary>")
    )
    assert "Benjamini–Hochberg" in findings and "p (adjusted)" in findings


def test_what_was_run_comes_from_the_run_folders(sweep: Path) -> None:
    runs = report.load_runs(sweep / "runs.csv")
    rows = report.setup_rows(sweep, runs)
    assert list(rows) == [
        "Design",
        "Data",
        "Model",
        "Training",
        "Testing",
        "Budget",
        "Machine and software",
    ]
    assert (
        rows["Data"]
        == "synthetic2d: 48 training samples, 24 test samples, 10 classes, image size 8"
    )
    assert rows["Model"].startswith("cnn, widths 4/8; norms: batch (")
    assert "group (eps 1e-05, groups 2)" in rows["Model"]
    assert "8 samples per batch, BN statistics over 2, 4 samples" in rows["Training"]
    assert "peak lr 0.05, constant schedule; 1 epoch, fp32" in rows["Training"]
    assert "precise statistics from 16 training samples" in rows["Testing"]
    assert rows["Budget"].startswith("6 optimizer steps per run")
    assert f"torch {torch.__version__}" in rows["Machine and software"]
    assert "Python " in rows["Machine and software"]
    text = (sweep / "report" / "findings.md").read_text(encoding="utf-8")
    assert "- **Data:** synthetic2d: 48 training samples" in text


def test_data_sizes_left_null_in_the_config_come_from_what_the_runs_recorded(
    sweep: Path, tmp_path: Path
) -> None:
    # data.train_size: null means "the whole training set": the size is known only to the run
    copy = Path(shutil.copytree(sweep, tmp_path / "sweep"))
    for config in copy.glob(f"runs/*/{store.CONFIG}"):
        record = json.loads(config.read_text())
        record["data"]["train_size"] = record["data"]["test_size"] = None
        config.write_text(json.dumps(record))
    rows = report.setup_rows(copy, report.load_runs(copy / "runs.csv"))
    assert rows["Data"].startswith("synthetic2d: 48 training samples, 24 test samples,")


def test_a_fine_tuning_study_says_which_classes_and_which_runs_it_started_from(
    sweep: Path, tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(sweep, tmp_path / "sweep"))
    source = {"study": "results/pre", "select": {"model.norm": "batch"}, "seed": "same"}
    for config in copy.glob(f"runs/*/{store.CONFIG}"):
        record = json.loads(config.read_text())
        record["data"]["classes"] = [5, 6]
        record["train"]["init_from"] = source
        config.write_text(json.dumps(record))
    rows = report.setup_rows(copy, report.load_runs(copy / "runs.csv"))
    assert "10 classes (the files' 5/6)" in rows["Data"]
    assert rows["Training"].startswith(
        "fine-tuned from the model of the run of results/pre with model.norm=batch and the "
        "same seed; 8 samples per batch"
    )


def test_learning_curves_are_drawn_from_the_histories(sweep: Path) -> None:
    runs = report.load_runs(sweep / "runs.csv")
    history = report.history_table(sweep, runs)
    assert len(history) == 6 and list(history["step"].unique()) == [6]  # 6 runs × 1 epoch
    figure = figures.plot_learning_curves(runs, figure_data.learning_data(history, runs))
    assert titles(figure) == ["norm batch 2", "norm batch 4"] * 2
    assert [ax.get_ylabel() for ax in figure.axes] == ["train loss"] * 2 + [
        "train accuracy (%)"
    ] * 2
    assert all(ax.get_xlabel() == "optimizer step" for ax in figure.axes)
    # GroupNorm, trained once per seed, is drawn in each panel; a line per norm
    assert [len(ax.get_lines()) for ax in figure.axes] == [2, 2, 2, 2]
    assert '<img src="learning_curves.png"' in (sweep / "report" / "index.html").read_text()
    assert_png(sweep / "report" / "learning_curves.png")


def test_chance_line_where_the_table_records_the_classes(sweep: Path) -> None:
    runs = report.load_runs(sweep / "runs.csv")
    for ax in figures.plot_accuracy_vs_batch_size(runs, figure_data.accuracy_data(runs)).axes:
        chance = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert [list(line.get_ydata()) for line in chance] == [[10.0, 10.0]]
    assert not figure_data.chance_levels(runs.drop(columns="num_classes"))


def test_panels_are_drawn_only_where_the_quantity_can_vary(sweep: Path) -> None:
    # the tiny sweep: no output is ever exactly 0, and GroupNorm has no running statistics
    runs = report.load_runs(sweep / "runs.csv")
    assert figure_data.constant_panels(runs, COLLAPSE_PANELS) == {
        "fraction of outputs exactly 0": 0.0
    }
    collapse = figures.plot_run_panels(runs, figure_data.panel_data(runs, COLLAPSE_PANELS))
    assert titles(collapse) == ["output std"]
    gap = figures.plot_test_mode_gap(runs, figure_data.gap_data(runs))
    assert legend_labels(gap) == ["BatchNorm", drawing.BAND_LABEL]  # not group
    page = (sweep / "report" / "index.html").read_text(encoding="utf-8")
    assert "Not drawn, the same in every run: fraction of outputs exactly 0 (0)." in page
    assert page.count("Not drawn: group (no running statistics") == 2  # gap and flip rate


def test_pivot_has_one_column_per_norm_without_running_statistics(nbs_report: Path) -> None:
    runs = report.load_runs(nbs_report.parent / "runs.csv")
    pivot, n = report.accuracy_pivot(report.summarize(runs), runs)
    assert n == 3
    assert list(pivot.columns) == [
        "normalization batch size (samples per BN statistic)",
        "batch, eval mode",
        "batch, precise mode",
        "batch, train mode (test batch = normalization batch)",
        "group",
        "none",
    ]
    # BN eval mode at 4: 0.60, 0.61, 0.62; group once per seed: 0.70 + 0.03 seed
    assert re.fullmatch(r"61\.0 \[58\.[4-7], 63\.[3-6]\]", pivot.iloc[1, 1])
    assert list(pivot["group"])[1:] == ["same model", "same model"]
    assert re.fullmatch(r"73\.0 \[65\.[4-7], 80\.[3-6]\]", pivot["group"][0])


def test_comparison_of_two_studies_renders(sweep: Path, tmp_path: Path) -> None:
    other = tmp_path / "gpu" / "tiny"
    other.mkdir(parents=True)
    (other / "runs.csv").write_bytes((sweep / "runs.csv").read_bytes())  # same name, 2 folders
    out = report.write_comparison([sweep, other], tmp_path / "compare")
    parser = parse_page(out / "index.html")
    assert parser.images == ["accuracy_vs_batch_size.png"]
    assert_png(out / "accuracy_vs_batch_size.png")
    assert parser.links == [os.path.relpath(sweep / "report" / "index.html", out)]
    runs = report.load_runs(sweep / "runs.csv")
    folders = [tmp_path / "cpu" / "tiny", tmp_path / "gpu" / "tiny"]
    assert report.study_labels(folders, [runs, runs]) == ["cpu/tiny", "gpu/tiny"]
    assert report.study_labels([sweep, sweep], [runs, runs]) == ["tiny #1", "tiny #2"]
    # a normalization-batch study beside an optimizer-batch study: each along its own axis
    studies = {"A": runs, "B": report.load_runs(write_runs(other, make_runs()) / "runs.csv")}
    figure = figures.plot_comparison(studies, figure_data.comparison_data(studies))
    assert legend_labels(figure) == [
        "BatchNorm",
        "GroupNorm",
        "A",
        "B",
        "chance (100 / classes)",
        drawing.BAND_LABEL,
    ]
    assert "train mode (batch stats, test batch = the x value)" in titles(figure)
    xlabel = figure.axes[0].get_xlabel().replace("\n", " ")
    assert xlabel == "batch size: A: norm batch; B: batch"
    with pytest.raises(ValueError, match="at least two"):
        report.write_comparison([sweep], tmp_path / "one")


# ------------------------------------------------------------------- tables that broke it


def test_every_failure_outcome_is_counted_in_the_summary(runs: pd.DataFrame) -> None:
    crashed = runs.assign(status=runs["status"].where(runs["run_id"].ne("group-bs4-s1"), "crashed"))
    summary = report.summarize(crashed)
    group = cell(summary, norm="group", batch_size=4, test_batch="eval")
    assert (group["n"], group["n_diverged"], group["n_crashed"]) == (1, 0, 1)
    assert "n_crashed" in report.format_summary(summary).columns
    assert "n_crashed" not in report.format_summary(report.summarize(runs)).columns  # all 0


@pytest.mark.parametrize("table", ["header only", "every run failed"])
def test_a_table_without_ok_runs_still_reports(tmp_path: Path, table: str) -> None:
    runs = pd.DataFrame(columns=STORE_COLUMNS)  # a sweep that has just started
    if table == "every run failed":
        failed = {"status": "error", "error": BN_ERROR, "error_at": "train epoch 1 step 0"}
        runs = make_runs().assign(**failed, test_acc=math.nan, test_flip_rate=math.nan)
    out = report.write_report(write_runs(tmp_path / "demo", runs))
    text = (out / "findings.md").read_text(encoding="utf-8")
    assert text.count("Skipped: no ok runs (") == 8  # every group
    parse_page(out / "index.html")
    assert "No ok runs: no test accuracy to show." in (out / "summary.md").read_text()
    assert "No ok runs: no test accuracy to show." in (out / "index.html").read_text()


def test_a_comparison_of_studies_without_runs_says_so(tmp_path: Path) -> None:
    folders = [write_runs(tmp_path / name, pd.DataFrame(columns=STORE_COLUMNS)) for name in "ab"]
    studies = {d.name: report.load_runs(d / "runs.csv") for d in folders}
    with pytest.raises(figure_data.NothingToPlot, match="no study has runs yet"):
        figures.plot_comparison(studies, figure_data.comparison_data(studies))
    out = report.write_comparison(folders, tmp_path / "compare")
    assert "Plot skipped: no study has runs yet." in parse_page_text(out / "index.html")
    one = {
        "a": studies["a"],
        "full": report.load_runs(write_runs(tmp_path / "c", make_runs()) / "runs.csv"),
    }
    figure = figures.plot_comparison(one, figure_data.comparison_data(one))
    assert legend_labels(figure)[-2] == "full"  # the empty study has no line


def parse_page_text(path: Path) -> str:
    """The page at ``path`` (checked by :func:`parse_page`) as text."""
    parse_page(path)
    return path.read_text(encoding="utf-8")


def weight_decay_runs() -> pd.DataFrame:
    """The normalization-batch study of tests/test_findings.py at two weight decays."""
    runs = nbs_runs()
    return pd.concat(
        [
            runs.assign(run_id=runs["run_id"] + f"-wd{wd}", **{"train.weight_decay": wd})
            for wd in (0.0005, 0.005)
        ],
        ignore_index=True,
    )


def test_pivot_of_a_norm_batch_study_that_sweeps_another_factor(tmp_path: Path) -> None:
    sweep_dir = write_runs(tmp_path / "wd", weight_decay_runs())
    runs = report.load_runs(sweep_dir / "runs.csv")
    pivot, n = report.accuracy_pivot(report.summarize(runs), runs)
    assert n == 3
    for wd in ("0.0005", "0.005"):
        # group, trained once per seed: its value at the first row, then "same model"; 70, 73,
        # 76 %: the t-interval [65.5, 80.5] up to the bootstrap's noise
        column = list(pivot[f"group, train.weight_decay={wd}"])
        assert column[1:] == ["same model", "same model"]
        assert re.fullmatch(r"73\.0 \[65\.[4-7], 80\.[3-6]\]", column[0])
        bn = pivot[f"batch, train.weight_decay={wd}, eval mode"].iloc[1]
        assert re.fullmatch(r"61\.0 \[58\.[4-7], 63\.[3-6]\]", bn)
    parse_page(report.write_report(sweep_dir) / "index.html")


def test_flip_baseline_is_drawn_on_the_panel_of_its_test_batch(runs: pd.DataFrame) -> None:
    # a baseline of test batch 1 only: the second panel (the first is the training batch)
    baseline = pd.DataFrame(
        {
            "norm": ["batch", "batch"],
            "batch_size": [4, 16],
            "test_batch": ["1", "1"],
            "run_id": ["batch-bs4-s0", "batch-bs16-s0"],
            "baseline": [40.0, 30.0],
            "pairs": [1, 1],
        }
    )
    flip = figures.plot_flip_rate(runs, *figure_data.flip_data(runs, baseline))
    dotted = [
        [list(line.get_ydata()) for line in ax.get_lines() if line.get_linestyle() == ":"]
        for ax in flip.axes
    ]
    assert dotted == [[], [[40.0, 30.0]]]


def test_learning_curves_spread_the_controls_when_bn_is_ok_at_one_value_only() -> None:
    runs = nbs_runs()
    failed = runs["norm"].eq("batch") & runs["norm_batch_size"].ne(4)
    runs = runs.assign(status=runs["status"].mask(failed, "error"))
    ok = runs[runs["status"].eq("ok")].drop_duplicates("run_id")
    history = ok.assign(epoch=1, steps=10, step=10, train_loss=1.0, train_acc=0.5)
    figure = figures.plot_learning_curves(runs, figure_data.learning_data(history, runs))
    assert titles(figure) == ["norm batch 1", "norm batch 4", "norm batch 16"] * 2
    # group and none, trained once per seed, in every panel; BN only where it is ok
    assert [len(ax.get_lines()) for ax in figure.axes] == [2, 3, 2] * 2


def test_training_length_set_by_steps_is_reported_in_steps(tmp_path: Path) -> None:
    sweep_dir = write_runs(tmp_path / "demo", make_runs())
    runs = report.load_runs(sweep_dir / "runs.csv")
    train = {"epochs": 3, "steps": 40, "samples": None, "precision": "fp32"}  # epochs ignored
    for run_id in runs["run_id"].unique():
        folder = store.run_dir(sweep_dir, run_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / store.CONFIG).write_text(json.dumps({"train": train}))
    assert report.setup_rows(sweep_dir, runs)["Training"] == "40 steps, fp32"


def test_the_report_names_every_planned_run_without_a_result(sweep: Path, tmp_path: Path) -> None:
    copy = tmp_path / "tiny"
    shutil.copytree(sweep, copy)
    assert report.completeness(copy) == ""  # complete, nothing failed
    damaged, removed = sorted(p.name for p in (copy / "runs").iterdir())[:2]
    result = copy / "runs" / damaged / "result.json"
    result.write_text(result.read_text()[:40])  # a truncated result
    shutil.rmtree(copy / "runs" / removed)
    text = report.completeness(copy)
    assert text.startswith("4 of 6 planned runs have a result (4 ok, 0 error, 0 diverged).")
    assert f"{damaged} (" in text and "damaged:" in text and f"{removed} (" in text
    assert "missing" in text and "seed=" in text
    report.write_report(copy)
    page = (copy / "report" / "index.html").read_text(encoding="utf-8")
    assert 'class="completeness"' in page and damaged in page
    assert "4 of 6 planned runs" in (copy / "report" / "findings.md").read_text(encoding="utf-8")


def test_the_report_reads_the_analysis_of_the_study_as_run(sweep: Path, tmp_path: Path) -> None:
    copy = tmp_path / "tiny"
    shutil.copytree(sweep, copy)
    study = yaml.safe_load((copy / "study.yaml").read_text())
    study["analysis"] = {"primary": ["recovery/*"], "bootstrap_resamples": 500}
    (copy / "study.yaml").write_text(yaml.safe_dump(study))
    assert report.study_analysis(copy).bootstrap_resamples == 500
    text = (report.write_report(copy) / "findings.md").read_text(encoding="utf-8")
    assert "500 replicates" in text and "Holm over the primary claims (recovery/*)" in text
    assert "(primary)" in text
    study["analysis"] = {"alpha": 2}
    (copy / "study.yaml").write_text(yaml.safe_dump(study))
    with pytest.raises(ValueError, match=r"study.yaml: analysis: alpha"):
        report.study_analysis(copy)


EXAMPLE = Path(__file__).resolve().parents[1] / "results" / "example" / "quickstart"


def test_the_shipped_example_study_recomputes_to_its_own_findings(tmp_path: Path) -> None:
    # the per-run data shipped beside the quickstart's report is all `bnstudy report` needs
    copy = tmp_path / "quickstart"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("report"))
    out = report.write_report(copy)
    for name in ("findings.md", "summary.md"):
        shipped = (EXAMPLE / "report" / name).read_text(encoding="utf-8")
        assert (out / name).read_text(encoding="utf-8") == shipped, name


def test_figures_drawn_aside_are_written_and_their_errors_raised_here(tmp_path):
    """The report draws part of its figures in a forked process: what it writes, the reasons
    for a skipped figure, and an exception while drawing come back as if drawn here."""

    def line() -> Figure:
        figure = Figure(figsize=(2, 2))
        figure.add_subplot().plot([0, 1], [1, 0])
        return figure

    def nothing() -> Figure:
        raise figure_data.NothingToPlot("no rows")

    (tmp_path / "stale.png").write_bytes(b"old")
    with drawing.figures_drawn_aside({"line.png": line, "stale.png": nothing}, tmp_path) as wait:
        assert wait() == {"line.png": None, "stale.png": "no rows"}
    assert matplotlib.image.imread(tmp_path / "line.png").shape[:2] == (200, 200)
    assert not (tmp_path / "stale.png").exists()

    def broken() -> Figure:
        raise KeyError("test_acc")

    with drawing.figures_drawn_aside({"broken.png": broken}, tmp_path) as wait:
        with pytest.raises(KeyError, match="test_acc") as raised:
            wait()
    assert "in broken" in str(raised.value.__cause__)  # the forked process's traceback


def test_a_series_label_leaves_out_a_swept_key_the_run_ignores():
    from bnstudy.report.runs_table import series_labels

    groups = pd.Series([None, 8], dtype=object)
    frame = pd.DataFrame({"norm": ["batch", "group"], "model.group.groups": groups})
    labels = series_labels(frame, ["norm", "model.group.groups"])
    assert labels.tolist() == ["batch", "group, model.group.groups=8"]


def test_a_contradicted_claim_says_which_way_it_went_in_a_neutral_colour() -> None:
    from bnstudy.report.page_parts import PAGE_STYLE, _finding_row
    from bnstudy.report.verdicts import Finding

    finding = Finding(
        "BatchNorm @ norm batch 2",
        "eval mode below train mode",
        "eval − train",
        7.6,
        5.5,
        9.7,
        5,
        verdict="contradicted",
    )
    row = _finding_row(finding)
    assert '<td class="verdict no">contradicted: the opposite, eval − train = +7.6 pp</td>' in row
    assert ".no { color: #1d4ed8; }" in PAGE_STYLE  # blue: not the red of a warning
