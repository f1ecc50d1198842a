"""Kept models and mid-run checkpoints (bnstudy.checkpoint): model.pt of a finished run,
atomic saves, bad files as one-line errors, and a resumed run equal to an uninterrupted one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from bnstudy import checkpoint, study
from bnstudy.checkpoint import CheckpointError, RunFiles
from bnstudy.packed_run import alone_reason
from bnstudy.preflight import load_data, model_for_data
from bnstudy.run import execute_run
from bnstudy.store import CHECKPOINT, MODEL, read_predictions, run_dir
from bnstudy.sweep import plan
from bnstudy.train import evaluate

CPU = torch.device("cpu")


class Killed(BaseException):
    """Stands for kill -9 right after a checkpoint: nothing of the run's code runs after it."""


def test_a_finished_run_keeps_a_model_that_loads_with_weights_only_and_predicts_as_tested(
    tiny_study, tmp_path
):
    config, runs = plan(tiny_study, "s.yaml")
    study.run_study(config, runs, tmp_path, CPU)
    folder = run_dir(tmp_path / "tiny", runs[0].run_id)
    saved = torch.load(folder / MODEL, weights_only=True)
    assert saved["run_id"] == runs[0].run_id and saved["torch"] == torch.__version__
    assert saved["config"] == json.loads((folder / "config.json").read_text())
    data = load_data(runs[0].config, CPU)
    model = model_for_data(runs[0].config, data)
    model.load_state_dict(checkpoint.saved_model(folder, runs[0].run_id).weights)
    again = evaluate(model, data.test, mode="eval", batch_size=12)
    assert again.predictions.tolist() == read_predictions(tmp_path / "tiny", runs[0].run_id)["eval"]
    assert not (folder / CHECKPOINT).exists()


def test_save_model_false_keeps_nothing_and_keeping_does_not_change_the_run_identity(
    tiny_study, tmp_path
):
    kept = plan(tiny_study, "s.yaml")[1][0].run_id
    tiny_study["train"].update(save_model=False, checkpoint_every=2)
    config, runs = plan(tiny_study, "s.yaml")
    assert runs[0].run_id == kept
    study.run_study(config, runs, tmp_path, CPU)
    assert not list((tmp_path / "tiny").rglob("*.pt"))


def test_a_save_that_fails_midway_leaves_the_previous_file_and_no_temporary_one(
    tmp_path, monkeypatch
):
    files = RunFiles(tmp_path, "abc", {"seed": 0})
    files.keep_model(torch.nn.Linear(2, 2))
    before = (tmp_path / MODEL).read_bytes()

    def dies_midway(payload, file):
        file.write(b"half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(OSError, match="No space"):
        files.keep_model(torch.nn.Linear(2, 2))
    assert (tmp_path / MODEL).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [MODEL]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00not a checkpoint")


def _pickled_code(path: Path) -> None:  # what weights_only refuses to run
    torch.save({"format": 1, "run_id": "abc", "model": Path("x")}, path)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_truncate, "does not load with torch"),
        (_garbage, "does not load with torch"),
        (_pickled_code, "does not load with torch"),
        (lambda path: path.unlink(), "missing"),
        (lambda path: torch.save({"format": 1, "run_id": "xyz", "model": {}}, path), "by run xyz"),
        (lambda path: torch.save([1, 2], path), "not a bnstudy checkpoint"),
    ],
)
def test_a_bad_model_file_is_a_one_line_error_naming_it(tmp_path, damage, message):
    RunFiles(tmp_path, "abc", {}).keep_model(torch.nn.Linear(2, 2))
    damage(tmp_path / MODEL)
    with pytest.raises(CheckpointError, match=message) as error:
        checkpoint.saved_model(tmp_path, "abc")
    assert str(error.value).startswith(str(tmp_path / MODEL))
    assert "\n" not in str(error.value)


class StopAfterCheckpoint(RunFiles):
    """Run files whose first mid-run checkpoint is the last thing the run does."""

    def keep_state(self, state):
        first = not self.state_path.exists()
        super().keep_state(state)
        if first:
            raise Killed


def _comparable(record: dict) -> dict:
    """A run's record without what a resumed run may differ in: wall times, where it resumed."""
    train = {
        k: v
        for k, v in record["train"].items()
        if k not in ("train_seconds", "samples_per_sec", "resumed_at_step")
    }
    return {key: record[key] for key in ("status", "diagnostics", "tests", "predictions")} | {
        "train": train
    }


