import math

import pytest
import torch

from bnstudy import evaluation, preflight, record, run
from bnstudy.preflight import evaluation_settings
from bnstudy.results import TEST_MODES, setting_key
from bnstudy.run import execute_run
from bnstudy.sweep import plan
from bnstudy.train import Compute

CPU = torch.device("cpu")


def only_run(study):
    _, [run] = plan(study, "study.yaml")
    return run.config


def test_a_run_trains_once_and_reports_every_test_setting(tiny_study):
    tiny_study["eval"]["train_mode_batch_sizes"] = ["same", 1]
    result = execute_run(only_run(tiny_study), CPU)
    assert result["status"] == "ok"
    assert [(t["test_mode"], t["test_batch"], t["test_batch_size"]) for t in result["tests"]] == [
        ("eval", "eval", 12),
        ("train", "same", 8),
        ("train", "1", 1),
    ]
    assert all(0 <= t["test_acc"] <= 1 for t in result["tests"])
    assert result["train"]["steps"] == 6 and result["train"]["samples"] == 48
    data = result["data"]
    assert data["tested_on"] == "test" and data["test_size"] == 24
    assert len(data["standardized_with"]["mean"]) == len(data["standardized_with"]["std"]) == 3


def test_same_config_and_seed_give_bit_identical_metrics_on_cpu(tiny_study):
    first = execute_run(only_run(tiny_study), CPU)
    second = execute_run(only_run(tiny_study), CPU)
    for key in ("train_loss", "train_acc"):
        assert first["train"][key] == second["train"][key]
    assert first["tests"] == second["tests"]
    tiny_study["seed"] = 1
    assert (
        execute_run(only_run(tiny_study), CPU)["train"]["train_loss"]
        != first["train"]["train_loss"]
    )


def test_batchnorm_on_one_value_per_channel_is_an_error_outcome_with_the_message(tiny_study):
    # 2x2 images, two blocks: the second BN sees a 1x1 map; 49 = 6*8 + 1 leaves a batch of 1
    tiny_study["data"].update(image_size=2, train_size=49)
    result = execute_run(only_run(tiny_study), CPU)
    assert result["status"] == "error"
    assert result["error"].startswith(
        "ValueError: Expected more than 1 value per channel when training"
    )
    assert result["error_at"] == "train epoch 1 step 7 (batch of 1)"
    assert "Traceback" in result["traceback"]
    assert all(t["test_acc"] is None for t in result["tests"])


def test_drop_last_removes_the_batch_of_one(tiny_study):
    tiny_study["data"].update(image_size=2, train_size=49)
    tiny_study["train"]["drop_last"] = True
    tiny_study["eval"]["test_modes"] = ["eval"]
    assert execute_run(only_run(tiny_study), CPU)["status"] == "ok"


def test_a_failing_test_setting_does_not_void_the_others(tiny_study):
    tiny_study["data"].update(image_size=2)
    tiny_study["eval"]["train_mode_batch_sizes"] = ["same", 1]
    result = execute_run(only_run(tiny_study), CPU)
    by_label = {t["test_batch"]: t for t in result["tests"]}
    assert result["status"] == "ok"
    assert by_label["eval"]["status"] == by_label["same"]["status"] == "ok"
    assert by_label["1"]["status"] == "error"
    assert "Expected more than 1 value per channel" in by_label["1"]["error"]


def test_a_test_error_names_the_short_last_batch_that_failed(tiny_study):
    # 25 test images in batches of 8: 8 + 8 + 8 + 1, and BN cannot normalize the batch of 1
    tiny_study["data"].update(image_size=2, test_size=25)
    result = execute_run(only_run(tiny_study), CPU)
    by_mode = {t["test_mode"]: t for t in result["tests"]}
    assert by_mode["eval"]["status"] == "ok" and by_mode["train"]["status"] == "error"
    assert "Expected more than 1 value per channel" in by_mode["train"]["error"]
    assert by_mode["train"]["error_at"] == (
        "test train mode (batch 4 of 4: 1 sample; test batch size 8)"
    )


def test_a_non_finite_loss_is_a_diverged_outcome(tiny_study):
    tiny_study["model"]["norm"] = "none"
    tiny_study["train"]["lr"] = 1e6
    result = execute_run(only_run(tiny_study), CPU)
    assert result["status"] == "diverged"
    assert "loss" in result["error"]


