"""Data augmentation on the device: random crops and flips of a whole batch as tensor ops.

As in airbench (KellerJordan/cifar10-airbench), the training split lives on the device and each
batch is augmented there, with no PIL, no DataLoader and no loop over samples. ``train()``
(bnstudy.train) applies the callable from :func:`make_augment` to each batch's inputs.

The inputs are already standardized per channel (bnstudy.data), so the zero padding of a crop
is the training mean of each channel, not black.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from bnstudy.data import stream_seed

# none; crop (random crop of the zero-padded sample along every spatial axis); crop_flip
# (that crop, then the last axis reversed with probability 1/2: a horizontal flip)
AUGMENTS = ("none", "crop", "crop_flip")


def random_crop_flip(x: Tensor, generator: torch.Generator, *, padding: int, flip: bool) -> Tensor:
    """Each sample of ``x`` (N, C, *spatial), 2D or 3D, zero-padded by ``padding`` on both
    sides of every spatial axis and cropped back to its size at an offset drawn uniformly from
    0..2·padding per axis and sample; with ``flip``, the last axis of each sample is then
    reversed with probability 1/2. Returns a new tensor of ``x``'s shape, dtype and device.

    Draws, from ``generator`` (on any device): the offsets (N, spatial axes), then the flips
    (N,) if ``flip``. Pad, then one gather per axis (no loop over samples).
    """
    if x.dim() < 3:
        raise ValueError(f"expected (N, C, *spatial) input, got shape {tuple(x.shape)}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    spatial = x.shape[2:]
    draw = {"generator": generator, "device": generator.device}
    offsets = torch.randint(0, 2 * padding + 1, (len(x), len(spatial)), **draw).to(x.device)
    flips = torch.randint(0, 2, (len(x),), **draw).bool().to(x.device) if flip else None
    out = F.pad(x, (padding,) * (2 * len(spatial)))
    for axis, size in enumerate(spatial):
        reverse = flips if axis == len(spatial) - 1 else None
        out = _window(out, axis + 2, offsets[:, axis], size, reverse)
    return out


def _window(x: Tensor, axis: int, start: Tensor, size: int, reverse: Tensor | None) -> Tensor:
    """Entries start[n] .. start[n] + size - 1 of ``axis`` for each sample n, in reverse order
    where ``reverse[n]``."""
    position = torch.arange(size, device=x.device)
    index = start[:, None] + position
    if reverse is not None:
        index = torch.where(reverse[:, None], start[:, None] + (size - 1 - position), index)
    shape = [len(x)] + [1] * (x.dim() - 1)
    shape[axis] = size
    target = list(x.shape)
    target[axis] = size
    return x.gather(axis, index.view(shape).expand(target))


@dataclass(frozen=True)
class Augment:
    """A training augmentation: :func:`random_crop_flip` of each batch, drawing from
    ``generator`` (whose state a mid-run checkpoint keeps: bnstudy.train.random_states)."""

    generator: torch.Generator
    padding: int
    flip: bool

    def __call__(self, x: Tensor) -> Tensor:
        return random_crop_flip(x, self.generator, padding=self.padding, flip=self.flip)


def make_augment(
    name: str, padding: int, *, seed: int, device: torch.device | str
) -> Augment | None:
    """The training augmentation ``name`` (one of :data:`AUGMENTS`) drawing from its own
    generator on ``device``, seeded from ``seed`` through a stream of its own (not the
    batch-order stream); None for ``none``."""
    if name not in AUGMENTS:
        raise ValueError(f"augment {name!r}: use one of {', '.join(AUGMENTS)}")
    if name == "none":
        return None
    generator = torch.Generator(device=device).manual_seed(stream_seed(seed, "augment"))
    return Augment(generator, padding, flip=name == "crop_flip")
