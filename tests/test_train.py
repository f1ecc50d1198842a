import torch

from bnstudy.config import ModelConfig
from bnstudy.data import Split
from bnstudy.models import InputShape
from bnstudy.run import make_model
from bnstudy.train import batch_slices, evaluate, preserved_buffers, scaled_lr


def tiny_model(norm="batch"):
    torch.manual_seed(0)
    return make_model(
        ModelConfig(widths=[4, 8], norm=norm, norm_groups=2), InputShape(3, 2, 8), num_classes=3
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
