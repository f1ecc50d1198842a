"""oom flows downstream as diverged does (table, summary, failures, counts), and the report
lists the environments a study ran in."""

import json

import pandas as pd
import pytest
from test_report import make_runs, write_runs

from bnstudy import report, store
from bnstudy.report import design, runs_table
from bnstudy.results import counts_text


def test_counts_name_oom_and_other_outcomes_only_when_present():
    assert counts_text({"ok": 3}) == "3 ok, 0 error, 0 diverged"
    counts = pd.Series({"ok": 2, "crashed": 1, "oom": 1, "error": 0})
    assert counts_text(counts) == "2 ok, 0 error, 0 diverged, 1 oom, 1 crashed"


def with_oom(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with group norm at batch 16, seed 0, out of memory in training."""
    hit = runs["norm"].eq("group") & runs["batch_size"].eq(16) & runs["seed"].eq(0)
    runs = runs.copy()
    runs.loc[hit, ["status", "error", "error_at"]] = [
        "oom",
        "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
        "train epoch 1 step 1 (batch of 16)",
    ]
    runs.loc[hit, ["test_acc", "test_loss"]] = float("nan")
    return runs


def loaded(tmp_path, runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` written as a sweep's runs.csv and read back as the report reads it."""
    return report.load_runs(write_runs(tmp_path / "demo", runs) / store.TABLE)


def test_oom_runs_are_counted_listed_and_left_out_of_the_means(tmp_path):
    runs = loaded(tmp_path, with_oom(make_runs()))
    assert "1 oom" in runs_table.counts_line(runs)
    summary = report.summarize(runs)
    at_16 = summary["norm"].eq("group") & summary["batch_size"].eq(16)
    cell = summary[at_16 & summary["test_batch"].eq("eval")].iloc[0]
    assert (cell["n"], cell["n_oom"], cell["n_error"]) == (0, 1, 0)
    assert "n_oom" in report.format_summary(summary).columns
    failures = report.failure_table(runs)
    oom = failures[failures["status"].eq("oom")]
    assert list(oom["error_at"]) == ["train epoch 1 step 1 (batch of 16)"]
    page = (report.write_report(tmp_path / "demo") / "index.html").read_text()
    assert "1 oom" in page and "CUDA out of memory" in page


def test_a_study_without_oom_shows_no_oom_column(tmp_path):
    summary = report.summarize(loaded(tmp_path, make_runs()))
    assert summary["n_oom"].eq(0).all()
    assert "n_oom" not in report.format_summary(summary).columns


def test_environments_are_listed_with_their_run_counts():
    runs = make_runs()
    assert design.environments(runs) == []
    gpu = runs["seed"].eq(0)
    runs = runs.assign(
        device_name="AMD EPYC 7B13, no AVX-512",
        torch="2.14.1+cu130",
        device="cpu",
        cuda="13.0",
        cpu_capability="AVX2",
        precision="fp32",
    )
    runs.loc[gpu, ["device_name", "device", "precision"]] = [
        "NVIDIA H100 80GB HBM3",
        "cuda:0",
        "bf16",
    ]
    per_seed = runs.drop_duplicates("run_id")["seed"].value_counts()
    assert design.environments(runs) == [
        ("NVIDIA H100 80GB HBM3 (torch 2.14.1+cu130, CUDA 13.0, bf16)", per_seed[0]),
        ("AMD EPYC 7B13, no AVX-512 (torch 2.14.1+cu130, AVX2 kernels, fp32)", per_seed[1]),
    ]


def test_an_old_table_lists_device_and_torch_only():
    runs = make_runs().assign(device_name="AMD EPYC, no AVX-512", torch="2.11.0")
    count = runs["run_id"].nunique()
    assert design.environments(runs) == [("AMD EPYC, no AVX-512 (torch 2.11.0)", count)]


@pytest.mark.parametrize("recorded", [True, False])
def test_table_columns_come_from_provenance_and_old_results_leave_them_empty(tmp_path, recorded):
    provenance = {"device_name": "cpu model", "torch": "2.14.1"}
    if recorded:
        provenance |= {
            "device": "cpu",
            "cuda": "13.0",
            "cpu_capability": "AVX2",
            "precision": "bf16",
            "channels_last": True,
            "deterministic": False,
            "bnstudy_commit": "0" * 40 + "+dirty",
            "peak_memory_mib": 512.0,
        }
    run_id = "abc"
    folder = tmp_path / "runs" / run_id
    folder.mkdir(parents=True)
    config = {
        "name": "s",
        "seed": 0,
        "data": {"name": "synthetic2d"},
        "model": {"name": "cnn", "norm": "batch"},
        "train": {"batch_size": 8},
    }
    (folder / store.CONFIG).write_text(json.dumps(config))
    result = {"status": "ok", "train": {"lr": 0.1}, "diagnostics": {}, "tests": [{"status": "ok"}]}
    (folder / store.RESULT).write_text(json.dumps(result | {"provenance": provenance}))
    [row] = store.run_rows(tmp_path, {"run_id": run_id, "swept": {}})
    for key in store.PROVENANCE_COLUMNS:
        assert row[key] == provenance.get(key)


def test_runs_csv_has_the_declared_columns_in_order_then_the_swept_keys():
    from pathlib import Path

    from bnstudy.results import COLUMNS

    example = Path(__file__).parents[1] / "results/example/quickstart"
    header = pd.read_csv(example / store.TABLE, nrows=0).columns.tolist()
    swept = json.loads((example / store.PLAN).read_text())["swept_keys"]
    assert header == list(COLUMNS) + [key for key in swept if key not in COLUMNS]
    for column in COLUMNS.values():
        assert column.dtype in {"str", "int", "float", "bool"} and column.meaning
        assert (column.key is not None) == (column.part in {"config", "result"})


def test_a_declared_config_column_is_read_from_every_run(tmp_path, monkeypatch):
    """Adding a column is one entry in bnstudy.results: the table reads it at its key."""
    from bnstudy import results

    columns = dict(results.COLUMNS)
    columns["weight_decay"] = results.Column(
        "weight_decay", "float", "L2 penalty", "config", "train.weight_decay"
    )
    monkeypatch.setattr(store, "COLUMNS", columns)
    model = {"name": "cnn", "norm": "group"}
    config = {"name": "s", "seed": 0, "data": {"name": "d"}, "model": model}
    config["train"] = {"batch_size": 8}
    result = {"train": {}, "provenance": {}}
    row = store.run_fields(
        "abc", config | {"train": {"batch_size": 8, "weight_decay": 5e-4}}, result
    )
    assert row["weight_decay"] == 5e-4 and row["norm_batch_size"] is None
    assert store.run_fields("abc", config, result)["weight_decay"] is None  # an older run
