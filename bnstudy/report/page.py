"""Turn a sweep's tidy ``runs.csv`` and run folders into a report: what was run, findings,
tables, figures, one HTML page.

:func:`write_report` writes ``results/<name>/report/``::

    index.html                  one page, offline (no scripts, no external files): what is
                                missing, the answer (primary claims, where BN breaks, the best
                                alternative) beside the headline figure, what was run (data,
                                model, training, testing, budget, machine and software), every
                                finding folded by group with raw and adjusted p-values, the
                                accuracy pivot table, the other figures, and the full summary
                                table and failed runs at the bottom
    findings.md                 planned against present runs, what was run, the answer, how the
                                intervals and verdicts are computed, and one line per finding
                                with its numbers, 95% interval, n, raw and adjusted p-values,
                                verdict and key (bnstudy.report.findings)
    paired.csv                  every paired difference behind the findings, one row per pair
    summary.csv                 per cell: n, mean, std, 95% bootstrap interval (seeds and test
                                images), median and seeds at chance of the test accuracy (a
                                fraction), means of the other metrics and diagnostics, counts
    summary.md                  the accuracy pivot table, then the summary table, accuracies in
                                percent as mean [low, high]
    *.png                       the figures of bnstudy.report.figures (FIGURES lists them)

The batch axis is ``norm_batch_size`` or ``batch_size``
(:func:`bnstudy.report.runs_table.batch_axis`); a norm without batch statistics in a
normalization-batch study is shown at every axis value from its one model per seed. A figure
whose measurements the runs table lacks is skipped, and the page says why. Works on partial
sweeps and on a runs table without run folders (then the page says less about what was run and
has no learning curves).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import NamedTuple

import pandas as pd
from matplotlib.figure import Figure
from threadpoolctl import threadpool_limits

from bnstudy import store
from bnstudy.norm_catalog import ordered_norms, uses_batch_statistics
from bnstudy.report import figures
from bnstudy.report.controls import drift_warning
from bnstudy.report.design import completeness, setup_markdown, setup_rows
from bnstudy.report.drawing import figures_drawn_aside
from bnstudy.report.figure_data import (
    BATCH_STATS_PANELS,
    COLLAPSE_PANELS,
    accuracy_data,
    constant_panels,
    flip_data,
    gap_data,
    learning_data,
    noise_data,
    panel_data,
    recovery_data,
)
from bnstudy.report.findings import build_findings, findings_markdown
from bnstudy.report.flips import flip_baseline
from bnstudy.report.load import (
    history_table,
    load_runs,
    study_analysis,
    sweep_name,
    sweep_resampler,
)
from bnstudy.report.page_parts import (
    FINDINGS_MD,
    PAIRED_CSV,
    SUMMARY_CSV,
    SUMMARY_MD,
    answer_html,
    figure_html,
    findings_html,
    html_page,
    pivot_html,
    setups_html,
    tables_html,
)
from bnstudy.report.runs_table import batch_axis
from bnstudy.report.tables import (
    CSV_FLOATS,
    accuracy_pivot,
    failure_table,
    format_summary,
    paired_table,
    summarize,
    summary_markdown,
)
from bnstudy.report.verdicts import FindingGroup, method_text
from bnstudy.resampling import Resampler
from bnstudy.results import NORM, NORM_BATCH_SIZE

ACCURACY_PNG = "accuracy_vs_batch_size.png"
RECOVERY_PNG = "recovery.png"
LEARNING_PNG = "learning_curves.png"
GAP_PNG = "test_mode_gap.png"
FLIP_PNG = "flip_rate.png"
COLLAPSE_PNG = "output_collapse.png"
BATCH_STATS_PNG = "batch_statistics.png"
NOISE_PNG = "noise_law.png"
HEADLINE = ACCURACY_PNG  # the figure the page shows right after the findings
BAND = "the mean over seeds with its 95% t-interval as a band (none for one seed)"
BOOTSTRAP_BAND = (
    "the mean over seeds with its 95% interval as a band (the findings' bootstrap over seeds "
    "and test images; none for one seed)"
)
SHARED_NOTE = "Repeated at every value: {norms} (no batch statistics; one model per seed)."
NO_RUNNING_STATS_NOTE = (
    "Not drawn: {norms} (no running statistics: every test mode computes the same, so the "
    "differences are 0 by construction)."
)
CONSTANT_NOTE = "Not drawn, the same in every run: {panels}."


class FigureInputs(NamedTuple):
    """What the figures are drawn from: the runs table, the runs' histories
    (:func:`bnstudy.report.load.history_table`), the flip-rate baseline
    (:func:`bnstudy.report.flips.flip_baseline`) and the resampler of the findings' intervals."""

    df: pd.DataFrame
    history: pd.DataFrame
    baseline: pd.DataFrame
    resampler: Resampler | None = None


