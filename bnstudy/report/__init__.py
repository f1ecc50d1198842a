"""The report of a study: from a sweep's ``runs.csv`` and run folders, what was run, findings with
verdicts, tables, figures and one HTML page (:func:`write_report`); and several studies compared
on one page (:func:`write_comparison`).

Modules, each importing only those above it:

- ``runs_table``: the runs table's batch axis, factors, order and test settings (no statistics);
  ``load``: reading runs.csv, the run folders and the study's analysis settings;
  ``design``: what was run, in words, and which planned runs are missing.
- ``verdicts``: :class:`~bnstudy.report.verdicts.Finding` s, the adjustment for multiple
  testing and the verdicts; ``estimates``: paired comparisons and their bootstrap estimates.
- The claim families: ``recovery`` (each norm against BN at its largest batch), ``modes``
  (eval-mode collapse, PreciseBN), ``controls`` (BN against the controls, the controls check),
  ``noise`` (the noise law), ``flips`` (flip rate against seed-to-seed disagreement);
  ``findings`` collects them (findings.md).
- ``tables``: summary.csv, summary.md and paired.csv; ``figure_data``: the tables each figure
  draws.
- ``drawing`` and ``figures``: the figures, drawn from those tables (no module above them
  imports matplotlib).
- ``page_parts``: the parts of an HTML page; ``page``: :func:`write_report`; ``comparison``:
  :func:`write_comparison`.
"""

from __future__ import annotations

from bnstudy.report.comparison import study_labels, write_comparison, write_reports
from bnstudy.report.design import completeness, setup_rows
from bnstudy.report.load import history_table, load_runs, study_analysis, sweep_resampler
from bnstudy.report.page import write_report
from bnstudy.report.runs_table import factor_columns
from bnstudy.report.tables import accuracy_pivot, failure_table, format_summary, summarize

__all__ = [
    "accuracy_pivot",
    "completeness",
    "factor_columns",
    "failure_table",
    "format_summary",
    "history_table",
    "load_runs",
    "setup_rows",
    "study_analysis",
    "study_labels",
    "summarize",
    "sweep_resampler",
    "write_comparison",
    "write_report",
    "write_reports",
]
