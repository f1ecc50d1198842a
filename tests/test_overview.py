"""Tests for bnstudy.overview: what `bnstudy status` says of runs.csv."""

import time
from collections import Counter

from bnstudy import overview, store
from bnstudy.claims import Claim
from bnstudy.results import COLUMNS, RUN_ID


def status(running=None):
    """Both planned runs finished; ``running``: claims on them (as a rerun holds)."""
    return store.SweepStatus(Counter(), [], running or {}, {}, 0, [])


def test_runs_csv_problems_and_no_false_alarm_while_a_live_process_trains(tmp_path, monkeypatch):
    planned = [{RUN_ID: "a", "swept": {}}, {RUN_ID: "b", "swept": {}}]
    monkeypatch.setattr(store, "read_plan", lambda sweep_dir: planned)
    table = tmp_path / store.TABLE
    header = ",".join(COLUMNS)
    assert overview.table_problem(tmp_path, status()) == "missing"
    table.write_text(header + "\n")
    assert overview.table_problem(tmp_path, status()) == (
        "its rows name 0 runs, not the 2 finished ones"
    )
    row = ["a"] + [""] * (len(COLUMNS) - 1)
    table.write_text(header + "\n" + ",".join(row) + "\n" + "b,1\n")
    assert overview.table_problem(tmp_path, status()) == (
        f"1 of its rows do not have the header's {len(COLUMNS)} cells"
    )
    table.write_text(header + "\n" + ",".join(row) + "\n")
    live = Claim("host", 1, time.time(), heartbeat_age=1.0)
    assert overview.table_problem(tmp_path, status(running={"b": live})) is None  # rebuilt soon
    stale = Claim("host", 1, time.time(), heartbeat_age=10_000.0)
    assert "not the 2 finished" in overview.table_problem(tmp_path, status(running={"b": stale}))
    table.write_text("name,value\n")
    assert (
        overview.table_problem(tmp_path, status()) == "its header is not the runs table's columns"
    )
