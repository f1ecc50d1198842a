"""bnstudy.tracking: each run's curves, test accuracies and config in TensorBoard, read back
from the event files, and in MLflow, read back with its client (where mlflow is installed: it
is not in the test extra); and the one line when the package is missing."""

from pathlib import Path

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
    for name in tracking.MLFLOW_PATIENCE:  # set by the tracker: restored afterwards
        monkeypatch.delenv(name, raising=False)
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


class Recording:
    """A tracker that records what it is asked, and fails on scalars once told to."""

    def __init__(self):
        self.opened, self.closed, self.scalars, self.fail = [], [], [], False

    def open(self, run):
        self.opened.append(run.run_id)
        return run.run_id

    def scalar(self, handle, name, value, step):
        if self.fail:
            raise RuntimeError("server down")
        self.scalars.append((name, step))

    def text(self, handle, name, text, step):
        pass

    def flush(self, handle):
        pass

    def close(self, handle, outcome):
        self.closed.append((handle, outcome))


def test_a_finished_run_is_not_reopened_and_a_failed_tracker_still_closes_its_runs(
    tiny_study, tmp_path
):
    from bnstudy import store
    from bnstudy.sweep import plan

    tiny_study["sweep"] = {"seed": [0, 1]}
    _, (done, open_run) = plan(tiny_study, "s.yaml")
    for run in (done, open_run):
        folder = store.start_run(tmp_path, run)
        store.append_history(folder, {"epoch": 1, "steps": 6, "train_loss": 1.0})
    recording = Recording()
    log = tracking.SweepLog(tmp_path, recording)
    log.finish(done)
    log.follow(done)  # the follower thread's late copy of the runs in flight
    assert recording.opened == [done.run_id]
    recording.fail = True
    log.follow(open_run)  # fails in the follower thread
    assert log.failure == "RuntimeError: server down"
    log.close()
    # the finished run closed once with its outcome; the other closed though the tracker failed
    assert recording.closed == [(done.run_id, "no result"), (open_run.run_id, None)]


def test_a_history_that_starts_over_starts_the_curves_over(tiny_study, tmp_path):
    from bnstudy import store
    from bnstudy.sweep import plan

    _, [run] = plan(tiny_study, "s.yaml")
    folder = store.start_run(tmp_path, run)
    for epoch in (1, 2):  # trained in a pack that then failed
        store.append_history(folder, {"epoch": epoch, "steps": 6, "train_loss": 1.0})
    recording = Recording()
    log = tracking.SweepLog(tmp_path, recording)
    log.follow(run)
    store.write_atomic(folder / store.HISTORY, "")  # retrained alone (RunFiles.start_over)
    store.append_history(folder, {"epoch": 1, "steps": 6, "train_loss": 0.9})
    log.follow(run)
    assert recording.scalars == [("train/train_loss", step) for step in (6, 12, 6)]


def test_the_local_mlflow_store_keeps_its_artifacts_in_the_sweep_folder(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    import mlflow.tracking

    made = {}

    class Client:
        def __init__(self, tracking_uri):
            made["uri"] = tracking_uri

        def get_experiment_by_name(self, name):
            return None

        def create_experiment(self, name, artifact_location=None):
            made["artifacts"] = artifact_location
            return "1"

    for name in ("MLFLOW_TRACKING_URI", *tracking.MLFLOW_PATIENCE):  # restored afterwards
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(mlflow.tracking, "MlflowClient", Client)
    monkeypatch.chdir(tmp_path)
    tracking.MLflow(Path("results/tiny"), "tiny")  # --out results: a relative folder
    assert made["uri"] == "sqlite:///results/tiny/mlflow.db"
    assert made["artifacts"] == (tmp_path / "results/tiny/mlartifacts").as_uri()
