"""bnstudy.tracking: each run's curves, test accuracies and config in TensorBoard, read back
from the event files, and in MLflow, read back with its client (where mlflow is installed: it
is not in the test extra); and the one line when the package is missing."""

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


def test_run_with_log_mlflow_writes_an_experiment_with_each_runs_metrics_and_config(
    tiny_study, write_study, tmp_path, monkeypatch
):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"file://{tmp_path / 'mlruns'}"  # a store that mlflow-skinny has too
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    tiny_study["train"]["epochs"] = 2
    tiny_study["sweep"] = {"model.norm": ["batch", "group"]}
    config = write_study(tiny_study)
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path), "--log", "mlflow"])
    assert result.exit_code == 0, result.output
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2 and {r.data.params["model.norm"] for r in runs} == {"batch", "group"}
    for run in runs:
        assert run.info.status == "FINISHED" and len(run.info.run_name) == 10  # the run id
        loss = client.get_metric_history(run.info.run_id, "train/train_loss")
        assert [m.step for m in loss] == [6, 12]  # 48 samples / 8 per step, two epochs
        assert 0 <= run.data.metrics["test/eval"] <= 100
        saved = client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path))
        assert "model:" in open(saved).read()


def test_a_tracker_that_fails_stops_logging_and_the_sweep_goes_on(
    tiny_study, write_study, tmp_path, monkeypatch
):
    pytest.importorskip("tensorboard")

    def down(*args):
        raise RuntimeError("tracking server down")

    monkeypatch.setattr(tracking.TensorBoard, "scalar", down)
    tiny_study["sweep"] = {"seed": [0, 1]}
    config = write_study(tiny_study)
    result = runner.invoke(
        app, ["run", str(config), "--out", str(tmp_path), "--log", "tensorboard"]
    )
    assert result.exit_code == 0, result.output
    assert "tiny: 2 runs: 2 ok" in result.output
    assert result.output.count("--log stopped, the sweep goes on: RuntimeError: tracking") == 1


def test_a_tracker_without_its_package_is_one_line(monkeypatch, tiny_study, write_study, tmp_path):
    monkeypatch.setitem(tracking.TRACKERS, "tensorboard", "no_such_package_here")
    config = write_study(tiny_study)
    result = runner.invoke(
        app, ["run", str(config), "--out", str(tmp_path), "--log", "tensorboard"]
    )
    assert result.exit_code == 2
    assert "--log tensorboard needs the no_such_package_here package" in result.stderr
    assert not (tmp_path / "tiny").exists()
