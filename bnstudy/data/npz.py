"""Any ``x_train, y_train, x_test, y_test`` arrays (``npz``): 2D or 3D, channels first or
last."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from bnstudy.data.core import Dataset, _build_dataset, _positive
from bnstudy.data.files import _check_image_size, _read_npz, _require_root

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
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


def _head(x: Tensor, y: Tensor, n: int | None, what: str) -> tuple[Tensor, Tensor]:
    """The first ``n`` examples (all when ``n`` is None)."""
    if n is None:
        return x, y
    if _positive(what, n) > len(y):
        raise ValueError(f"{what}={n} but only {len(y)} examples are available")
    return x[:n], y[:n]


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
