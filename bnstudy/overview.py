"""Where a sweep stands, for ``bnstudy status``: its runs' outcomes, the runs in flight and
missing, and whether its report holds every finished run; read from the sweep folder without
torch or the report's libraries."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bnstudy import claims, store


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
    page = sweep_dir / store.REPORT_DIR / store.INDEX_HTML
    if not page.exists():
        return ReportAge(page, False, 0)
    written = page.stat().st_mtime
    newer = sum(path.stat().st_mtime > written for path in sweep_dir.glob("runs/*/result.json"))
    return ReportAge(page, True, newer)
