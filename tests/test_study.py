import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
from conftest import hold_claim

from bnstudy import store, study
from bnstudy.results import columns_of
from bnstudy.sweep import plan

CPU = torch.device("cpu")


def count_executions(monkeypatch):
    calls = []
    real = study.execute_pack

    def counting(configs, device, on_epoch, files, on_step):
        calls.extend(configs)
        return real(configs, device, on_epoch, files, on_step)

    monkeypatch.setattr(study, "execute_pack", counting)
    return calls


def test_rerun_skips_finished_runs_and_an_edit_reruns_only_what_it_changes(
    tiny_study, tmp_path, monkeypatch
):
    calls = count_executions(monkeypatch)
    tiny_study["sweep"] = {"model.norm": ["batch", "none"], "train.batch_size": [4, 8]}
    study.run_study(*plan(tiny_study, "s.yaml"), tmp_path, CPU)
    assert len(calls) == 4
    study.run_study(*plan(tiny_study, "s.yaml"), tmp_path, CPU)
    assert len(calls) == 4
    tiny_study["sweep"]["train.batch_size"] = [4, 16]
    counts, trained = study.run_study(*plan(tiny_study, "s.yaml"), tmp_path, CPU)
    assert len(calls) == 6 and counts["ok"] == 4 and trained == 2
    table = pd.read_csv(tmp_path / "tiny" / "runs.csv")
    assert sorted(set(table["batch_size"])) == [4, 16]  # the stale cells are not in the table
    status = store.sweep_status(tmp_path / "tiny")
    assert status.missing == [] and status.stale == 2


def test_table_is_tidy_with_swept_keys_and_history_per_epoch(tiny_study, tmp_path):
    tiny_study["train"]["epochs"] = 2
    tiny_study["sweep"] = {"seed": [0, 1]}
    study.run_study(*plan(tiny_study, "s.yaml"), tmp_path, CPU)
    table = pd.read_csv(tmp_path / "tiny" / "runs.csv")
    assert len(table) == 4 and set(table["test_mode"]) == {"eval", "train"}
    for column in columns_of("run", "config", "result", "provenance", "test", "train"):
        assert column in table.columns
    assert table.duplicated(["run_id", "test_mode", "test_batch"]).sum() == 0
    run_id = table["run_id"].iloc[0]
    history = (tmp_path / "tiny" / "runs" / run_id / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in history] == [1, 2]


def test_a_training_run_marks_its_step_and_the_mark_goes_when_it_finishes(
    tiny_study, tmp_path, monkeypatch
):
    _, [run] = plan(tiny_study, "s.yaml")
    seen, real = [], study.execute_pack

    def watching(configs, device, on_epoch, files, on_step):
        def step(index, position):
            on_step(index, position)
            seen.append(store.read_progress(files[0].folder))

        return real(configs, device, on_epoch, files, step)

    monkeypatch.setattr(study, "execute_pack", watching)
    assert study.run_one(tmp_path, run, CPU, lease=60)
    steps = len(seen)  # tiny_study: one epoch; the first step is marked at once
    batch = tiny_study["train"]["batch_size"]
    assert seen[0] == {"epoch": 1, "steps_done": 1, "steps": steps, "samples_done": batch}
    assert not (store.run_dir(tmp_path, run.run_id) / store.PROGRESS).exists()


def test_an_error_run_is_recorded_and_the_sweep_goes_on(tiny_study, tmp_path):
    tiny_study["data"]["image_size"] = 2
    tiny_study["sweep"] = {"train.batch_size": [1, 2]}
    counts, _ = study.run_study(*plan(tiny_study, "s.yaml"), tmp_path, CPU)
    assert counts == {"ok": 1, "error": 1}
    table = pd.read_csv(tmp_path / "tiny" / "runs.csv", keep_default_na=False)
    errors = table[table["status"] == "error"]
    assert set(errors["batch_size"]) == {1}
    assert errors["error"].str.contains("Expected more than 1 value per channel").all()
    run_id = errors["run_id"].iloc[0]
    assert "Traceback" in (tmp_path / "tiny" / "runs" / run_id / "error.txt").read_text()


