"""Tests for bnstudy.data.medmnist: round trips, sizes from the file name, malformed files."""

import numpy as np
import pytest
import torch
from conftest import write_medmnist
from data_helpers import _expected, _load, _one_line


def test_medmnist3d_round_trip(tmp_path):
    arrays = write_medmnist(tmp_path / "organmnist3d.npz", counts=(12, 6))
    data = _load(
        "medmnist3d", root=str(tmp_path / "organmnist3d.npz"), train_size=None, test_size=None
    )
    assert (data.num_classes, data.in_channels, data.spatial_dims) == (11, 1, 3)
    assert data.train.x.shape == (12, 1, 28, 28, 28) and data.test.x.shape == (6, 1, 28, 28, 28)
    assert data.train.y.tolist() == arrays["train_labels"].ravel().tolist()
    want_train, want_test = _expected(
        arrays["train_images"][:, None].astype(np.float64), arrays["test_images"][:, None] * 1.0
    )
    torch.testing.assert_close(data.train.x, want_train, atol=1e-4, rtol=0)
    torch.testing.assert_close(data.test.x, want_test, atol=1e-4, rtol=0)


def test_medmnist3d_64_file_and_class_count_from_the_name(tmp_path):
    path = tmp_path / "nodulemnist3d_64.npz"
    write_medmnist(path, size=64, counts=(4, 2), classes=2)
    data = _load("medmnist3d", root=str(path), train_size=2, test_size=None, image_size=64)
    assert data.train.x.shape == (2, 1, 64, 64, 64) and data.num_classes == 2
    assert sorted(data.train.y.tolist()) == [0, 1]  # balanced
    with pytest.raises(ValueError, match="image_size=28"):
        _load("medmnist3d", root=str(path), image_size=28)


def test_medmnist3d_val_split_is_not_needed(tmp_path):
    path = tmp_path / "fracturemnist3d.npz"
    write_medmnist(path, counts=(6, 3), classes=3, drop=("val_images", "val_labels"))
    assert _load("medmnist3d", root=str(path), train_size=None, test_size=None).num_classes == 3


@pytest.mark.parametrize(
    ("name", "bad", "match"),
    [
        ("organmnist3d.npz", {"drop": ("test_labels",)}, "lacks arrays test_labels"),
        ("organmnist3d.npz", {"train_images": np.zeros((3, 28, 28), np.uint8)}, "train_images"),
        ("organmnist3d_64.npz", {}, r"train_images must be \(N, 64, 64, 64\)"),
        ("synapsemnist3d.npz", {"classes": 3}, "train_labels holds 0..2, outside the 0..1"),
        (
            "adrenalmnist3d.npz",
            {"classes": 2, "test_labels": np.zeros((6, 2), np.uint8)},
            "test_labels must be",
        ),
        (
            "vesselmnist3d.npz",
            {"classes": 2, "test_labels": np.zeros((6, 1)) + 0.5},
            "test_labels must be int",
        ),
    ],
)
def test_medmnist3d_malformed_files_are_one_line_naming_file_and_key(tmp_path, name, bad, match):
    path = tmp_path / name
    write_medmnist(path, **bad)
    with pytest.raises(ValueError, match=match) as err:
        _load("medmnist3d", root=str(path))
    assert name in _one_line(err)


def test_medmnist3d_unknown_name_and_missing_file(tmp_path):
    path = tmp_path / "brainmnist3d.npz"
    write_medmnist(path)
    with pytest.raises(ValueError) as err:
        _load("medmnist3d", root=str(path))
    assert all(known in _one_line(err) for known in ("organmnist3d", "synapsemnist3d"))
    with pytest.raises(FileNotFoundError) as err:
        _load("medmnist3d", root=str(tmp_path / "organmnist3d.npz"))
    assert "zenodo.org/records/10519652" in _one_line(err)
    (tmp_path / "nodulemnist3d.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError) as err:
        _load("medmnist3d", root=str(tmp_path / "nodulemnist3d.npz"))
    assert "not a readable .npz" in _one_line(err)
