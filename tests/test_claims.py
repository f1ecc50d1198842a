"""Tests for bnstudy.claims: one owner per run, stale claims taken over, heartbeats."""

import json
import os
import subprocess
import sys
import time

from bnstudy import claims


def _claim_by(folder, host, pid, age=0.0):
    """A claim file as another process would have written it, ``age`` seconds silent."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / claims.CLAIM
    path.write_text(json.dumps({"host": host, "pid": pid, "started": time.time() - age}))
    os.utime(path, (time.time() - age, time.time() - age))


def _dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_one_process_gets_the_claim_and_the_claim_says_who(tmp_path):
    assert claims.try_claim(tmp_path / "run", device="cuda:1")
    claim = claims.read_claim(tmp_path / "run")
    assert (claim.host, claim.pid, claim.device) == (claims.HOST, os.getpid(), "cuda:1")
    assert claim.describe() == f"{claims.HOST} pid {os.getpid()} on cuda:1, heartbeat 0 s ago"
    assert not claims.try_claim(tmp_path / "run")  # held, by this very process even
    assert [p.name for p in (tmp_path / "run").iterdir()] == [claims.CLAIM]  # no leftovers


def test_a_live_owners_claim_is_respected_on_this_host_and_elsewhere(tmp_path):
    _claim_by(tmp_path / "here", claims.HOST, os.getppid())
    _claim_by(tmp_path / "there", "other-node", 12345, age=claims.LEASE_SECONDS / 2)
    assert not claims.try_claim(tmp_path / "here")
    assert not claims.try_claim(tmp_path / "there")


def test_a_dead_owners_claim_is_taken_over_and_kept_as_evidence(tmp_path):
    _claim_by(tmp_path / "run", claims.HOST, _dead_pid())
    assert claims.try_claim(tmp_path / "run")
    assert claims.read_claim(tmp_path / "run").pid == os.getpid()
    assert len(list((tmp_path / "run").glob(f"{claims.CLAIM}.stale-*"))) == 1


def test_a_claim_silent_beyond_the_lease_is_taken_over_from_any_host(tmp_path):
    _claim_by(tmp_path / "run", "other-node", 12345, age=100)
    assert not claims.try_claim(tmp_path / "run", lease=200)
    assert claims.try_claim(tmp_path / "run", lease=50)


def test_a_damaged_claim_is_nobodys(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / claims.CLAIM).write_text("{trunc")
    assert claims.is_stale(claims.read_claim(tmp_path / "run"))
    assert claims.try_claim(tmp_path / "run")


def test_release_drops_only_this_processs_claim(tmp_path):
    _claim_by(tmp_path / "theirs", claims.HOST, os.getppid())
    claims.release(tmp_path / "theirs")
    assert claims.read_claim(tmp_path / "theirs") is not None
    claims.try_claim(tmp_path / "mine")
    claims.release(tmp_path / "mine")
    assert claims.read_claim(tmp_path / "mine") is None


def test_the_heartbeat_keeps_a_long_run_from_looking_stale(tmp_path):
    folder = tmp_path / "run"
    claims.try_claim(folder)
    old = time.time() - 1000
    os.utime(folder / claims.CLAIM, (old, old))
    with claims.heartbeat(folder, lease=0.06):  # a beat every 0.02 s
        time.sleep(0.2)
    assert claims.read_claim(folder).heartbeat_age < 5


def test_concurrent_claimers_get_one_winner(tmp_path):
    code = (
        "import sys, time; from pathlib import Path; from bnstudy import claims;"
        "print(claims.try_claim(Path(sys.argv[1])), flush=True); time.sleep(2)"
    )  # the winner stays alive while the others try: its claim is live for all of them
    for trial in range(3):
        folder = tmp_path / f"run{trial}"
        _claim_by(folder, claims.HOST, _dead_pid())  # all of them race to take it over
        processes = [
            subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE)
            for _ in range(4)
        ]
        wins = [p.communicate()[0].strip() for p in processes].count(b"True")
        assert wins == 1, trial


def test_a_requeued_slurm_job_takes_over_the_claim_of_its_own_earlier_attempt(
    tmp_path, monkeypatch
):
    folder = tmp_path / "run"
    folder.mkdir()
    earlier = {"host": "node-7", "pid": 4242, "started": time.time(), "job": "900_3"}
    (folder / claims.CLAIM).write_text(json.dumps(earlier))
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "900")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")  # another task of the array: hands off
    assert not claims.try_claim(folder)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")  # the same task, requeued on another node
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert claims.try_claim(folder)
    claim = claims.read_claim(folder)
    assert (claim.job, claim.restart) == ("900_3", 1)
    assert "(SLURM job 900_3)" in claim.describe()


def test_processes_of_one_slurm_job_attempt_respect_each_others_claims(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    folder = tmp_path / "run"
    folder.mkdir()
    sibling = {"host": "node-7", "pid": 4242, "started": time.time(), "job": "77"}
    (folder / claims.CLAIM).write_text(json.dumps(sibling))  # srun -n2: the other task
    assert not claims.try_claim(folder)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")  # as SLURM may set it on a first attempt
    assert not claims.try_claim(folder)
    assert claims.live_claim(folder).pid == 4242


def test_a_claimer_killed_before_linking_leaves_a_file_the_next_sweep_removes(tmp_path):
    from bnstudy import store

    code = (
        "import os, sys; from pathlib import Path; from bnstudy import claims;"
        "os.link = lambda *a: os._exit(0); claims.try_claim(Path(sys.argv[1]))"
    )  # dies between writing its file and linking it, as if killed
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "runs" / "abc")], check=True)
    assert len(list(tmp_path.rglob(".*"))) == 1
    store.remove_partial_writes(tmp_path)
    assert list(tmp_path.rglob(".*")) == []