class ReportFigure(NamedTuple):
    """A figure of the page: its heading, its caption saying what is measured, the call that
    draws it (raising :class:`bnstudy.report.figure_data.NothingToPlot` with the reason it
    cannot), and whether it draws the findings' bootstrap estimates (``resampled``). Each kind
    draws in a forked process (:func:`bnstudy.report.drawing.figures_drawn_aside`): the others
    while the findings compute, the resampled ones after them, from the estimates they
    cached, while the tables are written."""

    heading: str
    caption: str
    draw: Callable[[FigureInputs], Figure]
    resampled: bool = False


# PNG -> its heading, caption (what is measured) and drawing, in page order.
FIGURES = {
    ACCURACY_PNG: ReportFigure(
        "Test accuracy along the batch axis",
        f"Test accuracy per test setting, {BOOTSTRAP_BAND}; dashed grey: chance (100 / number of "
        "classes, where the runs table records it); x = no seed produced a result.",
        lambda i: figures.plot_accuracy_vs_batch_size(i.df, accuracy_data(i.df, i.resampler)),
        resampled=True,
    ),
    RECOVERY_PNG: ReportFigure(
        "Recovery of BN's large-batch accuracy",
        "Per norm, eval-mode test accuracy minus BN's at its largest batch, paired by seed, in "
        f"percentage points, {BOOTSTRAP_BAND}. Norms with batch statistics vary along the "
        "axis; the others, trained once per seed, are dashed levels with their interval as a "
        "bar at the right margin. 0 (black): the reference.",
        lambda i: figures.plot_recovery(i.df, recovery_data(i.df, i.resampler)),
        resampled=True,
    ),
    LEARNING_PNG: ReportFigure(
        "Learning curves",
        "Training loss and accuracy averaged over each epoch's training batches (the model in "
        "train mode), plotted at the optimizer step that ends the epoch, one panel per value of "
        f"the batch axis, {BAND}. From each ok run's history.jsonl.",
        lambda i: figures.plot_learning_curves(i.df, learning_data(i.history, i.df)),
    ),
    GAP_PNG: ReportFigure(
        "Test-mode differences, paired per run",
        "Per run, test accuracy in one test setting minus another (eval − train per train-mode "
        "test batch; precise − eval where measured) in percentage points, "
        f"{BOOTSTRAP_BAND}; positive = the first setting is better.",
        lambda i: figures.plot_test_mode_gap(i.df, gap_data(i.df, i.resampler)),
        resampled=True,
    ),
    FLIP_PNG: ReportFigure(
        "Train-mode flip rate",
        "Percentage of test predictions in train mode (batch statistics) that change when the "
        "test set is reshuffled into different batches (mean over reshuffles), per test batch "
        f"setting, {BAND}; "
        "dotted: the seed-to-seed baseline (predictions of the same setting that differ between "
        "two seeds), where predictions were stored.",
        lambda i: figures.plot_flip_rate(i.df, *flip_data(i.df, i.baseline)),
    ),
    COLLAPSE_PNG: ReportFigure(
        "Output collapse",
        "On a fixed probe batch of the normalization batch size in train mode: the std of the "
        "model outputs and the fraction of outputs exactly 0, at initialization (dashed) and "
        f"after training (solid), {BAND}; x = no value (run failed, or the forward raised).",
        lambda i: figures.plot_run_panels(i.df, panel_data(i.df, COLLAPSE_PANELS)),
    ),
    BATCH_STATS_PNG: ReportFigure(
        "Batch statistics",
        "The fewest values any norm statistic of the network averages over, and, after "
        "training, the std across batches of the normalization batch size (1024 training "
        "samples) of the per-channel batch mean (relative to the population std) and batch "
        "variance (relative to the population variance), averaged over channels and BN layers; "
        f"{BAND}.",
        lambda i: figures.plot_run_panels(i.df, panel_data(i.df, BATCH_STATS_PANELS)),
    ),
    NOISE_PNG: ReportFigure(
        "Noise of BN batch means: measured and predicted",
        "Std across training batches of the per-channel batch mean relative to the population "
        f"std (solid, {BAND}); predicted from between-image variation (std of per-image channel "
        "means / population std / √images per batch; dashed) and by the values law "
        "(1/√values per statistic; dotted); log-log.",
        lambda i: figures.plot_noise_law(i.df, noise_data(i.df)),
    ),
}


