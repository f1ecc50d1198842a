"""Tests for bnstudy.data.npz: 2D and 3D round trips, errors, and the channels layout."""

import numpy as np
import pytest
import torch
from data_helpers import _expected, _load


def _write_npz(path, x_train, y_train, x_test, y_test):
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return str(path)


def test_npz_2d_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    x_train = rng.integers(0, 256, size=(10, 2, 6, 6), dtype=np.uint8)
    x_test = rng.integers(0, 256, size=(4, 2, 6, 6), dtype=np.uint8)
    y_train, y_test = np.array([0, 1, 2, 3] * 2 + [0, 1]), np.array([4, 0, 1, 2])
    path = _write_npz(tmp_path / "d.npz", x_train, y_train, x_test, y_test)
    data = _load("npz", root=path, train_size=None, test_size=None, image_size=6)
    assert (data.num_classes, data.in_channels, data.spatial_dims) == (5, 2, 2)
    assert data.train.y.tolist() == y_train.tolist() and data.test.y.dtype == torch.int64
    want_train, want_test = _expected(x_train.astype(np.float64), x_test.astype(np.float64))
    torch.testing.assert_close(data.train.x, want_train, atol=1e-4, rtol=0)
    torch.testing.assert_close(data.test.x, want_test, atol=1e-4, rtol=0)


def test_npz_3d_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    x_train, x_test = rng.normal(size=(8, 1, 4, 5, 6)), rng.normal(size=(3, 1, 4, 5, 6))
    y_train, y_test = np.array([0, 1, 2, 0, 1, 2, 0, 1]), np.array([2, 1, 0])
    path = _write_npz(tmp_path / "v.npz", x_train, y_train, x_test, y_test)
    data = _load("npz", root=path, train_size=5, test_size=None)
    assert (data.num_classes, data.in_channels, data.spatial_dims) == (3, 1, 3)
    assert data.train.x.shape == (5, 1, 4, 5, 6) and data.train.x.dtype == torch.float32
    assert data.train.y.tolist() == y_train[:5].tolist()
    want_train, want_test = _expected(x_train[:5], x_test)
    torch.testing.assert_close(data.train.x, want_train, atol=1e-4, rtol=0)
    torch.testing.assert_close(data.test.x, want_test, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="image_size"):
        _load("npz", root=path, image_size=4)


def test_npz_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        _load("npz", root=str(tmp_path / "missing.npz"))
    x, y = np.zeros((3, 1, 4, 4)), np.array([0, 1, 0])
    np.savez(tmp_path / "partial.npz", x_train=x, y_train=y, x_test=x)
    with pytest.raises(ValueError, match="y_test"):
        _load("npz", root=str(tmp_path / "partial.npz"))
    flat = _write_npz(tmp_path / "flat.npz", np.zeros((3, 16)), y, np.zeros((3, 16)), y)
    with pytest.raises(ValueError, match="x_train"):
        _load("npz", root=flat)
    floats = _write_npz(tmp_path / "floats.npz", x, y + 0.5, x, y)
    with pytest.raises(ValueError, match="y_train"):
        _load("npz", root=floats)
    ok = _write_npz(tmp_path / "ok.npz", x, y, x, y)
    with pytest.raises(ValueError, match="train_size"):
        _load("npz", root=ok, train_size=4)


def test_npz_channels_last_is_refused_unless_declared(tmp_path):
    rng = np.random.default_rng(3)
    first = rng.normal(size=(6, 3, 24, 24))
    y = np.array([0, 1, 2, 0, 1, 2])
    last = _write_npz(tmp_path / "last.npz", *(np.moveaxis(first, 1, -1), y) * 2)
    with pytest.raises(ValueError, match=r"\(6, 24, 24, 3\), which looks channels-last"):
        _load("npz", root=last, train_size=None, test_size=None)
    read = _load("npz", root=last, train_size=None, test_size=None, layout="channels_last")
    same = _load(
        "npz",
        root=_write_npz(tmp_path / "first.npz", first, y, first, y),
        train_size=None,
        test_size=None,
    )
    assert read.in_channels == 3 and read.train.x.shape == (6, 3, 24, 24)
    torch.testing.assert_close(read.train.x, same.train.x)
    volumes = rng.normal(size=(4, 8, 8, 8, 1))  # (N, D, H, W, C)
    path = _write_npz(tmp_path / "v.npz", volumes, y[:4], volumes, y[:4])
    with pytest.raises(ValueError, match="looks channels-last"):
        _load("npz", root=path, train_size=None, test_size=None)
    declared = _load("npz", root=path, train_size=None, test_size=None, layout="channels_first")
    assert declared.in_channels == 8  # the user said so: axis 1 is the channels


def test_a_layout_is_for_file_data_only(tiny_study):
    from bnstudy.config import ConfigError, validate_study

    tiny_study["data"]["layout"] = "channels_last"
    with pytest.raises(ConfigError, match="data.layout: synthetic2d has a fixed layout"):
        validate_study(tiny_study, "s.yaml")
