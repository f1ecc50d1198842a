"""Cluster submission through submitit's local executor (real job processes, no SLURM), and
through a stand-in SLURM (sbatch, sacct and srun scripts on PATH) for what SLURM is asked."""

import json
import os
import signal
import sys
import time

import pytest

from bnstudy import claims, cluster, store
from bnstudy.sweep import plan

submitit = pytest.importorskip("submitit")

# over 10 min: submitit counts a signal within min(0.8 x limit, limit - 10 min) as a preemption
LOCAL = cluster.SlurmSettings(gpus_per_task=0, cpus_per_task=1, time_min=15)


@pytest.fixture(autouse=True)
def one_thread_per_job(monkeypatch):
    """The local executor starts every job at once: one CPU thread each."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def sweep(tiny_study, tmp_path, seeds):
    tiny_study["sweep"] = {"seed": seeds}
    return (tmp_path / "tiny", *plan(tiny_study, "s.yaml"))


def submit_local(sweep_dir, config, runs):
    return cluster.submit(sweep_dir, config, runs, "cpu", settings=LOCAL, cluster="local")


def history(sweep_dir, run_id):
    lines = (store.run_dir(sweep_dir, run_id) / store.HISTORY).read_text().splitlines()
    return [json.loads(line)["epoch"] for line in lines]


def history_started(folder):
    path = folder / store.HISTORY
    return path.exists() and path.read_text().count("\n") >= 1


def test_pending_runs_go_out_once_and_each_trains_once(tiny_study, tmp_path):
    sweep_dir, config, runs = sweep(tiny_study, tmp_path, [0, 1])
    ids = {run.run_id for run in runs}
    first = submit_local(sweep_dir, config, runs)
    again = submit_local(sweep_dir, config, runs)  # at once: the jobs are queued or running
    assert set(first.run_ids) == ids and len(first.job_ids) == 2
    assert again.run_ids == [] and again.jobs == []
    assert set(again.queued) | set(again.claimed) == ids
    results = [job.result() for job in first.jobs]
    assert {r["run_id"] for r in results} == ids
    assert all(r["trained"] and r["status"] == "ok" for r in results)
    assert all(history(sweep_dir, run_id) == [1] for run_id in ids)
    table = store.write_table(sweep_dir)
    assert set(table["run_id"]) == ids and set(table["status"]) == {"ok"}
    records = (sweep_dir / "slurm" / cluster.SUBMITTED).read_text().splitlines()
    assert len(records) == 2
    after = submit_local(sweep_dir, config, runs)
    assert (after.run_ids, after.queued, after.claimed) == ([], {}, {})


def test_a_run_claimed_by_a_live_process_is_not_submitted(tiny_study, tmp_path):
    sweep_dir, config, runs = sweep(tiny_study, tmp_path, [0, 1])
    held = store.run_dir(sweep_dir, runs[0].run_id)
    assert claims.try_claim(held)
    submission = submit_local(sweep_dir, config, runs)
    assert submission.run_ids == [runs[1].run_id]
    assert submission.claimed[runs[0].run_id].pid == os.getpid()
    assert submission.jobs[0].result()["trained"]
    assert store.read_result(sweep_dir, runs[0].run_id) is None


def test_checkpoint_releases_the_claim_and_requeues_the_same_call(tiny_study, tmp_path):
    sweep_dir, _, runs = sweep(tiny_study, tmp_path, [0])
    task, args = cluster.RunTask(), (sweep_dir, runs[0], "cpu", 300.0, ("error",))
    folder = store.run_dir(sweep_dir, runs[0].run_id)
    assert claims.try_claim(folder)
    delayed = task.checkpoint(*args)
    assert claims.read_claim(folder) is None
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert (delayed.function, delayed.args, delayed.kwargs) == (task, args, {})


def test_a_preempted_task_is_requeued_and_trains_its_run_from_the_start(tiny_study, tmp_path):
    tiny_study["data"].update(train_size=1200, image_size=16)
    tiny_study["train"]["epochs"] = 4
    sweep_dir, config, runs = sweep(tiny_study, tmp_path, [0])
    (job,) = submit_local(sweep_dir, config, runs).jobs
    folder = store.run_dir(sweep_dir, runs[0].run_id)
    deadline = time.monotonic() + 60
    while not history_started(folder) and time.monotonic() < deadline:
        time.sleep(0.01)
    owner = claims.read_claim(folder)
    assert owner is not None and history_started(folder), "the task should be mid-run"
    os.kill(owner.pid, signal.SIGUSR2)  # the signal of a preemption (or of the time limit)
    result = job.result()
    assert result["trained"] and result["status"] == "ok"
    assert history(sweep_dir, runs[0].run_id) == [1, 2, 3, 4]
    log = (job.stdout() or "") + (job.stderr() or "")
    assert "this job is preempted" in log and "Requeued job" in log


FAKE_SLURM = {
    "srun": "exit 0",
    "sbatch": 'cp "$1" "$(dirname "$0")/job.sh"; echo "Submitted batch job 4242"',
    "sacct": 'echo "JobID|State|NodeList"; cat "$(dirname "$0")/states"',
}


def test_slurm_gets_the_settings_and_a_rerun_skips_jobs_still_queued(
    tiny_study, tmp_path, monkeypatch
):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in FAKE_SLURM.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    sweep_dir, config, runs = sweep(tiny_study, tmp_path, [0, 1, 2])
    settings = cluster.SlurmSettings(
        partition="gpu", cpus_per_task=2, mem_gb=8, time_min=30, array_parallelism=2, qos="low"
    )
    first = cluster.submit(sweep_dir, config, runs, settings=settings)
    assert first.job_ids == ["4242"] and first.run_ids == [run.run_id for run in runs]
    script = (bin_dir / "job.sh").read_text()
    for flag in (
        "partition=gpu",
        "gpus-per-task=1",
        "cpus-per-task=2",
        "mem=8GB",
        "time=30",
        "array=0-2%2",
        "qos=low",
        "job-name=bnstudy-tiny",
    ):
        assert f"#SBATCH --{flag}\n" in script
    assert "gpus-per-node" not in script and "account" not in script
    (bin_dir / "states").write_text("4242_[0-1]|PENDING|\n4242_2|FAILED|node7\n")
    again = cluster.submit(sweep_dir, config, runs, settings=settings)
    assert again.run_ids == [runs[2].run_id]
    assert again.queued == {runs[0].run_id: "4242_0", runs[1].run_id: "4242_1"}
    (bin_dir / "states").write_text("")  # the scheduler forgot them
    assert len(cluster.submit(sweep_dir, config, runs, settings=settings).run_ids) == 3


def test_without_submitit_the_error_says_what_to_install(tiny_study, tmp_path, monkeypatch):
    sweep_dir, config, runs = sweep(tiny_study, tmp_path, [0])
    monkeypatch.setitem(sys.modules, "submitit", None)
    with pytest.raises(cluster.ClusterError, match=r"pip install 'bnstudy\[slurm\]'"):
        submit_local(sweep_dir, config, runs)
    assert not sweep_dir.exists()
