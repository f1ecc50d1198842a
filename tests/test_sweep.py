import numpy as np
import pytest

from bnstudy.config import ConfigError
from bnstudy.sweep import order_runs, plan, run_identity


def swept(tiny_study, sweep):
    tiny_study["sweep"] = sweep
    _, runs = plan(tiny_study, "study.yaml")
    return [run.swept for run in runs]


def test_axes_expand_to_their_cartesian_product(tiny_study):
    cells = swept(tiny_study, {"model.norm": ["batch", "group"], "train.batch_size": [1, 2, 4]})
    assert len(cells) == 6
    assert {(c["model.norm"], c["train.batch_size"]) for c in cells} == {
        (n, b) for n in ("batch", "group") for b in (1, 2, 4)
    }


def test_zip_groups_advance_together(tiny_study):
    cells = swept(
        tiny_study,
        {
            "seed": [0, 1],
            "zip": [{"train.batch_size": [1, 4], "train.lr": [0.01, 0.04]}],
        },
    )
    assert len(cells) == 4
    assert {(c["train.batch_size"], c["train.lr"]) for c in cells} == {(1, 0.01), (4, 0.04)}


def test_exclude_drops_matching_runs(tiny_study):
    cells = swept(
        tiny_study,
        {
            "model.norm": ["batch", "group", "none"],
            "train.batch_size": [1, 2],
            "exclude": [{"model.norm": ["group", "none"], "train.batch_size": 1}],
        },
    )
    assert len(cells) == 4
    assert {"model.norm": "group", "train.batch_size": 1} not in cells


def test_runs_resolve_the_swept_values_into_their_config(tiny_study):
    tiny_study["sweep"] = {"train.batch_size": [2, 4]}
    _, runs = plan(tiny_study, "study.yaml")
    assert [run.config.train.batch_size for run in runs] == [2, 4]
    assert all(run.config.sweep == {} for run in runs)


@pytest.mark.parametrize(
    "sweep, key",
    [
        ({"zip": [{"train.batch_size": [1, 2], "train.lr": [0.1]}]}, "sweep.zip[0]"),
        ({"train.batch_size": []}, "sweep.train.batch_size"),
        ({"train.batch_size": [1, 1]}, "sweep.train.batch_size"),
        ({"train.batch_size": [1], "zip": [{"train.batch_size": [2]}]}, "sweep.train.batch_size"),
        ({"train.batch_size": [1], "exclude": [{"seed": 0}]}, "sweep.exclude[0].seed"),
    ],
)
def test_malformed_sweeps_name_the_key(tiny_study, sweep, key):
    tiny_study["sweep"] = sweep
    with pytest.raises(ConfigError) as caught:
        plan(tiny_study, "study.yaml")
    assert key in [problem.key for problem in caught.value.problems]


def test_identity_ignores_name_and_changes_with_any_setting(tiny_study):
    _, [run] = plan(tiny_study, "a.yaml")
    tiny_study["name"] = "renamed"
    _, [renamed] = plan(tiny_study, "b.yaml")
    tiny_study["train"]["lr"] = 0.1
    _, [changed] = plan(tiny_study, "c.yaml")
    assert run.run_id == renamed.run_id != changed.run_id
    assert run_identity(run.config) == run.run_id and len(run.run_id) == 10


def test_shuffled_order_is_seeded_and_grid_order_is_expansion_order(tiny_study):
    tiny_study["sweep"] = {"train.batch_size": [1, 2, 3, 4, 5, 6]}
    _, runs = plan(tiny_study, "study.yaml")
    assert order_runs(runs, "grid") == runs
    shuffled = order_runs(runs, "shuffled")
    assert shuffled == order_runs(runs, "shuffled") and shuffled != runs
    assert sorted(r.run_id for r in shuffled) == sorted(r.run_id for r in runs)


def test_zipped_lists_may_repeat_values_as_long_as_rows_differ(tiny_study):
    cells = swept(
        tiny_study,
        {
            "zip": [
                {
                    "model.norm": ["batch", "batch_manual", "batch_manual"],
                    "model.batch_manual.stats": ["channel", "channel", "activation"],
                }
            ]
        },
    )
    assert len(cells) == 3


def test_values_that_resolve_to_the_same_config_are_rejected(tiny_study):
    tiny_study["sweep"] = {"train.lr": [1, 1.0]}
    with pytest.raises(ConfigError, match="resolve to the same config"):
        plan(tiny_study, "study.yaml")


def test_name_cannot_be_swept(tiny_study):
    tiny_study["sweep"] = {"name": ["a", "b"]}
    with pytest.raises(ConfigError, match="cannot be swept"):
        plan(tiny_study, "study.yaml")