def test_train_mode_test_batch_defaults_to_the_training_batch_size(tiny_study):
    tiny_study["train"]["batch_size"] = 6
    settings = evaluation_settings(only_run(tiny_study))
    assert [(s.mode, s.batch_size) for s in settings] == [("eval", 12), ("train", 6)]


def test_a_nan_running_variance_makes_eval_mode_an_error_not_a_chance_accuracy(tiny_study):
    # one value per channel without the guard: the unbiased running variance is 0 * inf = NaN
    tiny_study["data"]["image_size"] = 2
    tiny_study["model"].update(norm="batch_manual", batch_manual={"single_value": "beta"})
    tiny_study["train"]["batch_size"] = 1
    result = execute_run(only_run(tiny_study), CPU)
    by_mode = {t["test_mode"]: t for t in result["tests"]}
    assert result["status"] == "ok"
    assert by_mode["eval"]["status"] == "error" and by_mode["eval"]["test_acc"] is None
    assert "non-finite outputs in eval mode" in by_mode["eval"]["error"]
    assert by_mode["train"]["status"] == "ok"
    tiny_study["model"]["batch_manual"]["running_var"] = (
        "biased"  # Keras' choice keeps eval mode finite
    )
    biased = execute_run(only_run(tiny_study), CPU)
    assert all(t["status"] == "ok" for t in biased["tests"])


def test_a_test_split_smaller_than_the_batch_still_gets_diagnostics(tiny_study):
    tiny_study["data"]["test_size"] = 4
    tiny_study["eval"]["train_mode_batch_sizes"] = [4]  # "same" (8) would not fit: refused
    result = execute_run(only_run(tiny_study), CPU)
    assert result["status"] == "ok" and result["diagnostics"]["output_std"] > 0


def test_eval_mode_flip_rate_is_zero_and_train_mode_flip_rate_is_a_fraction(tiny_study):
    tiny_study["eval"]["train_mode_batch_sizes"] = [2]
    by_mode = {t["test_mode"]: t for t in execute_run(only_run(tiny_study), CPU)["tests"]}
    assert by_mode["eval"]["test_flip_rate"] == 0.0
    assert 0.0 <= by_mode["train"]["test_flip_rate"] <= 1.0


def test_precise_mode_evaluates_recalibrated_statistics_and_keeps_the_trained_ones(
    tiny_study, monkeypatch
):
    tiny_study["eval"]["test_modes"] = ["eval", "precise", "train"]
    tiny_study["train"]["norm_batch_size"] = 2
    seen = {}
    real = evaluation._recalibrate

    def spy(model, data, config):
        seen["before"] = model.features[1].running_mean.clone()
        real(model, data, config)
        seen["after"] = model.features[1].running_mean.clone()
        seen["model"] = model

    monkeypatch.setattr(evaluation, "_recalibrate", spy)
    result = execute_run(only_run(tiny_study), CPU)
    by_mode = {t["test_mode"]: t for t in result["tests"]}
    assert result["status"] == "ok" and by_mode["precise"]["status"] == "ok"
    assert not torch.equal(seen["before"], seen["after"])  # recalibration changed them...
    trained = seen["model"].features[1].running_mean
    assert torch.equal(trained, seen["before"])  # ...for the precise test only
    assert by_mode["precise"]["test_flip_rate"] == 0.0
    assert by_mode["train"]["test_batch_size"] == 2  # "same" = the normalization batch
    assert set(result["predictions"]["predictions"]) == {"eval", "precise", "same"}
    assert len(result["predictions"]["predictions"]["eval"]) == 24


def test_noise_is_measured_at_the_normalization_batch_with_its_predictions(tiny_study):
    tiny_study["train"]["norm_batch_size"] = 2
    diagnostics = execute_run(only_run(tiny_study), CPU)["diagnostics"]
    assert diagnostics["noise_images"] == 2
    assert diagnostics["bn_mean_noise"] > diagnostics["bn_mean_noise_values_law"] > 0
    assert diagnostics["bn_mean_noise_between_images"] > 0


