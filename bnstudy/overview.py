"""Where a sweep stands and its report, for ``bnstudy status`` and ``bnstudy report``: read
from and written to the sweep folders, without torch."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bnstudy import claims, store
from bnstudy.report import INDEX_HTML, REPORT_DIR, write_comparison, write_report


@dataclass(frozen=True)
class ReportAge:
    """A sweep's report page, whether it is written, and how many run results are newer."""

    page: Path
    written: bool
    newer: int


@dataclass(frozen=True)
class Overview:
    """Where a sweep stands: its status, the run_ids of it that a live process trains (a claim
    with a recent heartbeat), and its report."""

    status: store.SweepStatus
    live: frozenset[str]
    report: ReportAge

    @property
    def planned(self) -> int:
        """The runs of the current plan, finished or not."""
        return sum(self.status.counts.values()) + len(self.status.missing)


def sweep_overview(sweep_dir: Path) -> Overview:
    """The :class:`Overview` of ``sweep_dir``; FileNotFoundError if it is not a sweep folder."""
    status = store.sweep_status(sweep_dir)
    live = frozenset(r for r, claim in status.running.items() if not claims.is_stale(claim))
    return Overview(status, live, report_age(sweep_dir))


def report_age(sweep_dir: Path) -> ReportAge:
    """Whether the report holds every finished run: written after the newest result."""
    page = sweep_dir / REPORT_DIR / INDEX_HTML
    if not page.exists():
        return ReportAge(page, False, 0)
    written = page.stat().st_mtime
    newer = sum(path.stat().st_mtime > written for path in sweep_dir.glob("runs/*/result.json"))
    return ReportAge(page, True, newer)


def write_reports(sweep_dirs: list[Path], out_dir: Path | None = None) -> Path:
    """Rebuild the table of each sweep, then write the report of one sweep (to its report
    folder) or the comparison of several (to ``out_dir``, default: ``comparison/`` in the
    folder that holds them all); return the page written. Raises FileNotFoundError for a folder
    that is not a sweep, and ValueError for an ``out_dir`` given with one sweep."""
    if len(sweep_dirs) == 1 and out_dir is not None:
        raise ValueError(
            f"--out is for a comparison; one sweep's report goes to {REPORT_DIR}/ in it"
        )
    for sweep_dir in sweep_dirs:
        store.write_table(sweep_dir)
    if len(sweep_dirs) == 1:
        return write_report(sweep_dirs[0]) / INDEX_HTML
    common = Path(os.path.commonpath([d.absolute() for d in sweep_dirs]))
    return write_comparison(sweep_dirs, out_dir or common / "comparison") / INDEX_HTML
