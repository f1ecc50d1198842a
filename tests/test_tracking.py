"""bnstudy.tracking: each run's curves, test accuracies and config in TensorBoard, read back
from the event files; and the one line when the package is missing."""

import pytest
from typer.testing import CliRunner

from bnstudy import tracking
from bnstudy.cli import app

runner = CliRunner()


def test_run_with_log_tensorboard_writes_each_runs_curves_tests_and_config(
    tiny_study, write_study, tmp_path
):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tiny_study["train"]["epochs"] = 2
    tiny_study["sweep"] = {"model.norm": ["batch", "group"]}
    config = write_study(tiny_study)
    result = runner.invoke(
        app, ["run", str(config), "--out", str(tmp_path), "--log", "tensorboard"]
    )
    assert result.exit_code == 0, result.output
    folders = sorted((tmp_path / "tiny" / tracking.FOLDER).iterdir())
    assert len(folders) == 2  # one per run, named by run id
    for folder in folders:
        events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
        events.Reload()
        loss = events.Scalars("train/train_loss")
        assert [e.step for e in loss] == [6, 12]  # 48 samples / 8 per step, two epochs
        test = events.Scalars("test/eval")
        assert len(test) == 1 and 0 <= test[0].value <= 100 and test[0].step == 12
        texts = events.Tags()["tensors"]
        assert {"config/text_summary", "swept/text_summary"} <= set(texts)


def test_a_tracker_without_its_package_is_one_line(monkeypatch, tiny_study, write_study, tmp_path):
    monkeypatch.setitem(tracking.TRACKERS, "tensorboard", "no_such_package_here")
    config = write_study(tiny_study)
    result = runner.invoke(
        app, ["run", str(config), "--out", str(tmp_path), "--log", "tensorboard"]
    )
    assert result.exit_code == 2
    assert "--log tensorboard needs the no_such_package_here package" in result.stderr
    assert not (tmp_path / "tiny").exists()