def test_a_ghost_remainder_is_a_setup_error_naming_the_fix(tiny_study):
    tiny_study["data"]["train_size"] = 49  # last batch of 1 with batches of 8
    tiny_study["train"]["norm_batch_size"] = 2
    result = execute_run(only_run(tiny_study), CPU)
    assert result["status"] == "error" and result["error_at"] == "setup"
    assert "set train.drop_last true" in result["error"]


def rows_of(x, split_x):
    """Whether every sample of ``x`` is one of ``split_x``."""
    return bool((x[:, None] == split_x[None]).flatten(2).all(-1).any(1).all())


def test_every_test_mode_runs_and_adabn_recomputes_from_the_test_split(tiny_study, monkeypatch):
    recomputed, estimators = [], []
    real = evaluation.recompute_bn_statistics

    def spy(model, batches, variance):
        recomputed.append(torch.cat(list(batches)))
        estimators.append(variance)
        return real(model, batches, variance)

    monkeypatch.setattr(evaluation, "recompute_bn_statistics", spy)
    tiny_study["eval"]["test_modes"] = list(TEST_MODES)
    config = only_run(tiny_study)
    result = execute_run(config, CPU)
    assert [t["test_mode"] for t in result["tests"]] == [
        "eval",
        "train",
        "precise",
        "adabn",
        "pix2pix",
    ]
    assert all(t["status"] == "ok" for t in result["tests"]), result["tests"]
    data = preflight.load_data(config, CPU)
    precise, adabn = recomputed
    assert rows_of(precise, data.train.x) and not rows_of(precise, data.test.x)
    assert rows_of(adabn, data.test.x) and not rows_of(adabn, data.train.x)
    # the estimator is the config's and each recomputing mode's record names it
    assert estimators == ["population", "population"]
    by_mode = {t["test_mode"]: t.get("precise_variance") for t in result["tests"]}
    assert by_mode == {
        "eval": None,
        "train": None,
        "precise": "population",
        "adabn": "population",
        "pix2pix": None,
    }


def test_the_batch_average_estimator_is_passed_on_and_recorded(tiny_study, monkeypatch):
    estimators = []
    real = evaluation.recompute_bn_statistics

    def spy(model, batches, variance):
        estimators.append(variance)
        return real(model, batches, variance)

    monkeypatch.setattr(evaluation, "recompute_bn_statistics", spy)
    tiny_study["eval"].update(test_modes=["precise"], precise_variance="batch_average")
    result = execute_run(only_run(tiny_study), CPU)
    assert estimators == ["batch_average"]
    assert [t["precise_variance"] for t in result["tests"]] == ["batch_average"]


def fail_above(monkeypatch, limit, training, error=None):
    """Make every model of the following runs raise ``error`` (a CUDA out-of-memory error by
    default) in a forward pass over more than ``limit`` samples in a training step
    (``training``: train mode, keeping activations for the backward pass) or in an eval-mode
    test, as a GPU that runs out of memory above some batch size does."""
    real = run.model_for_data
    error = error or torch.cuda.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.19 GiB total capacity)"
    )

    def too_big(module, args):
        step = module.training and torch.is_grad_enabled()
        if step is training and module.training is training and len(args[0]) > limit:
            raise error

    def model_for_data(config, data):
        model = real(config, data)
        model.register_forward_pre_hook(too_big)
        return model

    monkeypatch.setattr(run, "model_for_data", model_for_data)


def test_out_of_memory_in_training_is_an_oom_outcome_and_frees_memory(tiny_study, monkeypatch):
    freed = []
    monkeypatch.setattr(run, "free_memory", freed.append)
    fail_above(monkeypatch, 4, training=True)
    result = execute_run(only_run(tiny_study), CPU)
    assert result["status"] == "oom"
    assert result["error"].startswith("OutOfMemoryError: CUDA out of memory. Tried to allocate")
    assert result["error_at"] == "train epoch 1 step 1 (batch of 8)"
    assert "Traceback" in result["traceback"]
    assert all(t["status"] == "not run" for t in result["tests"])
    assert freed == [CPU]


def test_other_errors_stay_errors(tiny_study, monkeypatch):
    fail_above(monkeypatch, 4, training=True, error=RuntimeError("CUDA error: misaligned address"))
    result = execute_run(only_run(tiny_study), CPU)
    assert result["status"] == "error" and "misaligned" in result["error"]