def result_files(sweep_dir):
    return {p.parent.name: p.stat().st_mtime_ns for p in sweep_dir.glob("runs/*/result.json")}


@pytest.mark.slow
@pytest.mark.parametrize(("jobs", "pack"), [("1", "off"), ("2", "2")])
def test_sigkill_then_rerun_finishes_the_sweep_without_retraining(
    tiny_study, write_study, tmp_path, jobs, pack
):
    tiny_study["data"].update(train_size=240, image_size=16)
    tiny_study["train"]["batch_size"] = 4
    tiny_study["sweep"] = {"seed": [0, 1, 2, 3, 4, 5]}
    config, out = write_study(tiny_study), tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "bnstudy",
        "run",
        str(config),
        "--out",
        str(out),
        "--jobs",
        jobs,
        "--pack",
        pack,
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sweep_dir = out / "tiny"
    deadline = time.monotonic() + 120
    while len(result_files(sweep_dir)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished = result_files(sweep_dir)
    assert 2 <= len(finished) < 6, "the kill should land mid-sweep"
    time.sleep(3)
    assert result_files(sweep_dir) == finished, "no worker outlives the killed sweep"
    subprocess.run(command, check=True, capture_output=True)
    after = result_files(sweep_dir)
    assert len(after) == 6
    assert all(after[run_id] == mtime for run_id, mtime in finished.items())
    table = pd.read_csv(sweep_dir / "runs.csv")
    assert len(table) == 12 and table["run_id"].nunique() == 6
    assert not table.duplicated(["run_id", "test_mode", "test_batch"]).any()
    assert not list(sweep_dir.rglob("*.tmp"))


def test_parallel_jobs_finish_every_run_once(tiny_study, tmp_path):
    tiny_study["sweep"] = {"seed": [0, 1, 2]}
    counts, _ = study.run_study(*plan(tiny_study, "s.yaml"), tmp_path, CPU, jobs=2)
    assert counts == {"ok": 3}
    table = pd.read_csv(tmp_path / "tiny" / "runs.csv")
    assert len(table) == 6 and table["run_id"].nunique() == 3


def test_result_files_get_the_usual_permissions_not_mkstemps_0600(tiny_study, tmp_path):
    study.run_study(*plan(tiny_study, "s.yaml"), tmp_path, CPU)
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "tiny" / "runs.csv").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_norm_batch_sweep_trains_the_controls_once_per_seed(tiny_study, tmp_path, monkeypatch):
    calls = count_executions(monkeypatch)
    tiny_study["sweep"] = {"model.norm": ["batch", "group"], "train.norm_batch_size": [1, 8]}
    study.run_study(*plan(tiny_study, "s.yaml"), tmp_path, CPU)
    assert len(calls) == 3
    table = pd.read_csv(tmp_path / "tiny" / "runs.csv")
    by_norm = table.drop_duplicates("run_id").set_index("norm")
    assert by_norm.loc["group", "norm_batch_size"] != by_norm.loc["group", "norm_batch_size"]
    assert sorted(table[table["norm"].eq("batch")]["norm_batch_size"].unique()) == [1, 8]
    assert set(table["num_classes"]) == {10} and set(table["optimizer_batch_size"]) == {8}
    predictions = store.read_predictions(tmp_path / "tiny", table["run_id"].iloc[0])
    assert set(predictions) == {"eval", "same"}