@pytest.mark.parametrize(
    ("every", "train"),
    [
        (4, {}),  # mid-epoch 1 of 2
        (6, {}),  # at the end of epoch 1
        (8, {"accumulate": 2, "batch_size": 4, "norm_batch_size": 2}),  # step 2 of epoch 2
    ],
)
def test_a_run_resumed_from_its_checkpoint_ends_as_if_never_stopped(
    tiny_study, tmp_path, every, train
):
    tiny_study["data"].update(augment="crop_flip", augment_padding=1)
    tiny_study["model"]["norm"] = "batch_renorm"  # its clipping follows the step count
    tiny_study["train"].update(epochs=2, deterministic=True, checkpoint_every=every, **train)
    config = plan(tiny_study, "s.yaml")[1][0].config
    alone = RunFiles(tmp_path / "alone", "r", {}, checkpoint_every=every)
    cut = StopAfterCheckpoint(tmp_path / "cut", "r", {}, checkpoint_every=every)
    never_stopped = execute_run(config, CPU, files=alone)
    with pytest.raises(Killed):
        execute_run(config, CPU, files=cut)
    epochs = []
    resumed = execute_run(config, CPU, on_epoch=epochs.append, files=cut)
    assert resumed["train"]["resumed_at_step"] == every
    assert never_stopped["train"]["resumed_at_step"] is None
    assert resumed["status"] == "ok"
    assert _comparable(resumed) == _comparable(never_stopped)
    assert [e.epoch for e in epochs] == [1, 2]  # the history is whole again
    final = [checkpoint.saved_model(f.folder, "r").weights for f in (alone, cut)]
    assert final[0].keys() == final[1].keys()
    assert all(torch.equal(final[0][k], final[1][k]) for k in final[0])


def _other_version(path: Path) -> None:
    payload = torch.load(path, weights_only=True)
    torch.save(payload | {"bnstudy": "0.1 (0123abc)"}, path)


def _another_model(path: Path) -> None:
    payload = torch.load(path, weights_only=True)
    payload["training"]["model"] = torch.nn.Linear(2, 2).state_dict()
    torch.save(payload, path)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_truncate, "does not load with torch"),
        (_other_version, "saved by bnstudy 0.1 (0123abc), this is "),
        (_another_model, "its model does not fit this run's"),
    ],
)
def test_an_unusable_checkpoint_is_named_and_the_run_trains_from_step_0(
    tiny_study, tmp_path, capsys, damage, message
):
    tiny_study["train"].update(epochs=2, checkpoint_every=4)
    config, runs = plan(tiny_study, "s.yaml")
    folder = run_dir(tmp_path / "tiny", runs[0].run_id)
    with pytest.raises(Killed):
        execute_run(runs[0].config, CPU, files=StopAfterCheckpoint.of(folder, runs[0]))
    damage(folder / CHECKPOINT)
    assert study.run_study(config, runs, tmp_path, CPU)[0] == {"ok": 1}
    line = f"{folder / CHECKPOINT}: {message}"
    assert line in capsys.readouterr().err
    table = pd.read_csv(tmp_path / "tiny" / "runs.csv")
    assert table["checkpoint_ignored"].str.startswith(line).all()
    assert table["resumed_at_step"].isna().all()
    assert not (folder / CHECKPOINT).exists()


def test_runs_with_mid_run_checkpoints_train_alone(tiny_study):
    tiny_study["train"]["checkpoint_every"] = 10
    assert "checkpoint_every" in alone_reason(plan(tiny_study, "s.yaml")[1][0].config)


KILLED_AFTER_CHECKPOINT = """
import os, signal
from pathlib import Path

import torch
from torch import nn

from examples.custom_model import build as build_small

MARK = Path(__file__).with_name("killed-once")
PASSES = {"training": 0}


class KilledOnce(nn.Sequential):
    def forward(self, x):
        if self.training and torch.is_grad_enabled() and not MARK.exists():
            PASSES["training"] += 1
            if PASSES["training"] == 7:  # after the checkpoint of step 5, in step 7
                MARK.touch()
                os.kill(os.getpid(), signal.SIGKILL)
        return super().forward(x)


def build(**kwargs):
    return KilledOnce(*build_small(**kwargs))
"""


def test_kill_9_after_a_checkpoint_then_rerun_gives_the_uninterrupted_run_bit_for_bit(
    tiny_study, write_study, tmp_path, monkeypatch
):
    shutil.copytree(Path("examples"), tmp_path / "examples")
    (tmp_path / "killer.py").write_text(KILLED_AFTER_CHECKPOINT)
    monkeypatch.chdir(tmp_path)
    tiny_study["model"] = {"name": "killer:build", "norm": "batch"}
    tiny_study["train"].update(epochs=2, deterministic=True, checkpoint_every=5)
    config = write_study(tiny_study)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}

    def bnstudy_run(out: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "bnstudy", "run", str(config), "--out", out]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)

    assert bnstudy_run("cut").returncode == -signal.SIGKILL
    (folder,) = (tmp_path / "cut" / "tiny" / "runs").iterdir()
    assert (folder / CHECKPOINT).exists() and not (folder / "result.json").exists()
    started = time.time()
    assert bnstudy_run("cut").returncode == 0, "the rerun resumes"
    assert bnstudy_run("whole").returncode == 0  # the mark is there: never killed
    whole = tmp_path / "whole" / "tiny" / "runs" / folder.name
    results = [json.loads((f / "result.json").read_text()) for f in (folder, whole)]
    assert results[0]["train"]["resumed_at_step"] == 5
    assert results[0]["train"]["train_loss"] == results[1]["train"]["train_loss"]
    assert results[0]["tests"] == results[1]["tests"]
    models = [checkpoint.saved_model(f, folder.name).weights for f in (folder, whole)]
    assert all(torch.equal(models[0][k], models[1][k]) for k in models[0])
    assert not (folder / CHECKPOINT).exists()
    assert (folder / MODEL).stat().st_mtime >= started
