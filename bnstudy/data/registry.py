"""The data sets by name (``DATASETS``): loading one onto a device (:func:`load_dataset`),
downloading its files, and their content fingerprint, which is part of run identity."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from bnstudy.data.cifar import _cifar_files, download_cifar10, load_cifar10
from bnstudy.data.core import Dataset, DatasetSpec, Split, _with_intensity
from bnstudy.data.idx import FASHION_MNIST, MNIST, IdxSet, idx_files, load_idx
from bnstudy.data.imagefolder import _imagefolder_files, load_imagefolder
from bnstudy.data.medmnist import load_medmnist3d
from bnstudy.data.npz import load_npz
from bnstudy.data.synthetic import _SYNTHETIC_2D, _SYNTHETIC_3D, _synthetic_spec


def _idx_spec(dataset: IdxSet, description: str) -> DatasetSpec:
    return DatasetSpec(
        functools.partial(load_idx, dataset),
        2,
        True,
        description,
        in_channels=1,
        num_classes=10,
        files=functools.partial(idx_files, dataset),
        default_root=dataset.package_root,
        validates=True,
        selects_classes=True,
    )


DATASETS: dict[str, DatasetSpec] = {
    "synthetic2d": _synthetic_spec(_SYNTHETIC_2D, "generated 3x32x32 images, 10 shapes/textures"),
    "synthetic3d": _synthetic_spec(_SYNTHETIC_3D, "generated 1x32^3 volumes, 6 3D shapes"),
    "cifar10": DatasetSpec(
        load_cifar10,
        2,
        True,
        "CIFAR-10 (3x32x32, 10 classes) via torchvision from root/cifar-10-batches-py",
        in_channels=3,
        num_classes=10,
        files=_cifar_files,
        download=download_cifar10,
    ),
    "medmnist3d": DatasetSpec(
        load_medmnist3d,
        3,
        True,
        "a MedMNIST 3D set (1x28^3 or 1x64^3) from its published .npz file root",
        in_channels=1,
        files=lambda root: [root],
    ),
    "imagefolder": DatasetSpec(
        load_imagefolder,
        2,
        True,
        "your RGB images in root/{train,test}/<class>/, resized to image_size",
        in_channels=3,
        files=_imagefolder_files,
        resizes=True,
    ),
    "fashion_mnist": _idx_spec(
        FASHION_MNIST,
        "Fashion-MNIST (1x28x28, 10 classes) from its IDX files in root, root/FashionMNIST/raw "
        "or /usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist)",
    ),
    "mnist": _idx_spec(
        MNIST, "MNIST (1x28x28, 10 classes) from its IDX files in root or root/MNIST/raw"
    ),
    "npz": DatasetSpec(
        load_npz,
        0,
        True,
        "x/y train/test arrays in the .npz file root (2D or 3D)",
        files=lambda root: [root],
        layouts=True,
    ),
}


def download_dataset(name: str, root: str) -> None:
    """Fetch data set ``name`` into ``root`` (``data.download``, which the config allows only
    where the spec can download) unless all of its files are there."""
    spec = DATASETS[name]
    if not all(path.is_file() for path in spec.files(Path(root))):
        spec.download(Path(root))


def _signature(files: list[Path]) -> tuple:
    """(path, size, mtime) of each file: the cache key of its content hash."""
    return tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)


@functools.lru_cache(maxsize=16)
def _content_hash(signature: tuple, names: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for (path, *_), name in zip(signature, names, strict=True):
        digest.update(name.encode() + b"\0")
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def data_fingerprint(name: str, root: str) -> str:
    """SHA-256 (16 hex digits) of the content of the files data set ``name`` reads under
    ``root`` (with their names relative to it): an edited data file changes run identities,
    other files beside it do not. Cached per process while sizes and mtimes stay the same."""
    files = DATASETS[name].files(Path(root))
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"{name}: files not found: {', '.join(missing)}")
    names = tuple(f.relative_to(root).as_posix() if f != Path(root) else "" for f in files)
    return _content_hash(_signature(files), names)


def _to_device(split: Split, device: torch.device) -> Split:
    return Split(split.x.to(device), split.y.to(device))


def load_dataset(
    name: str,
    *,
    train_size: int | None,
    test_size: int | None,
    seed: int,
    root: str | None,
    image_size: int | None,
    intensity: str = "none",
    device: torch.device | str = "cpu",
    layout: str | None = None,
    validation_size: int | None = None,
    classes: Sequence[int] | None = None,
) -> Dataset:
    """Load data set ``name`` from ``DATASETS`` (with ``layout`` where its loader reads one,
    ``validation_size`` where it holds one out, ``classes`` where it selects them), normalize
    each sample's ``intensity`` if asked, and put both splits on ``device``."""
    spec = DATASETS.get(name)
    if spec is None:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    extra = {"layout": layout} if spec.layouts else {}
    if spec.validates:
        extra["validation_size"] = validation_size
    if spec.selects_classes:
        extra["classes"] = classes
    data = spec.load(
        train_size=train_size,
        test_size=test_size,
        seed=seed,
        root=root,
        image_size=image_size,
        **extra,
    )
    data = _with_intensity(data, intensity)
    device = torch.device(device)
    return replace(data, train=_to_device(data.train, device), test=_to_device(data.test, device))
