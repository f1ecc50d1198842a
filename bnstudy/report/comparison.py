"""Comparing studies on one page: :func:`write_comparison` overlays several studies' test
accuracies along their batch axes, beside what each ran and its accuracy pivot table."""

from __future__ import annotations

import html
import os
from pathlib import Path

import pandas as pd

from bnstudy import store
from bnstudy.report import figures
from bnstudy.report.design import setup_rows
from bnstudy.report.drawing import write_figures
from bnstudy.report.figure_data import comparison_data
from bnstudy.report.load import load_runs, sweep_name
from bnstudy.report.page import ACCURACY_PNG, BAND, write_report
from bnstudy.report.page_parts import (
    figure_html,
    html_page,
    pivot_html,
    setups_html,
)
from bnstudy.report.tables import accuracy_pivot, summarize

COMPARISON = (  # heading and caption of the comparison's figure
    "Test accuracy",
    "Test accuracy per test setting of each study along its own batch axis: colour = norm (and "
    f"other factors), line style and marker = study; {BAND}; dashed grey: chance (100 / number "
    "of classes).",
)


def study_labels(sweep_dirs: list[Path], frames: list[pd.DataFrame]) -> list[str]:
    """A label per study: its name from the runs table; where names repeat (one study run on two
    machines), its folder relative to the folders' common parent; then a number if still equal."""
    names = [sweep_name(df, Path(d)) for d, df in zip(sweep_dirs, frames, strict=True)]
    if len(set(names)) == len(names):
        return names
    paths = [Path(d).resolve() for d in sweep_dirs]
    common = Path(os.path.commonpath(paths))
    labels = [path.relative_to(common).as_posix() for path in paths]
    if len(set(labels)) == len(labels):
        return labels
    return [f"{name} #{index}" for index, name in enumerate(names, start=1)]


def _study_heading(label: str, sweep_dir: Path, out_dir: Path) -> str:
    """A study's label as HTML, linked (relative to ``out_dir``) to its report if it has one."""
    page = Path(sweep_dir) / store.REPORT_DIR / store.INDEX_HTML
    if not page.is_file():
        return html.escape(label)
    return f'<a href="{html.escape(os.path.relpath(page, out_dir))}">{html.escape(label)}</a>'


def write_comparison(sweep_dirs: list[Path], out_dir: Path) -> Path:
    """Write ``out_dir/index.html`` and ``out_dir/accuracy_vs_batch_size.png`` comparing the
    studies in ``sweep_dirs`` (each a folder with a runs.csv; at least two): a table of the
    studies (what each ran, side by side, linked to their reports), their test accuracies
    overlaid along their batch axes (:func:`bnstudy.report.figures.plot_comparison`), and each
    study's accuracy pivot table. Returns ``out_dir``."""
    if len(sweep_dirs) < 2:
        raise ValueError(f"a comparison needs at least two studies, got {len(sweep_dirs)}")
    frames = [load_runs(Path(d) / store.TABLE) for d in sweep_dirs]
    labels = study_labels(sweep_dirs, frames)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    studies = dict(zip(labels, frames, strict=True))
    reasons = write_figures(
        {ACCURACY_PNG: lambda: figures.plot_comparison(studies, comparison_data(studies))},
        out_dir,
    )
    headings = [_study_heading(*study, out_dir) for study in zip(labels, sweep_dirs, strict=True)]
    setups = [setup_rows(Path(d), df) for d, df in zip(sweep_dirs, frames, strict=True)]
    body = [*setups_html(headings, setups)]
    body += figure_html(ACCURACY_PNG, *COMPARISON, reasons[ACCURACY_PNG])
    for index, (label, df) in enumerate(zip(labels, frames, strict=True), start=1):
        body += pivot_html(*accuracy_pivot(summarize(df), df), label, f"pivot-{index}")
    page = html_page(f"bnstudy comparison: {', '.join(labels)}", body)
    (out_dir / store.INDEX_HTML).write_text(page, encoding="utf-8")
    return out_dir


def write_reports(sweep_dirs: list[Path], out_dir: Path | None = None) -> Path:
    """Rebuild the table of each sweep, then write the report of one sweep (to its report
    folder) or the comparison of several (to ``out_dir``, default: ``comparison/`` in the
    folder that holds them all); return the page written. Raises FileNotFoundError for a folder
    that is not a sweep, and ValueError for an ``out_dir`` given with one sweep."""
    if len(sweep_dirs) == 1 and out_dir is not None:
        raise ValueError(
            f"--out is for a comparison; one sweep's report goes to {store.REPORT_DIR}/ in it"
        )
    for sweep_dir in sweep_dirs:
        store.write_table(sweep_dir)
    if len(sweep_dirs) == 1:
        return write_report(sweep_dirs[0]) / store.INDEX_HTML
    common = Path(os.path.commonpath([d.absolute() for d in sweep_dirs]))
    return write_comparison(sweep_dirs, out_dir or common / "comparison") / store.INDEX_HTML