def test_out_of_memory_in_one_test_setting_is_that_settings_outcome(tiny_study, monkeypatch):
    freed = []
    monkeypatch.setattr(evaluation, "free_memory", freed.append)
    fail_above(monkeypatch, 10, training=False)  # eval mode tests in batches of 12
    result = execute_run(only_run(tiny_study), CPU)
    by_mode = {t["test_mode"]: t for t in result["tests"]}
    assert result["status"] == "ok"
    assert by_mode["eval"]["status"] == "oom" and by_mode["eval"]["test_acc"] is None
    assert by_mode["eval"]["error_at"] == (
        "test eval mode (batch 1 of 2: 12 samples; test batch size 12)"
    )
    assert "traceback" not in by_mode["eval"]
    assert by_mode["train"]["status"] == "ok"
    assert freed == [CPU]


def test_a_batch_size_sweep_goes_on_past_out_of_memory_and_the_table_says_where(
    tiny_study, tmp_path, monkeypatch
):
    import pandas as pd

    from bnstudy import study
    from bnstudy.sweep import plan

    fail_above(monkeypatch, 8, training=True)
    tiny_study["sweep"] = {"train.batch_size": [4, 8, 16]}
    counts, _ = study.run_study(*plan(tiny_study, "s.yaml"), tmp_path, CPU)
    assert counts == {"ok": 2, "oom": 1}
    table = pd.read_csv(tmp_path / "tiny" / "runs.csv", keep_default_na=False)
    oom = table[table["status"] == "oom"]
    assert set(oom["batch_size"]) == {16} and len(oom) == 2  # both test settings
    assert set(oom["error_at"]) == {"train epoch 1 step 1 (batch of 16)"}
    assert oom["error"].str.startswith("OutOfMemoryError: CUDA out of memory").all()