def test_a_norm_batch_sweep_trains_batch_independent_norms_once(tiny_study):
    tiny_study["sweep"] = {
        "model.norm": ["batch", "group"],
        "train.norm_batch_size": [1, 2, 8],
        "seed": [0, 1],
    }
    _, runs = plan(tiny_study, "study.yaml")
    bn = [r for r in runs if r.config.model.norm == "batch"]
    gn = [r for r in runs if r.config.model.norm == "group"]
    assert len(bn) == 6 and len(gn) == 2
    assert all("train.norm_batch_size" not in r.swept for r in gn)
    assert sorted({r.swept["train.norm_batch_size"] for r in bn}) == [1, 2, 8]


def test_identity_leaves_out_defaults_so_new_fields_keep_old_ids(tiny_study):
    _, [plain] = plan(tiny_study, "a.yaml")
    tiny_study["train"].update(accumulate=1, schedule="constant", warmup_steps=0)
    tiny_study["eval"]["flip_reshuffles"] = 3
    _, [explicit] = plan(tiny_study, "b.yaml")
    assert plain.run_id == explicit.run_id
    # pinned: a change here orphans every user's finished runs (bump IDENTITY_VERSION then;
    # version 3, ghost BN's one update per forward and the population PreciseBN, made it
    # 27fd421a0d, from 4f735329d9)
    assert plain.run_id == "27fd421a0d"


def test_identity_follows_the_content_of_a_data_file(tiny_study, tmp_path):
    path = tmp_path / "data.npz"

    def write(offset):
        x = np.arange(8 * 3 * 4 * 4, dtype=np.float32).reshape(8, 3, 4, 4) + offset
        y = np.arange(8) % 2
        np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y)

    write(0)
    tiny_study["data"] = {"name": "npz", "root": str(path)}
    _, [first] = plan(tiny_study, "a.yaml")
    write(1)
    _, [edited] = plan(tiny_study, "a.yaml")
    assert first.run_id != edited.run_id


def test_cifar_identity_covers_the_files_it_reads_and_nothing_beside_them(
    tiny_study, tmp_path, write_cifar
):
    folder, _, _ = write_cifar(tmp_path)
    tiny_study["data"] = {"name": "cifar10", "root": str(tmp_path), "image_size": 32}
    tiny_study["eval"]["test_modes"] = ["eval"]  # 3 test images: no train-mode batch of 8
    _, [first] = plan(tiny_study, "a.yaml")
    (tmp_path / "notes.txt").write_text("unrelated")
    _, [beside] = plan(tiny_study, "a.yaml")
    (folder / "test_batch").write_bytes((folder / "test_batch").read_bytes() + b"\0")
    _, [edited] = plan(tiny_study, "a.yaml")
    assert first.run_id == beside.run_id != edited.run_id


def test_a_later_identity_version_changes_every_id(tiny_study, monkeypatch):
    import bnstudy.sweep as sweep

    _, [current] = plan(tiny_study, "a.yaml")
    monkeypatch.setattr(sweep, "IDENTITY_VERSION", sweep.IDENTITY_VERSION + 1)
    _, [bumped] = plan(tiny_study, "a.yaml")
    assert current.run_id != bumped.run_id


def test_identity_survives_a_round_trip_through_config_json(tiny_study):
    import json

    from bnstudy.config import StudyConfig

    tiny_study["train"].update(norm_batch_size=2, step_milestones=[0.3], warmup_fraction=0.1)
    _, [run] = plan(tiny_study, "a.yaml")
    stored = json.loads(json.dumps(run.config.model_dump(mode="json")))
    assert run_identity(StudyConfig.model_validate(stored)) == run.run_id


@pytest.mark.parametrize(
    "norm, options, pinned",
    [
        ("batch_manual", {"momentum": 0.01, "single_value": "beta"}, "4d7f82166b"),
        ("group", {"groups": 4, "eps": 1e-3}, "2be8d73239"),
    ],
)
def test_per_norm_options_keep_the_ids_of_the_flat_keys_they_replaced(
    tiny_study, norm, options, pinned
):
    # pinned: the ids these runs had as model.bn_momentum / bn_single_value / norm_groups /
    # norm_eps before options moved into model.<norm> sections (ea6dd7f958 and 633e19e8a1 at
    # identity version 2), at identity version 3
    tiny_study["model"].update(norm=norm, **{norm: options})
    _, [run] = plan(tiny_study, "s.yaml")
    assert run.run_id == pinned


