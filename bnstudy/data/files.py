"""What the file loaders share: ``root``, one-line errors, ``.npz`` reading, image-size
checks, and seeded class-balanced subsets (:func:`balanced_subset`)."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bnstudy.data.core import _positive, stream_seed


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
