"""Tests for bnstudy.workers: per-slot environments, staggered starts, crashes."""

import os
import signal
import time

import pytest

from bnstudy.workers import WorkerPool


def environment_and_clock(name):
    """What a worker reports: its value of ``name`` and when it began the job."""
    return os.environ.get(name), time.time()


def die_on(value):
    if value == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    return value


def fail():
    raise OSError(28, "No space left on device")


def test_each_worker_gets_its_slots_environment_and_the_starts_are_staggered():
    environments = [{"BNSTUDY_SLOT": "a"}, {"BNSTUDY_SLOT": "b"}]
    pool = WorkerPool(environment_and_clock, 1, environments, stagger=3.0)
    done = [value for _, value, _ in pool.map([(i, ("BNSTUDY_SLOT",)) for i in range(2)])]
    pool.close()
    started = dict(done)
    assert sorted(started) == ["a", "b"]
    assert started["b"] - started["a"] > 1.5  # less than 3: a busy machine imports unevenly


def test_a_dead_worker_is_reported_with_its_signal_and_replaced_in_its_slot():
    pool = WorkerPool(die_on, 1, [{}, {}])
    jobs = [(value, (value,)) for value in ["x", "die", "y", "z", "w"]]
    seen = {key: (value, exitcode) for key, value, exitcode in pool.map(jobs)}
    pool.close()
    assert seen["die"] == (None, -signal.SIGKILL)
    assert {key: value for key, (value, _) in seen.items() if key != "die"} == {
        key: key for key in "xyzw"
    }


def test_an_exception_in_a_worker_is_raised_in_the_parent_and_stop_ends_the_workers():
    pool = WorkerPool(fail, 1, [{}])
    with pytest.raises(OSError, match="No space left"):
        list(pool.map([("job", ())]))
    [process] = pool.workers
    [(key, pid)] = pool.stop()
    assert (key, pid) == ("job", process.pid) and not process.is_alive()


def test_a_worker_that_dies_idle_does_not_fail_close():
    pool = WorkerPool(os.getpid, 1, [{}, {}])
    for _, pid, _ in pool.map([(i, ()) for i in range(2)]):
        os.kill(pid, signal.SIGKILL)  # done with its job, no job left for it
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # dead, not reaped
    pool.close()


def pid_after(seconds):
    time.sleep(seconds)
    return os.getpid()


def test_a_worker_with_no_job_left_exits_while_the_others_work():
    pool = WorkerPool(pid_after, 1, [{}, {}])
    try:
        _, quick, _ = next(pool.map([("quick", (0,)), ("slow", (60,))]))
        deadline = time.monotonic() + 30
        while os.waitid(os.P_PID, quick, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            assert time.monotonic() < deadline, "the idle worker should have exited"
            time.sleep(0.05)
    finally:
        pool.stop()
