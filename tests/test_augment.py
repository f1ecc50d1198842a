"""Tests for bnstudy.augment: batched random crops and flips on the device."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from bnstudy.augment import AUGMENTS, make_augment, random_crop_flip


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _windows(sample: torch.Tensor, padding: int, flip: bool) -> list[torch.Tensor]:
    """Slow reference: every crop of the zero-padded sample (C, *spatial), each also flipped
    along the last axis when ``flip``."""
    spatial = sample.shape[1:]
    padded = F.pad(sample, (padding,) * (2 * len(spatial)))
    found = []
    for offsets in itertools.product(range(2 * padding + 1), repeat=len(spatial)):
        window = (slice(o, o + s) for o, s in zip(offsets, spatial, strict=True))
        crop = padded[(slice(None), *window)]
        found += [crop, crop.flip(-1)] if flip else [crop]
    return found


def _matches(out: torch.Tensor, x: torch.Tensor, padding: int, flip: bool) -> list[int]:
    """For each sample, the index of the reference window its output equals (-1: none)."""
    result = []
    for got, sample in zip(out, x, strict=True):
        windows = _windows(sample, padding, flip)
        result.append(next((i for i, w in enumerate(windows) if torch.equal(got, w)), -1))
    return result


@pytest.mark.parametrize(
    ("shape", "padding"), [((32, 3, 6, 5), 2), ((16, 1, 4, 5, 3), 1), ((8, 2, 3, 3), 4)]
)
@pytest.mark.parametrize("flip", [False, True])
def test_each_sample_is_a_window_of_its_zero_padded_self(shape, padding, flip):
    x = torch.randn(shape)
    out = random_crop_flip(x, _gen(), padding=padding, flip=flip)
    assert out.shape == x.shape and out.dtype == x.dtype
    found = _matches(out, x, padding, flip)
    assert -1 not in found
    assert len(set(found)) > 1  # offsets (and flips) vary from sample to sample


def test_padding_zero_without_flip_is_the_identity():
    x = torch.randn(5, 3, 4, 4)
    assert torch.equal(random_crop_flip(x, _gen(), padding=0, flip=False), x)
    volumes = torch.randn(3, 1, 2, 3, 4)
    assert torch.equal(random_crop_flip(volumes, _gen(), padding=0, flip=False), volumes)


def test_flips_reverse_only_the_last_axis_of_about_half_the_samples():
    x = torch.randn(400, 2, 3, 5)
    out = random_crop_flip(x, _gen(1), padding=0, flip=True)
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    assert (same | flipped).all() and not (same & flipped).any()
    assert 150 < int(flipped.sum()) < 250


def test_crop_shifts_content_by_the_offset():
    x = torch.zeros(200, 1, 5, 5)
    x[:, :, 2, 2] = 1.0  # one bright pixel in the centre
    out = random_crop_flip(x, _gen(2), padding=2, flip=False)
    where = out[:, 0].flatten(1).argmax(1)
    rows, cols = where // 5, where % 5
    assert (out.flatten(1).sum(1) == 1).all()  # with padding 2 the centre pixel always stays in
    assert set(rows.tolist()) == set(range(5)) and set(cols.tolist()) == set(range(5))


def test_deterministic_under_a_seed_and_different_across_seeds():
    x = torch.randn(16, 3, 8, 8)
    a, b = (random_crop_flip(x, _gen(7), padding=2, flip=True) for _ in range(2))
    c = random_crop_flip(x, _gen(8), padding=2, flip=True)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_float64_and_integer_inputs_keep_their_dtype():
    x = torch.randn(6, 2, 5, 5, dtype=torch.float64)
    out = random_crop_flip(x, _gen(), padding=1, flip=True)
    assert out.dtype == torch.float64 and -1 not in _matches(out, x, 1, True)
    images = torch.randint(0, 256, (6, 3, 4, 4), dtype=torch.uint8)
    assert random_crop_flip(images, _gen(), padding=1, flip=True).dtype == torch.uint8


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="N, C"):
        random_crop_flip(torch.randn(4, 5), _gen(), padding=1, flip=True)
    with pytest.raises(ValueError, match="padding"):
        random_crop_flip(torch.randn(4, 1, 5, 5), _gen(), padding=-1, flip=True)


def test_make_augment_by_name():
    assert AUGMENTS == ("none", "crop", "crop_flip")
    assert make_augment("none", 4, seed=0, device="cpu") is None
    x = torch.randn(64, 1, 6, 6)
    crop = make_augment("crop", 0, seed=0, device="cpu")
    assert torch.equal(crop(x), x)  # no padding, no flip
    flip = make_augment("crop_flip", 0, seed=0, device="cpu")
    assert not torch.equal(flip(x), x)
    first, again = (make_augment("crop_flip", 2, seed=3, device="cpu")(x) for _ in range(2))
    assert torch.equal(first, again)
    with pytest.raises(ValueError, match="crop_flip"):
        make_augment("flip", 4, seed=0, device="cpu")


def test_a_run_trains_with_the_configured_augmentation(tiny_study, monkeypatch):
    from bnstudy import run
    from bnstudy.config import validate_study

    seen = []
    real = run.train

    def spy(*args, **kwargs):
        seen.append(kwargs["augment"])
        return real(*args, **kwargs)

    monkeypatch.setattr(run, "train", spy)
    plain = run.execute_run(validate_study(tiny_study, "s.yaml"), torch.device("cpu"))
    tiny_study["data"].update(augment="crop_flip", augment_padding=2)
    augmented = run.execute_run(validate_study(tiny_study, "s.yaml"), torch.device("cpu"))
    assert plain["status"] == augmented["status"] == "ok"
    assert seen[0] is None
    assert seen[1].padding == 2 and seen[1].flip
    assert plain["train"]["train_loss"] != augmented["train"]["train_loss"]
