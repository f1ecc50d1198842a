from pathlib import Path

import pytest

from bnstudy.config import (
    ConfigError,
    DuplicateKeyError,
    apply_overrides,
    check_key_path,
    parse_yaml,
    read_config_file,
    validate_study,
)
from bnstudy.sweep import plan


def problems(raw: dict) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        plan(raw, "study.yaml")
    return [(problem.key, problem.message) for problem in caught.value.problems]


def test_a_valid_study_resolves_with_defaults(tiny_study):
    study = validate_study(tiny_study, "study.yaml")
    assert study.train.batch_size == 8
    assert study.model.norm_options.momentum == 0.1
    assert study.eval.test_modes == ["eval", "train"]


def test_unknown_key_suggests_the_close_one(tiny_study):
    tiny_study["train"]["batch_siz"] = 4
    [(key, message)] = problems(tiny_study)
    assert key == "train.batch_siz"
    assert "unknown key" in message and "did you mean 'batch_size'?" in message


def test_wrong_type_names_the_key_and_the_value(tiny_study):
    tiny_study["train"]["epochs"] = "three"
    [(key, message)] = problems(tiny_study)
    assert key == "train.epochs" and "'three'" in message


def test_batch_size_below_one_is_rejected(tiny_study):
    tiny_study["train"]["batch_size"] = 0
    [(key, message)] = problems(tiny_study)
    assert key == "train.batch_size" and "greater than or equal to 1" in message


def test_unknown_norm_and_dataset_are_rejected_with_suggestions(tiny_study):
    tiny_study["model"]["norm"] = "grop"
    tiny_study["data"]["name"] = "synthetic2"
    found = dict(problems(tiny_study))
    assert "did you mean 'group'?" in found["model.norm"]
    assert "did you mean 'synthetic2d'?" in found["data.name"]


def test_file_data_sets_need_an_existing_root(tiny_study, tmp_path):
    tiny_study["data"] = {"name": "cifar10", "root": str(tmp_path / "nowhere")}
    [(key, message)] = problems(tiny_study)
    assert key == "data.root" and "no such file" in message


def test_group_count_that_does_not_divide_a_width_fails_before_any_run(tiny_study):
    tiny_study["model"].update(norm="group", group={"groups": 3})
    [(key, message)] = problems(tiny_study)
    assert key == "model" and "3 groups do not divide 4 channels" in message


def test_bad_swept_value_names_the_sweep_key(tiny_study):
    tiny_study["sweep"] = {"train.batch_size": [1, 0, 4]}
    [(key, message)] = problems(tiny_study)
    assert key == "sweep.train.batch_size" and "(value 0)" in message


def test_unknown_swept_key_suggests(tiny_study):
    tiny_study["sweep"] = {"train.batchsize": [1, 2]}
    [(key, message)] = problems(tiny_study)
    assert key == "sweep.train.batchsize" and "did you mean 'batch_size'?" in message


def test_yaml_reads_exponent_floats():
    assert parse_yaml("lr: 1e-3") == {"lr": 0.001}


def test_overrides_set_nested_and_swept_keys(tiny_study):
    raw = apply_overrides(
        tiny_study, ["train.epochs=2", "sweep.train.batch_size=[1, 2]", "model.norm=group"]
    )
    assert raw["train"]["epochs"] == 2 and raw["model"]["norm"] == "group"
    assert raw["sweep"] == {"train.batch_size": [1, 2]}
    assert tiny_study["train"]["epochs"] == 1  # the input is not modified


def test_overrides_that_cannot_be_read_are_each_named_before_anything_is_validated(tiny_study):
    tiny_study["train"]["epochs"] = -1  # not reported: the study the overrides describe is unknown
    with pytest.raises(ConfigError) as caught:
        apply_overrides(tiny_study, ["train.epochs", "train.lr=[0.1", "seed=1"])
    assert caught.value.lines() == [
        "override 'train.epochs': an override has the form key.path=value",
        "override 'train.lr=[0.1': train.lr: YAML syntax error at line 1, column 5 of the "
        "value: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence "
        "from line 1, column 1)",
    ]


