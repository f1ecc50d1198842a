"""Tests for bnstudy.store's writes (the sweep-level behaviour is tested in test_study)."""

import os

import pytest

from bnstudy import store
from bnstudy.train import Position


def test_a_failed_atomic_write_leaves_neither_a_temporary_file_nor_an_open_fd(
    tmp_path, monkeypatch
):
    opened = []

    def refuse(fd, mode):
        opened.append(fd)
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(store.os, "fchmod", refuse)
    with pytest.raises(PermissionError):
        store.write_atomic(tmp_path / "result.json", "{}")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OSError):
        os.fstat(opened[0])  # closed


def test_read_result_reads_each_file_once_and_none_for_a_damaged_folder(tmp_path, monkeypatch):
    folder = store.run_dir(tmp_path, "abc")
    result = {key: {} for key in ("train", "diagnostics", "provenance")} | {
        "status": "ok",
        "tests": [],
    }
    store.write_json(folder / store.RESULT, result)
    reads = []
    real = store.Path.read_text
    monkeypatch.setattr(store.Path, "read_text", lambda path: reads.append(path) or real(path))
    assert store.read_result(tmp_path, "abc") is None  # no config.json: damaged
    store.write_json(folder / store.CONFIG, {k: {} for k in ("name", "seed", "data", "model")})
    assert store.read_result(tmp_path, "abc") is None  # lacks train
    store.write_json(
        folder / store.CONFIG, {k: {} for k in ("name", "seed", "data", "model", "train")}
    )
    reads.clear()
    assert store.read_result(tmp_path, "abc") == result
    assert sorted(path.name for path in reads) == [store.CONFIG, store.RESULT]


def test_test_outputs_are_read_in_the_new_and_the_old_format(tmp_path):
    folder = store.run_dir(tmp_path, "new")
    new = {
        "test_labels": [0, 1, 1],
        "predictions": {"eval": [0, 1, 0], "same": [1, 1, 0]},
        "flips": {"same": [0, 2, 3]},
        "flip_reshuffles": 3,
    }
    store.write_json(folder / store.PREDICTIONS, new)
    assert store.read_test_outputs(tmp_path, "new") == store.TestOutputs(
        labels=[0, 1, 1],
        predictions={"eval": [0, 1, 0], "same": [1, 1, 0]},
        flips={"same": [0, 2, 3]},
        reshuffles=3,
    )
    assert store.read_predictions(tmp_path, "new") == new["predictions"]
    # a run written before labels and flips were stored: {label: predictions}
    old = {"eval": [0, 1, 0], "same": [1, 1, 0]}
    store.write_json(store.run_dir(tmp_path, "old") / store.PREDICTIONS, old)
    assert store.read_test_outputs(tmp_path, "old") == store.TestOutputs(None, old, {}, None)
    assert store.read_predictions(tmp_path, "old") == old
    # a failed run's empty file, a missing one, a damaged one
    store.write_json(store.run_dir(tmp_path, "failed") / store.PREDICTIONS, {})
    assert store.read_test_outputs(tmp_path, "failed") == store.TestOutputs(None, {}, {}, None)
    assert store.read_test_outputs(tmp_path, "missing") is None
    assert store.read_predictions(tmp_path, "missing") is None
    store.write_atomic(store.run_dir(tmp_path, "cut") / store.PREDICTIONS, '{"test_labels": [0,')
    assert store.read_test_outputs(tmp_path, "cut") is None
    assert store.read_predictions(tmp_path, "cut") is None


def test_step_marks_write_the_position_at_most_once_per_interval(tmp_path):
    now = [0.0]
    marks = store.StepMarks([tmp_path / "a", tmp_path / "b"], interval=1.0, clock=lambda: now[0])
    position = Position(phase="train", epoch=2, step=1, epoch_steps=40, epoch_samples=8)
    marks(None, position)
    position.step, position.epoch_samples, now[0] = 2, 16, 0.5
    marks(None, position)  # within the interval: not written
    expected = {"epoch": 2, "steps_done": 1, "steps": 40, "samples_done": 8}
    assert store.read_progress(tmp_path / "a") == store.read_progress(tmp_path / "b") == expected
    now[0] = 1.0
    marks(None, position)
    assert store.read_progress(tmp_path / "a")["steps_done"] == 2
    (tmp_path / "a" / store.PROGRESS).write_text("{half")
    assert store.read_progress(tmp_path / "a") is None


def test_step_marks_of_one_run_of_a_pack_go_to_its_folder_only(tmp_path):
    marks = store.StepMarks([tmp_path / "a", tmp_path / "b"], interval=0.0)
    marks(1, Position(phase="train", epoch=1, step=3, epoch_steps=6, epoch_samples=24))
    assert store.read_progress(tmp_path / "a") is None
    assert store.read_progress(tmp_path / "b")["steps_done"] == 3
