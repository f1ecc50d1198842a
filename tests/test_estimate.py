"""Tests for bnstudy.estimate: a sweep's optimizer steps and time before it runs."""

import math

import pytest
import torch

from bnstudy import estimate, store
from bnstudy.estimate import CellCost, Estimate
from bnstudy.sweep import plan

CPU = torch.device("cpu")


def test_steps_follow_the_budget_and_finished_runs_time_the_rest_of_their_cell(
    tiny_study, tmp_path
):
    tiny_study["sweep"] = {"train.batch_size": [4, 8], "seed": [0, 1]}
    _, runs = plan(tiny_study, "s.yaml")
    by_batch = {(r.config.train.batch_size, r.config.seed): r for r in runs}
    done = by_batch[8, 0]
    folder = store.start_run(tmp_path, done)
    result = {"status": "ok", "train": {"steps": 6, "train_seconds": 3.0}, "tests": []}
    result |= {"diagnostics": {}}
    store.finish_run(folder, result | {"provenance": {"seconds": 5.0}})
    todo = [r for r in runs if r is not done]
    cost = estimate.estimate(tmp_path, runs, todo, CPU, jobs=2, probe=False)
    assert cost.steps == 12 + 6 + 12  # 48 samples: 12 steps of 4 per epoch, 6 of 8
    seconds = {r.run_id: s for r, s in zip(todo, cost.run_seconds, strict=True)}
    assert seconds[by_batch[8, 1].run_id] == pytest.approx(2.0 + 0.5 * 6)  # fixed + per step
    assert all(math.isnan(seconds[by_batch[4, seed].run_id]) for seed in (0, 1))  # unknown
    assert cost.sources == {"finished": 1, "unknown": 2}
    assert cost.wall_seconds == pytest.approx(5.0)  # one timed run: the longest


def test_packed_and_resumed_runs_do_not_time_their_cell(tiny_study):
    _, [run] = plan(tiny_study, "s.yaml")
    alone = {"train": {"steps": 6, "train_seconds": 3.0}, "provenance": {"seconds": 5.0}}
    packed = {"train": {"steps": 6, "train_seconds": 24.0}, "provenance": {"seconds": 40.0}}
    packed["provenance"]["packed"] = 8  # the pack's times, not one run's
    resumed = {"train": {"steps": 6, "train_seconds": 9.0, "resumed_at_step": 3}}
    resumed["provenance"] = {"seconds": 4.0}  # this attempt only; training counts all
    costs = estimate.finished_costs([(run, alone), (run, packed), (run, resumed)])
    [cost] = costs.values()
    assert (cost.fixed, cost.per_step) == (2.0, 0.5)


def test_a_probe_times_each_cell_without_finished_runs_once(tiny_study, tmp_path, monkeypatch):
    tiny_study["sweep"] = {"model.norm": ["batch", "group"], "seed": [0, 1]}
    _, runs = plan(tiny_study, "s.yaml")
    probed = []
    real = estimate.probe_cost
    monkeypatch.setattr(
        estimate, "probe_cost", lambda run, *args: probed.append(run) or real(run, *args)
    )
    cost = estimate.estimate(tmp_path, runs, runs, CPU, jobs=1)
    assert len(probed) == 2 and cost.sources == {"probe": 4}
    assert all(0 < seconds < 60 for seconds in cost.run_seconds)
    assert not (tmp_path / "runs").exists()  # a probe keeps nothing


def test_the_wall_time_is_the_work_shared_among_workers_or_the_longest_run():
    shared = Estimate(steps=0, run_seconds=[10.0] * 4, jobs=2, sources={}, problems=[])
    longest = Estimate(steps=0, run_seconds=[30.0, 2.0], jobs=2, sources={}, problems=[])
    assert shared.wall_seconds == 20.0 and longest.wall_seconds == 30.0
    assert CellCost(2.0, 0.5, "probe").seconds(10) == 7.0
