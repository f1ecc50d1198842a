import copy
import math

import pytest
import torch

from bnstudy.config import ModelConfig
from bnstudy.data import Split
from bnstudy.models import InputShape
from bnstudy.preflight import make_model
from bnstudy.train import (
    Batching,
    Compute,
    EvalProgress,
    Position,
    Schedule,
    batch_slices,
    evaluate,
    normalization_batch,
    optimizer_steps,
    preserved_buffers,
    scaled_lr,
    train,
)


def tiny_model(norm="batch"):
    torch.manual_seed(0)
    return make_model(
        ModelConfig(widths=[4, 8], norm=norm, group={"groups": 2}),
        InputShape(3, 2, 8),
        num_classes=3,
    )


def tiny_split(n=20):
    generator = torch.Generator().manual_seed(1)
    return Split(
        x=torch.randn(n, 3, 8, 8, generator=generator) * 3 + 1,
        y=torch.randint(0, 3, (n,), generator=generator),
    )


def test_batch_slices_keep_or_drop_the_last_short_batch():
    assert [s.stop - s.start for s in batch_slices(10, 4, drop_last=False)] == [4, 4, 2]
    assert [s.stop - s.start for s in batch_slices(10, 4, drop_last=True)] == [4, 4]
    assert [s.stop - s.start for s in batch_slices(9, 4, drop_last=False)] == [4, 4, 1]


def test_lr_scaling_rules_relative_to_the_base_batch_size():
    assert scaled_lr(0.1, 8, 32, "none") == 0.1
    assert scaled_lr(0.1, 8, 32, "linear") == 0.1 / 4
    assert scaled_lr(0.1, 8, 32, "sqrt") == 0.1 / 2


def running_stats(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "batches" in k}


def test_evaluation_progress_names_the_batch_that_failed():
    # 2x2 images: the second BN sees 1x1 maps, so in train mode it cannot normalize the last
    # batch of 9 = 4 + 4 + 1, which has one sample
    split = Split(x=torch.randn(9, 3, 2, 2), y=torch.zeros(9, dtype=torch.long))
    progress = EvalProgress()
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        evaluate(tiny_model(), split, mode="train", batch_size=4, progress=progress)
    assert progress.describe() == "batch 3 of 3: 1 sample"
    evaluate(tiny_model(), split, mode="eval", batch_size=4, progress=progress)
    assert (progress.batch, progress.batches, progress.samples) == (3, 3, 1)
    assert EvalProgress().describe() == "before the first batch"


