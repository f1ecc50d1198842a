"""Fine-tuning from a finished run's model (train.init_from), with BN trained or frozen
(model.norm frozen_bn, frozen_stats) or replaced: bnstudy.finetune."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from bnstudy import checkpoint, report, store, study
from bnstudy.config import ConfigError
from bnstudy.finetune import initialize_from_source, loads_norm_state
from bnstudy.preflight import load_data, model_for_data
from bnstudy.sweep import plan

CPU = torch.device("cpu")


@pytest.fixture
def pretrained(tiny_study, tmp_path):
    """A finished pretraining study: BN at 8 images per statistic, seeds 0 and 1."""
    tiny_study["sweep"] = {"seed": [0, 1]}
    study.run_study(*plan(tiny_study, "s.yaml"), tmp_path / "pre", CPU)
    return tmp_path / "pre" / "tiny"


def _finetuning(tiny_study, pretrained, norm="batch", **train) -> dict:
    tiny_study.update(name="ft", seed=1)
    tiny_study.pop("sweep")  # the pretraining's
    train.setdefault("init_from", {"study": str(pretrained)})
    tiny_study["train"].update(lr=0.5, norm_batch_size=2, **train)
    tiny_study["model"]["norm"] = norm
    return tiny_study


def _state(folder) -> dict[str, torch.Tensor]:
    return checkpoint.saved_model(folder, folder.name).weights


def _fine_tune(tiny_study, out) -> tuple[dict, dict[str, torch.Tensor]]:
    config, runs = plan(tiny_study, "s.yaml")
    study.run_study(config, runs, out, CPU)
    folder = store.run_dir(out / "ft", runs[0].run_id)
    return json.loads((folder / "result.json").read_text()), _state(folder)


def _bn(state: dict[str, torch.Tensor], kind: str) -> dict[str, torch.Tensor]:
    """The entries ending with ``kind`` of the BN layers (those with running statistics)."""
    layers = {k.removesuffix("running_mean") for k in state if k.endswith("running_mean")}
    return {f"{layer}{kind}": state[f"{layer}{kind}"] for layer in layers}


@pytest.mark.parametrize(
    ("norm", "statistics_kept", "affine_kept"),
    [("batch", False, False), ("frozen_stats", True, False), ("frozen_bn", True, True)],
)
def test_a_frozen_bn_keeps_what_it_says_and_the_rest_fine_tunes(
    tiny_study, tmp_path, pretrained, norm, statistics_kept, affine_kept
):
    source = next(f for f in (pretrained / "runs").iterdir() if _seed(f) == 1)
    result, tuned = _fine_tune(_finetuning(tiny_study, pretrained, norm), tmp_path / "ft")
    assert result["status"] == "ok"
    assert result["train"]["initialized_from"] == str(source)
    assert result["train"]["fresh_state"] == []
    before = _state(source)
    for kind, kept in [
        ("running_mean", statistics_kept),
        ("running_var", statistics_kept),
        ("weight", affine_kept),
        ("bias", affine_kept),
    ]:
        same = [torch.equal(tuned[k], before[k]) for k in _bn(before, kind)]
        assert same and all(same) == kept and any(same) == kept, kind
    conv = [k for k in before if k.endswith("weight") and before[k].dim() == 4]
    assert conv and not any(torch.equal(tuned[k], before[k]) for k in conv)


def _seed(folder) -> int:
    return store.read_config(folder)["seed"]


def test_groupnorm_replacing_bn_starts_fresh_where_the_norm_is_and_pretrained_elsewhere(
    tiny_study, pretrained
):
    tiny_study = _finetuning(
        tiny_study, pretrained, "group", init_from={"study": str(pretrained), "seed": 0}
    )
    config = plan(tiny_study, "s.yaml")[1][0].config
    model = model_for_data(config, load_data(config, CPU))
    fresh_init = {k: v.clone() for k, v in model.state_dict().items()}
    said = initialize_from_source(model, config)
    source = next(f for f in (pretrained / "runs").iterdir() if _seed(f) == 0)
    assert said["initialized_from"] == str(source)
    loaded, before = model.state_dict(), _state(source)
    norms = [name for name, m in model.named_modules() if isinstance(m, torch.nn.GroupNorm)]
    norm_keys = [k for k in loaded if k.rsplit(".", 1)[0] in norms]
    assert norm_keys and said["fresh_state"] == sorted(norm_keys)
    assert all(torch.equal(loaded[k], fresh_init[k]) for k in norm_keys)
    assert all(torch.equal(loaded[k], before[k]) for k in loaded if k not in norm_keys)


def test_a_fine_tuning_run_is_another_run_when_its_source_model_changes(tiny_study, pretrained):
    study_ = _finetuning(tiny_study, pretrained)
    first = plan(study_, "s.yaml")[1][0].run_id
    source = next(f for f in (pretrained / "runs").iterdir() if _seed(f) == 1)
    payload = torch.load(source / store.MODEL, weights_only=True)
    payload["model"] = {k: v + 1 for k, v in payload["model"].items()}
    torch.save(payload, source / store.MODEL)
    assert plan(study_, "s.yaml")[1][0].run_id != first


@pytest.mark.parametrize(
    ("model", "train", "line"),
    [
        (
            {},
            {"init_from": {"study": "PRE", "select": {"model.norm": "group"}}},
            "train.init_from: no finished run of PRE has model.norm=group, seed=1",
        ),
        (
            {},
            {"init_from": {"study": "PRE", "seed": "same"}, "epochs": 1},
            None,  # found: seed 1 of the pretraining
        ),
        (
            {},
            {"init_from": {"study": "nowhere"}},
            "train.init_from: nowhere is not a sweep folder (no plan.json)",
        ),
        (
            {"norm": "frozen_bn"},
            {},
            "train.init_from: model.norm frozen_bn keeps the statistics of a trained run of "
            "batch, frozen_bn or frozen_stats: name it here",
        ),
        (
            {"norm": "frozen_stats", "frozen_stats": {"eps": 1e-3}},
            {"init_from": {"study": "PRE"}},
            "train.init_from: model.frozen_stats.eps 0.001 differs from the eps of run",
        ),
    ],
)
def test_planning_names_a_source_that_is_not_there(tiny_study, pretrained, model, train, line):
    tiny_study.update(name="ft", seed=1)
    tiny_study.pop("sweep")
    if "init_from" in train:
        study_dir = str(pretrained) if train["init_from"]["study"] == "PRE" else "nowhere"
        train["init_from"]["study"] = study_dir
        line = line and line.replace("PRE", study_dir)
    tiny_study["train"].update(train)
    tiny_study["model"].update(model)
    if line is None:
        assert plan(tiny_study, "s.yaml")[1]
        return
    with pytest.raises(ConfigError) as error:
        plan(tiny_study, "s.yaml")
    assert any(problem.startswith(f"s.yaml: {line}") for problem in error.value.lines()), (
        error.value.lines()
    )


def test_a_frozen_bn_refuses_a_source_that_trained_no_bn(tiny_study, pretrained):
    config = plan(_finetuning(tiny_study, pretrained, "frozen_bn"), "s.yaml")[1][0].config
    with pytest.raises(ValueError, match="frozen_stats, and run r trained group"):
        loads_norm_state(config, {"model": {"norm": "group"}}, "r")
    assert loads_norm_state(config, {"model": {"norm": "batch", "batch": {"eps": 1e-5}}}, "r")


def test_a_frozen_bn_fine_tunes_from_a_frozen_run_as_from_a_bn_run(
    tiny_study, tmp_path, pretrained
):
    first_study = _finetuning(tiny_study, pretrained, "frozen_bn")
    again = copy.deepcopy(first_study)
    first, first_state = _fine_tune(first_study, tmp_path / "a")
    again["train"]["init_from"] = {"study": str(tmp_path / "a" / "ft"), "seed": 1}
    again["name"] = "ft2"
    config, runs = plan(again, "s.yaml")
    study.run_study(config, runs, tmp_path / "b", CPU)
    tuned = _state(store.run_dir(tmp_path / "b" / "ft2", runs[0].run_id))
    assert first["status"] == "ok"
    assert all(torch.equal(tuned[k], first_state[k]) for k in _bn(first_state, "running_var"))


def test_the_report_compares_each_trained_bn_with_the_frozen_bn_at_its_seed(
    tiny_study, tmp_path, pretrained
):
    tiny_study = _finetuning(tiny_study, pretrained)
    tiny_study["sweep"] = {
        "model.norm": ["batch", "frozen_bn"],
        "train.norm_batch_size": [2, 4],
        "seed": [0, 1],
    }
    config, runs = plan(tiny_study, "s.yaml")
    assert len(runs) == 6  # frozen_bn ignores the normalization batch size: once per seed
    study.run_study(config, runs, tmp_path / "out", CPU)
    findings = (report.write_report(tmp_path / "out" / "ft") / "findings.md").read_text()
    assert "`control/batch@2/eval/vs-frozen_bn`" in findings
    assert "`control/batch@4/eval/vs-frozen_bn`" in findings
    assert "fine-tuned from the model of the run of" in findings