def test_padding_is_swept_only_where_a_crop_uses_it(tiny_study):
    tiny_study["sweep"] = {"data.augment": ["none", "crop"], "data.augment_padding": [2, 4]}
    _, runs = plan(tiny_study, "a.yaml")
    assert sorted((r.config.data.augment, r.config.data.augment_padding) for r in runs) == [
        ("crop", 2),
        ("crop", 4),
        ("none", 4),
    ]
    tiny_study["sweep"] = {"data.augment_padding": [2, 4]}
    with pytest.raises(ConfigError, match="sweep.data.augment_padding: no run uses it"):
        plan(tiny_study, "a.yaml")


def test_widths_are_dropped_from_the_runs_of_an_external_model(tiny_study):
    tiny_study["sweep"] = {"model.name": ["cnn", "examples.custom_model:build"]}
    _, runs = plan(tiny_study, "a.yaml")
    assert {r.config.model.name: r.config.model.widths for r in runs} == {
        "cnn": [4, 8],
        "examples.custom_model:build": None,
    }


def plan_problems(study):
    with pytest.raises(ConfigError) as caught:
        plan(study, "study.yaml")
    return [(problem.key, problem.message) for problem in caught.value.problems]


def test_a_training_batch_larger_than_the_training_split_is_refused(tiny_study):
    tiny_study["eval"]["test_modes"] = ["eval"]  # no train-mode test batch of 48 in 24
    tiny_study["train"]["batch_size"] = 48  # the whole split: one full batch, fine
    plan(tiny_study, "study.yaml")
    tiny_study["train"].update(batch_size=64, accumulate=1)
    [(key, message)] = plan_problems(tiny_study)
    assert key == "train.batch_size"
    assert message.startswith("64 is larger than the training split (48 samples)")
    assert "(run" not in message  # the same for every run: no run named


def test_the_default_split_size_of_generated_data_counts(tiny_study):
    del tiny_study["data"]["train_size"]  # synthetic2d makes 5000 training images by default
    tiny_study["eval"]["test_modes"] = ["eval"]  # no train-mode test batch of 5000 in 24
    tiny_study["train"]["batch_size"] = 5000
    plan(tiny_study, "study.yaml")
    tiny_study["train"]["batch_size"] = 5001
    [(key, message)] = plan_problems(tiny_study)
    assert key == "train.batch_size" and "(5000 samples)" in message


def test_accumulated_passes_may_add_up_to_more_than_the_split(tiny_study):
    tiny_study["train"].update(batch_size=32, accumulate=4)  # 128 per step, 48 samples
    tiny_study["eval"]["train_mode_batch_sizes"] = [8]  # "same" (32) is over the 24 tested
    plan(tiny_study, "study.yaml")


def test_a_swept_batch_size_larger_than_the_split_names_the_sweep_key(tiny_study):
    tiny_study["sweep"] = {"train.batch_size": [8, 64], "seed": [0, 1]}
    [(key, message)] = plan_problems(tiny_study)
    assert key == "sweep.train.batch_size" and message.endswith("(value 64)")
    tiny_study["sweep"] = {"data.train_size": [48, 4], "seed": [0, 1]}
    [(key, message)] = plan_problems(tiny_study)
    assert key == "train.batch_size" and message.endswith("(run data.train_size=4)")


def test_a_file_data_sets_training_split_is_checked_too(tiny_study, tmp_path):
    path = tmp_path / "data.npz"
    x, y = np.zeros((6, 3, 4, 4), dtype=np.float32), np.arange(6) % 2
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y)
    tiny_study["data"] = {"name": "npz", "root": str(path)}
    tiny_study["eval"]["test_modes"] = ["eval"]
    [(key, message)] = plan_problems(tiny_study)
    assert (
        key == "train.batch_size" and "8 is larger than the training split (6 samples)" in message
    )


def test_train_mode_test_batches_larger_than_the_test_split_are_refused(tiny_study):
    tiny_study["eval"].update(batch_size=100, train_mode_batch_sizes=["same", 24])
    plan(tiny_study, "study.yaml")  # an eval-mode batch over the split is just one batch
    tiny_study["eval"]["train_mode_batch_sizes"] = ["same", 25]
    [(key, message)] = plan_problems(tiny_study)
    assert key == "eval.train_mode_batch_sizes"
    assert message.startswith("25 is larger than the test split (24 samples)")
    tiny_study["eval"]["test_modes"] = ["eval", "precise"]  # no train-mode test: unused
    plan(tiny_study, "study.yaml")