def test_train_mode_evaluation_leaves_running_stats_untouched():
    model, split = tiny_model(), tiny_split()
    model.eval()
    before = running_stats(model)
    result = evaluate(model, split, mode="train", batch_size=5)
    after = running_stats(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not model.training
    # the same forward passes without the guard do move them: the test can fail
    with torch.no_grad():
        model.train()
        model(split.x[:5])
    assert not torch.equal(
        before["features.1.running_mean"], model.state_dict()["features.1.running_mean"]
    )
    assert 0 <= result.accuracy <= 1


def test_buffers_and_modes_are_restored_even_on_error():
    model = tiny_model()
    model.eval()
    before = running_stats(model)
    try:
        with preserved_buffers(model):
            model.train()
            model(tiny_split().x)
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert all(torch.equal(v, running_stats(model)[k]) for k, v in before.items())
    assert not model.training


def test_train_mode_outputs_depend_on_the_test_batch_but_eval_mode_ones_do_not():
    model, split = tiny_model(), tiny_split()
    model.eval()
    eval_small = evaluate(model, split, mode="eval", batch_size=4).predictions
    eval_large = evaluate(model, split, mode="eval", batch_size=20).predictions
    train_small = evaluate(model, split, mode="train", batch_size=2)
    train_large = evaluate(model, split, mode="train", batch_size=20)
    assert torch.equal(eval_small, eval_large)
    assert train_small.loss != train_large.loss


def test_ghost_batch_norm_equals_separate_bn_calls_on_the_sub_batches():
    """Outputs and gradients of separate BN calls on the sub-batches; the running statistics
    updated once, as one call on the whole batch updates them."""
    from bnstudy.norms.batch import BatchNorm2d, ManualBatchNorm

    for ghost, plain in (
        (BatchNorm2d(3), torch.nn.BatchNorm2d(3)),
        (ManualBatchNorm(3, 2), ManualBatchNorm(3, 2)),
    ):
        ghost, plain = ghost.double(), plain.double()
        whole = copy.deepcopy(plain)
        x = (torch.randn(8, 3, 4, 4, dtype=torch.float64) * 3 + 1).requires_grad_()
        x_plain = x.detach().clone().requires_grad_()
        upstream = torch.randn(8, 3, 4, 4, dtype=torch.float64)
        with normalization_batch(ghost, 2):
            out = ghost(x)
        expected = torch.cat([plain(part) for part in x_plain.split(2)])
        torch.testing.assert_close(out, expected)
        out.backward(upstream)
        expected.backward(upstream)
        torch.testing.assert_close(x.grad, x_plain.grad)
        torch.testing.assert_close(ghost.weight.grad, plain.weight.grad)
        whole(x.detach())
        torch.testing.assert_close(ghost.running_mean, whole.running_mean)
        torch.testing.assert_close(ghost.running_var, whole.running_var)
        assert ghost.num_batches_tracked == whole.num_batches_tracked == 1
        # and it differs from one call over the whole batch: the test can fail
        assert not torch.allclose(torch.nn.BatchNorm2d(3).double()(x.detach()), out.detach())
        assert ghost.norm_batch_size is None  # only while training


def test_ghost_split_applies_in_training_only():
    from bnstudy.norms.batch import BatchNorm2d

    bn = BatchNorm2d(3).eval()
    bn.norm_batch_size = 1
    x = torch.randn(4, 3, 2, 2)
    torch.testing.assert_close(
        bn(x),
        torch.nn.functional.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias),
    )


def gn_model():
    torch.manual_seed(0)
    return make_model(
        ModelConfig(widths=[4, 8], norm="group", group={"groups": 2}), InputShape(3, 2, 8), 3
    ).double()


def one_step(batching, n=32):
    model, split = gn_model(), tiny_split(n)
    split = Split(split.x.double(), split.y)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train(
        model,
        split,
        optimizer,
        batching=batching,
        schedule=Schedule(total=1),
        generator=torch.Generator().manual_seed(0),
        position=Position(),
    )
    return model


