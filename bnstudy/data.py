"""Data sets for the batch-size study, loaded whole into tensors (no DataLoader).

Two synthetic generators need no files and are bit-for-bit reproducible from a seed:

* ``synthetic2d``: CIFAR-shaped RGB images of ten shapes and textures.
* ``synthetic3d``: single-channel volumes of six 3D shapes, like small medical scans.

Both vary brightness, contrast and colour (or scanner gain and offset) from image to
image. That per-image intensity variation is the point: it is what statistics computed
per instance (InstanceNorm, GroupNorm) can remove and per-batch statistics (BatchNorm)
can only average over, so it is where small batches should hurt BatchNorm.

Two file loaders read real data: ``cifar10`` (the python pickle batches) and ``npz``
(any ``x_train, y_train, x_test, y_test`` arrays, 2D or 3D).

Every loader returns splits standardized per channel with the train split's mean and
std (see ``_build_dataset``), so models never see raw intensities.

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

import functools
import hashlib
import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

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
    ``spatial_dims`` is 2 or 3, or 0 when it is read from the file (``npz``); likewise
    ``in_channels`` and ``num_classes`` are 0 when only the file knows them. ``files(root)``
    lists the files a file-based loader reads (their content is part of run identity).
    """

    load: Callable[..., Dataset]
    spatial_dims: int
    needs_root: bool
    description: str
    in_channels: int = 0
    num_classes: int = 0
    files: Callable[[Path], list[Path]] = lambda root: []
    layouts: bool = False


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


def _stream_seed(seed: int, stream: str) -> int:
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
        g = torch.Generator().manual_seed(_stream_seed(seed, f"{kind.name}/{stream}"))
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


_CIFAR_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")


def _read_cifar_batch(path: Path) -> tuple[Tensor, Tensor]:
    with path.open("rb") as f:
        batch = pickle.load(f, encoding="bytes")
    data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    x = torch.from_numpy(data).float() / 255.0
    return x, torch.tensor(batch[b"labels"], dtype=torch.int64)


def load_cifar10(
    *,
    train_size: int | None,
    test_size: int | None,
    seed: int,
    root: str | None,
    image_size: int | None = None,
) -> Dataset:
    """CIFAR-10 from ``root/cifar-10-batches-py`` (the python pickle version, all six files).

    Read with pickle directly; nothing is downloaded. ``seed`` is unused: sizes take the
    first examples in file order.
    """
    folder = _require_root("cifar10", root) / "cifar-10-batches-py"
    paths = [folder / name for name in _CIFAR_FILES]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"CIFAR-10 files not found: {', '.join(missing)}")
    _check_image_size("cifar10", image_size, (32, 32))
    batches = [_read_cifar_batch(p) for p in paths]
    train_x = torch.cat([x for x, _ in batches[:-1]])
    train_y = torch.cat([y for _, y in batches[:-1]])
    train = _head(train_x, train_y, train_size, "train_size")
    test = _head(*batches[-1], test_size, "test_size")
    return _build_dataset(*train, *test, num_classes=10)


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
    with np.load(path, allow_pickle=False) as arrays:
        missing = [key for key in _NPZ_KEYS if key not in arrays.files]
        if missing:
            raise ValueError(f"{path} lacks arrays {', '.join(missing)}")
        train_x, train_y = _npz_split(arrays["x_train"], arrays["y_train"], "train", layout)
        test_x, test_y = _npz_split(arrays["x_test"], arrays["y_test"], "test", layout)
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
        "CIFAR-10 pickle batches under root",
        in_channels=3,
        num_classes=10,
        files=lambda root: [root / "cifar-10-batches-py" / name for name in _CIFAR_FILES],
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
