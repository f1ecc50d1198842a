"""Splits and data sets, and what every loader shares: per-channel standardization with the
train split's statistics (``_build_dataset``, the one path all loaders use), the optional
per-sample intensity normalization, and seeded random streams."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

_EPS = 1e-6


@dataclass(frozen=True)
class Split:
    """One split: ``x`` float32 (N, C, H, W) or (N, C, D, H, W), standardized; ``y`` int64."""

    x: Tensor
    y: Tensor


@dataclass(frozen=True)
class Dataset:
    """Train and test splits with the facts a model needs to be built for them, and the
    per-channel mean and std of the training inputs (after the intensity step, if any) that
    standardized both splits."""

    train: Split
    test: Split
    num_classes: int
    in_channels: int
    spatial_dims: int
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()


@dataclass(frozen=True)
class DatasetSpec:
    """How to load one named data set.

    ``load(*, train_size, test_size, seed, root, image_size)`` returns a CPU ``Dataset``; a
    loader with ``layouts`` also takes ``layout`` (``data.layout``: how the file orders axes).
    ``spatial_dims`` is 2
    or 3, or 0 when it is read from the file (``npz``); likewise ``in_channels`` and
    ``num_classes`` are 0 when only the file knows them. ``files(root)`` lists the files a
    file-based loader reads (their content is part of run identity). ``download(root)``
    fetches the files where that is possible. ``resizes``: the loader resizes every image to
    ``image_size``, which it then requires. ``default_sizes``: (train, test) samples a
    generator makes when ``train_size``/``test_size`` are null (None for file data sets).
    ``default_root``: the root read when ``data.root`` is not given (None: it must be).
    ``validates``: the loader holds out ``validation_size`` training samples to test on.
    ``selects_classes``: the loader keeps only the ``classes`` asked, relabelled 0, 1, ...
    """

    load: Callable[..., Dataset]
    spatial_dims: int
    needs_root: bool
    description: str
    in_channels: int = 0
    num_classes: int = 0
    files: Callable[[Path], list[Path]] = lambda root: []
    layouts: bool = False
    download: Callable[[Path], None] | None = None
    resizes: bool = False
    default_sizes: tuple[int, int] | None = None
    default_root: str | None = None
    validates: bool = False
    selects_classes: bool = False


# --------------------------------------------------------------------------- shared helpers


def _standardize(train_x: Tensor, test_x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Both splits standardized per channel with the train split's mean and std (biased),
    and that mean and std."""
    dims = (0, *range(2, train_x.dim()))
    var, mean = torch.var_mean(train_x, dim=dims, keepdim=True, correction=0)
    std = var.sqrt().clamp_min(_EPS)
    return (train_x - mean) / std, (test_x - mean) / std, mean.flatten(), std.flatten()


INTENSITY = ("none", "per_sample_zscore")


def per_sample_zscore(x: Tensor) -> Tensor:
    """Each sample minus its mean over channels and pixels, divided by its std (biased)."""
    dims = tuple(range(1, x.dim()))
    var, mean = torch.var_mean(x, dim=dims, keepdim=True, correction=0)
    return (x - mean) / var.sqrt().clamp_min(_EPS)


def _with_intensity(data: Dataset, intensity: str) -> Dataset:
    """``data`` with each sample z-scored (then standardized per channel again) if asked."""
    if intensity == "none":
        return data
    if intensity != "per_sample_zscore":
        raise ValueError(f"intensity {intensity!r}: use one of {', '.join(INTENSITY)}")
    train_x, test_x, mean, std = _standardize(
        per_sample_zscore(data.train.x), per_sample_zscore(data.test.x)
    )
    return replace(
        data,
        train=Split(train_x, data.train.y),
        test=Split(test_x, data.test.y),
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
    )


def _build_dataset(
    train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, num_classes: int
) -> Dataset:
    """Standardize with train statistics and wrap the splits (the one path all loaders use)."""
    train_x, test_x, mean, std = _standardize(train_x.float(), test_x.float())
    return Dataset(
        train=Split(train_x.contiguous(), train_y.long()),
        test=Split(test_x.contiguous(), test_y.long()),
        num_classes=num_classes,
        in_channels=train_x.shape[1],
        spatial_dims=train_x.dim() - 2,
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
    )


def _positive(name: str, value: int) -> int:
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return value


def stream_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for one named random stream, so train and test never share draws."""
    digest = hashlib.blake2b(f"{seed}/{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