def test_a_problem_names_the_override_that_set_its_key_and_comes_with_the_files(tiny_study):
    tiny_study["model"]["nrom"] = "batch"
    raw = apply_overrides(tiny_study, ["train.epochs=-1", "modle.norm=group"])
    with pytest.raises(ConfigError) as caught:
        plan(raw, "study.yaml")
    assert caught.value.lines() == [
        "study.yaml: model.nrom: unknown key (did you mean 'norm'?)",
        "override 'train.epochs=-1': train.epochs: Input should be greater than or equal to 1 "
        "(got -1)",
        "override 'modle.norm=group': modle: unknown key (did you mean 'model'?)",
    ]


def test_an_override_of_a_section_takes_over_the_problems_of_the_keys_in_it(tiny_study):
    raw = apply_overrides(tiny_study, ["train.epochs=-1", "train={epochs: 0}"])
    with pytest.raises(ConfigError) as caught:
        plan(raw, "study.yaml")
    [problem] = caught.value.problems
    assert problem.where == "override 'train={epochs: 0}'" and problem.key == "train.epochs"


def test_a_sections_problem_names_the_overrides_of_keys_in_it(tiny_study):
    raw = apply_overrides(tiny_study, ["model.norm=group", "model.group.groups=3"])
    with pytest.raises(ConfigError) as caught:
        plan(raw, "study.yaml")
    [problem] = caught.value.problems
    assert (problem.where, problem.key) == ("study.yaml", "model")
    assert problem.message.endswith(
        "do not divide 4 channels (choose model.group.groups dividing every layer width) "
        "(with overrides 'model.norm=group', 'model.group.groups=3')"
    )


def test_unreadable_and_non_mapping_files_are_config_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="missing.yaml"):
        read_config_file(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        read_config_file(tmp_path / "list.yaml")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            "name: tiny\ntrain:\n\tepochs: 1\n",
            ":3:1: YAML syntax error: found character '\\t' that cannot start any token",
        ),
        (
            "name: tiny\ntrain:\n  lr: [0.1\nmodel: {norm: batch}\n",
            ":4:6: YAML syntax error: expected ',' or ']', but got ':' "
            "(while parsing a flow sequence from line 3, column 7)",
        ),
        (
            "name: tiny\nseed: \x07\n",
            ":2:7: YAML syntax error: unacceptable character #x0007: special characters are not "
            "allowed",
        ),
    ],
)
def test_a_yaml_syntax_error_is_one_line_with_its_line_and_column(tmp_path: Path, text, line):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        read_config_file(path)
    assert caught.value.lines() == [f"{path}{line}"]


def test_key_paths_are_checked_against_the_schema():
    assert check_key_path("train.lr") is None
    assert check_key_path("seed") is None
    assert "did you mean 'train.lr'" in check_key_path("trian.lr")


def test_model_check_uses_the_data_sets_class_count(tiny_study):
    # zeros_net's last norm has one channel per class: synthetic2d has 10, 4 groups don't divide
    tiny_study["model"].update(name="zeros_net", widths=[4, 8], norm="group", group={"groups": 4})
    tiny_study["data"]["image_size"] = 32
    [(key, message)] = problems(tiny_study)
    assert key == "model" and "4 groups do not divide 10 channels" in message


def test_keras_momentum_convention_is_converted_to_the_weight_of_the_new_batch(tiny_study):
    tiny_study["model"]["batch"] = {"momentum": 0.99, "momentum_convention": "keras"}
    options = validate_study(tiny_study, "s.yaml").model.norm_options
    assert options.torch_momentum == pytest.approx(0.01)
    tiny_study["model"]["batch"]["momentum_convention"] = "torch"
    assert validate_study(tiny_study, "s.yaml").model.norm_options.torch_momentum == 0.99


@pytest.mark.parametrize(
    "norm, setting",
    [
        ("batch_keras", {"batch": {"eps": 1e-3}}),
        ("group", {"batch": {"momentum": 0.01}}),
        ("instance", {"group": {"groups": 4}}),
        ("batch", {"batch_manual": {"stats": "activation"}}),
    ],
)
def test_other_norms_sections_are_dropped_from_a_runs_config(tiny_study, norm, setting):
    tiny_study["model"].update(norm=norm, **setting)
    [key] = setting
    model = validate_study(tiny_study, "s.yaml").model
    assert getattr(model, key) == type(model).model_fields[key].default


