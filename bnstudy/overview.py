"""Where a sweep stands, for ``bnstudy status``: its runs' outcomes, the runs in flight and
missing, and whether its report holds every finished run; read from the sweep folder without
torch or the report's libraries."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from bnstudy import claims, store
from bnstudy.results import COLUMNS, RUN_ID


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
    table_problem: str | None  # what is wrong with runs.csv (:func:`table_problem`)

    @property
    def planned(self) -> int:
        """The runs of the current plan, finished or not."""
        return sum(self.status.counts.values()) + len(self.status.missing)


def sweep_overview(sweep_dir: Path) -> Overview:
    """The :class:`Overview` of ``sweep_dir``; FileNotFoundError if it is not a sweep folder."""
    status = store.sweep_status(sweep_dir)
    live = frozenset(r for r, claim in status.running.items() if not claims.is_stale(claim))
    return Overview(status, live, report_age(sweep_dir), table_problem(sweep_dir, status))


def report_age(sweep_dir: Path) -> ReportAge:
    """Whether the report holds every finished run: written after the newest result."""
    page = sweep_dir / store.REPORT_DIR / store.INDEX_HTML
    if not page.exists():
        return ReportAge(page, False, 0)
    written = page.stat().st_mtime
    newer = sum(path.stat().st_mtime > written for path in sweep_dir.glob("runs/*/result.json"))
    return ReportAge(page, True, newer)


def table_problem(sweep_dir: Path, status: store.SweepStatus) -> str | None:
    """What is wrong with ``runs.csv``, which ``bnstudy run`` and ``report`` rebuild from the
    run folders: missing though runs finished, unreadable, its header not the table's columns
    (bnstudy.results.COLUMNS, then the swept keys), rows of another width, or its runs not the
    finished ones (not checked while a live process trains runs of the sweep: each rewrites
    the table as its runs finish, and may not have read another's latest); None when it
    agrees with the folders."""
    path = sweep_dir / store.TABLE
    finished = {e[RUN_ID] for e in store.read_plan(sweep_dir)} - {e[RUN_ID] for e in status.missing}
    if not path.exists():
        return "missing" if finished else None
    try:
        with open(path, newline="", encoding="utf-8") as file:
            lines = list(csv.reader(file))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        return f"unreadable ({type(error).__name__}: {error})"
    if not lines:
        return "empty"
    header, *rows = lines
    if header[: len(COLUMNS)] != list(COLUMNS):
        return "its header is not the runs table's columns"
    ragged = sum(len(row) != len(header) for row in rows)
    if ragged:
        return f"{ragged} of its rows do not have the header's {len(header)} cells"
    if any(not claims.is_stale(claim) for claim in status.running.values()):
        return None
    ids = {row[header.index(RUN_ID)] for row in rows}
    if ids != finished:
        return f"its rows name {len(ids)} runs, not the {len(finished)} finished ones"
    return None
