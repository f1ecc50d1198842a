"""MNIST and Fashion-MNIST (``mnist``, ``fashion_mnist``) from their original IDX files.

Each set is four files, gzipped or not: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``. They are read from ``data.root`` itself,
or from torchvision's layout under it (``<root>/FashionMNIST/raw/``, ``<root>/MNIST/raw/``);
without a root, Fashion-MNIST is read from where Debian's package ``dataset-fashion-mnist``
installs it (``/usr/share/datasets/fashion-mnist``). Nothing is downloaded.

The IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a big-endian header of two
zero bytes, a type byte (0x08: unsigned bytes) and the number of dimensions, then one 32-bit
size per dimension, then the values. Every way a file can be wrong (missing, not gzip,
another magic number, shorter or longer than its header says, images and labels of different
counts, a label outside the classes) is a one-line ValueError naming the file.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bnstudy.data.core import Dataset, _build_dataset, stream_seed
from bnstudy.data.files import _check_image_size, _subset_seeds, balanced_subset

# the first 4 bytes of each file: 0, 0, type 0x08 (unsigned byte), number of dimensions
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CLASSES = 10


@dataclass(frozen=True)
class IdxSet:
    """One data set in IDX files: its config name, torchvision's folder for it (the files in
    ``<root>/<folder>/raw``), and the Debian package that installs it, with where."""

    name: str
    torchvision_folder: str
    package: str | None = None
    package_root: str | None = None


FASHION_MNIST = IdxSet(
    "fashion_mnist", "FashionMNIST", "dataset-fashion-mnist", "/usr/share/datasets/fashion-mnist"
)
MNIST = IdxSet("mnist", "MNIST")


def idx_folder(dataset: IdxSet, root: Path) -> Path:
    """The folder that holds the files: ``root``, or torchvision's ``root/<folder>/raw`` when
    only that has them."""
    raw = root / dataset.torchvision_folder / "raw"
    first = SPLIT_FILES["train"][0]
    if not _found(root, first) and _found(raw, first):
        return raw
    return root


def _found(folder: Path, base: str) -> Path | None:
    """``folder/base.gz`` or ``folder/base``, whichever exists (the gzipped one first)."""
    for name in (f"{base}.gz", base):
        if (folder / name).is_file():
            return folder / name
    return None


def idx_files(dataset: IdxSet, root: Path) -> list[Path]:
    """The four files read from ``root`` (gzipped or not), as found; a missing one as the
    gzipped name it would have."""
    folder = idx_folder(dataset, root)
    bases = [base for pair in SPLIT_FILES.values() for base in pair]
    return [_found(folder, base) or folder / f"{base}.gz" for base in bases]


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The array an IDX file of unsigned bytes holds, checked against its header."""
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"{path}: not a readable gzip file ({error})") from None
    if len(data) < 4 or int.from_bytes(data[:4], "big") != magic:
        found = f"{int.from_bytes(data[:4], 'big'):#010x}" if len(data) >= 4 else "nothing"
        raise ValueError(
            f"{path}: magic number {found}, not the {magic:#010x} of IDX "
            f"{'images' if magic == IMAGES_MAGIC else 'labels'} (unsigned bytes)"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise ValueError(
            f"{path}: {what}: {len(data)} bytes where its header ({'×'.join(map(str, shape))}) "
            f"makes {expected}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _split(dataset: IdxSet, folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """One split's images (N, H, W) and labels (N,), checked against each other."""
    paths = [_required(dataset, folder, base) for base in SPLIT_FILES[split]]
    images, labels = read_idx(paths[0], IMAGES_MAGIC), read_idx(paths[1], LABELS_MAGIC)
    for path, array, ndim in ((paths[0], images, 3), (paths[1], labels, 1)):
        if array.ndim != ndim:
            raise ValueError(f"{path}: {array.ndim} dimensions, not {ndim}")
    if len(images) != len(labels):
        raise ValueError(
            f"{paths[0]} holds {len(images)} images but {paths[1]} {len(labels)} labels"
        )
    if len(labels) and labels.max() >= CLASSES:
        raise ValueError(
            f"{paths[1]}: label {labels.max()} is outside the classes 0..{CLASSES - 1}"
        )
    return images, labels


def _required(dataset: IdxSet, folder: Path, base: str) -> Path:
    """The file ``base`` (gzipped or not) in ``folder``, or a FileNotFoundError saying how to
    get it."""
    found = _found(folder, base)
    if found is not None:
        return found
    ways = [f"torchvision's layout ({dataset.torchvision_folder}/raw/ under data.root)"]
    if dataset.package is not None:
        ways.insert(0, f"apt-get install {dataset.package} (files in {dataset.package_root})")
    raise FileNotFoundError(
        f"{dataset.name}: no {base}[.gz] in {folder}: get the files with {' or '.join(ways)}"
    )


def load_idx(
    dataset: IdxSet,
    *,
    train_size: int | None,
    test_size: int | None,
    seed: int,
    root: str | None,
    image_size: int | None = None,
    validation_size: int | None = None,
    classes: Sequence[int] | None = None,
) -> Dataset:
    """``dataset`` from its IDX files under ``root`` (module docstring), as 1×H×W images.

    ``classes``: only the images of these labels, relabelled by their position in the list,
    before anything else is drawn.

    ``validation_size`` training images, class-balanced and drawn with ``seed``, are held out
    of training and are the split the runs test on, in place of the test split (to tune a
    protocol without looking at the test set). ``train_size``/``test_size`` below a split's
    size draw class-balanced subsets with ``seed`` (bnstudy.data.files.balanced_subset)."""
    folder = idx_folder(dataset, Path(root or dataset.package_root or "."))
    (train_x, train_y), (test_x, test_y) = (_split(dataset, folder, s) for s in SPLIT_FILES)
    _check_image_size(dataset.name, image_size, train_x.shape[1:])
    if classes is not None:
        (train_x, train_y), (test_x, test_y) = (
            _of_classes(dataset.name, x, y, classes)
            for x, y in ((train_x, train_y), (test_x, test_y))
        )
    train_y, test_y = (torch.from_numpy(y.astype(np.int64)) for y in (train_y, test_y))
    train_seed, test_seed = _subset_seeds(seed, dataset.name)
    if validation_size is not None:
        stream = stream_seed(seed, f"{dataset.name}/validation")
        held = balanced_subset(train_y, validation_size, stream, "validation_size").numpy()
        kept = np.setdiff1d(np.arange(len(train_y)), held)
        test_x, test_y = train_x[held], train_y[held]
        train_x, train_y = train_x[kept], train_y[kept]
    train = balanced_subset(train_y, train_size, train_seed, "train_size")
    test = balanced_subset(test_y, test_size, test_seed, "test_size")
    return _build_dataset(
        torch.from_numpy(train_x[train.numpy()]).unsqueeze(1),
        train_y[train],
        torch.from_numpy(test_x[test.numpy()]).unsqueeze(1),
        test_y[test],
        num_classes=CLASSES if classes is None else len(classes),
    )


def _of_classes(
    name: str, images: np.ndarray, labels: np.ndarray, classes: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """The images of ``classes`` and their labels as positions in ``classes``."""
    unknown = [c for c in classes if not 0 <= c < CLASSES]
    if unknown:
        raise ValueError(f"data.classes: {unknown[0]} is not a class of {name} (0-{CLASSES - 1})")
    position = np.full(CLASSES, -1)
    position[list(classes)] = np.arange(len(classes))
    kept = position[labels] >= 0
    return images[kept], position[labels[kept]]