def test_a_sweep_over_a_setting_the_norm_ignores_is_rejected(tiny_study):
    tiny_study["model"]["norm"] = "group"
    tiny_study["sweep"] = {"model.batch.momentum": [0.1, 0.01]}
    with pytest.raises(ConfigError, match="sweep.model.batch.momentum: no run uses it"):
        plan(tiny_study, "study.yaml")


def test_norm_batch_size_must_divide_the_batch_size(tiny_study):
    tiny_study["train"]["norm_batch_size"] = 3
    [(key, message)] = problems(tiny_study)
    assert key == "train.norm_batch_size" and "must divide batch_size 8" in message


def test_norm_batch_size_is_dropped_for_norms_without_batch_statistics(tiny_study):
    tiny_study["train"]["norm_batch_size"] = 2
    assert validate_study(tiny_study, "s.yaml").norm_batch_size == 2
    tiny_study["model"]["norm"] = "group"
    study = validate_study(tiny_study, "s.yaml")
    assert study.train.norm_batch_size is None and study.norm_batch_size is None


def test_norm_batch_size_equal_to_the_batch_size_is_the_default(tiny_study):
    plain = validate_study(tiny_study, "s.yaml")
    tiny_study["train"]["norm_batch_size"] = 8
    explicit = validate_study(tiny_study, "s.yaml")
    assert explicit == plain and explicit.norm_batch_size == 8


@pytest.mark.parametrize(
    "train, key",
    [
        ({"steps": 10, "samples": 100, "epochs": 3}, "train.samples"),
        ({"warmup_steps": 10, "warmup_fraction": 0.1}, "train.warmup_fraction"),
        ({"step_milestones": [0.5, 1.5]}, "train.step_milestones"),
        ({"accumulate": 0}, "train.accumulate"),
        ({"schedule": "linear"}, "train.schedule"),
    ],
)
def test_budget_and_schedule_mistakes_name_the_key(tiny_study, train, key):
    tiny_study["train"].update(train)
    assert key in [k for k, _ in problems(tiny_study)]


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_a_non_finite_number_is_rejected_at_the_edge(tiny_study, value):
    tiny_study["train"]["lr"] = value
    tiny_study["model"]["batch"] = {"eps": value}
    found = {key for key, message in problems(tiny_study) if "finite number" in message}
    assert found == {"train.lr", "model.batch.eps"}


def test_a_flat_norm_key_from_before_says_where_it_moved(tiny_study):
    tiny_study["model"]["bn_momentum"] = 0.01
    [(key, message)] = problems(tiny_study)
    assert key == "model.bn_momentum"
    assert (
        "moved to per-norm sections: model.batch.momentum or model.batch_manual.momentum" in message
    )


def test_train_frozen_bn_from_before_validates_at_none_and_names_the_norm_otherwise(tiny_study):
    tiny_study["train"]["frozen_bn"] = "none"  # in every config.json of its time
    assert plan(tiny_study, "study.yaml")[1]
    tiny_study["train"]["frozen_bn"] = "statistics"
    [(key, message)] = problems(tiny_study)
    assert (
        key == "train" and message == "train.frozen_bn statistics is now model.norm: frozen_stats"
    )


def test_epochs_beside_steps_or_samples_is_refused_as_it_would_be_ignored(tiny_study):
    tiny_study["train"].update(epochs=2, steps=3)
    [(key, message)] = problems(tiny_study)
    assert key == "train" and message.startswith("train.epochs 2 would be ignored: train.steps")
    tiny_study["train"].update(epochs=3)  # the default, as every run's config.json holds it
    assert plan(tiny_study, "study.yaml")[1]


