"""The generators ``synthetic2d`` and ``synthetic3d``: seeded renderers of shapes and
textures with per-image intensity variation (what that builds in: :mod:`bnstudy.data`)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from bnstudy.data.core import Dataset, DatasetSpec, _build_dataset, _positive, stream_seed

NATIVE_SIZE = 32
_CHUNK_PIXELS = 1 << 21  # pixels (or voxels) per channel rendered at once


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
        default_sizes=kind.default_sizes,
    )
