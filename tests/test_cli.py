import os
import re
import subprocess
import sys

import pandas as pd
import pytest
from conftest import hold_claim, write_medmnist
from typer.testing import CliRunner

from bnstudy import __version__
from bnstudy.cli import app
from bnstudy.norm_catalog import display_label
from bnstudy.norms import NORMS
from bnstudy.results import TEST_MODES

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_the_command_line_and_the_report_load_without_torch():
    code = (
        "import sys, bnstudy.cli, bnstudy.overview, bnstudy.report; print('torch' in sys.modules)"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "False"


def test_help_offers_shell_completion_and_shows_flags_without_a_type():
    main = invoke("--help").output
    assert "--install-completion" in main and "--show-completion" in main
    run = invoke("run", "--help").output
    assert "--dry-run" in run and "<bool>" not in run and "<bool>" not in main


def test_invalid_config_exits_2_with_one_line_per_problem_and_writes_nothing(
    tiny_study, write_study, tmp_path
):
    tiny_study["train"]["batch_size"] = 0
    tiny_study["model"]["nrom"] = "batch"
    config = write_study(tiny_study)
    result = invoke("run", config, "--out", tmp_path / "out")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert all(line.startswith(f"error: {config}: ") for line in lines)
    assert any("model.nrom: unknown key (did you mean 'norm'?)" in line for line in lines)
    assert isinstance(result.exception, SystemExit)
    assert not (tmp_path / "out").exists()


def test_invalid_override_is_reported_naming_the_override(tiny_study, write_study, tmp_path):
    config = write_study(tiny_study)
    for command in (("run", config, "--out", tmp_path), ("inspect", config)):
        result = invoke(*command, "train.epochs=-1")
        assert result.exit_code == 2
        assert result.stderr.startswith("error: override 'train.epochs=-1': train.epochs: ")


def test_missing_config_file_exits_2(tmp_path):
    result = invoke("run", tmp_path / "nope.yaml")
    assert result.exit_code == 2 and "nope.yaml" in result.stderr


def test_bad_device_exits_2(tiny_study, write_study, tmp_path):
    result = invoke("run", write_study(tiny_study), "--device", "tpu", "--out", tmp_path)
    assert result.exit_code == 2 and "--device" in result.stderr


def test_dry_run_lists_the_expanded_runs_and_runs_nothing(tiny_study, write_study, tmp_path):
    config = write_study(tiny_study)
    result = invoke("run", config, "sweep.train.batch_size=[1,2,4]", "--dry-run", "--out", tmp_path)
    assert result.exit_code == 0
    assert "3 runs (3 to run)" in result.output
    assert "3 to run: 84 optimizer steps, about " in result.output  # 48 samples: 48+24+12
    assert "with 1 worker on cpu (runs timed: 3 by a probe)" in result.output
    assert not (tmp_path / "tiny").exists()
    failing = invoke("run", config, "train.lr=1e12", "--dry-run", "--out", tmp_path)
    assert "time unknown for 1 run: their probes failed (below)" in failing.output
    assert "  probe of " in failing.output and ": diverged: " in failing.output


def test_run_status_report_end_to_end(tiny_study, write_study, tmp_path):
    config = write_study(tiny_study)
    overrides = ["sweep.model.norm=[batch, group]", "sweep.seed=[0, 1]"]
    result = invoke("run", config, *overrides, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "tiny: 4 runs: 4 ok, 0 error, 0 diverged" in result.output
    table = pd.read_csv(tmp_path / "tiny" / "runs.csv")
    assert {"model.norm", "seed"} <= set(table.columns) and len(table) == 8

    status = invoke("status", tmp_path / "tiny")
    assert status.exit_code == 0 and "4 planned: 4 ok, 0 running, 0 missing" in status.output
    assert "runs.csv" not in status.output
    table.iloc[:6].to_csv(tmp_path / "tiny" / "runs.csv", index=False)  # a run's rows lost
    assert "runs.csv: its rows name 3 runs, not the 4 finished ones" in (
        invoke("status", tmp_path / "tiny").output
    )
    (tmp_path / "tiny" / "runs.csv").write_bytes(b"\x00\xff garbage\n")
    assert "runs.csv: " in invoke("status", tmp_path / "tiny").output

    more = invoke(
        "run",
        config,
        *overrides,
        "sweep.train.batch_size=[4, 8]",
        "--dry-run",
        "--no-probe",
        "--out",
        tmp_path,
    )
    assert "8 runs (4 to run)" in more.output  # batch size 8 is the default: those are done
    assert "4 to run: 48 optimizer steps; time unknown for 4 runs: no finished run" in more.output

    report = invoke("report", tmp_path / "tiny")
    assert report.exit_code == 0, report.output
    assert "runs.csv" not in invoke("status", tmp_path / "tiny").output  # rebuilt
    folder = tmp_path / "tiny" / "report"
    for name in ("summary.csv", "summary.md", "index.html", "accuracy_vs_batch_size.png"):
        assert (folder / name).stat().st_size > 0


def test_the_closing_summary_names_the_runs_another_process_still_trains(
    tiny_study, write_study, tmp_path
):
    from bnstudy import store
    from bnstudy.sweep import plan

    tiny_study["sweep"] = {"seed": [0, 1, 2]}
    _, runs = plan(tiny_study, "s.yaml")
    holder = hold_claim(store.run_dir(tmp_path / "tiny", runs[0].run_id))  # training runs[0]
    try:
        result = invoke("run", write_study(tiny_study), "--out", tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 0, result.output
    assert "tiny: 3 runs: 2 ok" in result.output
    assert (
        f"1 not finished: 1 still training in another process (1 by {store.HOST} pid "
        f"{holder.pid}), 0 not trained" in result.output
    )


def test_report_of_two_sweeps_compares_them(tiny_study, write_study, tmp_path):
    config = write_study(tiny_study)
    for root, norm in (("a", "batch"), ("b", "group")):
        invoke("run", config, f"model.norm={norm}", "sweep.seed=[0, 1]", "--out", tmp_path / root)
    sweeps = [tmp_path / "a" / "tiny", tmp_path / "b" / "tiny"]
    compared = invoke("report", *sweeps)
    assert compared.exit_code == 0, compared.output
    assert compared.stdout.strip() == f"report: {tmp_path / 'comparison' / 'index.html'}"
    assert (tmp_path / "comparison" / "accuracy_vs_batch_size.png").stat().st_size > 0
    alone = invoke("report", sweeps[0], tmp_path / "nowhere")
    assert alone.exit_code == 2 and "nowhere is not a sweep folder" in alone.stderr
    one = invoke("report", sweeps[0], "--out", tmp_path / "elsewhere")
    assert one.exit_code == 2 and "--out is for a comparison" in one.stderr
    assert not (tmp_path / "elsewhere").exists() and not (sweeps[0] / "report").exists()
    (sweeps[0] / "report").write_text("")  # a file where the report's folder goes: unwritable
    blocked = invoke("report", sweeps[0])
    assert blocked.exit_code == 2 and len(blocked.stderr.strip().splitlines()) == 1
    assert f"{sweeps[0] / 'report'}: " in blocked.stderr and "rerun" in blocked.stderr


def test_run_and_status_list_each_failed_run_with_its_swept_values_and_one_line_error(
    tiny_study, write_study, tmp_path
):
    tiny_study["data"]["image_size"] = 2  # a 1x1 map: BN at batch size 1 raises in training
    result = invoke(
        "run",
        write_study(tiny_study),
        "sweep.train.batch_size=[1,2]",
        "--out",
        tmp_path,
        "--devices",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("tiny: 2 runs: 1 ok, 1 error, 0 diverged")
    assert (
        lines[1].startswith("  error ") and "train.batch_size=1: ValueError: Expected" in lines[1]
    )
    assert lines[2] == f"see the results: bnstudy report {tmp_path / 'tiny'}"
    assert "tiny: 2 of 2 runs to run, 1 at a time on cpu" in result.stderr
    [done] = [line for line in result.stderr.splitlines() if "batch_size=2: ok: " in line]
    assert re.search(
        r"ok: eval \d+\.\d%, train \d+\.\d% \[\d+/\d+ runs, eta \d+:\d\d:\d\d\]$", done
    )
    status = invoke("status", tmp_path / "tiny").output.splitlines()
    assert status[0].endswith("2 planned: 1 error, 1 ok, 0 running, 0 missing")
    [line] = [line for line in status if line.startswith("  error ")]
    assert "train.batch_size=1: ValueError: Expected more than 1 value per channel" in line
    assert line.endswith("(train epoch 1 step 1 (batch of 1))")
    assert status[-1] == f"report: not written yet (bnstudy report {tmp_path / 'tiny'})"
    invoke("report", tmp_path / "tiny")
    fresh = invoke("status", tmp_path / "tiny").output.splitlines()[-1]
    assert fresh.startswith("report: ") and fresh.endswith("index.html is up to date")
    result_file = next((tmp_path / "tiny" / "runs").glob("*/result.json"))
    later = result_file.stat().st_mtime + 10
    os.utime(result_file, (later, later))  # a run finished after the report was written
    stale = invoke("status", tmp_path / "tiny").output.splitlines()[-1]
    rerun = f"(bnstudy report {tmp_path / 'tiny'})"
    assert stale.endswith(f"index.html is stale: 1 newer result {rerun}")


def test_status_of_a_folder_that_is_not_a_sweep_exits_2(tmp_path):
    result = invoke("status", tmp_path)
    assert result.exit_code == 2 and "not a sweep folder" in result.stderr


def test_inspect_reports_each_norm_layer_with_a_verdict(tiny_study, write_study):
    tiny_study["model"].update(name="zeros_net", widths=[4, 8])
    tiny_study["data"]["image_size"] = 32
    result = invoke("inspect", write_study(tiny_study), "--batch-size", "1")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "layers." in line]
    assert len(rows) == 3
    # 196 values per channel, but of one image: "fine" by values would hide the eval collapse
    assert "1×4×14×14" in rows[0] and "196" in rows[0] and "per-sample" in rows[0]
    assert "25" in rows[1] and "per-sample" in rows[1]
    assert "1×10×1×1" in rows[2] and "N,H,W" in rows[2] and "degenerate" in rows[2]
    wider = invoke("inspect", write_study(tiny_study), "--batch-size", "4")
    rows = [line for line in wider.output.splitlines() if "layers." in line]
    assert "small (4 images)" in rows[0] and "small (4 images)" in rows[-1]
    large = invoke("inspect", write_study(tiny_study), "--batch-size", "16")
    assert "fine" in [line for line in large.output.splitlines() if "layers." in line][0]


def test_inspect_follows_the_sweep_with_one_verdict_per_norm_and_batch(tiny_study, write_study):
    sweep = {"model.norm": ["batch", "group"], "train.norm_batch_size": [1, 2, 8], "seed": [0, 1]}
    result = invoke("inspect", write_study(tiny_study | {"sweep": sweep}))
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith(("│ batch", "│ group"))]
    assert len(rows) == 4  # BN at 1, 2 and 8 images; GroupNorm once (no batch statistic)
    assert "per-sample" in rows[0] and "few images (2)" in rows[1] and "fine: from 8" in rows[2]
    assert "(unused)" in rows[3] and "fine: per-sample statistics" in rows[3]
    assert "model.norm=<norm> --batch-size <images>" in result.output


def test_inspect_validates_like_run(tiny_study, write_study):
    result = invoke("inspect", write_study(tiny_study), "model.norm=batchnorm")
    assert result.exit_code == 2 and "model.norm" in result.stderr


def test_every_registered_norm_runs_and_is_inspected_and_reported(
    tiny_study, write_study, tmp_path
):
    tiny_study["model"] |= {
        name: {"groups": 2} for name, spec in NORMS.items() if "groups" in spec.options.model_fields
    }
    tiny_study["eval"]["test_modes"] = list(TEST_MODES)
    config = write_study(tiny_study)
    # a frozen BN needs a trained BN to start from: tests/test_finetune.py runs it
    trainable = [name for name, spec in NORMS.items() if not spec.loads_state_of]
    for name in trainable:
        inspected = invoke("inspect", config, f"model.norm={name}")
        assert inspected.exit_code == 0, inspected.output
        rows = [line for line in inspected.output.splitlines() if "features." in line]
        assert len(rows) == (0 if name == "none" else 2), (name, inspected.output)
    result = invoke("run", config, f"sweep.model.norm=[{', '.join(trainable)}]", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert f"{len(trainable)} ok, 0 error" in result.output
    assert invoke("report", tmp_path / "tiny").exit_code == 0
    findings = (tmp_path / "tiny" / "report" / "findings.md").read_text()
    recovery = findings.split("## Recovery")[1].split("\n## ")[0]
    for name in trainable:
        if name != "batch":
            assert f"- {display_label(name)} @ " in recovery, name
    page = (tmp_path / "tiny" / "report" / "index.html").read_text()
    assert all(f'src="{png}"' in page for png in ("recovery.png", "accuracy_vs_batch_size.png"))


def test_the_shipped_small_batch_fixes_study_runs_as_a_small_preset(tmp_path):
    overrides = [
        "data.train_size=64",
        "data.test_size=32",
        "data.image_size=8",
        "train.epochs=1",
        "eval.precise_samples=64",
        "sweep.seed=[0, 1]",
        "sweep.train.norm_batch_size=[1, 32]",
    ]
    result = invoke("run", "configs/small-batch-fixes.yaml", *overrides, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "22 runs: 22 ok" in result.output
    assert invoke("report", tmp_path / "small-batch-fixes").exit_code == 0
    report = tmp_path / "small-batch-fixes" / "report"
    findings = (report / "findings.md").read_text()
    assert "Batch Renorm @ norm batch 1: falls short of BatchNorm @ norm batch 32" in findings
    assert "FRN + TLU @ any norm batch: falls short of BatchNorm @ norm batch 32" in findings
    assert (report / "recovery.png").stat().st_size > 0


def test_norms_lists_every_registered_norm_with_its_options():
    result = invoke("norms")
    assert result.exit_code == 0, result.output
    for name in NORMS:
        assert f"│ {name} " in result.output, name
    assert "r_max=3.0" in result.output and "fuses its activation" in result.output


def test_malformed_file_data_is_one_line_and_exit_2_before_any_run(
    tiny_study, write_study, tmp_path
):
    import numpy as np

    x = np.random.default_rng(0).normal(size=(12, 8, 8, 3))  # channels-last
    y = np.arange(12) % 3
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    tiny_study["data"] = {"name": "npz", "root": str(tmp_path / "d.npz")}
    tiny_study["eval"]["batch_size"] = 6
    config = write_study(tiny_study)
    result = invoke("run", config, "--out", tmp_path / "out")
    assert result.exit_code == 2
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert "data: " in line and "(12, 8, 8, 3), which looks channels-last" in line
    assert not (tmp_path / "out").exists()
    declared = invoke("run", config, "data.layout=channels_last", "--out", tmp_path / "out")
    assert declared.exit_code == 0, declared.output
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y)  # no test split
    missing = invoke("run", config, "data.layout=channels_last", "--out", tmp_path / "out")
    assert missing.exit_code == 2 and "lacks arrays x_test, y_test" in missing.stderr


@pytest.mark.parametrize(
    "model",
    [
        {"name": "examples.custom_model:build"},
        {"name": "torchvision:resnet18"},
        {"name": "torchvision:shufflenet_v2_x0_5", "replace_norms": True},
    ],
    ids=["user factory", "torchvision norm_layer", "torchvision replaced norms"],
)
def test_a_user_or_torchvision_model_runs_a_sweep_and_is_inspected(
    model, tiny_study, write_study, tmp_path
):
    tiny_study["model"] = {**model, "group": {"groups": 4}}
    tiny_study["data"]["image_size"] = 16
    config = write_study(tiny_study)
    inspected = invoke("inspect", config, "model.norm=group")
    assert inspected.exit_code == 0 and "GroupNorm" in inspected.output, inspected.output
    result = invoke("run", config, "sweep.model.norm=[batch, group]", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "2 runs: 2 ok" in result.output
    table = pd.read_csv(tmp_path / "tiny" / "runs.csv")
    assert set(table["model"]) == {model["name"]} and set(table["status"]) == {"ok"}


def _broken_medmnist(root):
    write_medmnist(root / "organmnist3d.npz", drop=("test_labels",))
    return {
        "name": "medmnist3d",
        "root": str(root / "organmnist3d.npz"),
    }, "lacks arrays test_labels"


def _empty_image_folder(root):
    (root / "train" / "cat").mkdir(parents=True)
    (root / "test" / "cat").mkdir(parents=True)
    return {"name": "imagefolder", "root": str(root), "image_size": 8}, "Found no valid file"


def _missing_cifar(root):
    return {"name": "cifar10", "root": str(root)}, "cifar-10-batches-py"


@pytest.mark.parametrize("broken", [_broken_medmnist, _empty_image_folder, _missing_cifar])
def test_malformed_real_format_data_is_one_line_and_exit_2(
    broken, tiny_study, write_study, tmp_path
):
    (tmp_path / "data").mkdir()
    tiny_study["data"], expected = broken(tmp_path / "data")
    result = invoke("run", write_study(tiny_study), "--out", tmp_path / "out")
    assert result.exit_code == 2
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert "data: " in line and expected in line, line
    assert not (tmp_path / "out").exists()


def test_the_shipped_organmnist3d_study_runs_as_a_small_preset_on_a_file_of_its_format(tmp_path):
    write_medmnist(tmp_path / "organmnist3d.npz", counts=(32, 16))  # test split >= 16: train
    overrides = [  # mode tests batches of the statistics batch
        f"data.root={tmp_path / 'organmnist3d.npz'}",
        "train.epochs=1",
        "eval.batch_size=16",
        "eval.precise_samples=32",
        "sweep.seed=[0]",
        "sweep.train.norm_batch_size=[1, 16]",
    ]
    result = invoke("run", "configs/organmnist3d-bs1.yaml", *overrides, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "4 runs: 4 ok" in result.output
    table = pd.read_csv(tmp_path / "organmnist3d-bs1" / "runs.csv")
    assert set(table["test_mode"]) == {"eval", "train", "precise"}


def test_the_shipped_cifar10_study_runs_as_a_small_preset_on_files_of_its_format(
    tmp_path, write_cifar
):
    write_cifar(tmp_path, counts=(8,) * 5, test_count=10)
    overrides = [
        f"data.root={tmp_path}",
        "train.epochs=1",
        "train.batch_size=8",
        "eval.precise_samples=40",
        "sweep.seed=[0]",
        "sweep.train.norm_batch_size=[2, 8]",
    ]
    result = invoke("run", "configs/cifar10-nbs.yaml", *overrides, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "5 runs: 5 ok" in result.output


def test_environment_errors_are_one_line_and_exit_2(tiny_study, write_study, tmp_path, monkeypatch):
    import errno

    from bnstudy import store

    config = write_study(tiny_study)
    (tmp_path / "a-file").write_text("")
    as_file = invoke("run", config, "--out", tmp_path / "a-file")
    assert as_file.exit_code == 2 and len(as_file.stderr.strip().splitlines()) == 1
    assert "a-file" in as_file.stderr and isinstance(as_file.exception, SystemExit)

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(store, "write_atomic", full)
    disk_full = invoke("run", config, "--out", tmp_path / "out")
    [line] = disk_full.stderr.strip().splitlines()
    assert disk_full.exit_code == 2 and "No space left on device" in line
    assert "rerun the same command" in line

    long_name = invoke("run", config, f"name={'n' * 300}", "--out", tmp_path / "out")
    assert long_name.exit_code == 2 and "name: String should have at most 100" in long_name.stderr


def test_executor_submitit_local_submits_the_missing_runs_and_a_rerun_submits_nothing(
    tiny_study, write_study, tmp_path, monkeypatch
):
    import time

    pytest.importorskip("submitit")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the local executor starts every job at once
    tiny_study["sweep"] = {"seed": [0, 1]}
    config, out = write_study(tiny_study), tmp_path / "out"
    args = ("run", config, "--out", out, "--executor", "submitit-local", "--devices", "cpu")
    first = invoke(*args, "--slurm-gpus-per-task", "0", "--slurm-time", "15")
    assert first.exit_code == 0, first.output
    assert "tiny: submitted 2 runs as local jobs" in first.stdout
    assert "left out: 0 finished" in first.stdout and "bnstudy status" in first.stdout
    deadline = time.monotonic() + 120
    while len(list(out.glob("tiny/runs/*/result.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)  # the jobs end after writing
    again = invoke(*args)
    assert again.exit_code == 0 and "tiny: nothing to submit: 2 finished" in again.stdout


def test_executor_slurm_without_slurm_is_one_line(tiny_study, write_study, tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun
    result = invoke("run", write_study(tiny_study), "--out", tmp_path, "--executor", "slurm")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: SLURM not found (no srun on PATH): submit from a SLURM login node"
    )


def test_status_tells_runs_in_flight_from_missing_ones(tiny_study, tmp_path):
    import os

    from bnstudy import claims, store
    from bnstudy.sweep import plan, plan_record

    tiny_study["sweep"] = {"seed": [0, 1]}
    study, runs = plan(tiny_study, "s.yaml")
    sweep_dir = tmp_path / "tiny"
    store.write_plan(sweep_dir, study, plan_record(runs))
    claims.try_claim(store.run_dir(sweep_dir, runs[0].run_id), device="cuda:1")
    lines = invoke("status", sweep_dir).output.splitlines()
    assert lines[0].endswith("2 planned: 1 running, 1 missing")
    assert lines[1].startswith(f"  running {runs[0].run_id} seed=0 (by {claims.HOST} pid")
    assert f"pid {os.getpid()} on cuda:1, heartbeat 0 s ago)" in lines[1]
    assert lines[2] == f"  missing {runs[1].run_id} seed=1"


def test_at_80_columns_norms_inspect_and_the_plan_cut_nothing(
    monkeypatch, tiny_study, write_study, tmp_path
):
    from rich.console import Console

    from bnstudy import cli

    narrow = Console(width=80, soft_wrap=True, highlight=False, markup=False)
    monkeypatch.setattr(cli, "out", narrow)
    config = write_study(tiny_study | {"sweep": {"train.norm_batch_size": [1, 2, 4]}})
    listed = invoke("norms")
    inspected = invoke("inspect", config, "model.norm=batch_renorm", "--batch-size", "1")
    planned = invoke("run", config, "--dry-run", "--no-probe", "--out", tmp_path)
    for result in (listed, inspected, planned):
        assert result.exit_code == 0, result.output
        assert "…" not in result.output
    for name, spec in NORMS.items():
        assert f"norm {name}" in listed.output
        assert all(f"{option}=" in listed.output for option in spec.options.model_fields)
    assert "momentum_convention=torch" in listed.output
    assert "per-sample" in inspected.output and "3 runs (3 to run)" in planned.output
    for command in ("run", "evaluate"):
        helped = runner.invoke(app, [command, "--help"], env={"COLUMNS": "80"})
        assert helped.exit_code == 0 and "…" not in helped.output
    assert "--slurm-array-parallelism" in helped.output or "--jobs" in helped.output
