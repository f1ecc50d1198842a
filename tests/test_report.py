"""Tests for bnstudy.report on a small synthetic runs.csv.

Synthetic accuracies (exact, so expected values can be worked out by hand):
    eval-mode acc  = BASE[norm] + 0.01 * log2(batch_size) + 0.04 * seed
    train-mode acc = eval-mode acc - DROP[norm][test_batch] - 0.01 * seed
Failures: batch norm at batch size 1 errors for both seeds, group norm at batch size 4 seed 1
diverges, and group norm at batch size 16 seed 1 is missing (partial sweep).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest
from matplotlib.figure import Figure

from bnstudy import report

NORMS = ("batch", "group")
BATCH_SIZES = (1, 4, 16)
SEEDS = (0, 1)
SETTINGS = (("eval", "eval"), ("train", "same"), ("train", "1"))
BASE = {"batch": 0.80, "group": 0.70, "instance": 0.60}
DROP = {"same": 0.05, "1": 0.20}
BN_ERROR = (
    "ValueError: Expected more than 1 value per channel when training, "
    "got input size torch.Size([1, 8, 1, 1])"
)
DIVERGED_MSG = "FloatingPointError: loss <nan> & 'inf' at step 7"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


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


def row(norm: str, batch_size: int, seed: int, test_mode: str, test_batch: str) -> dict | None:
    """One runs.csv row, shaped like the table the sweep writes."""
    result = outcome(norm, batch_size, seed)
    if result is None:
        return None
    status, error, error_at = result
    acc = BASE[norm] + 0.01 * math.log2(batch_size) + 0.04 * seed
    if test_mode == "train":
        acc -= DROP[test_batch] + 0.01 * seed
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
        "train_loss": 0.5 if ok else math.nan,
        "train_acc": acc + 0.05 if ok else math.nan,
        "epochs": 2,
        "steps": 64 // batch_size,
        "train_seconds": 1.5,
        "samples_per_sec": 100.0 * batch_size,
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


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A report written once from the synthetic sweep; returns the report folder."""
    sweep_dir = write_runs(tmp_path_factory.mktemp("results") / "demo", make_runs())
    return report.write_report(sweep_dir)


@pytest.fixture(scope="module")
def runs(built: Path) -> pd.DataFrame:
    """The synthetic runs table as the report module reads it."""
    return report.load_runs(built.parent / "runs.csv")


def test_write_report_creates_all_files(built: Path) -> None:
    assert built.name == "report"
    for name in ("summary.csv", "summary.md", "index.html"):
        assert (built / name).stat().st_size > 0
    assert_png(built / "accuracy_vs_batch_size.png")
    assert_png(built / "test_mode_gap.png")


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
    assert bn4["samples_per_sec_mean"] == pytest.approx(400)
    assert (bn4["n"], bn4["n_error"], bn4["n_diverged"]) == (2, 0, 0)
    # group norm, batch size 4, train/1: only seed 0 ok (0.72 - 0.20), seed 1 diverged
    gn4 = cell(summary, norm="group", batch_size=4, test_batch="1")
    assert gn4["test_acc_mean"] == pytest.approx(0.52)
    assert math.isnan(gn4["test_acc_std"])
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


def test_summary_markdown_formats_percentages(built: Path) -> None:
    text = (built / "summary.md").read_text(encoding="utf-8")
    assert "| 84.0 ± 2.8 |" in text  # batch norm, batch size 4, eval
    assert "| 72.0 |" in text  # group norm, batch size 4, eval: one seed, no std


def test_gap_matches_hand_computation(runs: pd.DataFrame) -> None:
    gap = report.compute_gap(runs)
    # batch norm, batch size 4, test batch 1: seed 0 gap 20 pp, seed 1 gap 21 pp
    bn = cell(gap, norm="batch", batch_size=4, test_batch="1")
    assert bn["gap_mean"] == pytest.approx(20.5)
    assert bn["gap_std"] == pytest.approx(1 / math.sqrt(2))
    assert bn["n"] == 2
    assert not ((gap["norm"] == "batch") & (gap["batch_size"] == 1)).any()


def test_plot_functions_return_figures_with_one_panel_per_setting(runs: pd.DataFrame) -> None:
    accuracy = report.plot_accuracy_vs_batch_size(runs, num_classes=10)
    assert isinstance(accuracy, Figure)
    titles = [ax.get_title() for ax in accuracy.axes]
    assert titles == [
        "eval mode (running stats)",
        "train mode (batch stats, test batch = training batch)",
        "train mode (batch stats, test batch = 1)",
    ]
    assert [t.get_text() for t in accuracy.axes[0].get_xticklabels()] == ["1", "4", "16"]
    gap = report.plot_test_mode_gap(runs)
    assert isinstance(gap, Figure)
    assert [ax.get_title() for ax in gap.axes] == ["batch", "group"]


def test_save_figure_writes_png(tmp_path: Path, runs: pd.DataFrame) -> None:
    path = report.save_figure(report.plot_test_mode_gap(runs), tmp_path / "gap.png")
    assert_png(path)


def test_index_html_references_plots_and_escapes_errors(built: Path) -> None:
    page = (built / "index.html").read_text(encoding="utf-8")
    assert "<title>bnstudy report: demo</title>" in page
    assert '<img src="accuracy_vs_batch_size.png"' in page
    assert '<img src="test_mode_gap.png"' in page
    assert "11 runs: 8 ok, 2 error, 1 diverged; 33 rows" in page
    assert BN_ERROR in page
    assert "loss &lt;nan&gt; &amp; " in page
    assert "<nan>" not in page
    assert "<script" not in page and "stylesheet" not in page


def test_whole_norm_errored(tmp_path: Path) -> None:
    sweep_dir = write_runs(tmp_path / "demo", make_runs(norms=("batch", "group", "instance")))
    out = report.write_report(sweep_dir)
    summary = pd.read_csv(out / "summary.csv")
    instance = summary[summary["norm"] == "instance"]
    assert len(instance) == len(BATCH_SIZES) * len(SETTINGS)
    assert (instance["n"] == 0).all() and (instance["n_error"] == 2).all()
    assert_png(out / "accuracy_vs_batch_size.png")
    runs = report.load_runs(sweep_dir / "runs.csv")
    assert [ax.get_title() for ax in report.plot_test_mode_gap(runs).axes] == ["batch", "group"]


def test_eval_only_sweep_skips_gap_plot(tmp_path: Path) -> None:
    sweep_dir = write_runs(tmp_path / "demo", make_runs())
    report.write_report(sweep_dir)  # leaves a gap plot behind that must not go stale
    write_runs(sweep_dir, make_runs(settings=SETTINGS[:1]))
    out = report.write_report(sweep_dir)
    assert not (out / "test_mode_gap.png").exists()
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "Plot skipped: the sweep has no train-mode test rows." in page
    assert (
        len(report.plot_accuracy_vs_batch_size(report.load_runs(sweep_dir / "runs.csv")).axes) == 1
    )
    with pytest.raises(ValueError, match="both eval-mode and train-mode"):
        report.plot_test_mode_gap(report.load_runs(sweep_dir / "runs.csv"))


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