def _caption_notes(df: pd.DataFrame) -> dict[str, str]:
    """Extra caption sentences per figure: the norms the test-mode figures leave out, the norms
    repeated at every normalization batch size, and the diagnostics left out as constant."""
    controls = [n for n in ordered_norms(df[NORM].dropna()) if not uses_batch_statistics(n)]
    notes = {}
    if controls:
        left_out = NO_RUNNING_STATS_NOTE.format(norms=", ".join(controls))
        notes = {GAP_PNG: left_out, FLIP_PNG: left_out}
    if controls and batch_axis(df) == NORM_BATCH_SIZE:
        shared = SHARED_NOTE.format(norms=", ".join(controls))
        notes |= {ACCURACY_PNG: shared, LEARNING_PNG: shared}
    for png, panels in (
        (COLLAPSE_PNG, COLLAPSE_PANELS),
        (BATCH_STATS_PNG, BATCH_STATS_PANELS),
    ):
        constant = constant_panels(df, panels)
        if constant:
            text = ", ".join(f"{name} ({value:g})" for name, value in constant.items())
            notes[png] = CONSTANT_NOTE.format(panels=text)
    return notes


def _report_figure_html(png: str, reason: str | None, note: str) -> list[str]:
    """A figure of FIGURES (:func:`bnstudy.report.page_parts.figure_html`), its caption followed by
    ``note``."""
    heading, caption = FIGURES[png].heading, FIGURES[png].caption
    return figure_html(png, heading, f"{caption} {note}".strip(), reason)


class PageParts(NamedTuple):
    """What index.html says besides the tables: what was run, the findings, how they were
    decided, whether the sweep is complete, and the figures written (PNG -> why skipped)."""

    setup: dict[str, str]
    groups: list[FindingGroup]
    method: str
    completeness: str
    figures: dict[str, str | None]


def _report_page(
    title: str,
    df: pd.DataFrame,
    parts: PageParts,
    pivot: tuple[pd.DataFrame, int],
    summary: pd.DataFrame,
) -> str:
    """index.html: the controls-drift warning if any, what is missing, the answer beside the
    headline figure, what was run, the findings folded by group, the ``pivot`` table with its
    n (:func:`bnstudy.report.tables.accuracy_pivot`), the other figures, the ``summary`` table
    (:func:`bnstudy.report.tables.format_summary`) and the failed runs."""
    groups, figures = parts.groups, parts.figures
    warning = drift_warning(groups)
    notes = _caption_notes(df)
    body = [f'<div class="warning">Warning — {html.escape(warning)}</div>'] if warning else []
    if parts.completeness:
        body.append(f'<p class="completeness">{html.escape(parts.completeness)}</p>')
    headline = _report_figure_html(HEADLINE, figures[HEADLINE], notes.get(HEADLINE, ""))
    body += answer_html(groups, headline)
    body += [*setups_html([], [parts.setup]), *findings_html(groups, parts.method)]
    body += pivot_html(*pivot)
    for png, reason in figures.items():
        if png != HEADLINE:
            body += _report_figure_html(png, reason, notes.get(png, ""))
    body += tables_html(summary, failure_table(df))
    return html_page(title, body)


