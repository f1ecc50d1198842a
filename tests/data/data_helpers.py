"""Helpers of the data tests: loading a data set by name with small sizes, and checks of
standardization and of one-line errors."""

import numpy as np
import pytest
import torch

from bnstudy.data import load_dataset


def _load(name, *, train_size=60, test_size=30, seed=0, root=None, image_size=None, **kw):
    return load_dataset(
        name,
        train_size=train_size,
        test_size=test_size,
        seed=seed,
        root=root,
        image_size=image_size,
        **kw,
    )


def _assert_standardized(x: torch.Tensor) -> None:
    dims = (0, *range(2, x.dim()))
    var, mean = torch.var_mean(x, dim=dims, correction=0)
    torch.testing.assert_close(mean, torch.zeros_like(mean), atol=1e-4, rtol=0)
    torch.testing.assert_close(var.sqrt(), torch.ones_like(var), atol=1e-4, rtol=0)


def _own_standardized(x: torch.Tensor) -> torch.Tensor:
    dims = (0, *range(2, x.dim()))
    return (x - x.mean(dim=dims, keepdim=True)) / x.std(dim=dims, keepdim=True)


def _expected(raw_train: np.ndarray, raw_test: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel standardization with train statistics, computed independently in numpy."""
    axes = (0, *range(2, raw_train.ndim))
    mean = raw_train.mean(axis=axes, keepdims=True)
    std = raw_train.std(axis=axes, keepdims=True)
    train, test = ((a - mean) / std for a in (raw_train, raw_test))
    return torch.from_numpy(train.astype(np.float32)), torch.from_numpy(test.astype(np.float32))


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    return message