def test_two_processes_on_one_sweep_train_every_run_exactly_once(tiny_study, write_study, tmp_path):
    tiny_study["train"]["epochs"] = 2
    tiny_study["sweep"] = {"seed": list(range(8))}
    config, out = write_study(tiny_study), tmp_path / "out"
    command = [sys.executable, "-m", "bnstudy", "run", str(config), "--out", str(out)]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [process.communicate()[0] for process in processes]
    trained = [int(text.split("(")[1].split(" trained")[0]) for text in outputs]
    assert sum(trained) == 8, outputs
    histories = (out / "tiny" / "runs").glob("*/history.jsonl")
    assert [len(h.read_text().splitlines()) for h in histories] == [2] * 8
    assert not list((out / "tiny").rglob("claim.json"))


def test_damaged_run_folders_are_reported_and_retrained_with_the_evidence_kept(
    tiny_study, write_study, tmp_path
):
    from typer.testing import CliRunner

    from bnstudy.cli import app

    tiny_study["sweep"] = {"seed": [0, 1, 2]}
    config = write_study(tiny_study)
    study.run_study(*plan(tiny_study, "s.yaml"), tmp_path, CPU)
    sweep_dir = tmp_path / "tiny"
    truncated, unconfigured, intact = sorted((sweep_dir / "runs").iterdir())
    result = truncated / store.RESULT
    result.write_text(result.read_text()[:40])
    (unconfigured / store.CONFIG).unlink()
    status = CliRunner().invoke(app, ["status", str(sweep_dir)])
    assert status.exit_code == 0, status.output
    assert "1 ok, 0 running, 2 missing" in status.output
    assert "damaged, will be retrained: result.json is unreadable (JSONDecodeError" in status.output
    assert "damaged, will be retrained: config.json is missing" in status.output
    assert CliRunner().invoke(app, ["report", str(sweep_dir)]).exit_code == 0
    before = (intact / store.RESULT).stat().st_mtime_ns
    rerun = CliRunner().invoke(app, ["run", str(config), "--out", str(tmp_path)])
    assert rerun.exit_code == 0 and "3 ok" in rerun.output and "(2 trained" in rerun.output
    assert (intact / store.RESULT).stat().st_mtime_ns == before
    [kept] = truncated.glob("previous-*")
    assert len((kept / store.RESULT).read_text()) == 40  # the damaged file, kept as it was
    assert list(unconfigured.glob("previous-*"))