def write_report(sweep_dir: Path) -> Path:
    """Write ``sweep_dir/report/`` (index.html, findings.md, paired.csv, summary.csv,
    summary.md, figures) from ``sweep_dir/runs.csv`` and the run folders (configs, provenance,
    histories, stored predictions), and return the report folder. Works on partial sweeps."""
    sweep_dir = Path(sweep_dir)
    df = load_runs(sweep_dir / store.TABLE)
    out = sweep_dir / store.REPORT_DIR
    out.mkdir(exist_ok=True)
    name = sweep_name(df, sweep_dir)
    # One BLAS thread: the bootstrap's small matrix products gain nothing from more, and idle
    # BLAS threads spin on the cores that the figures' processes draw on.
    with threadpool_limits(limits=1, user_api="blas"):
        parts, tables = _write_contents(sweep_dir, df, out, name)
    page = _report_page(_title(name), df, parts, *tables)
    (out / store.INDEX_HTML).write_text(page, encoding="utf-8")
    return out


def _title(name: str) -> str:
    """The title of study ``name``'s report page and summary.md."""
    return f"bnstudy report: {name}"


def _write_contents(
    sweep_dir: Path, df: pd.DataFrame, out: Path, name: str
) -> tuple[PageParts, tuple[tuple[pd.DataFrame, int], pd.DataFrame]]:
    """Write findings.md, the tables and the figures of study ``name`` into ``out``; return
    the page's parts and tables (:func:`_write_tables`). The figures draw in two forked
    processes (:attr:`ReportFigure.resampled`), so that they use the other core."""
    analysis = study_analysis(sweep_dir)
    resampler = sweep_resampler(sweep_dir, analysis)
    baseline = flip_baseline(df, lambda run_id: store.read_predictions(sweep_dir, run_id))
    inputs = FigureInputs(df, history_table(sweep_dir, df), baseline, resampler)
    draws = {png: partial(f.draw, inputs) for png, f in FIGURES.items()}
    with figures_drawn_aside(_figures(draws, resampled=False), out) as drawn_aside:
        groups = build_findings(df, baseline, resampler, analysis)
        setup, method, missing = (
            setup_rows(sweep_dir, df),
            method_text(analysis, groups),
            completeness(sweep_dir),
        )
        (out / FINDINGS_MD).write_text(
            findings_markdown(
                f"bnstudy findings: {name}", setup_markdown(setup), groups, method, missing
            ),
            encoding="utf-8",
        )
        tables = _write_tables(df, resampler, out, _title(name))
        # forked after the findings and tables: the figures of their estimates use their cache
        with figures_drawn_aside(_figures(draws, resampled=True), out) as drawn_after:
            drawn = drawn_aside() | drawn_after()
    figures = {png: drawn[png] for png in FIGURES}
    return PageParts(setup, groups, method, missing, figures), tables


def _write_tables(
    df: pd.DataFrame, resampler: Resampler, out: Path, title: str
) -> tuple[tuple[pd.DataFrame, int], pd.DataFrame]:
    """Write paired.csv, summary.csv and summary.md; return the accuracy pivot with its n and
    the summary as displayed, for the page."""
    paired_table(df).to_csv(out / PAIRED_CSV, index=False, float_format=CSV_FLOATS)
    summary = summarize(df, resampler)
    summary.to_csv(out / SUMMARY_CSV, index=False)
    pivot, n = accuracy_pivot(summary, df)
    shown = format_summary(summary)
    (out / SUMMARY_MD).write_text(summary_markdown(title, pivot, n, shown), encoding="utf-8")
    return (pivot, n), shown


def _figures(draws: dict[str, Callable[[], Figure]], resampled: bool) -> dict[str, Callable]:
    """The ``draws`` of the figures whose :attr:`ReportFigure.resampled` is ``resampled``."""
    return {png: draw for png, draw in draws.items() if FIGURES[png].resampled == resampled}