def test_generated_data_too_large_for_memory_is_refused_before_any_run(tiny_study):
    tiny_study["data"]["image_size"] = 100_000
    [(key, message)] = plan_problems(tiny_study)
    assert key == "data.image_size"
    assert message.startswith("48 + 24 generated samples of 3×100000×100000 take")
    assert "over the 16 GiB limit" in message and "lower data.image_size" in message
    tiny_study["data"].update(name="synthetic3d", image_size=None, train_size=200_000)
    [(key, message)] = plan_problems(tiny_study)
    assert key == "data.train_size" and "of 1×32×32×32 take" in message
    tiny_study["data"].update(name="synthetic2d", image_size=8, train_size=10**12)
    [(key, message)] = plan_problems(tiny_study)
    assert key == "data.train_size"  # the typo, though data.image_size is set too


def test_every_problem_of_the_study_and_of_its_sweep_is_reported_at_once(tiny_study):
    tiny_study["model"]["nrom"] = "batch"
    tiny_study["sweep"] = {
        "train.batchsize": [1, 2],  # left out: the other axes' runs are still checked
        "train.lr": [0.1, -0.5],
        "exclude": [{"seed": 0}],
    }
    assert plan_problems(tiny_study) == [
        ("model.nrom", "unknown key (did you mean 'norm'?)"),
        ("sweep.train.batchsize", "not a config key (did you mean 'batch_size'?)"),
        ("sweep.exclude[0].seed", "not a swept key"),
        ("sweep.train.lr", "Input should be greater than 0 (got -0.5) (value -0.5)"),
    ]


def test_a_runs_data_checks_run_beside_a_malformed_part_of_the_sweep(tiny_study):
    tiny_study["sweep"] = {"zip": [{"seed": [0, 1], "train.lr": [0.1]}], "train.batch_size": [64]}
    assert [key for key, _ in plan_problems(tiny_study)] == [
        "sweep.zip[0]",
        "sweep.train.batch_size",
    ]


def test_each_run_does_not_repeat_the_studys_own_problems(tiny_study):
    tiny_study["train"]["epochs"] = -1
    tiny_study["sweep"] = {"seed": [0, 1, 2], "train.lr": [-1, 0.1]}
    assert plan_problems(tiny_study) == [
        ("train.epochs", "Input should be greater than or equal to 1 (got -1)"),
        ("sweep.train.lr", "Input should be greater than 0 (got -1) (value -1)"),
    ]


def test_runs_an_exclude_rule_drops_are_not_checked_while_an_axis_it_names_is_malformed(
    tiny_study,
):
    tiny_study["sweep"] = {
        "train.lr": [0.1, -1],
        "train.batch_size": [8, 8],
        "exclude": [{"train.lr": -1, "train.batch_size": 8}],
    }
    assert plan_problems(tiny_study) == [("sweep.train.batch_size", "values repeat: [8, 8]")]


def test_a_same_test_batch_is_checked_against_the_test_split_as_the_run_resolves_it(tiny_study):
    tiny_study["data"]["test_size"] = 4  # "same" is the batch of 8: one test batch of 4
    [(key, message)] = plan_problems(tiny_study)
    assert key == "eval.train_mode_batch_sizes"
    assert message.startswith(
        "same (the statistics batch, 8) is larger than the test split (4 samples): train mode "
        "would test one batch of 4 labelled same"
    )
    tiny_study["train"]["norm_batch_size"] = 2  # "same" is the normalization batch of 2
    plan(tiny_study, "study.yaml")
    tiny_study["train"]["norm_batch_size"] = None
    tiny_study["sweep"] = {"train.batch_size": [4, 8]}
    [(key, message)] = plan_problems(tiny_study)
    assert key == "eval.train_mode_batch_sizes" and message.endswith("(run train.batch_size=8)")


def test_too_much_generated_data_blames_the_swept_size_key(tiny_study):
    tiny_study["sweep"] = {"data.train_size": [48, 10**9]}  # image_size 8 is set in the file
    [(key, message)] = plan_problems(tiny_study)
    assert key == "sweep.data.train_size"
    assert "over the 16 GiB limit" in message and message.endswith("(value 1000000000)")


def test_a_problem_many_runs_share_is_one_line_and_a_few_runs_each_name_theirs(
    tiny_study, tmp_path
):
    tiny_study["train"]["init_from"] = {"study": str(tmp_path / "nowhere")}
    tiny_study["sweep"] = {"seed": [0, 1, 2, 3, 4]}
    with pytest.raises(ConfigError) as every:
        plan(tiny_study, "s.yaml")
    [line] = every.value.lines()
    assert "is not a sweep folder" in line and line.endswith("(every run)")
    tiny_study["sweep"] = {"seed": [0, 1]}
    with pytest.raises(ConfigError) as two:
        plan(tiny_study, "s.yaml")
    assert [line[-7:] for line in two.value.lines()] == ["seed=0)", "seed=1)"]
