import pandas as pd
from typer.testing import CliRunner

from bnstudy import __version__
from bnstudy.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and __version__ in result.output


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
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_invalid_override_is_reported_like_a_file_error(tiny_study, write_study, tmp_path):
    result = invoke("run", write_study(tiny_study), "train.epochs=-1", "--out", tmp_path)
    assert result.exit_code == 2 and "train.epochs" in result.stderr


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
    assert not (tmp_path / "tiny").exists()


def test_run_status_report_end_to_end(tiny_study, write_study, tmp_path):
    config = write_study(tiny_study)
    overrides = ["sweep.model.norm=[batch, group]", "sweep.seed=[0, 1]"]
    result = invoke("run", config, *overrides, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "tiny: 4 runs: 4 ok, 0 error, 0 diverged" in result.output
    table = pd.read_csv(tmp_path / "tiny" / "runs.csv")
    assert {"model.norm", "seed"} <= set(table.columns) and len(table) == 8

    status = invoke("status", tmp_path / "tiny")
    assert status.exit_code == 0 and "4 planned: 4 ok, 0 missing" in status.output

    more = invoke(
        "run", config, *overrides, "sweep.train.batch_size=[4, 8]", "--dry-run", "--out", tmp_path
    )
    assert "8 runs (4 to run)" in more.output  # batch size 8 is the default: those are done

    report = invoke("report", tmp_path / "tiny")
    assert report.exit_code == 0, report.output
    folder = tmp_path / "tiny" / "report"
    for name in ("summary.csv", "summary.md", "index.html", "accuracy_vs_batch_size.png"):
        assert (folder / name).stat().st_size > 0


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
    assert "noisy: 4 samples" in rows[0] and "noisy" in rows[-1]
    large = invoke("inspect", write_study(tiny_study), "--batch-size", "16")
    assert "fine" in [line for line in large.output.splitlines() if "layers." in line][0]


def test_inspect_validates_like_run(tiny_study, write_study):
    result = invoke("inspect", write_study(tiny_study), "model.norm=batchnorm")
    assert result.exit_code == 2 and "model.norm" in result.stderr
