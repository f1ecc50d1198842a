"""What `bnstudy run` says about an invalid study: every problem at once, each naming the file
or the command-line override it comes from, on one line each."""

from typer.testing import CliRunner

from bnstudy.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_every_mistake_of_a_study_and_its_sweep_is_reported_in_one_run(
    tiny_study, write_study, tmp_path
):
    tiny_study["data"]["name"] = "synthetic2e"
    tiny_study["model"]["nrom"] = "batch"
    tiny_study["train"]["epochs"] = -1
    tiny_study["sweep"] = {"train.batchsize": [1, 2], "train.lr": [0.1, -0.5]}
    config = write_study(tiny_study)
    result = invoke("run", config, "--out", tmp_path / "out")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    expected = [
        f"error: {config}: data.name: unknown data set 'synthetic2e' (did you mean 'synthetic2d'?)",
        f"error: {config}: model.nrom: unknown key (did you mean 'norm'?)",
        f"error: {config}: train.epochs: Input should be greater than or equal to 1 (got -1)",
        f"error: {config}: sweep.train.batchsize: not a config key (did you mean 'batch_size'?)",
        f"error: {config}: sweep.train.lr: Input should be greater than 0 (got -0.5) (value -0.5)",
    ]
    assert len(lines) == len(expected)
    assert all(line.startswith(start) for line, start in zip(lines, expected, strict=True))
    assert not (tmp_path / "out").exists()


def test_an_overrides_problem_names_the_override_beside_the_files_problems(
    tiny_study, write_study, tmp_path
):
    tiny_study["model"]["nrom"] = "batch"
    config = write_study(tiny_study)
    overrides = ["train.epochs=-1", "modle.norm=group", "sweep.train.batch_size=[8, 64]"]
    result = invoke("run", config, *overrides, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {config}: model.nrom: unknown key (did you mean 'norm'?)",
        "error: override 'train.epochs=-1': train.epochs: Input should be greater than or "
        "equal to 1 (got -1)",
        "error: override 'modle.norm=group': modle: unknown key (did you mean 'model'?)",
    ]
    del tiny_study["model"]["nrom"]  # the runs are now valid configs: their data is checked
    fixed = invoke("run", write_study(tiny_study), overrides[-1], "--out", tmp_path / "out")
    assert fixed.exit_code == 2 and not (tmp_path / "out").exists()
    assert fixed.stderr.startswith(
        "error: override 'sweep.train.batch_size=[8, 64]': sweep.train.batch_size: 64 is larger "
        "than the training split (48 samples)"
    )


def test_an_override_whose_value_is_not_yaml_is_one_line_naming_it(tiny_study, write_study):
    result = invoke("run", write_study(tiny_study), "sweep.seed=[0, 1", "--dry-run")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: override 'sweep.seed=[0, 1': sweep.seed: YAML syntax error at line 1, column 6 "
        "of the value: expected ',' or ']', but got '<stream end>' (while parsing a flow "
        "sequence from line 1, column 1)"
    )


def test_a_yaml_syntax_error_is_one_line_with_its_line_and_column(tmp_path):
    config = tmp_path / "study.yaml"
    config.write_text("name: tiny\ntrain:\n  epochs: 2\n\tlr: 0.1\n")
    result = invoke("run", config, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {config}:4:1: YAML syntax error: found character '\\t' that cannot start any token"
    )
    assert "<unicode string>" not in result.output
