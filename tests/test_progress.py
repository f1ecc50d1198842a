"""Tests for bnstudy.progress: what the terminal shows of a sweep."""

import json

from rich.console import Console

from bnstudy import store
from bnstudy.progress import SweepView, progress_text, result_line, swept_text
from bnstudy.sweep import plan


def test_runs_in_flight_show_their_swept_values_epoch_step_and_last_training_loss(
    tiny_study, tmp_path
):
    tiny_study["train"]["epochs"] = 5
    tiny_study["sweep"] = {"seed": [3]}
    _, [run] = plan(tiny_study, "s.yaml")
    folder = store.run_dir(tmp_path, run.run_id)
    folder.mkdir(parents=True)
    (folder / store.HISTORY).write_text(json.dumps({"epoch": 2, "train_loss": 1.23456}) + "\n")
    console = Console(record=True, width=120)
    view = SweepView(console, tmp_path, total=4, done=1)
    view.started(run)
    console.print(view.in_flight_table())
    row = console.export_text().strip()
    assert row.startswith(f"{run.run_id} seed=3") and "epoch 3/5" in row and "loss 1.235" in row
    mark = {"epoch": 3, "steps_done": 12, "steps": 40, "samples_done": 96}
    (folder / store.PROGRESS).write_text(json.dumps(mark))
    console.print(view.in_flight_table())
    assert "epoch 3/5, step 12/40" in console.export_text()
    view.finished(run, trained=False)
    assert view.in_flight == {} and view.progress.tasks[0].completed == 2
    assert swept_text({"model.norm": "batch", "train.norm_batch_size": 4}) == (
        "norm=batch norm_batch_size=4"
    )


def test_a_finished_runs_line_has_each_test_settings_accuracy_or_the_error():
    tests = [
        {"test_mode": "eval", "test_batch": "eval", "test_acc": 0.8312, "status": "ok"},
        {"test_mode": "train", "test_batch": "same", "test_acc": 0.804, "status": "ok"},
        {"test_mode": "train", "test_batch": 1, "test_acc": float("nan"), "status": "oom"},
        {"test_mode": "precise", "test_batch": "precise", "test_acc": 0.85, "status": "ok"},
    ]
    assert result_line({"status": "ok", "tests": tests}) == (
        "ok: eval 83.1%, train 80.4%, train/1 oom, precise 85.0%"
    )
    failed = {"status": "error", "error": "ValueError: bad\n  thing", "error_at": "train epoch 1"}
    assert result_line(failed) == "error: ValueError: bad thing (train epoch 1)"


def test_a_run_with_a_step_budget_shows_its_steps_not_a_total_of_epochs(tiny_study, tmp_path):
    tiny_study["train"]["steps"] = 40
    del tiny_study["train"]["epochs"]  # steps replace it
    tiny_study["sweep"] = {"seed": [3]}
    _, [run] = plan(tiny_study, "s.yaml")
    folder = store.run_dir(tmp_path, run.run_id)
    folder.mkdir(parents=True)
    epoch = {"steps": 6, "samples": 48, "train_loss": 1.0}
    lines = [json.dumps(epoch | {"epoch": e}) for e in (1, 2)]
    (folder / store.HISTORY).write_text("\n".join(lines) + "\n")
    console = Console(record=True, width=120)
    view = SweepView(console, tmp_path, total=1, done=0)
    view.started(run)
    console.print(view.in_flight_table())
    assert "epoch 3, 12/40 steps" in console.export_text()  # no mark yet: epoch 3 begins
    mark = {"epoch": 3, "steps_done": 4, "steps": 6, "samples_done": 32}
    assert progress_text(run.config.train, {"epoch": 2, "step": 12, "sample": 96}, mark) == (
        "epoch 3, 16/40 steps"
    )
    stale = mark | {"epoch": 2}  # the last mark of a finished epoch
    assert progress_text(run.config.train, {"epoch": 2, "step": 12, "sample": 96}, stale) == (
        "epoch 3, 12/40 steps"
    )
    assert progress_text(run.config.train, {"epoch": 7, "step": 40, "sample": 320}, None) == (
        "trained, testing"
    )
    assert progress_text(run.config.train, {"epoch": 0, "step": 0, "sample": 0}, None) == (
        "setting up"
    )
    samples = tiny_study["train"] | {"steps": None, "samples": 1000}
    _, [run] = plan(tiny_study | {"train": samples}, "s.yaml")
    assert progress_text(run.config.train, {"epoch": 2, "step": 12, "sample": 96}, mark) == (
        "epoch 3, 128/1000 samples"
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_eta_comes_from_run_durations_after_the_first_run_and_in_a_logs_lines(
    tiny_study, tmp_path, monkeypatch
):
    tiny_study["sweep"] = {"seed": [0, 1, 2, 3, 4, 5]}
    _, runs = plan(tiny_study, "s.yaml")
    monkeypatch.setattr(store, "read_result", lambda *_: {"status": "ok", "tests": []})
    log, clock = Console(record=True, width=200, force_terminal=False), FakeClock()
    view = SweepView(log, tmp_path, total=6, done=0, clock=clock)
    view.started(runs[0]), view.started(runs[1])  # two workers
    assert view.eta_text() == "-:--:--"  # nothing timed yet
    clock.now = 600.0  # 10 minutes apart: rich's own ETA would still say -:--:--
    view.finished(runs[0], trained=True)
    view.started(runs[2])
    # mean 600 s; runs 1 and 2 need 0 and 600 s more, 3 runs wait: (600 + 1800) / 2
    assert view.eta_text() == "0:20:00"
    clock.now = 900.0
    view.finished(runs[1], trained=True)  # mean 750 s: (450 + 3 × 750) / 2 when printed
    lines = log.export_text().splitlines()
    assert lines[0].endswith("ok:  [1/6 runs, eta 0:20:00]")
    assert lines[1].endswith("[2/6 runs, eta 0:22:30]")
