"""The outcomes of a run and of a test setting: one vocabulary for result.json, runs.csv, the
report and the command line.

- ``ok``        trained (and, for a test setting, tested) to the end.
- ``error``     an exception; its message verbatim and where it happened are kept.
- ``diverged``  the training loss became NaN or infinite (bnstudy.train.Diverged).
- ``oom``       memory ran out (bnstudy.device.is_out_of_memory): the run (or test setting) did
                not fit on the device at that batch size; the message says where. A sweep
                going up in batch size shows where it stops fitting.
- ``crashed``   the worker process training the run died (a signal, a segfault, the kernel's OOM
                killer); the message says how. ``bnstudy run --retry crashed`` trains it again.

A test setting that was never reached is ``not run``.
"""

from __future__ import annotations

OK, ERROR, DIVERGED, OOM, CRASHED = "ok", "error", "diverged", "oom", "crashed"
NOT_RUN = "not run"
# the outcomes of a finished run, in the order counts list them
RUN_OUTCOMES = (OK, ERROR, DIVERGED, OOM, CRASHED)
FAILURES = (ERROR, DIVERGED, OOM, CRASHED)  # a run or setting without a result


def counts_text(counts: dict[str, int]) -> str:
    """``a ok, b error, c diverged`` plus ``d oom`` and any other status when present (a sweep
    that never runs out of memory is not told so on every line)."""
    counts = dict(counts)  # also a pandas value_counts Series
    always = (OK, ERROR, DIVERGED)
    rest = sorted(status for status in counts if status not in always and counts[status])
    shown = [*always, *sorted(rest, key=lambda status: status != OOM)]
    return ", ".join(f"{counts.get(status, 0)} {status}" for status in shown)