def test_accumulation_gives_the_update_of_one_large_batch_for_a_batch_independent_norm():
    large = one_step(Batching(batch_size=32))
    accumulated = one_step(Batching(batch_size=8, accumulate=4))
    for a, b in zip(large.parameters(), accumulated.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    small = one_step(Batching(batch_size=8))  # one step of 8 samples: a different update
    assert not all(
        torch.allclose(a, b) for a, b in zip(large.parameters(), small.parameters(), strict=True)
    )


def test_an_uneven_last_step_weighs_each_sample_equally():
    # 20 samples, passes of 8, accumulate 3: one step of 8 + 8 + 4 = the mean over all 20
    whole = one_step(Batching(batch_size=20), n=20)
    uneven = one_step(Batching(batch_size=8, accumulate=3), n=20)
    for a, b in zip(whole.parameters(), uneven.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_schedule_warms_up_linearly_then_decays():
    cosine = Schedule(total=10, warmup=2, kind="cosine")
    assert [cosine.factor(s) for s in (0, 1)] == [0.5, 1.0]
    assert cosine.factor(2) == 1.0 and cosine.factor(10) == pytest.approx(0.0)  # after the last
    assert 0 < cosine.factor(9) < 0.05
    assert cosine.factor(6) == pytest.approx(0.5)
    step = Schedule(total=100, kind="step", milestones=(0.5, 0.75), gamma=0.1)
    assert [step.factor(s) for s in (49, 50, 74, 75)] == pytest.approx([1, 0.1, 0.1, 0.01])
    assert Schedule(total=5).factor(4) == 1.0


def test_budgets_in_epochs_steps_or_samples():
    common = dict(batch_size=8, accumulate=2, drop_last=False)
    assert optimizer_steps(100, epochs=3, steps=None, samples=None, **common) == 3 * 7
    assert optimizer_steps(100, epochs=3, steps=5, samples=None, **common) == 5
    # an epoch is 6 steps of 16 and one of 4: 1000 samples are 10 epochs, 1010 one step more
    assert optimizer_steps(100, epochs=3, steps=None, samples=1000, **common) == 70
    assert optimizer_steps(100, epochs=3, steps=None, samples=1010, **common) == 71
    # the same samples whatever the batch: 2 steps (64 + 36) per epoch
    large = dict(batch_size=64, accumulate=1, drop_last=False)
    assert optimizer_steps(100, epochs=3, steps=None, samples=1000, **large) == 20


def test_a_short_last_batch_that_would_shrink_the_normalization_batch_is_refused():
    from bnstudy.train import check_ghost_remainder

    check_ghost_remainder(100, Batching(batch_size=8, norm_batch_size=2))  # last batch 4: ok
    with pytest.raises(ValueError, match="normalization batch of 1 \\(not 2\\)"):
        check_ghost_remainder(101, Batching(batch_size=8, norm_batch_size=2))
    check_ghost_remainder(101, Batching(batch_size=8, norm_batch_size=2, drop_last=True))
    check_ghost_remainder(101, Batching(batch_size=8))  # no ghost batches: plain BN


def test_training_with_ghost_batches_updates_running_stats_once_per_forward():
    model, split = tiny_model(), tiny_split(16)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    train(
        model,
        split,
        optimizer,
        batching=Batching(batch_size=8, norm_batch_size=2),
        schedule=Schedule(total=4),
        generator=torch.Generator().manual_seed(0),
        position=Position(),
    )
    bn = model.features[1]
    assert bn.num_batches_tracked == 4 and bn.norm_batch_size is None  # not 4 × 4 sub-batches


def epoch_lrs(schedule: Schedule) -> list[float]:
    """The lr of each epoch's last step when a GroupNorm model trains 16 samples in batches of
    4 under ``schedule``."""
    model, split = gn_model(), tiny_split(16)
    seen: list[float] = []
    train(
        model,
        Split(split.x.double(), split.y),
        torch.optim.SGD(model.parameters(), lr=0.1),
        batching=Batching(batch_size=4),
        schedule=schedule,
        generator=torch.Generator().manual_seed(0),
        position=Position(),
        on_epoch=lambda stats: seen.append(stats.lr),
    )
    return seen


def test_the_lr_follows_the_schedule_in_training():
    assert epoch_lrs(Schedule(total=8, warmup=4)) == pytest.approx([0.1, 0.1])
    assert epoch_lrs(Schedule(total=8, warmup=8)) == pytest.approx([0.05, 0.1])


def test_the_loop_tells_batch_renorm_the_fraction_of_steps_done_and_unsets_it_after(monkeypatch):
    from bnstudy.norms.renorm import BatchRenorm

    model = tiny_model("batch_renorm")
    seen = []
    real = BatchRenorm.set_progress

    def spy(self, fraction):
        seen.append(fraction)
        real(self, fraction)

    monkeypatch.setattr(BatchRenorm, "set_progress", spy)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    train(
        model,
        tiny_split(),
        optimizer,
        batching=Batching(batch_size=5),
        schedule=Schedule(total=4),
        generator=torch.Generator().manual_seed(0),
        position=Position(),
    )
    layers = [m for m in model.modules() if isinstance(m, BatchRenorm)]
    assert seen == [0.0] * 2 + [0.25] * 2 + [0.5] * 2 + [0.75] * 2 + [None] * 2
    assert all(layer.progress is None for layer in layers) and len(layers) == 2


def test_augment_maps_each_batch_before_the_forward_pass_without_gradient():
    split = tiny_split(16)
    split = Split(split.x.double(), split.y)
    seen = []

    def flip(x):
        seen.append((x.shape[0], torch.is_grad_enabled()))
        return x.flip(-1)

    def run(augment, data):
        model = gn_model()
        train(
            model,
            data,
            torch.optim.SGD(model.parameters(), lr=0.1),
            batching=Batching(batch_size=4),
            schedule=Schedule(total=4),
            generator=torch.Generator().manual_seed(0),
            position=Position(),
            augment=augment,
        )
        return model

    augmented = run(flip, split)
    assert seen == [(4, False)] * 4
    # the same as training on the flipped data set with the same batch order
    flipped = run(None, Split(split.x.flip(-1), split.y))
    for a, b in zip(augmented.parameters(), flipped.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert not torch.equal(split.x, split.x.flip(-1))


def train_tiny(model, split, compute, batching=None, total=4, lr=0.05):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    return train(
        model,
        split,
        optimizer,
        batching=batching or Batching(batch_size=5),
        schedule=Schedule(total=total),
        generator=torch.Generator().manual_seed(0),
        position=Position(),
        compute=compute,
    )


@pytest.mark.parametrize("norm", ["batch", "batch_manual", "batch_keras", "batch_renorm"])
def test_bf16_autocast_on_cpu_trains_and_keeps_running_statistics_float32_and_finite(norm):
    from bnstudy.precise import running_statistic_layers

    model, split = tiny_model(norm), tiny_split()
    seen = []
    model.features[0].register_forward_hook(lambda m, args, out: seen.append(out.dtype))
    result = train_tiny(model, split, Compute("bf16"))
    assert seen and set(seen) == {torch.bfloat16}  # autocast was on: the conv ran in bf16
    assert all(math.isfinite(stats.train_loss) for stats in result.history)
    layers = running_statistic_layers(model)
    assert layers
    for layer in layers:
        assert layer.running_var.dtype == torch.float32
        assert torch.isfinite(layer.running_var).all()
        assert not torch.equal(layer.running_var, torch.ones_like(layer.running_var))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    evaluation = evaluate(model, split, mode="eval", batch_size=7, compute=Compute("bf16"))
    assert math.isfinite(evaluation.loss) and 0 <= evaluation.accuracy <= 1


def test_bf16_results_are_close_to_fp32_but_not_identical():
    fp32 = train_tiny(tiny_model(), tiny_split(), Compute()).history[-1].train_loss
    bf16 = train_tiny(tiny_model(), tiny_split(), Compute("bf16")).history[-1].train_loss
    assert bf16 != fp32 and bf16 == pytest.approx(fp32, rel=0.05)


def test_fp16_scales_each_backward_and_steps_and_updates_once_per_optimizer_step(monkeypatch):
    calls = []
    for name in ("scale", "step", "update"):
        real = getattr(torch.amp.GradScaler, name)

        def spy(self, *args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.amp.GradScaler, name, spy)
    # 20 samples, passes of 5, accumulate 2: two optimizer steps of two passes each per epoch
    result = train_tiny(
        gn_model().float(), tiny_split(), Compute("fp16"), Batching(batch_size=5, accumulate=2)
    )
    assert calls == ["scale", "scale", "step", "update"] * 4
    assert result.steps == 4 and result.skipped_steps == 0


def test_fp16_accumulated_step_matches_one_large_batch():
    # the scaled gradients of the passes add up before one unscale: the update of one batch
    def one(batching):
        model = gn_model().float()
        train_tiny(model, tiny_split(32), Compute("fp16"), batching, total=1, lr=0.1)
        return model

    large, accumulated = one(Batching(batch_size=32)), one(Batching(batch_size=8, accumulate=4))
    for a, b in zip(large.parameters(), accumulated.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=2e-3, rtol=2e-3)


def test_fp16_steps_skipped_for_inf_gradients_are_counted_not_divergence(monkeypatch):
    import functools

    # a loss scale so large that every scaled fp16 gradient overflows: every step is skipped
    huge = functools.partial(torch.amp.GradScaler, init_scale=2.0**100)
    monkeypatch.setattr(torch.amp, "GradScaler", huge)
    model, split = gn_model().float(), tiny_split()
    before = [p.detach().clone() for p in model.parameters()]
    seen = []
    result = train(
        model,
        split,
        torch.optim.SGD(model.parameters(), lr=0.1),
        batching=Batching(batch_size=5),
        schedule=Schedule(total=8),
        generator=torch.Generator().manual_seed(0),
        position=Position(),
        on_epoch=seen.append,
        compute=Compute("fp16"),
    )
    assert result.steps == 8 and result.skipped_steps == 8
    assert [stats.skipped_steps for stats in seen] == [4, 4]
    assert all(math.isfinite(stats.train_loss) for stats in seen)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_a_nan_loss_diverges_in_every_precision(precision):
    from bnstudy.train import Diverged

    split = tiny_split()
    split.x[3] = float("nan")
    with pytest.raises(Diverged, match="loss nan in epoch 1"):
        train_tiny(gn_model().float(), split, Compute(precision))


def test_an_unsupported_autocast_dtype_is_a_clear_error(monkeypatch):
    from bnstudy import train as train_module
    from bnstudy.train import autocast_supported

    assert autocast_supported("cpu", torch.bfloat16)
    assert not autocast_supported("cpu", torch.float64)  # torch would silently run fp32
    monkeypatch.setitem(train_module.PRECISIONS, "fp16", torch.float64)
    with pytest.raises(ValueError, match="cannot autocast to torch.float64 on cpu"):
        Compute("fp16").autocast(torch.device("cpu"))


def conv_net(spatial_dims, norm="batch"):
    torch.manual_seed(0)
    return make_model(
        ModelConfig(widths=[4, 8], norm=norm), InputShape(2, spatial_dims, 4), num_classes=3
    ).double()


@pytest.mark.parametrize(
    ("spatial_dims", "memory_format"),
    [(2, torch.channels_last), (3, torch.channels_last_3d)],
)
def test_channels_last_changes_the_layout_not_the_results(spatial_dims, memory_format):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(12, 2, *[4] * spatial_dims, generator=generator, dtype=torch.float64)
    split = Split(x=x, y=torch.randint(0, 3, (12,), generator=generator))
    compute = Compute(channels_last=True)
    plain, converted = conv_net(spatial_dims), conv_net(spatial_dims)
    compute.prepare(converted, spatial_dims)
    conv = converted.features[0]
    assert conv.weight.is_contiguous(memory_format=memory_format)
    seen = []
    conv.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    losses = [
        train_tiny(model, split, c, Batching(batch_size=4), total=3).history[-1].train_loss
        for model, c in ((plain, Compute()), (converted, compute))
    ]
    assert seen[0].is_contiguous(memory_format=memory_format)
    assert not seen[0].is_contiguous()
    assert losses[0] == pytest.approx(losses[1], rel=1e-10)
    for a, b in zip(plain.parameters(), converted.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    first = evaluate(plain, split, mode="eval", batch_size=5)
    second = evaluate(converted, split, mode="eval", batch_size=5, compute=compute)
    assert first.loss == pytest.approx(second.loss, rel=1e-10)


def test_fp16_reads_the_loss_scale_once_per_optimizer_step(monkeypatch):
    # each read is a host sync on a GPU: one per step (after its update), one per epoch start
    reads = []
    real = torch.amp.GradScaler.get_scale

    def spy(self):
        reads.append(self)
        return real(self)

    monkeypatch.setattr(torch.amp.GradScaler, "get_scale", spy)
    result = train_tiny(gn_model().float(), tiny_split(), Compute("fp16"), total=8)
    assert result.steps == 8 and result.epochs == 2 and result.skipped_steps == 0
    assert len(reads) == 8 + 2


# ---------------------------------------------------- train mode at test: which layers, which order


def dropout_model():
    """A BN layer (batch statistics) and a Dropout (not a norm) in one small classifier."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 16),
        torch.nn.BatchNorm1d(16),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.5),
        torch.nn.Linear(16, 3),
    ).eval()


def test_train_mode_at_test_puts_only_the_norms_in_train_mode_and_pix2pix_the_whole_model():
    model = dropout_model()
    generator = torch.Generator().manual_seed(2)
    split = Split(x=torch.randn(40, 6, generator=generator), y=torch.randint(0, 3, (40,)))
    modes = {"norm": [], "dropout": []}
    model[1].register_forward_hook(lambda m, args, out: modes["norm"].append(m.training))
    model[3].register_forward_hook(lambda m, args, out: modes["dropout"].append(m.training))
    first, second = (evaluate(model, split, mode="train", batch_size=8) for _ in range(2))
    assert torch.equal(first.predictions, second.predictions) and first.loss == second.loss
    assert all(modes["norm"]) and not any(modes["dropout"])  # TENT's choice: norms only
    modes["norm"].clear(), modes["dropout"].clear()
    first, second = (
        evaluate(model, split, mode="train", batch_size=8, whole_model=True) for _ in range(2)
    )
    assert all(modes["norm"]) and all(modes["dropout"])  # pix2pix: dropout on at test
    assert first.loss != second.loss  # dropout's noise
    assert not model.training and not model[1].training and not model[3].training


def test_norms_in_train_mode_follows_the_registry():
    from bnstudy.norms import create_norm
    from bnstudy.train import norms_in_train_mode

    model = torch.nn.Sequential(
        create_norm("batch", 8, 2), create_norm("group", 8, 2), torch.nn.Dropout(), torch.nn.ReLU()
    ).train()
    norms_in_train_mode(model)
    assert [m.training for m in model] == [True, False, False, False] and not model.training
    norms_in_train_mode(model, whole_model=True)
    assert all(m.training for m in model.modules())


def sign_of_mean_task(per_class=200, features=8):
    """A class-sorted split (class 0, then class 1) whose class is the sign of the features'
    mean, and a model that normalizes with BN (no affine) then sums the features: a batch of
    one class loses its class signal in train mode (BN subtracts it), a mixed batch keeps it."""
    generator = torch.Generator().manual_seed(3)
    y = torch.arange(2).repeat_interleave(per_class)
    x = torch.randn(2 * per_class, features, generator=generator) + (2.0 * y - 1)[:, None]
    model = torch.nn.Sequential(
        torch.nn.BatchNorm1d(features, affine=False), torch.nn.Linear(features, 2, bias=False)
    ).eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([-torch.ones(features), torch.ones(features)]))
    return model, Split(x=x, y=y)


def test_train_mode_test_batches_follow_the_order_and_predictions_come_back_in_split_order():
    model, split = sign_of_mean_task()
    n = len(split.y)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(4))
    shuffle = torch.randperm(n, generator=torch.Generator().manual_seed(5))
    shuffled = Split(x=split.x[shuffle], y=split.y[shuffle])
    by_order = evaluate(model, split, mode="train", batch_size=20, order=order)
    shuffled_by_order = evaluate(model, shuffled, mode="train", batch_size=20, order=order)
    # the same accuracy, sorted or shuffled, within sampling error (n = 400)
    assert by_order.accuracy > 0.9 and shuffled_by_order.accuracy > 0.9
    assert abs(by_order.accuracy - shuffled_by_order.accuracy) < 0.05
    # without an order the batches are the split's slices: single-class batches, chance level
    assert evaluate(model, split, mode="train", batch_size=20).accuracy < 0.7
    # the predictions are in the split's order: those of the permuted split, put back
    permuted = evaluate(model, Split(split.x[order], split.y[order]), mode="train", batch_size=20)
    assert torch.equal(by_order.predictions[order], permuted.predictions)
    assert by_order.accuracy == (by_order.predictions == split.y).float().mean().item()
    assert by_order.loss == pytest.approx(permuted.loss, rel=1e-6)
    # eval mode does not depend on the order
    assert torch.equal(
        evaluate(model, split, mode="eval", batch_size=20, order=order).predictions,
        evaluate(model, split, mode="eval", batch_size=20).predictions,
    )
