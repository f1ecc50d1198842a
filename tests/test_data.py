"""Tests for bnstudy.data: synthetic generators, file loaders and the registry."""

import pickle

import numpy as np
import pytest
import torch

from bnstudy.data import DATASETS, Dataset, load_dataset


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


def test_registry_names_and_specs():
    assert set(DATASETS) == {"synthetic2d", "synthetic3d", "cifar10", "npz"}
    assert [DATASETS[n].spatial_dims for n in ("synthetic2d", "synthetic3d", "cifar10", "npz")] == [
        2,
        3,
        2,
        0,
    ]
    assert not DATASETS["synthetic2d"].needs_root and DATASETS["npz"].needs_root
    assert all(spec.description for spec in DATASETS.values())


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError) as err:
        _load("imagenet")
    for name in DATASETS:
        assert name in str(err.value)


# ---------------------------------------------------------------------------- synthetic


@pytest.mark.parametrize(
    ("name", "image_size", "shape", "classes"),
    [
        ("synthetic2d", None, (3, 32, 32), 10),
        ("synthetic2d", 8, (3, 8, 8), 10),
        ("synthetic2d", 64, (3, 64, 64), 10),
        ("synthetic3d", None, (1, 32, 32, 32), 6),
        ("synthetic3d", 12, (1, 12, 12, 12), 6),
    ],
)
def test_synthetic_shapes_dtypes_labels(name, image_size, shape, classes):
    data = _load(name, image_size=image_size)
    assert isinstance(data, Dataset)
    assert (data.num_classes, data.in_channels, data.spatial_dims) == (
        classes,
        shape[0],
        len(shape) - 1,
    )
    for split, n in ((data.train, 60), (data.test, 30)):
        assert split.x.shape == (n, *shape) and split.x.dtype == torch.float32
        assert split.y.shape == (n,) and split.y.dtype == torch.int64
        assert split.y.min() >= 0 and split.y.max() < classes
        assert torch.isfinite(split.x).all()
    assert data.train.y.bincount(minlength=classes).tolist() == [60 // classes] * classes


@pytest.mark.parametrize("name", ["synthetic2d", "synthetic3d"])
def test_synthetic_is_deterministic_per_seed(name):
    a, b, c = (_load(name, seed=seed, image_size=16) for seed in (3, 3, 4))
    for split in ("train", "test"):
        assert torch.equal(getattr(a, split).x, getattr(b, split).x)
        assert torch.equal(getattr(a, split).y, getattr(b, split).y)
        assert not torch.equal(getattr(a, split).x, getattr(c, split).x)


@pytest.mark.parametrize("name", ["synthetic2d", "synthetic3d"])
def test_synthetic_test_split_independent_of_train_size(name):
    small, large = (
        _load(name, train_size=20, image_size=12),
        _load(name, train_size=90, image_size=12),
    )
    assert torch.equal(small.test.y, large.test.y)
    # the train statistics differ, so compare the test images re-standardized on their own
    torch.testing.assert_close(_own_standardized(small.test.x), _own_standardized(large.test.x))


@pytest.mark.parametrize("name", ["synthetic2d", "synthetic3d"])
def test_synthetic_train_standardized_and_test_distinct(name):
    data = _load(name, image_size=16)
    _assert_standardized(data.train.x)
    train, test = data.train.x.flatten(1), data.test.x.flatten(1)
    assert torch.cdist(train, test).min() > 1.0  # no test image repeats a train image
    assert abs(data.test.x.mean().item()) < 0.5  # same distribution, so roughly centred too


@pytest.mark.parametrize(
    ("name", "sizes"), [("synthetic2d", (5000, 1000)), ("synthetic3d", (1000, 500))]
)
def test_synthetic_default_sizes(name, sizes):
    data = _load(name, train_size=None, test_size=None, image_size=4)
    assert (len(data.train.y), len(data.test.y)) == sizes


@pytest.mark.parametrize("kwargs", [{"train_size": 0}, {"test_size": -1}, {"image_size": 0}])
def test_synthetic_rejects_non_positive_sizes(kwargs):
    with pytest.raises(ValueError):
        _load("synthetic2d", **kwargs)


def test_load_dataset_moves_to_device():
    data = _load("synthetic2d", image_size=8, device="meta")
    assert {data.train.x.device.type, data.train.y.device.type, data.test.x.device.type} == {"meta"}


def test_per_sample_zscore_removes_a_per_sample_affine_intensity_change():
    from bnstudy.data import per_sample_zscore

    x = torch.randn(1, 1, 4, 4, 4, dtype=torch.float64)
    scanners = torch.cat([x, 3 * x + 2, 0.5 * x - 1])
    normalized = per_sample_zscore(scanners)
    torch.testing.assert_close(normalized[1], normalized[0])
    torch.testing.assert_close(normalized[2], normalized[0])
    assert (
        normalized[0].mean().abs() < 1e-12 and (normalized[0].std(correction=0) - 1).abs() < 1e-12
    )


def test_intensity_option_normalizes_each_volume_and_none_keeps_the_variation():
    kept = _load("synthetic3d", image_size=8, train_size=12, test_size=6)
    normalized = _load(
        "synthetic3d", image_size=8, train_size=12, test_size=6, intensity="per_sample_zscore"
    )
    per_volume = lambda x: x.flatten(1).std(1)  # noqa: E731
    assert per_volume(kept.train.x).std() > 0.05  # volumes differ in scale
    assert per_volume(normalized.train.x).std() < 1e-5  # each volume scaled alike
    with pytest.raises(ValueError, match="intensity 'zscore'"):
        _load("synthetic3d", image_size=8, train_size=12, test_size=6, intensity="zscore")


# ------------------------------------------------------------------------------ cifar10


def _write_cifar(root, counts=(4, 3, 5, 2, 4), test_count=3):
    """Tiny files in the real CIFAR-10 python format; returns raw train/test arrays."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    raw = []
    for name, n in zip(names, (*counts, test_count), strict=True):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).tolist()
        with (folder / name).open("wb") as f:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": b"x"}, f)
        raw.append((data.reshape(n, 3, 32, 32) / 255.0, labels))
    train_x = np.concatenate([x for x, _ in raw[:-1]])
    train_y = sum((y for _, y in raw[:-1]), [])
    return folder, (train_x, train_y), raw[-1]


def test_cifar10_reads_pickle_batches(tmp_path):
    _, (train_x, train_y), (test_x, test_y) = _write_cifar(tmp_path)
    data = _load("cifar10", root=str(tmp_path), train_size=None, test_size=None, image_size=32)
    assert (data.num_classes, data.in_channels, data.spatial_dims) == (10, 3, 2)
    assert data.train.x.shape == (18, 3, 32, 32) and data.test.x.shape == (3, 3, 32, 32)
    assert data.train.y.tolist() == train_y and data.test.y.tolist() == test_y
    want_train, want_test = _expected(train_x, test_x)
    torch.testing.assert_close(data.train.x, want_train, atol=1e-4, rtol=0)
    torch.testing.assert_close(data.test.x, want_test, atol=1e-4, rtol=0)
    _assert_standardized(data.train.x)


def test_cifar10_sizes_take_first_examples(tmp_path):
    _, (train_x, train_y), (_, test_y) = _write_cifar(tmp_path)
    data = _load("cifar10", root=str(tmp_path), train_size=6, test_size=2)
    assert data.train.y.tolist() == train_y[:6] and data.test.y.tolist() == test_y[:2]
    _assert_standardized(data.train.x)
    with pytest.raises(ValueError):
        _load("cifar10", root=str(tmp_path), train_size=19)


def test_cifar10_rejects_resizing(tmp_path):
    _write_cifar(tmp_path)
    with pytest.raises(ValueError, match="image_size"):
        _load("cifar10", root=str(tmp_path), image_size=16)


def test_cifar10_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        _load("cifar10", root=str(tmp_path / "nowhere"))
    folder, _, _ = _write_cifar(tmp_path)
    (folder / "data_batch_5").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_5"):
        _load("cifar10", root=str(tmp_path))
    with pytest.raises(ValueError, match="root"):
        _load("cifar10", root=None)


# ---------------------------------------------------------------------------------- npz


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
