"""``bnstudy evaluate`` (bnstudy.evaluate_saved): finished runs tested again from model.pt."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from bnstudy import store, study
from bnstudy.cli import app
from bnstudy.config import ConfigError
from bnstudy.evaluate_saved import checked_request, evaluate_study, request_file
from bnstudy.sweep import plan

CPU = torch.device("cpu")
ASKED = {"test_modes": ["eval", "adabn", "train"], "train_mode_batch_sizes": ["same", 1]}


def _rows(table: pd.DataFrame) -> pd.DataFrame:
    key = ["seed", "test_mode", "test_batch"]
    columns = [*key, "test_acc", "test_loss", "test_flip_rate"]
    return table[columns].sort_values(key).reset_index(drop=True)


def test_later_settings_equal_those_of_a_study_that_tested_them_from_the_start(
    tiny_study, tmp_path
):
    tiny_study["train"]["norm_batch_size"] = 4
    tiny_study["sweep"] = {"seed": [0, 1]}
    study.run_study(*plan(tiny_study, "s.yaml"), tmp_path / "later", CPU)
    sweep = tmp_path / "later" / "tiny"
    done = evaluate_study(sweep, ASKED, CPU)
    assert [e.added for e in done] == [("adabn", "1")] * 2
    tiny_study["eval"].update(ASKED)
    study.run_study(*plan(tiny_study, "s.yaml"), tmp_path / "first", CPU)
    later = pd.read_csv(sweep / "runs.csv")
    first = pd.read_csv(tmp_path / "first" / "tiny" / "runs.csv")
    pd.testing.assert_frame_equal(_rows(later), _rows(first))
    marked = later.set_index(["test_mode", "test_batch"])["evaluated_later"]
    assert marked.loc[("adabn", "adabn")].all() and marked.loc[("train", "1")].all()
    assert not marked.loc[("eval", "eval")].any() and not marked.loc[("train", "same")].any()
    assert set(later["torch"]) == {torch.__version__}  # the evaluation's provenance
    run_id = later["run_id"].iloc[0]
    predictions = store.read_predictions(sweep, run_id)
    assert set(predictions) == {"eval", "same", "adabn", "1"}
    first_id = first[first["seed"].eq(later["seed"].iloc[0])]["run_id"].iloc[0]
    assert predictions == store.read_predictions(tmp_path / "first" / "tiny", first_id)


def test_evaluating_again_adds_nothing_and_changes_no_file(tiny_study, tmp_path):
    study.run_study(*plan(tiny_study, "s.yaml"), tmp_path, CPU)
    sweep = tmp_path / "tiny"
    evaluate_study(sweep, {"test_modes": ["adabn"]}, CPU)
    files = {p: p.read_bytes() for p in sweep.rglob("runs/*/*.json")}
    (again,) = evaluate_study(sweep, {"test_modes": ["adabn", "eval"]}, CPU)
    assert again.added == () and again.note == "already evaluated in every setting asked"
    assert {p: p.read_bytes() for p in sweep.rglob("runs/*/*.json")} == files
    assert len(pd.read_csv(sweep / "runs.csv")) == 3


def test_runs_without_a_saved_model_are_named_and_left_as_they_were(tiny_study, tmp_path):
    tiny_study["train"]["save_model"] = False
    study.run_study(*plan(tiny_study, "s.yaml"), tmp_path, CPU)
    sweep = tmp_path / "tiny"
    (evaluated,) = evaluate_study(sweep, {"test_modes": ["adabn"]}, CPU)
    assert evaluated.added == ()
    assert evaluated.note.startswith("no usable saved model: ")
    assert evaluated.note.endswith(f"{store.MODEL}: missing")
    assert not list(sweep.rglob(store.LATER)) and len(pd.read_csv(sweep / "runs.csv")) == 2


def test_the_request_is_validated_once_naming_the_key():
    with pytest.raises(ConfigError) as error:
        checked_request({"test_modes": ["adabn", "bogus"], "precise_samples": 4}, "asked")
    assert error.value.lines() == [
        "asked: eval.precise_samples: not one of test_modes, train_mode_batch_sizes"
    ]
    with pytest.raises(ConfigError, match="eval.test_modes: unknown test mode 'bogus'"):
        checked_request({"test_modes": ["adabn", "bogus"]}, "asked")
    assert checked_request({"train_mode_batch_sizes": ["same", 2]}, "asked") == {
        "train_mode_batch_sizes": ["same", 2]
    }


def test_the_command_evaluates_with_two_jobs_and_refuses_a_bad_mode_in_one_line(
    tiny_study, tmp_path
):
    tiny_study["sweep"] = {"seed": [0, 1]}
    study.run_study(*plan(tiny_study, "s.yaml"), tmp_path, CPU)
    sweep = tmp_path / "tiny"
    runner = CliRunner()
    bad = runner.invoke(app, ["evaluate", str(sweep), "--test-modes", "adabn,bogus"])
    assert bad.exit_code == 2 and bad.output.count("\n") == 1 and "eval.test_modes" in bad.output
    args = ["evaluate", str(sweep), "--train-mode-batch-sizes", "1,2", "--jobs", "2"]
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "2 runs: 2 evaluated (4 settings added, 0 failed)" in done.output
    for later in sweep.rglob(store.LATER):
        (evaluation,) = json.loads(later.read_text())
        assert evaluation["eval"] == {"train_mode_batch_sizes": [1, 2]}
        assert [t["test_batch"] for t in evaluation["tests"]] == ["1", "2"]


def test_a_setting_that_failed_in_training_is_tried_once_more_and_its_row_replaced(
    tiny_study, tmp_path
):
    study.run_study(*plan(tiny_study, "s.yaml"), tmp_path, CPU)
    sweep = tmp_path / "tiny"
    (folder,) = (sweep / "runs").iterdir()
    result = json.loads((folder / store.RESULT).read_text())
    result["tests"][1] |= {"status": "oom", "error": "CUDA out of memory", "test_acc": None}
    (folder / store.RESULT).write_text(json.dumps(result))
    (done,) = evaluate_study(sweep, {"test_modes": ["eval", "train"]}, CPU)
    assert done.added == ("same",) and done.failed == 0
    table = pd.read_csv(sweep / "runs.csv")
    rows = table[["test_batch", "status", "evaluated_later"]].itertuples(index=False)
    assert [tuple(row) for row in rows] == [
        ("eval", "ok", False),
        ("same", "ok", True),
    ]
    (again,) = evaluate_study(sweep, {"test_modes": ["eval", "train"]}, CPU)
    assert again.added == ()


def test_an_eval_file_asks_what_the_options_ask_and_names_itself_when_wrong(tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("eval:\n  test_modes: [adabn]\n")
    assert request_file(good) == {"test_modes": ["adabn"]}
    bad.write_text("eval:\n  test_modes: [adabn]\ntrain:\n  lr: 1\n")
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", str(tmp_path), "--eval-file", str(bad)])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {bad}: train: an evaluation file holds only eval"


def test_a_saved_model_that_does_not_fit_its_run_is_named_not_a_traceback(tiny_study, tmp_path):
    study.run_study(*plan(tiny_study, "s.yaml"), tmp_path, CPU)
    (model,) = (tmp_path / "tiny").rglob(store.MODEL)
    payload = torch.load(model, weights_only=True)
    payload["model"]["head.weight"] = torch.zeros(3, 3)
    torch.save(payload, model)
    (evaluated,) = evaluate_study(tmp_path / "tiny", {"test_modes": ["adabn"]}, CPU)
    assert evaluated.added == ()
    assert evaluated.note.startswith("its saved model does not load into its model: ")
    assert "\n" not in evaluated.note
