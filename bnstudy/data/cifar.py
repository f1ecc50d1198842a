"""CIFAR-10 (``cifar10``) through ``torchvision.datasets.CIFAR10``, and its download."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bnstudy.data.core import Dataset, _build_dataset
from bnstudy.data.files import (
    _check_image_size,
    _one_line,
    _require_root,
    _subset_seeds,
    balanced_subset,
)

_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
_CIFAR_PAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"
_CIFAR_HOWTO = (
    "set data.download: true on a machine with internet, or download cifar-10-python.tar.gz "
    f"from {_CIFAR_PAGE} and unpack it in {{root}}"
)


def _cifar_files(root: Path) -> list[Path]:
    """The files torchvision's CIFAR10 reads (and checks against their published MD5)."""
    return [root / _CIFAR_FOLDER / name for name in _CIFAR_FILES]


def download_cifar10(root: Path) -> None:
    """Download and unpack CIFAR-10 into ``root`` with torchvision (nothing is fetched when
    the files are there and match their checksums); a failure is one line."""
    from torchvision.datasets import CIFAR10

    try:
        CIFAR10(str(root), train=False, download=True)
    except (OSError, RuntimeError, tarfile.TarError) as error:
        raise OSError(
            f"cifar10: download into {root} failed ({_one_line(error)}); download "
            f"cifar-10-python.tar.gz from {_CIFAR_PAGE} by hand and unpack it in {root}"
        ) from None


def _check_cifar_files(root: Path) -> None:
    """One line saying where CIFAR-10 was looked for and how to get it, if a file is missing."""
    folder = root / _CIFAR_FOLDER
    missing = [path.name for path in _cifar_files(root) if not path.is_file()]
    if not folder.is_dir():
        raise FileNotFoundError(f"cifar10: no folder {folder}: " + _CIFAR_HOWTO.format(root=root))
    if missing:
        raise FileNotFoundError(
            f"cifar10: {folder} lacks {', '.join(missing)}: " + _CIFAR_HOWTO.format(root=root)
        )


def _cifar_split(root: Path, train: bool) -> tuple[np.ndarray, Tensor]:
    """One split as torchvision reads it: uint8 images (N, 32, 32, 3) and int64 labels."""
    from torchvision.datasets import CIFAR10

    try:
        split = CIFAR10(str(root), train=train, download=False)
    except RuntimeError as error:  # torchvision: a file does not match its published MD5
        raise ValueError(
            f"cifar10: files in {root / _CIFAR_FOLDER} do not match the published CIFAR-10 "
            f"checksums (torchvision: {_one_line(error)}); delete them, then "
            + _CIFAR_HOWTO.format(root=root)
        ) from None
    return split.data, torch.tensor(split.targets, dtype=torch.int64)


def load_cifar10(
    *,
    train_size: int | None,
    test_size: int | None,
    seed: int,
    root: str | None,
    image_size: int | None = None,
) -> Dataset:
    """CIFAR-10 from ``root/cifar-10-batches-py`` via ``torchvision.datasets.CIFAR10`` (the
    python version; torchvision checks every file's MD5; :func:`download_dataset` fetches it).

    ``train_size``/``test_size`` below the split's size (50,000/10,000) draw a class-balanced
    subset with ``seed`` (:func:`balanced_subset`; train and test from independent streams);
    images are 32x32, never resized.
    """
    base = _require_root("cifar10", root)
    _check_cifar_files(base)
    _check_image_size("cifar10", image_size, (32, 32))
    splits = []
    for train, n, what, stream in zip(
        (True, False),
        (train_size, test_size),
        ("train_size", "test_size"),
        _subset_seeds(seed, "cifar10"),
        strict=True,
    ):
        images, labels = _cifar_split(base, train)
        pick = balanced_subset(labels, n, stream, what)
        splits += [torch.from_numpy(images[pick.numpy()]).permute(0, 3, 1, 2), labels[pick]]
    return _build_dataset(*splits, num_classes=10)
