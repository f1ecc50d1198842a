"""Your own 2D images (``imagefolder``) in one folder per class, resized and decoded once."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from bnstudy.data.core import Dataset, _build_dataset, _positive
from bnstudy.data.files import _SPLITS, _one_line, _require_root, _subset_seeds, balanced_subset

if TYPE_CHECKING:  # torchvision.datasets takes seconds to import: imported where it is used
    from torchvision.datasets import ImageFolder

IMAGE_BYTES_LIMIT = 4 * 2**30  # bytes of float32 images an imagefolder data set may hold


def _image_folder(root: Path, split: str) -> ImageFolder:
    """torchvision's ImageFolder over ``root/split`` (lists the files, decodes nothing)."""
    folder = root / split
    if not folder.is_dir():
        raise FileNotFoundError(
            f"imagefolder: no folder {folder} (root needs train/ and test/, each with one "
            "subfolder of images per class)"
        )
    from torchvision.datasets import ImageFolder

    try:
        return ImageFolder(str(folder))
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"imagefolder: {folder}: {_one_line(error)} (expected {folder}/<class>/<image>)"
        ) from None


def _imagefolder_files(root: Path) -> list[Path]:
    """Every image file ImageFolder reads under root/train and root/test, sorted (what is
    missing or empty is the loader's error to report)."""
    from torchvision.datasets import ImageFolder

    files = []
    for split in _SPLITS:
        with contextlib.suppress(FileNotFoundError):
            files += [Path(p) for p, _ in ImageFolder(str(root / split), allow_empty=True).samples]
    return sorted(files)


def _check_same_classes(train: ImageFolder, test: ImageFolder) -> None:
    if train.classes != test.classes:
        only_train = sorted(set(train.classes) - set(test.classes))
        only_test = sorted(set(test.classes) - set(train.classes))
        raise ValueError(
            f"imagefolder: train and test must have the same class folders: only in train: "
            f"{', '.join(only_train) or '-'}; only in test: {', '.join(only_test) or '-'}"
        )


def _check_fits(count: int, size: int) -> None:
    """Refuse before decoding when count images of 3 x size x size float32 exceed the limit."""
    need = count * 3 * size * size * 4
    if need > IMAGE_BYTES_LIMIT:
        raise ValueError(
            f"imagefolder: {count} images at {size}x{size} take {need / 2**30:.1f} GiB as "
            f"float32 (N·3·S²·4 bytes), over the {IMAGE_BYTES_LIMIT / 2**30:g} GiB limit "
            "(bnstudy.data.imagefolder.IMAGE_BYTES_LIMIT): lower data.image_size, or decode "
            "fewer images with data.train_size / data.test_size"
        )


def _decode(folder: ImageFolder, indices: Tensor, size: int) -> Tensor:
    """The images at ``indices`` as uint8 (N, 3, size, size): RGB, bilinear square resize."""
    out = torch.empty((len(indices), 3, size, size), dtype=torch.uint8)
    for row, index in enumerate(indices.tolist()):
        path = folder.samples[index][0]
        try:
            image = folder.loader(path).resize((size, size), Image.Resampling.BILINEAR)
        except OSError as error:
            raise ValueError(f"imagefolder: cannot read {path}: {_one_line(error)}") from None
        out[row] = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    return out


def load_imagefolder(
    *,
    train_size: int | None,
    test_size: int | None,
    seed: int,
    root: str | None,
    image_size: int | None,
) -> Dataset:
    """Your own 2D images: ``root/train/<class>/*`` and ``root/test/<class>/*`` read with
    ``torchvision.datasets.ImageFolder`` (its extensions: .jpg .jpeg .png .ppm .bmp .pgm .tif
    .tiff .webp); both splits must have the same class folders (labels: sorted names).

    Each image is converted to RGB (alpha dropped, grey repeated) and resized to
    ``image_size`` x ``image_size`` (required) with Pillow's bilinear filter, which averages
    over the source pixels when shrinking; the aspect ratio is not kept. Everything is
    decoded once into one tensor in memory: N·3·S²·4 bytes as float32, refused beyond
    :data:`IMAGE_BYTES_LIMIT` before decoding (standardizing briefly needs about twice that).
    Sizes below a split's size draw a class-balanced subset with ``seed``
    (:func:`balanced_subset`); only the chosen images are decoded.
    """
    base = _require_root("imagefolder", root)
    if image_size is None:
        raise ValueError("imagefolder resizes every image to image_size: set data.image_size")
    size = _positive("image_size", image_size)
    folders = [_image_folder(base, split) for split in _SPLITS]
    _check_same_classes(*folders)
    picks = [
        balanced_subset(torch.tensor(folder.targets), n, stream, f"{split}_size")
        for folder, n, split, stream in zip(
            folders,
            (train_size, test_size),
            _SPLITS,
            _subset_seeds(seed, "imagefolder"),
            strict=True,
        )
    ]
    _check_fits(sum(len(pick) for pick in picks), size)
    splits = []
    for folder, pick in zip(folders, picks, strict=True):
        splits += [_decode(folder, pick, size), torch.tensor(folder.targets)[pick]]
    return _build_dataset(*splits, num_classes=len(folders[0].classes))