def test_provenance_records_versions_hardware_numerics_and_memory(tiny_study):
    import re

    provenance = execute_run(only_run(tiny_study), CPU)["provenance"]
    assert provenance["torch"] == torch.__version__ and provenance["device"] == "cpu"
    assert provenance["device_name"] == record.cpu_name() == provenance["cpu"]
    assert provenance["device_name"].endswith("AVX-512")
    assert provenance["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert provenance["cuda"] == torch.version.cuda and provenance["cuda_capability"] is None
    commit = provenance["bnstudy_commit"]
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", commit)
    assert provenance["threads"] == torch.get_num_threads()
    assert provenance["precision"] == "fp32" and provenance["channels_last"] is False
    assert provenance["deterministic"] is False and provenance["cudnn_benchmark"] is False
    assert provenance["nondeterministic_ops"] == []
    assert provenance["peak_memory_mib"] > 0
    assert provenance["peak_memory_of"] == "process (ru_maxrss)"
    assert 0 < provenance["seconds"] < 600
    assert {"bnstudy", "python", "host", "started", "torchvision", "cudnn"} <= set(provenance)


def test_the_source_commit_is_none_outside_a_checkout(monkeypatch, tmp_path):
    import bnstudy

    (tmp_path / "bnstudy").mkdir()
    (tmp_path / "bnstudy" / "__init__.py").write_text("")
    monkeypatch.setattr(bnstudy, "__file__", str(tmp_path / "bnstudy" / "__init__.py"))
    record.source_commit.cache_clear()
    try:
        assert record.source_commit() is None
    finally:
        record.source_commit.cache_clear()


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_reduced_precision_run_is_tested_in_every_mode_and_recorded(tiny_study, precision):
    tiny_study["train"].update(precision=precision, channels_last=True)
    tiny_study["eval"]["test_modes"] = list(TEST_MODES)
    result = execute_run(only_run(tiny_study), CPU)
    assert result["status"] == "ok", result["error"]
    assert all(t["status"] == "ok" for t in result["tests"]), result["tests"]
    assert result["provenance"]["precision"] == precision
    assert result["provenance"]["channels_last"] is True
    assert result["train"]["skipped_steps"] >= 0
    assert math.isfinite(result["diagnostics"]["bn_mean_noise"])


def test_beta_outputs_are_recognized_under_bf16(tiny_study):
    # one value per statistic in the last BN: its output is exactly beta, rounded to bf16
    from bnstudy import diagnostics
    from bnstudy.train import Compute

    tiny_study["data"]["image_size"] = 2
    tiny_study["model"].update(norm="batch_manual", batch_manual={"single_value": "beta"})
    config = only_run(tiny_study)
    data = preflight.load_data(config, CPU)
    model = preflight.model_for_data(config, data)
    last = diagnostics.norm_layers(model)[-1][1]
    with torch.no_grad():
        last.bias.copy_(torch.linspace(0.1, 0.9, len(last.bias)))  # not bf16 numbers
    with Compute("bf16").autocast(CPU):
        probe = diagnostics.output_probe(model, data.test.x[:1], data.train.x[:1])
    assert probe["beta_fraction"] == 1.0


def test_a_deterministic_run_on_the_cpu_matches_the_default_and_restores_the_flags(tiny_study):
    default = execute_run(only_run(tiny_study), CPU)
    tiny_study["train"]["deterministic"] = True
    deterministic = execute_run(only_run(tiny_study), CPU)
    assert deterministic["provenance"]["deterministic"] is True
    assert deterministic["provenance"]["cudnn_deterministic"] is True
    assert deterministic["provenance"]["nondeterministic_ops"] == []
    assert deterministic["train"]["train_loss"] == default["train"]["train_loss"]
    assert deterministic["tests"] == default["tests"]
    assert not torch.are_deterministic_algorithms_enabled()


def test_runs_that_differ_only_in_augmentation_share_the_loaded_data(tiny_study):
    _, runs = plan({**tiny_study, "sweep": {"data.augment": ["none", "crop", "crop_flip"]}}, "a")
    loaded = [preflight.load_data(r.config, torch.device("cpu")) for r in runs]
    assert len(runs) == 3 and all(data is loaded[0] for data in loaded)


def test_provenance_names_the_gpu_as_the_machine_numbers_it(monkeypatch):
    # a pool worker on the machine's GPU 3 sees it alone, as cuda (device.worker_environment)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "a GPU")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: (9, 0))
    monkeypatch.setattr(record, "peak_memory", lambda device: {})
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert record.provenance(torch.device("cuda"), 0.0, Compute(), {})["device"] == "cuda:3"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert record.provenance(torch.device("cuda:1"), 0.0, Compute(), {})["device"] == "cuda:1"


def test_a_crashed_run_has_the_record_of_a_run_with_nothing_done(tiny_study):
    config = only_run(tiny_study)
    crashed, trained = run.crashed_record(config, -9), execute_run(config, CPU)
    assert set(crashed) == set(trained) - {"data"}
    assert crashed["status"] == "crashed"
    assert crashed["error"] == "worker process died (killed by SIGKILL)"
    assert crashed["traceback"] == "" and crashed["predictions"] == {}
    settings = [(t["test_mode"], t["test_batch"], t["test_batch_size"]) for t in crashed["tests"]]
    assert settings == [
        (t["test_mode"], t["test_batch"], t["test_batch_size"]) for t in trained["tests"]
    ]
    assert {t["status"] for t in crashed["tests"]} == {"not run"}


# ------------------------------------------- test order, per-image outputs and the pix2pix mode


def sign_of_mean_data(per_class=200, features=8, sort=True):
    """Two classes in blocks (a class-sorted file) or shuffled; the class is the sign of the
    features' mean (see sign_of_mean_model)."""
    from bnstudy.data import Dataset, Split

    generator = torch.Generator().manual_seed(3)
    y = torch.arange(2).repeat_interleave(per_class)
    x = torch.randn(2 * per_class, features, generator=generator) + (2.0 * y - 1)[:, None]
    if not sort:
        shuffle = torch.randperm(len(y), generator=torch.Generator().manual_seed(5))
        x, y = x[shuffle], y[shuffle]
    split = Split(x=x, y=y)
    return Dataset(train=split, test=split, num_classes=2, in_channels=features, spatial_dims=0)


def sign_of_mean_model(features=8):
    """BN without affine, then the features' sum: in train mode a single-class batch loses its
    class signal (≈ 50 %), a mixed batch keeps it."""
    model = torch.nn.Sequential(
        torch.nn.BatchNorm1d(features, affine=False), torch.nn.Linear(features, 2, bias=False)
    ).eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([-torch.ones(features), torch.ones(features)]))
    return model


