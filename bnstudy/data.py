"""Data sets for the batch-size study, loaded whole into tensors (no DataLoader).

Two synthetic generators need no files and are bit-for-bit reproducible from a seed:

* ``synthetic2d``: CIFAR-shaped RGB images of ten shapes and textures.
* ``synthetic3d``: single-channel volumes of six 3D shapes, like small medical scans.

Both vary brightness, contrast and colour (or scanner gain and offset) from image to
image. That per-image intensity variation is the point: it is what statistics computed
per instance (InstanceNorm, GroupNorm) can remove and per-batch statistics (BatchNorm)
can only average over, so it is where small batches should hurt BatchNorm.

Four file loaders read real data (``data.root``):

* ``cifar10``: CIFAR-10 through ``torchvision.datasets.CIFAR10`` from
  ``root/cifar-10-batches-py`` (``data.download`` fetches it where there is internet).
* ``medmnist3d``: a MedMNIST v2 3D set (OrganMNIST3D, NoduleMNIST3D, ...) from its published
  ``.npz`` file, 28³ or the MedMNIST+ 64³ size; the file name says which set.
* ``imagefolder``: your own 2D images in ``root/train/<class>/`` and ``root/test/<class>/``
  (``torchvision.datasets.ImageFolder``), resized to ``image_size`` and decoded once.
* ``npz``: any ``x_train, y_train, x_test, y_test`` arrays, 2D or 3D.

A ``train_size``/``test_size`` below a split's size draws a class-balanced subset with
``data.seed`` from the three labelled sets (:func:`balanced_subset`); ``npz`` takes the first
examples. Each loader's files (``DatasetSpec.files``) are hashed into run identity.

Every loader returns splits standardized per channel with the train split's mean and
std (see ``_build_dataset``), so models never see raw intensities. Random crops and flips
in training are done on the device, batch by batch (:mod:`bnstudy.augment`).

What the generators build in, and whom it favours: every synthetic image gets its own
contrast, brightness and per-channel gain (2D) or gain and offset (3D). On the single-channel
volumes of ``synthetic3d`` an InstanceNorm right after the first conv removes a per-volume
affine intensity change exactly, and nothing else does, so "only InstanceNorm learns" on
that data says little about BN. ``intensity="per_sample_zscore"`` normalizes each sample
(over its channels and pixels) before anything else, as real 3D pipelines z-score each
volume: it removes the per-sample offset and overall scale (not the per-channel gain of 2D
images) and leaves the label-carrying shape intact. Study both (configs/intensity.yaml).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import re
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

if TYPE_CHECKING:  # torchvision.datasets takes seconds to import: imported where it is used
    from torchvision.datasets import ImageFolder

NATIVE_SIZE = 32
_CHUNK_PIXELS = 1 << 21  # pixels (or voxels) per channel rendered at once
_EPS = 1e-6


@dataclass(frozen=True)
class Split:
    """One split: ``x`` float32 (N, C, H, W) or (N, C, D, H, W), standardized; ``y`` int64."""

    x: Tensor
    y: Tensor


@dataclass(frozen=True)
class Dataset:
    """Train and test splits with the facts a model needs to be built for them."""

    train: Split
    test: Split
    num_classes: int
    in_channels: int
    spatial_dims: int


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
    ``image_size``, which it then requires.
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


# --------------------------------------------------------------------------- shared helpers


def _standardize(train_x: Tensor, test_x: Tensor) -> tuple[Tensor, Tensor]:
    """Standardize both splits per channel with the train split's mean and std."""
    dims = (0, *range(2, train_x.dim()))
    var, mean = torch.var_mean(train_x, dim=dims, keepdim=True, correction=0)
    std = var.sqrt().clamp_min(_EPS)
    return (train_x - mean) / std, (test_x - mean) / std


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
    train_x, test_x = _standardize(per_sample_zscore(data.train.x), per_sample_zscore(data.test.x))
    return replace(data, train=Split(train_x, data.train.y), test=Split(test_x, data.test.y))


def _build_dataset(
    train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, num_classes: int
) -> Dataset:
    """Standardize with train statistics and wrap the splits (the one path all loaders use)."""
    train_x, test_x = _standardize(train_x.float(), test_x.float())
    return Dataset(
        train=Split(train_x.contiguous(), train_y.long()),
        test=Split(test_x.contiguous(), test_y.long()),
        num_classes=num_classes,
        in_channels=train_x.shape[1],
        spatial_dims=train_x.dim() - 2,
    )


