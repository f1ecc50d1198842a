import torch

from bnstudy import run
from bnstudy.run import evaluation_settings, execute_run
from bnstudy.sweep import plan
from bnstudy.test_modes import TEST_MODES

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
    import bnstudy.run as run_module

    tiny_study["eval"]["test_modes"] = ["eval", "precise", "train"]
    tiny_study["train"]["norm_batch_size"] = 2
    seen = {}
    real = run_module._recalibrate

    def spy(model, data, config):
        seen["before"] = model.features[1].running_mean.clone()
        real(model, data, config)
        seen["after"] = model.features[1].running_mean.clone()
        seen["model"] = model

    monkeypatch.setattr(run_module, "_recalibrate", spy)
    result = execute_run(only_run(tiny_study), CPU)
    by_mode = {t["test_mode"]: t for t in result["tests"]}
    assert result["status"] == "ok" and by_mode["precise"]["status"] == "ok"
    assert not torch.equal(seen["before"], seen["after"])  # recalibration changed them...
    trained = seen["model"].features[1].running_mean
    assert torch.equal(trained, seen["before"])  # ...for the precise test only
    assert by_mode["precise"]["test_flip_rate"] == 0.0
    assert by_mode["train"]["test_batch_size"] == 2  # "same" = the normalization batch
    assert set(result["predictions"]) == {"eval", "precise", "same"}
    assert len(result["predictions"]["eval"]) == 24


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
    recomputed = []
    real = run.recompute_bn_statistics

    def spy(model, batches):
        recomputed.append(torch.cat(list(batches)))
        return real(model, batches)

    monkeypatch.setattr(run, "recompute_bn_statistics", spy)
    tiny_study["eval"]["test_modes"] = list(TEST_MODES)
    config = only_run(tiny_study)
    result = execute_run(config, CPU)
    assert [t["test_mode"] for t in result["tests"]] == ["eval", "train", "precise", "adabn"]
    assert all(t["status"] == "ok" for t in result["tests"]), result["tests"]
    data = run.load_data(config, CPU)
    precise, adabn = recomputed
    assert rows_of(precise, data.train.x) and not rows_of(precise, data.test.x)
    assert rows_of(adabn, data.test.x) and not rows_of(adabn, data.train.x)
