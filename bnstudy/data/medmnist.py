"""MedMNIST v2 3D sets (``medmnist3d``) from their published ``.npz`` files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bnstudy.data.core import Dataset, _build_dataset
from bnstudy.data.files import (
    _SPLITS,
    _check_image_size,
    _read_npz,
    _require_root,
    _subset_seeds,
    balanced_subset,
)

# MedMNIST v2 3D sets and their class counts (medmnist/info.py INFO, MedMNIST v3.0)
MEDMNIST3D_CLASSES = {
    "organmnist3d": 11,
    "nodulemnist3d": 2,
    "adrenalmnist3d": 2,
    "fracturemnist3d": 3,
    "vesselmnist3d": 2,
    "synapsemnist3d": 2,
}
_MEDMNIST_NATIVE = 28  # voxels per side of a file without a size suffix
_MEDMNIST_RECORD = "https://zenodo.org/records/10519652"
_SIZE_SUFFIX = re.compile(r"^(?P<set>.+?)(?:_(?P<size>\d+))?$")


def _medmnist_set(path: Path) -> tuple[str, int]:
    """(set name, voxels per side) from the file stem: organmnist3d -> 28, organmnist3d_64 -> 64."""
    match = _SIZE_SUFFIX.match(path.stem.lower())
    name, size = match["set"], int(match["size"] or _MEDMNIST_NATIVE)
    if name not in MEDMNIST3D_CLASSES:
        raise ValueError(
            f"medmnist3d: {path.name}: the file name must be a MedMNIST 3D set, optionally with "
            f"a size suffix (_64): {', '.join(MEDMNIST3D_CLASSES)}"
        )
    return name, size


def _medmnist_split(
    arrays: Any, path: Path, split: str, size: int, classes: int
) -> tuple[np.ndarray, Tensor]:
    """Checked ``{split}_images`` (N, size, size, size) and ``{split}_labels`` (N, 1) -> (N,)."""
    images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    cube = (size,) * 3
    if images.ndim != 4 or images.shape[1:] != cube or len(images) == 0:
        raise ValueError(
            f"{path}: {split}_images must be (N, {size}, {size}, {size}) with N >= 1 "
            f"(the size its name says), got {images.shape}"
        )
    if not np.issubdtype(images.dtype, np.number):
        raise ValueError(f"{path}: {split}_images must be numeric, got {images.dtype}")
    if labels.shape not in ((len(images), 1), (len(images),)):
        raise ValueError(
            f"{path}: {split}_labels must be (N, 1) with N = {len(images)}, got {labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: {split}_labels must be integers, got {labels.dtype}")
    labels = labels.reshape(-1)
    if labels.min() < 0 or labels.max() >= classes:
        raise ValueError(
            f"{path}: {split}_labels holds {labels.min()}..{labels.max()}, outside the "
            f"0..{classes - 1} of a {classes}-class set"
        )
    return images, torch.from_numpy(labels.astype(np.int64))


_MEDMNIST_KEYS = tuple(f"{s}_{k}" for s in ("train", "test") for k in ("images", "labels"))


def load_medmnist3d(
    *,
    train_size: int | None,
    test_size: int | None,
    seed: int,
    root: str | None,
    image_size: int | None = None,
) -> Dataset:
    """A MedMNIST 3D set from its published ``.npz`` file ``root`` (e.g. organmnist3d.npz,
    28³, or organmnist3d_64.npz, 64³, from https://zenodo.org/records/10519652).

    The set, and with it the class count (:data:`MEDMNIST3D_CLASSES`), comes from the file
    name. Images (N, D, H, W) get one channel: x is (N, 1, D, H, W). We train on the train
    split and test on the test split; the val split is not used. Sizes below a split's
    size draw a class-balanced subset with ``seed`` (:func:`balanced_subset`).
    """
    path = _require_root("medmnist3d", root)
    if not path.is_file():
        raise FileNotFoundError(
            f"medmnist3d: no file {path}: download e.g. organmnist3d.npz (28³) or "
            f"organmnist3d_64.npz (64³) from {_MEDMNIST_RECORD}"
        )
    name, size = _medmnist_set(path)
    _check_image_size("medmnist3d", image_size, (size,) * 3)
    arrays = _read_npz(path, _MEDMNIST_KEYS, "medmnist3d")
    classes = MEDMNIST3D_CLASSES[name]
    checked = [_medmnist_split(arrays, path, split, size, classes) for split in _SPLITS]
    splits = []
    for (images, labels), split, n, stream in zip(
        checked, _SPLITS, (train_size, test_size), _subset_seeds(seed, name), strict=True
    ):
        pick = balanced_subset(labels, n, stream, f"{split}_size")
        splits += [torch.from_numpy(images[pick.numpy()]).unsqueeze(1), labels[pick]]
    return _build_dataset(*splits, num_classes=classes)
