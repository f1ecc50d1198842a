"""The study file's reference (bnstudy.config_reference) and the commands built on it:
`bnstudy config`, `bnstudy config --schema | --reference`, `bnstudy init`."""

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from bnstudy.cli import app
from bnstudy.config import StudyConfig
from bnstudy.config_reference import reference_markdown, sections
from bnstudy.norms import NORMS
from bnstudy.sweep import plan

runner = CliRunner()
REFERENCE = Path(__file__).parents[1] / "docs" / "config.md"


def test_docs_config_md_is_the_reference_the_schema_generates():
    assert REFERENCE.read_text() == reference_markdown() + "\n", (
        "docs/config.md is stale: bnstudy config --reference > docs/config.md"
    )


def test_every_key_of_the_schema_is_documented_with_an_example():
    keys = {key.path: key for _, _, found in sections() for key in found}
    undocumented = [path for path, key in keys.items() if not key.description]
    assert undocumented == [], f"add a docstring under each field: {undocumented}"
    assert all(key.example.startswith(f"{key.path}: ") for key in keys.values())
    for name in ("train.lr", "eval.test_modes", "train.init_from.study", "analysis.alpha"):
        assert name in keys
    for norm, spec in NORMS.items():
        assert all(f"model.{norm}.{option}" in keys for option in spec.options.model_fields)
    assert keys["model.batch.momentum"].allowed == "> 0, ≤ 1"
    assert keys["data.augment"].allowed == "`none`, `crop`, `crop_flip`"


def test_config_prints_the_study_with_every_default_and_it_validates_again(write_study, tiny_study):
    path = write_study(tiny_study)
    result = runner.invoke(app, ["config", str(path), "train.lr=0.2"])
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load(result.stdout)
    assert resolved["train"]["lr"] == 0.2 and resolved["data"]["augment_padding"] == 4
    assert "group" not in resolved["model"] or tiny_study["model"]["norm"] == "group"
    assert StudyConfig.model_validate(resolved).train.lr == 0.2
    wrong = runner.invoke(app, ["config", str(path), "train.lr=-1"])
    assert wrong.exit_code == 2 and "train.lr" in wrong.stderr


def test_config_schema_is_json_with_the_descriptions():
    schema = json.loads(runner.invoke(app, ["config", "--schema"]).stdout)
    train = schema["$defs"]["TrainConfig"]["properties"]
    assert "peak learning rate" in train["lr"]["description"]
    assert set(schema["properties"]) >= {"name", "data", "model", "train", "eval", "sweep"}


def test_init_writes_a_commented_starter_study_that_plans_and_keeps_an_existing_file(tmp_path):
    path = tmp_path / "study.yaml"
    assert runner.invoke(app, ["init", str(path)]).exit_code == 0
    text = path.read_text()
    assert "# peak learning rate at base_batch_size" in text
    assert max(len(line) for line in text.splitlines()) <= 80
    _, runs = plan(yaml.safe_load(text), str(path))
    assert len(runs) == 18  # BN at 5 normalization batch sizes and GroupNorm, 3 seeds
    again = runner.invoke(app, ["init", str(path)])
    assert again.exit_code == 2 and "exists" in again.stderr
    assert runner.invoke(app, ["init", str(path), "--force"]).exit_code == 0