def _positive(name: str, value: int) -> int:
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return value


def stream_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for one named random stream, so train and test never share draws."""
    digest = hashlib.blake2b(f"{seed}/{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _uniform(g: torch.Generator, shape: tuple[int, ...], low: float, high: float) -> Tensor:
    return torch.rand(shape, generator=g) * (high - low) + low


def _grid(size: int, dims: int) -> list[Tensor]:
    """Pixel-centre coordinates in (-1, 1), one broadcastable tensor per axis (z, y, x)."""
    lin = (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0
    shapes = [[1] * (dims + 1) for _ in range(dims)]
    for axis, shape in enumerate(shapes):
        shape[axis + 1] = size
    return [lin.view(shape) for shape in shapes]


def _soft_mask(sd: Tensor, size: int) -> Tensor:
    """Turn a signed distance (positive inside, image units) into a mask with ~1 px edges."""
    return torch.sigmoid(sd * (size / 2.0))


def _vary_intensity(img: Tensor, g: torch.Generator, noise: float) -> Tensor:
    """Per-image contrast, brightness and per-channel gain, then Gaussian pixel noise.

    This models camera exposure and white balance (2D) or scanner gain and offset (3D):
    the label does not depend on it, but every image's own statistics do.
    """
    n, c = img.shape[:2]
    ones = (1,) * (img.dim() - 2)
    mean = img.mean(dim=tuple(range(1, img.dim())), keepdim=True)
    contrast = _uniform(g, (n, 1, *ones), 0.6, 1.4)
    gain = _uniform(g, (n, c, *ones), 0.8, 1.2)
    offset = _uniform(g, (n, 1, *ones), -0.2, 0.2)
    img = (img - mean) * contrast * gain + mean * gain + offset
    return img + noise * torch.randn(img.shape, generator=g)


Renderer = Callable[[int, int, int, torch.Generator], Tensor]  # (label, n, size, g) -> x


@dataclass(frozen=True)
class _Synthetic:
    """A synthetic generator: its renderer and the shape of what it renders."""

    name: str
    render: Renderer
    num_classes: int
    channels: int
    spatial_dims: int
    default_sizes: tuple[int, int]  # train, test


def _synthesize(kind: _Synthetic, n: int, size: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Balanced shuffled labels, then each class rendered in vectorized chunks."""
    y = (torch.arange(n) % kind.num_classes)[torch.randperm(n, generator=g)]
    x = torch.empty((n, kind.channels, *(size,) * kind.spatial_dims))
    chunk = max(1, _CHUNK_PIXELS // size**kind.spatial_dims)
    for label in range(kind.num_classes):
        for part in (y == label).nonzero().squeeze(1).split(chunk):
            x[part] = kind.render(label, len(part), size, g)
    return x, y


def _load_synthetic(
    kind: _Synthetic,
    *,
    train_size: int | None,
    test_size: int | None,
    seed: int,
    image_size: int | None,
    root: str | None = None,
) -> Dataset:
    """Generate train and test from independent seeded streams (``root`` is unused).

    The test split depends only on ``seed``, ``test_size`` and ``image_size``, never on
    ``train_size``, so runs with different training budgets are scored on the same images.
    """
    size = _positive("image_size", NATIVE_SIZE if image_size is None else image_size)
    splits = []
    for stream, n, default in zip(
        ("train", "test"), (train_size, test_size), kind.default_sizes, strict=True
    ):
        g = torch.Generator().manual_seed(stream_seed(seed, f"{kind.name}/{stream}"))
        n = _positive(f"{stream}_size", default if n is None else n)
        splits += _synthesize(kind, n, size, g)
    return _build_dataset(*splits, num_classes=kind.num_classes)


# ------------------------------------------------------------------------------ synthetic 2D


def _disk(u: Tensor, v: Tensor, r: Tensor, phase: Tensor) -> Tensor:
    return r - torch.hypot(u, v)


def _square(u: Tensor, v: Tensor, r: Tensor, phase: Tensor) -> Tensor:
    return 0.8 * r - torch.maximum(u.abs(), v.abs())


def _ring(u: Tensor, v: Tensor, r: Tensor, phase: Tensor) -> Tensor:
    return 0.22 * r - (torch.hypot(u, v) - 0.8 * r).abs()


def _plus(u: Tensor, v: Tensor, r: Tensor, phase: Tensor) -> Tensor:
    bar_u = torch.minimum(0.28 * r - v.abs(), r - u.abs())
    bar_v = torch.minimum(0.28 * r - u.abs(), r - v.abs())
    return torch.maximum(bar_u, bar_v)


def _triangle(u: Tensor, v: Tensor, r: Tensor, phase: Tensor) -> Tensor:
    angles = (2 * math.pi * k / 3 for k in range(3))
    edges = [0.5 * r - (u * math.cos(a) + v * math.sin(a)) for a in angles]
    return torch.minimum(torch.minimum(edges[0], edges[1]), edges[2])


def _two_blobs(u: Tensor, v: Tensor, r: Tensor, phase: Tensor) -> Tensor:
    left = 0.42 * r - torch.hypot(u + 0.58 * r, v)
    right = 0.42 * r - torch.hypot(u - 0.58 * r, v)
    return torch.maximum(left, right)


def _textured(pattern: Callable[[Tensor, Tensor, Tensor], Tensor]):
    """A periodic texture (period 0.8 r) seen through a disk window of radius 1.4 r."""

    def sdf(u: Tensor, v: Tensor, r: Tensor, phase: Tensor) -> Tensor:
        k = 2 * math.pi / (0.8 * r)
        texture = pattern(u * k + phase, v * k + phase, k)
        return torch.minimum(texture, 1.4 * r - torch.hypot(u, v))

    return sdf


def _stripes(a: Tensor, b: Tensor, k: Tensor) -> Tensor:
    return torch.sin(b) / k


def _checks(a: Tensor, b: Tensor, k: Tensor) -> Tensor:
    return torch.sin(a) * torch.sin(b) / k


# name, signed distance in rotated coordinates, base angle, angle jitter (radians)
_PATTERNS_2D = (
    ("disk", _disk, 0.0, math.pi),
    ("square", _square, 0.0, math.pi),
    ("ring", _ring, 0.0, math.pi),
    ("plus", _plus, 0.0, math.pi),
    ("triangle", _triangle, 0.0, math.pi),
    ("horizontal stripes", _textured(_stripes), 0.0, 0.3),
    ("vertical stripes", _textured(_stripes), math.pi / 2, 0.3),
    ("diagonal stripes", _textured(_stripes), math.pi / 4, 0.2),
    ("checkerboard", _textured(_checks), 0.0, math.pi),
    ("two blobs", _two_blobs, 0.0, math.pi),
)


def _shape_mask_2d(label: int, n: int, size: int, g: torch.Generator) -> Tensor:
    """Soft (n, H, W) mask of class ``label`` with jittered position, scale and angle."""
    _, sdf, angle, spread = _PATTERNS_2D[label]
    ys, xs = _grid(size, 2)
    cx, cy = _uniform(g, (n, 1, 1), -0.35, 0.35), _uniform(g, (n, 1, 1), -0.35, 0.35)
    r = _uniform(g, (n, 1, 1), 0.35, 0.6)
    theta = angle + _uniform(g, (n, 1, 1), -spread, spread)
    phase = _uniform(g, (n, 1, 1), 0.0, 2 * math.pi)
    dx, dy = xs - cx, ys - cy
    u = dx * theta.cos() + dy * theta.sin()
    v = dy * theta.cos() - dx * theta.sin()
    return _soft_mask(sdf(u, v, r, phase), size)


def _backdrop_2d(n: int, size: int, g: torch.Generator) -> Tensor:
    """Dark random background colour with a faint gradient and a low-frequency wave."""
    ys, xs = _grid(size, 2)
    xs, ys = xs.unsqueeze(1), ys.unsqueeze(1)
    colour = _uniform(g, (n, 3, 1, 1), 0.0, 0.5)
    slopes = _uniform(g, (2, n, 3, 1, 1), -0.15, 0.15)
    freq = _uniform(g, (2, n, 1, 1, 1), -3.0, 3.0)
    wave = 0.08 * torch.sin(freq[0] * xs + freq[1] * ys + _uniform(g, (n, 1, 1, 1), 0, 6.3))
    return colour + slopes[0] * xs + slopes[1] * ys + wave


def _distractor_2d(n: int, size: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """A faint small blob of random colour somewhere in the image: (opacity mask, colour)."""
    ys, xs = _grid(size, 2)
    cx, cy = _uniform(g, (n, 1, 1), -0.8, 0.8), _uniform(g, (n, 1, 1), -0.8, 0.8)
    radius = _uniform(g, (n, 1, 1), 0.06, 0.14)
    mask = 0.35 * _soft_mask(radius - torch.hypot(xs - cx, ys - cy), size)
    return mask.unsqueeze(1), torch.rand((n, 3, 1, 1), generator=g)


def _render_2d(label: int, n: int, size: int, g: torch.Generator) -> Tensor:
    """(n, 3, S, S) images of one class: shape over backdrop, distractor, then camera effects.

    The shape is always brighter than the backdrop (by a random amount per channel, so
    its hue is random too): with random polarity a small CNN barely learns in 3 epochs.
    """
    mask = _shape_mask_2d(label, n, size, g).unsqueeze(1)
    backdrop = _backdrop_2d(n, size, g)
    img = backdrop + mask * _uniform(g, (n, 3, 1, 1), 0.2, 0.6)
    spot, colour = _distractor_2d(n, size, g)
    img = torch.lerp(img, colour, spot)
    return _vary_intensity(img, g, noise=0.08)


# ------------------------------------------------------------------------------ synthetic 3D


def _radius(c: Tensor) -> Tensor:
    return c.square().sum(dim=0).sqrt()  # faster than Tensor.norm over the leading dim


def _sphere(c: Tensor, r: Tensor, axis: Tensor) -> Tensor:
    return r - _radius(c)


def _cube(c: Tensor, r: Tensor, axis: Tensor) -> Tensor:
    return 0.75 * r - c.abs().amax(dim=0)


def _shell(c: Tensor, r: Tensor, axis: Tensor) -> Tensor:
    return 0.25 * r - (_radius(c) - 0.75 * r).abs()


def _cylinder(c: Tensor, r: Tensor, axis: Tensor) -> Tensor:
    along = (c * axis).sum(dim=0)
    radial = (c.square().sum(dim=0) - along.square()).clamp_min(0).sqrt()
    return torch.minimum(0.45 * r - radial, r - along.abs())


def _cross(c: Tensor, r: Tensor, axis: Tensor) -> Tensor:
    sq = c.square()
    radial = (sq.sum(dim=0, keepdim=True) - sq).clamp_min(0).sqrt()
    return torch.minimum(0.3 * r - radial, r - c.abs()).amax(dim=0)


def _plate(c: Tensor, r: Tensor, axis: Tensor) -> Tensor:
    along = (c * axis).sum(dim=0)
    extent = (c.abs() * (1 - axis)).amax(dim=0)
    return torch.minimum(0.22 * r - along.abs(), 0.9 * r - extent)


# name, signed distance of centred coordinates c (3, n, D, H, W) with a one-hot axis
_SHAPES_3D = (
    ("sphere", _sphere),
    ("cube", _cube),
    ("hollow shell", _shell),
    ("cylinder", _cylinder),
    ("3D cross", _cross),
    ("plate", _plate),
)


def _coords_3d(size: int) -> Tensor:
    """(3, 1, S, S, S) stacked z, y, x coordinates."""
    return torch.stack(torch.broadcast_tensors(*_grid(size, 3)))


def _shape_mask_3d(label: int, n: int, size: int, g: torch.Generator) -> Tensor:
    """Soft (n, D, H, W) mask of class ``label`` with jittered centre, size and axis."""
    centre = _uniform(g, (3, n, 1, 1, 1), -0.2, 0.2)
    c = _coords_3d(size) - centre
    r = _uniform(g, (n, 1, 1, 1), 0.45, 0.7)
    axis = torch.eye(3)[torch.randint(3, (n,), generator=g)].T.reshape(3, n, 1, 1, 1)
    return _soft_mask(_SHAPES_3D[label][1](c, r, axis), size)


def _render_3d(label: int, n: int, size: int, g: torch.Generator) -> Tensor:
    """(n, 1, S, S, S) volumes of one class, like small scans from different scanners.

    The object is brighter than the background by a random amount (like an enhancing
    lesion), a smooth linear bias field scales everything (as coil sensitivity does in
    MRI), then each volume gets its own gain, offset and noise.
    """
    mask = _shape_mask_3d(label, n, size, g)
    background = _uniform(g, (n, 1, 1, 1), 0.0, 0.2)
    delta = _uniform(g, (n, 1, 1, 1), 0.3, 1.0)
    slopes = _uniform(g, (3, n, 1, 1, 1), -0.25, 0.25)
    bias = 1 + (slopes * _coords_3d(size)).sum(dim=0)
    vol = (background + mask * delta) * bias
    return _vary_intensity(vol.unsqueeze(1), g, noise=0.1)


_SYNTHETIC_2D = _Synthetic("synthetic2d", _render_2d, 10, 3, 2, (5000, 1000))
_SYNTHETIC_3D = _Synthetic("synthetic3d", _render_3d, len(_SHAPES_3D), 1, 3, (1000, 500))


def _synthetic_spec(kind: _Synthetic, description: str) -> DatasetSpec:
    """The registry entry of a generator; its loader ignores ``root``."""
    return DatasetSpec(
        functools.partial(_load_synthetic, kind),
        kind.spatial_dims,
        False,
        description,
        in_channels=kind.channels,
        num_classes=kind.num_classes,
    )


# ---------------------------------------------------------------------------------- files


def _require_root(name: str, root: str | None) -> Path:
    if root is None:
        raise ValueError(f"data set {name!r} is read from files: give root")
    return Path(root)


def _one_line(error: BaseException) -> str:
    """An exception's message with its line breaks and runs of spaces collapsed."""
    return " ".join(str(error).split())


def _check_image_size(name: str, image_size: int | None, spatial: tuple[int, ...]) -> None:
    if image_size is not None and any(side != image_size for side in spatial):
        shape = "x".join(map(str, spatial))
        raise ValueError(
            f"{name}: image_size={image_size} but the files hold {shape} data "
            "(no resizing; leave image_size unset)"
        )


def _head(x: Tensor, y: Tensor, n: int | None, what: str) -> tuple[Tensor, Tensor]:
    """The first ``n`` examples (all when ``n`` is None)."""
    if n is None:
        return x, y
    if _positive(what, n) > len(y):
        raise ValueError(f"{what}={n} but only {len(y)} examples are available")
    return x[:n], y[:n]


def _class_quotas(counts: Tensor, n: int, g: torch.Generator) -> Tensor:
    """Examples to take per class, ``n`` in all, as equal as ``counts`` (available per class)
    allow: every class gets min(available, L) for the largest level L that fits, and the
    n - sum left over go one each to classes with more than L, chosen by a seeded draw."""
    low, high = 0, int(counts.max())
    while low < high:  # the largest level L with sum(min(counts, L)) <= n
        mid = (low + high + 1) // 2
        low, high = (mid, high) if int(counts.clamp(max=mid).sum()) <= n else (low, mid - 1)
    quotas = counts.clamp(max=low)
    fuller = (counts > low).nonzero().squeeze(1)
    lucky = fuller[torch.randperm(len(fuller), generator=g)[: n - int(quotas.sum())]]
    quotas[lucky] += 1
    return quotas


def balanced_subset(labels: Tensor, n: int | None, seed: int, what: str) -> Tensor:
    """Indices (ascending, so file order is kept) of ``n`` examples drawn class-balanced with
    ``seed``: floor(n / K) from each of the K classes plus one more from n mod K classes
    chosen by the seeded draw; a class with fewer examples gives all it has and the rest is
    spread the same way over the others. Which examples of a class: a seeded permutation.
    ``n`` None or the split's size: every index."""
    if n is None:
        return torch.arange(len(labels))
    if _positive(what, n) > len(labels):
        raise ValueError(f"{what}={n} but only {len(labels)} examples are available")
    g = torch.Generator().manual_seed(seed)
    quotas = _class_quotas(torch.bincount(labels), n, g)
    chosen = [
        pool[torch.randperm(len(pool), generator=g)[:quota]]
        for pool, quota in zip(_indices_by_class(labels), quotas.tolist(), strict=True)
    ]
    return torch.cat(chosen).sort().values


def _indices_by_class(labels: Tensor) -> list[Tensor]:
    """For each class 0..max(labels), the indices of its examples (ascending)."""
    order = torch.argsort(labels, stable=True)
    return list(order.split(torch.bincount(labels).tolist()))


_SPLITS = ("train", "test")


def _subset_seeds(seed: int, name: str) -> tuple[int, int]:
    """Seeds of the train and test subsets: independent, so the test examples of a file data
    set never depend on train_size."""
    return stream_seed(seed, f"{name}/train"), stream_seed(seed, f"{name}/test")


# ------------------------------------------------------------------------------ cifar10

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


# --------------------------------------------------------------------------- medmnist3d

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


def _read_npz(path: Path, keys: tuple[str, ...], name: str) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of the .npz file ``path``; an unreadable or incomplete file is one
    line naming it (and the missing keys)."""
    try:
        arrays = np.load(path, allow_pickle=False)
        if not isinstance(arrays, np.lib.npyio.NpzFile):
            raise ValueError("it holds one array (.npy), not named arrays")
        with arrays:
            found = {key: arrays[key] for key in keys if key in arrays.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise ValueError(
            f"{name}: {path} is not a readable .npz file ({_one_line(error)})"
        ) from None
    missing = [key for key in keys if key not in found]
    if missing:
        raise ValueError(f"{name}: {path} lacks arrays {', '.join(missing)}")
    return found


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


# -------------------------------------------------------------------------- imagefolder

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
            "(bnstudy.data.IMAGE_BYTES_LIMIT): lower data.image_size, or decode fewer images "
            "with data.train_size / data.test_size"
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


# ---------------------------------------------------------------------------------- npz

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
LAYOUTS = ("channels_first", "channels_last")
_FEW_CHANNELS = 4  # a last axis this small, after larger ones, is most likely the channels


def _looks_channels_last(shape: tuple[int, ...]) -> bool:
    """(N, H, W, C) or (N, D, H, W, C) with C <= 4 after larger axes, e.g. (N, 24, 24, 3)."""
    return shape[-1] <= _FEW_CHANNELS < min(shape[1:-1])


def _channels_first(x: np.ndarray, split: str, layout: str | None) -> np.ndarray:
    """x as (N, C, *spatial). ``layout`` None: the file must be channels-first, and a shape
    that looks channels-last is refused rather than guessed."""
    if layout == "channels_last":
        return np.moveaxis(x, -1, 1)
    if layout is None and _looks_channels_last(x.shape):
        raise ValueError(
            f"x_{split} has shape {x.shape}, which looks channels-last (N, ..., C): set "
            "data.layout: channels_last, or data.layout: channels_first if axis 1 really is "
            "the channels"
        )
    return x


def _npz_split(
    x: np.ndarray, y: np.ndarray, split: str, layout: str | None
) -> tuple[Tensor, Tensor]:
    """Check one split's arrays and turn them into float32 x (N, C, *spatial) and int64 y."""
    if x.ndim not in (4, 5):
        raise ValueError(f"x_{split} must be (N, C, H, W) or (N, C, D, H, W), got {x.shape}")
    x = _channels_first(x, split, layout)
    if y.ndim != 1 or len(y) != len(x) or len(y) == 0:
        raise ValueError(f"y_{split} must be 1-D with one label per x_{split} row, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise ValueError(f"y_{split} must hold non-negative integer labels")
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(
        y.astype(np.int64)
    )


def load_npz(
    *,
    train_size: int | None,
    test_size: int | None,
    seed: int,
    root: str | None,
    image_size: int | None = None,
    layout: str | None = None,
) -> Dataset:
    """User data from the ``.npz`` file ``root`` with ``x_train, y_train, x_test, y_test``.

    x is (N, C, H, W) or (N, C, D, H, W), float or uint8; spatial_dims follows its rank.
    ``layout`` ``channels_last`` reads (N, H, W, C) / (N, D, H, W, C); None refuses a shape
    that looks channels-last (:func:`_looks_channels_last`) instead of guessing.
    num_classes is the largest label in either full split plus one, so it does not
    change with the sizes asked for. ``seed`` is unused: sizes take the first examples.
    """
    path = _require_root("npz", root)
    if not path.is_file():
        raise FileNotFoundError(f"npz file not found: {path}")
    arrays = _read_npz(path, _NPZ_KEYS, "npz")
    try:
        train_x, train_y = _npz_split(arrays["x_train"], arrays["y_train"], "train", layout)
        test_x, test_y = _npz_split(arrays["x_test"], arrays["y_test"], "test", layout)
    except ValueError as error:
        raise ValueError(f"npz: {path}: {error}") from None
    if train_x.shape[1:] != test_x.shape[1:]:
        raise ValueError(f"x_train {train_x.shape} and x_test {test_x.shape} differ per example")
    _check_image_size("npz", image_size, tuple(train_x.shape[2:]))
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    train = _head(train_x, train_y, train_size, "train_size")
    test = _head(test_x, test_y, test_size, "test_size")
    return _build_dataset(*train, *test, num_classes=num_classes)


# --------------------------------------------------------------------------------- registry

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
) -> Dataset:
    """Load data set ``name`` from ``DATASETS`` (with ``layout`` where its loader reads one),
    normalize each sample's ``intensity`` if asked, and put both splits on ``device``."""
    spec = DATASETS.get(name)
    if spec is None:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    extra = {"layout": layout} if spec.layouts else {}
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