def test_a_norms_options_are_validated_in_its_section(tiny_study):
    tiny_study["model"].update(norm="batch_renorm", batch_renorm={"r_max": 0.5})
    [(key, message)] = problems(tiny_study)
    assert key == "model.batch_renorm.r_max" and "greater than or equal to 1" in message
    tiny_study["model"]["batch_renorm"] = {"relax_start": 0.5, "d_max_at": 0.3}
    [(key, message)] = problems(tiny_study)
    assert key == "model.batch_renorm" and "d_max_at must be in (relax_start=0.5, 1]" in message


def test_unknown_test_mode_suggests_the_close_one(tiny_study):
    tiny_study["eval"]["test_modes"] = ["eval", "adabm"]
    [(key, message)] = problems(tiny_study)
    assert key == "eval.test_modes" and "did you mean 'adabn'?" in message


def test_another_norms_options_are_validated_then_left_out_of_the_run(tiny_study):
    tiny_study["model"]["group"] = {"grups": 3}  # the run's norm is batch
    [(key, message)] = problems(tiny_study)
    assert key == "model.group.grups" and "did you mean 'groups'?" in message
    tiny_study["model"]["group"] = {"groups": 4}
    model = validate_study(tiny_study, "s.yaml").model
    assert model.group.groups == 8 and model.norm == "batch"  # the default: not this run's norm


def test_a_repeated_section_or_key_in_a_file_is_refused_with_both_lines(tmp_path: Path):
    path = tmp_path / "study.yaml"
    path.write_text(
        "name: tiny\n"
        "train:\n"
        "  lr: 0.1\n"
        "  epochs: 2\n"
        "  lr: 0.2\n"
        "eval: {batch_size: 4}\n"
        "train:\n"
        "  epochs: 3\n"
    )
    with pytest.raises(ConfigError) as caught:
        read_config_file(path)
    assert caught.value.lines() == [
        f"{path}: train: duplicate key (lines 2 and 7)",
        f"{path}: train.lr: duplicate key (lines 3 and 5)",
    ]


def test_repeats_are_found_in_lists_and_merge_keys_may_override():
    with pytest.raises(DuplicateKeyError) as caught:
        parse_yaml("sweep:\n  zip:\n    - {seed: [1], seed: [2]}\n")
    assert caught.value.problems == [
        ("sweep.zip[0].seed", "duplicate key (line 3, columns 8 and 19)")
    ]
    merged = parse_yaml("base: &b {lr: 1, epochs: 2}\ntrain:\n  <<: *b\n  lr: 3\n")
    assert merged["train"] == {"lr": 3, "epochs": 2}


def test_a_repeated_key_inside_an_override_value_is_refused(tiny_study):
    with pytest.raises(ConfigError) as caught:
        apply_overrides(tiny_study, ["train={lr: 1, lr: 2}"])
    assert caught.value.lines() == [
        "override 'train={lr: 1, lr: 2}': train.lr: duplicate key (line 1, columns 2 and 9)"
    ]


@pytest.mark.parametrize(
    ("widths", "key", "says"),
    [
        ([], "model.widths", "at least 1 item"),
        ([0, 8], "model.widths[0]", "greater than or equal to 1 (got 0)"),
        ([4, -2], "model.widths[1]", "greater than or equal to 1 (got -2)"),
    ],
)
def test_widths_are_a_non_empty_list_of_positive_channel_counts(tiny_study, widths, key, says):
    tiny_study["model"]["widths"] = widths
    [(found, message)] = problems(tiny_study)
    assert found == key and says in message


def test_a_bad_width_in_a_sweep_names_the_swept_key(tiny_study):
    tiny_study["sweep"] = {"model.widths": [[4, 8], [4, 0]]}
    [(key, message)] = problems(tiny_study)
    assert key == "sweep.model.widths" and "(value [4, 0])" in message


def test_a_value_neither_a_number_nor_same_is_one_problem_naming_its_key(tiny_study):
    # pydantic reports it once per member of int | Literal["same"], under keys naming them
    tiny_study["eval"].update(train_mode_batch_sizes=[4, "sam"], precise_batch_size=None)
    assert problems(tiny_study) == [
        ("eval.train_mode_batch_sizes[1]", "Input should be a valid integer or 'same' (got 'sam')"),
        ("eval.precise_batch_size", "Input should be a valid integer or 'same' (got None)"),
    ]