def test_a_class_sorted_test_split_gives_the_train_mode_accuracy_of_the_shuffled_one(tiny_study):
    config = only_run(tiny_study)
    setting = preflight.EvalSetting("train", "20", 20)
    tested = {
        sort: evaluation.evaluate_setting(
            sign_of_mean_model(), sign_of_mean_data(sort=sort), setting, config, Compute()
        )
        for sort in (True, False)
    }
    accuracy = {sort: test["test_acc"] for sort, (test, *_) in tested.items()}
    assert accuracy[False] > 0.9
    assert abs(accuracy[True] - accuracy[False]) < 0.05  # sampling error at n = 400: ≈ 0.015
    assert tested[True][0]["test_order_seed"] == config.eval.test_order_seed


def test_the_test_order_and_each_reshuffle_are_distinct_permutations():
    for seed in (0, 1, 7):
        seeds = [0] + [evaluation.reshuffle_seed(seed, draw) for draw in range(1, 4)]
        orders = [evaluation.seeded_order(50, order_seed, CPU) for order_seed in seeds]
        assert all(sorted(order.tolist()) == list(range(50)) for order in orders)
        assert len({tuple(order.tolist()) for order in orders}) == 4
    assert not torch.equal(evaluation.seeded_order(50, 0, CPU), torch.arange(50))


def test_recalibration_batches_are_not_in_file_order():
    from bnstudy.data import Split

    split = Split(x=torch.arange(100.0)[:, None], y=torch.zeros(100, dtype=torch.long))
    batches = evaluation.seeded_batches(split, 10, 60, seed=0)
    drawn = torch.cat(batches).flatten()
    assert len(batches) == 6 and len(set(drawn.tolist())) == 60
    assert not torch.equal(drawn, torch.arange(60.0))  # not the first 60 in file order
    assert drawn.max() >= 60  # drawn from the whole split


def test_a_run_stores_labels_predictions_and_per_image_flips(tiny_study, tmp_path):
    from bnstudy import store

    tiny_study["eval"].update(train_mode_batch_sizes=["same", 1], flip_reshuffles=3)
    tiny_study["eval"]["test_modes"] = ["eval", "train", "pix2pix"]
    config = only_run(tiny_study)
    result = execute_run(config, CPU)
    outputs = result["predictions"]
    labels = preflight.load_data(config, CPU).test.y.tolist()
    assert outputs["test_labels"] == labels and outputs["flip_reshuffles"] == 3
    keys = {(t["test_mode"], t["test_batch"]): t for t in result["tests"]}
    assert set(outputs["predictions"]) == {"eval", "same", "1", "pix2pix:same", "pix2pix:1"}
    for (mode, label), test in keys.items():
        predictions = outputs["predictions"][setting_key(mode, label)]
        correct = sum(p == y for p, y in zip(predictions, labels, strict=True))
        assert test["status"] == "ok" and correct / len(labels) == pytest.approx(test["test_acc"])
    # flips: train-mode settings with another sample in the batch (pix2pix: dropout too)
    assert set(outputs["flips"]) == {"same", "pix2pix:same", "pix2pix:1"}
    flips = outputs["flips"]["same"]
    assert len(flips) == len(labels) and all(0 <= f <= 3 for f in flips)
    assert sum(flips) / (3 * len(labels)) == pytest.approx(keys["train", "same"]["test_flip_rate"])
    assert keys["eval", "eval"]["test_order_seed"] is None
    assert keys["train", "same"]["test_order_seed"] == config.eval.test_order_seed
    # and the store writes and reads it back
    folder = store.run_dir(tmp_path, "r")
    folder.mkdir(parents=True)
    store.finish_run(folder, dict(result))
    read = store.read_test_outputs(tmp_path, "r")
    assert read.labels == labels and read.reshuffles == 3
    assert read.predictions == outputs["predictions"] and read.flips == outputs["flips"]
    assert store.read_predictions(tmp_path, "r") == outputs["predictions"]