def test_only_the_temporary_files_of_dead_writers_on_this_host_are_removed(tmp_path):
    from bnstudy.claims import HOST

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder = tmp_path / "runs" / "abc"
    folder.mkdir(parents=True)
    names = {
        "dead": f".result.json~{HOST}~{dead.pid}~x1.tmp",
        "alive": f".result.json~{HOST}~{os.getppid()}~x2.tmp",
        "elsewhere": f".result.json~other-node~{dead.pid}~x3.tmp",
    }
    for name in names.values():
        (folder / name).write_text("partial")
    store.remove_partial_writes(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == sorted([names["alive"], names["elsewhere"]])


def test_the_table_is_kept_current_without_rereading_every_result_after_each_run(
    tiny_study, tmp_path, monkeypatch
):
    reads = []
    real = store.read_result
    monkeypatch.setattr(store, "read_result", lambda *a: reads.append(a) or real(*a))

    def reads_for(runs):
        reads.clear()
        tiny_study["sweep"] = {"seed": list(range(runs))}
        study.run_study(*plan(tiny_study, "s.yaml"), tmp_path / str(runs), CPU)
        assert len(pd.read_csv(tmp_path / str(runs) / "tiny" / "runs.csv")) == 2 * runs
        return len(reads)

    assert reads_for(8) <= 2 * reads_for(4)  # linear in the sweep's size, not quadratic


SELF_KILLING_MODEL = """
import multiprocessing, os, signal
import torch
from examples.custom_model import build as build_small

def build(**kwargs):
    # the run with seed 1, in a worker process: it dies, as under the OOM killer
    if multiprocessing.parent_process() is not None and torch.initial_seed() == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return build_small(**kwargs)
"""


def test_a_killed_worker_costs_its_run_only_recorded_as_crashed(tiny_study, tmp_path, monkeypatch):
    import shutil
    from pathlib import Path

    shutil.copytree(Path("examples"), tmp_path / "examples")
    (tmp_path / "killer.py").write_text(SELF_KILLING_MODEL)
    monkeypatch.chdir(tmp_path)
    tiny_study["model"] = {"name": "killer:build"}
    tiny_study["sweep"] = {"seed": [0, 1, 2, 3]}
    counts, trained = study.run_study(*plan(tiny_study, "s.yaml"), tmp_path / "out", CPU, jobs=2)
    assert counts == {"ok": 3, "crashed": 1} and trained == 4
    table = pd.read_csv(tmp_path / "out" / "tiny" / "runs.csv")
    crashed = table[table["status"] == "crashed"]
    assert set(crashed["seed"]) == {1}
    assert set(crashed["error"]) == {"worker process died (killed by SIGKILL)"}
    assert not list((tmp_path / "out").rglob("claim.json"))
    again, trained = study.run_study(
        *plan(tiny_study, "s.yaml"), tmp_path / "out", CPU, jobs=2, retry=["crashed"]
    )
    assert again == {"ok": 3, "crashed": 1} and trained == 1  # retried: it dies again


def test_ctrl_c_with_two_jobs_stops_within_seconds_and_says_how_to_resume(
    tiny_study, write_study, tmp_path
):
    tiny_study["data"].update(train_size=480, image_size=16)
    tiny_study["train"].update(epochs=3, batch_size=4)
    tiny_study["sweep"] = {"seed": list(range(6))}
    config, out = write_study(tiny_study), tmp_path / "out"
    command = [sys.executable, "-m", "bnstudy", "run", str(config), "--out", str(out)]
    process = subprocess.Popen(  # as from a terminal: SIGINT not ignored (a background
        [*command, "--jobs", "2"],  # shell job, as CI may run us, inherits it ignored)
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while len(list(out.rglob("claim.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    start = time.monotonic()
    time.sleep(0.5)  # then again, impatient: mostly after the line below, as Python finalizes
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    stderr = process.communicate(timeout=60)[1]
    assert process.returncode == 130 and time.monotonic() - start < 10  # not killed by SIGINT
    [line] = [line for line in stderr.splitlines() if line.startswith("interrupted")]
    assert "esume with the same command" in line  # the first's line, or the second's
    assert not list(out.rglob("claim.json")) and not list(out.rglob("*.tmp"))
    assert (out / "tiny" / "runs.csv").exists()
    finished = {p: p.stat().st_mtime_ns for p in out.rglob("result.json")}
    time.sleep(2)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("result.json")} == finished


def test_runs_failing_before_training_in_a_row_stop_the_sweep(tiny_study, tmp_path, monkeypatch):
    from bnstudy import run as run_module

    real = run_module.load_data

    def unreachable(config, device):
        if config.seed == 5:  # its data is there
            return real(config, device)
        raise OSError("data volume not mounted")

    monkeypatch.setattr(run_module, "load_data", unreachable)
    tiny_study["sweep"] = {"seed": [0, 1, 2, 3, 4]}
    with pytest.raises(study.SetupFailures, match="stopped: 3 runs in a row failed before train"):
        study.run_study(*plan(tiny_study, "s.yaml"), tmp_path, CPU, max_setup_failures=3)
    assert len(list(tmp_path.glob("tiny/runs/*/result.json"))) == 3
    tiny_study["sweep"]["seed"].append(5)
    counts, _ = study.run_study(*plan(tiny_study, "s.yaml"), tmp_path, CPU, max_setup_failures=0)
    assert counts == {"error": 5, "ok": 1}  # 0: the guard is off, before and after an ok run


def test_a_run_held_by_a_process_that_dies_mid_sweep_is_trained_at_the_end(
    tiny_study, tmp_path, monkeypatch
):
    tiny_study["sweep"] = {"seed": [0, 1, 2]}
    config, runs = plan(tiny_study, "s.yaml")
    holder = hold_claim(store.run_dir(tmp_path / "tiny", runs[0].run_id))  # another sweep's
    calls = []
    real = study.execute_pack

    def kill_the_holder_then_train(configs, device, on_epoch, files, on_step):
        calls.extend(config.seed for config in configs)
        holder.kill()
        holder.wait()
        return real(configs, device, on_epoch, files, on_step)

    monkeypatch.setattr(study, "execute_pack", kill_the_holder_then_train)
    counts, trained = study.run_study(config, runs, tmp_path, CPU, order="grid")
    assert counts == {"ok": 3} and trained == 3
    assert calls == [1, 2, 0]  # the held run skipped at first, picked up once its owner died


def _processes_with(marker):
    """Pids of the processes whose environment holds ``marker`` (workers included)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/environ", "rb") as file:
                if marker.encode() in file.read():
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigkill_of_the_parent_at_random_moments_leaves_no_process_behind(
    tiny_study, write_study, tmp_path
):
    import random

    tiny_study["data"].update(train_size=240, image_size=16)
    tiny_study["train"].update(batch_size=4, epochs=2000)  # runs outlive the check below
    tiny_study["sweep"] = {"seed": list(range(6))}
    config, out = write_study(tiny_study), tmp_path / "out"
    command = [sys.executable, "-m", "bnstudy", "run", str(config), "--out", str(out)]
    moments = [random.Random(seed).uniform(0.5, 8.0) for seed in range(4)]  # start-up included
    for trial, moment in enumerate(moments):
        marker = f"BNSTUDY_KILL_TRIAL={os.getpid()}-{trial}"
        env = {**os.environ, marker.split("=")[0]: marker.split("=")[1]}
        process = subprocess.Popen(
            [*command, "--jobs", "2", "--stagger", "0"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(moment)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + 20  # a worker still importing torch dies once it is done
        while _processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _processes_with(marker) == [], f"killed at {moment:.1f} s: workers left"


def test_with_a_short_lease_a_run_longer_than_the_lease_keeps_its_claim_live(
    tiny_study, tmp_path, monkeypatch
):
    from bnstudy import claims

    _, [run] = plan(tiny_study, "s.yaml")
    folder = store.run_dir(tmp_path, run.run_id)
    lease, seen = 1.0, []
    real = study.execute_pack

    def slow(configs, device, on_epoch, files, on_step):
        time.sleep(2.5 * lease)
        seen.append(claims.is_stale(claims.read_claim(folder), lease))
        return real(configs, device, on_epoch, files, on_step)

    monkeypatch.setattr(study, "execute_pack", slow)
    assert study.run_one(tmp_path, run, CPU, lease)
    assert seen == [False]


def test_a_worker_that_died_after_writing_its_result_keeps_that_result(tiny_study, tmp_path):
    _, [run] = plan(tiny_study, "s.yaml")
    assert study.run_one(tmp_path, run, CPU, 300.0)
    assert study._record_crash(tmp_path, run, -signal.SIGKILL, 300.0, ())
    assert store.read_result(tmp_path, run.run_id)["status"] == "ok"


def test_a_worker_that_died_before_starting_its_run_leaves_a_crashed_undamaged_folder(
    tiny_study, tmp_path
):
    from bnstudy.claims import HOST

    _, [run] = plan(tiny_study, "s.yaml")
    folder = store.run_dir(tmp_path, run.run_id)
    folder.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / f".history.jsonl~{HOST}~{dead.pid}~x.tmp").write_text("")  # its last write
    assert study._record_crash(tmp_path, run, -signal.SIGKILL, 300.0, ())
    assert store.damage(folder) is None
    assert store.read_result(tmp_path, run.run_id)["status"] == "crashed"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [store.CONFIG, store.PREDICTIONS, store.RESULT]
    )
