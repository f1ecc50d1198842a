"""Tests for bnstudy.data: synthetic generators, file loaders and the registry."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CIFAR_NAMES, write_images, write_medmnist, write_pickle

from bnstudy.data import (
    DATASETS,
    Dataset,
    balanced_subset,
    data_fingerprint,
    download_dataset,
    load_dataset,
)


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
    names = ("synthetic2d", "synthetic3d", "cifar10", "medmnist3d", "imagefolder", "npz")
    assert set(DATASETS) == set(names)
    assert [DATASETS[n].spatial_dims for n in names] == [2, 3, 2, 3, 2, 0]
    assert not DATASETS["synthetic2d"].needs_root and DATASETS["npz"].needs_root
    assert [n for n in names if DATASETS[n].download] == ["cifar10"]
    assert [n for n in names if DATASETS[n].resizes] == ["imagefolder"]
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


# ------------------------------------------------------------------------ class balance


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    return message


def test_balanced_subset_takes_floor_per_class_and_spreads_the_remainder():
    labels = torch.arange(10).repeat(5)  # 5 per class
    pick = balanced_subset(labels, 23, seed=0, what="train_size")
    assert len(pick) == 23 and torch.equal(pick, pick.sort().values)
    assert len(set(pick.tolist())) == 23
    assert sorted(labels[pick].bincount(minlength=10).tolist()) == [2] * 7 + [3] * 3
    again, other = balanced_subset(labels, 23, 0, "x"), balanced_subset(labels, 23, 1, "x")
    assert torch.equal(pick, again) and not torch.equal(pick, other)


def test_balanced_subset_gives_small_classes_all_they_have():
    labels = torch.tensor([0] * 2 + [1] * 10 + [2] * 10)
    counts = labels[balanced_subset(labels, 13, 0, "train_size")].bincount().tolist()
    assert counts[0] == 2 and sorted(counts[1:]) == [5, 6]


def test_balanced_subset_all_none_and_too_many():
    labels = torch.tensor([1, 0, 1, 1])
    assert balanced_subset(labels, None, 0, "x").tolist() == [0, 1, 2, 3]
    assert balanced_subset(labels, 4, 0, "x").tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="train_size=5 but only 4"):
        balanced_subset(labels, 5, 0, "train_size")


# ------------------------------------------------------------------------------ cifar10


def test_cifar10_reads_the_batches_through_torchvision(tmp_path, write_cifar):
    _, (train_x, train_y), (test_x, test_y) = write_cifar(tmp_path)
    data = _load("cifar10", root=str(tmp_path), train_size=None, test_size=None, image_size=32)
    assert (data.num_classes, data.in_channels, data.spatial_dims) == (10, 3, 2)
    assert data.train.x.shape == (18, 3, 32, 32) and data.test.x.shape == (3, 3, 32, 32)
    assert data.train.y.tolist() == train_y and data.test.y.tolist() == test_y
    want_train, want_test = _expected(train_x, test_x)
    torch.testing.assert_close(data.train.x, want_train, atol=1e-4, rtol=0)
    torch.testing.assert_close(data.test.x, want_test, atol=1e-4, rtol=0)
    _assert_standardized(data.train.x)


def test_cifar10_sizes_draw_class_balanced_subsets(tmp_path, write_cifar):
    write_cifar(
        tmp_path, counts=(10,) * 5, test_count=20, labels=lambda n: [i % 10 for i in range(n)]
    )
    small = _load("cifar10", root=str(tmp_path), train_size=23, test_size=10)
    assert sorted(small.train.y.bincount(minlength=10).tolist()) == [2] * 7 + [3] * 3
    assert small.test.y.bincount(minlength=10).tolist() == [1] * 10
    _assert_standardized(small.train.x)
    larger = _load("cifar10", root=str(tmp_path), train_size=40, test_size=10)
    assert torch.equal(small.test.y, larger.test.y)  # the test draw ignores train_size
    torch.testing.assert_close(_own_standardized(small.test.x), _own_standardized(larger.test.x))
    reseeded = _load("cifar10", root=str(tmp_path), train_size=23, test_size=10, seed=1)
    assert not torch.equal(_own_standardized(small.train.x), _own_standardized(reseeded.train.x))
    with pytest.raises(ValueError, match="train_size=51"):
        _load("cifar10", root=str(tmp_path), train_size=51)


def test_cifar10_subset_keeps_each_image_with_its_label(tmp_path, write_cifar):
    folder, _, _ = write_cifar(
        tmp_path, counts=(10,) * 5, labels=lambda n: [i % 10 for i in range(n)]
    )
    for name in CIFAR_NAMES:  # rewrite each image as its label's grey level plus a little noise
        with (folder / name).open("rb") as f:
            batch = pickle.load(f)
        noise = np.random.default_rng(1).integers(0, 5, size=batch["data"].shape)
        batch["data"] = (np.array(batch["labels"])[:, None] * 25 + noise).astype(np.uint8)
        write_pickle(folder / name, batch)
    data = _load("cifar10", root=str(tmp_path), train_size=17, test_size=2)
    means = data.train.x.flatten(1).mean(1)
    order = means.argsort()
    assert torch.equal(data.train.y[order], data.train.y.sort().values)


def test_cifar10_rejects_resizing(tmp_path, write_cifar):
    write_cifar(tmp_path)
    with pytest.raises(ValueError, match="image_size"):
        _load("cifar10", root=str(tmp_path), image_size=16)


def test_cifar10_missing_files_say_where_and_how_in_one_line(tmp_path, write_cifar):
    with pytest.raises(FileNotFoundError) as err:
        _load("cifar10", root=str(tmp_path / "nowhere"))
    message = _one_line(err)
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in message
    assert "data.download: true" in message and "cifar-10-python.tar.gz" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in message
    folder, _, _ = write_cifar(tmp_path)
    (folder / "data_batch_5").unlink()
    (folder / "batches.meta").unlink()
    with pytest.raises(FileNotFoundError) as err:
        _load("cifar10", root=str(tmp_path))
    assert "lacks data_batch_5, batches.meta" in _one_line(err)
    with pytest.raises(ValueError, match="root"):
        _load("cifar10", root=None)


def test_cifar10_files_that_fail_the_checksum_are_one_line(tmp_path, write_cifar):
    write_cifar(tmp_path, trusted=False)  # the real MD5 check: these are not the real files
    with pytest.raises(ValueError) as err:
        _load("cifar10", root=str(tmp_path))
    assert "do not match the published CIFAR-10 checksums" in _one_line(err)


def test_cifar10_download_uses_torchvision_and_fails_in_one_line(tmp_path, monkeypatch):
    import urllib.error

    import torchvision.datasets.cifar as tv_cifar

    def offline(url, download_root, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure\nin name resolution")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    with pytest.raises(OSError) as err:
        download_dataset("cifar10", str(tmp_path / "new"))
    message = _one_line(err)
    assert "cifar10: download into" in message and "Temporary failure in name" in message


def test_cifar10_download_runs_before_the_fingerprint(
    tmp_path, tiny_study, monkeypatch, write_cifar
):
    import torchvision.datasets.cifar as tv_cifar

    from bnstudy.config import validate_study
    from bnstudy.run import load_data

    calls = []

    def fake_download(url, download_root, **kwargs):  # what the tarball would unpack
        calls.append(url)
        write_cifar(Path(download_root))

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", fake_download)
    root = tmp_path / "fresh"
    tiny_study["data"] = {
        "name": "cifar10",
        "root": str(root),
        "download": True,
        "train_size": 10,
        "test_size": 3,
    }
    config = validate_study(tiny_study, "s.yaml")
    assert "download" not in config.model_dump()["data"]  # not part of run identity
    data = load_data(config, torch.device("cpu"))
    assert len(data.train.y) == 10 and calls == [tv_cifar.CIFAR10.url]
    load_data(config, torch.device("cpu"))
    assert len(calls) == 1  # the files are there: nothing fetched again


def test_cifar10_fingerprint_covers_the_files_torchvision_reads(tmp_path, write_cifar):
    folder, _, _ = write_cifar(tmp_path)
    files = DATASETS["cifar10"].files(tmp_path)
    assert sorted(f.name for f in files) == sorted([*CIFAR_NAMES, "batches.meta"])
    before = data_fingerprint("cifar10", str(tmp_path))
    (tmp_path / "notes.txt").write_text("beside the data")
    assert data_fingerprint("cifar10", str(tmp_path)) == before
    write_pickle(folder / "batches.meta", {"label_names": ["other"] * 10})
    assert data_fingerprint("cifar10", str(tmp_path)) != before


# --------------------------------------------------------------------------- medmnist3d


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


# -------------------------------------------------------------------------- imagefolder


def _pil_reference(path, size):
    from PIL import Image

    with Image.open(path) as image:
        resized = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return np.array(resized).transpose(2, 0, 1).astype(np.float64)


def test_imagefolder_decodes_resizes_and_labels_by_folder(tmp_path):
    paths = write_images(tmp_path)
    data = _load("imagefolder", root=str(tmp_path), train_size=None, test_size=None, image_size=8)
    assert (data.num_classes, data.in_channels, data.spatial_dims) == (2, 3, 2)
    assert data.train.x.shape == (6, 3, 8, 8) and data.test.x.shape == (4, 3, 8, 8)
    assert data.train.y.tolist() == [0, 0, 0, 1, 1, 1] and data.test.y.tolist() == [0, 0, 1, 1]
    raw = [_pil_reference(p, 8) for p in paths]
    want_train, want_test = _expected(np.stack(raw[:6]), np.stack(raw[6:]))
    torch.testing.assert_close(data.train.x, want_train, atol=1e-4, rtol=0)
    torch.testing.assert_close(data.test.x, want_test, atol=1e-4, rtol=0)


def test_imagefolder_subsets_are_class_balanced(tmp_path):
    write_images(tmp_path, classes=("a", "b", "c"), per_split=(4, 2))
    data = _load("imagefolder", root=str(tmp_path), train_size=7, test_size=3, image_size=4)
    assert sorted(data.train.y.bincount().tolist()) == [2, 2, 3]
    assert data.test.y.tolist() == [0, 1, 2]


def test_imagefolder_needs_an_image_size(tmp_path, tiny_study):
    from bnstudy.config import ConfigError, validate_study

    write_images(tmp_path)
    with pytest.raises(ValueError, match="image_size"):
        _load("imagefolder", root=str(tmp_path), image_size=None)
    tiny_study["data"] = {"name": "imagefolder", "root": str(tmp_path)}
    with pytest.raises(ConfigError, match="data.image_size: imagefolder resizes every image"):
        validate_study(tiny_study, "s.yaml")


def test_imagefolder_empty_or_missing_folders_are_one_line(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(FileNotFoundError) as err:
        _load("imagefolder", root=str(tmp_path), image_size=4)
    assert "Couldn't find any class folder" in _one_line(err)
    (tmp_path / "train" / "cat").mkdir()
    with pytest.raises(FileNotFoundError) as err:
        _load("imagefolder", root=str(tmp_path), image_size=4)
    assert "no valid file for the classes cat" in _one_line(err)
    write_images(tmp_path, classes=("cat",), per_split=(1, 1))
    (tmp_path / "test" / "cat" / "0.png").unlink()
    (tmp_path / "test" / "cat").rmdir()
    (tmp_path / "test").rmdir()
    with pytest.raises(FileNotFoundError) as err:
        _load("imagefolder", root=str(tmp_path), image_size=4)
    assert f"no folder {tmp_path / 'test'}" in _one_line(err)


def test_imagefolder_splits_must_have_the_same_classes(tmp_path):
    write_images(tmp_path)
    write_images(tmp_path / "other", classes=("cow",))
    (tmp_path / "other" / "test" / "cow").rename(tmp_path / "test" / "cow")
    with pytest.raises(ValueError) as err:
        _load("imagefolder", root=str(tmp_path), image_size=4)
    assert "only in train: -; only in test: cow" in _one_line(err)


def test_imagefolder_unreadable_image_names_the_file(tmp_path):
    write_images(tmp_path)
    (tmp_path / "train" / "cat" / "0.png").write_bytes(b"not a png")
    with pytest.raises(ValueError) as err:
        _load("imagefolder", root=str(tmp_path), train_size=None, test_size=None, image_size=4)
    assert "cannot read" in _one_line(err) and "0.png" in str(err.value)


def test_imagefolder_refuses_more_than_fits_before_decoding(tmp_path, monkeypatch):
    import bnstudy.data as data_module

    write_images(tmp_path)
    monkeypatch.setattr(data_module, "IMAGE_BYTES_LIMIT", 10 * 3 * 16 * 16 * 4 - 1)
    monkeypatch.setattr(data_module, "_decode", lambda *a: pytest.fail("decoded anyway"))
    with pytest.raises(ValueError) as err:
        _load("imagefolder", root=str(tmp_path), train_size=None, test_size=None, image_size=16)
    message = _one_line(err)
    assert "10 images at 16x16" in message and "data.image_size" in message
    assert "data.train_size" in message


def test_imagefolder_fingerprint_lists_every_image(tmp_path):
    paths = write_images(tmp_path)
    assert DATASETS["imagefolder"].files(tmp_path) == sorted(paths)
    before = data_fingerprint("imagefolder", str(tmp_path))
    (tmp_path / "train" / "notes.txt").write_text("not an image")
    assert data_fingerprint("imagefolder", str(tmp_path)) == before
    paths[0].write_bytes(paths[1].read_bytes())
    assert data_fingerprint("imagefolder", str(tmp_path)) != before


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


def test_download_is_for_data_sets_that_can_download(tiny_study, tmp_path):
    from bnstudy.config import ConfigError, validate_study

    tiny_study["data"] = {"name": "npz", "root": str(tmp_path), "download": True}
    with pytest.raises(ConfigError, match="data.download: npz cannot be downloaded"):
        validate_study(tiny_study, "s.yaml")
    tiny_study["data"] = {"name": "cifar10", "root": str(tmp_path / "not yet"), "download": True}
    assert validate_study(tiny_study, "s.yaml").data.download  # root is created by the download
    tiny_study["data"] = {"name": "cifar10"}
    with pytest.raises(ConfigError, match="data.root: cifar10 reads local files"):
        validate_study(tiny_study, "s.yaml")


def test_new_data_fields_keep_run_ids_and_padding_counts_only_with_a_crop(tiny_study):
    from bnstudy.config import validate_study
    from bnstudy.sweep import run_identity

    def identity(**data):
        study = {**tiny_study, "data": {**tiny_study["data"], **data}}
        return run_identity(validate_study(study, "s.yaml"))

    plain = identity()
    assert identity(augment="none", augment_padding=2) == plain  # padding reset without a crop
    assert identity(augment="crop_flip") != plain
    assert identity(augment="crop_flip", augment_padding=2) != identity(augment="crop_flip")
    config = validate_study(tiny_study, "s.yaml")
    assert (config.data.augment, config.data.augment_padding) == ("none", 4)


def test_a_run_with_cifar_missing_reports_where_and_how(tiny_study, tmp_path):
    from bnstudy.config import validate_study
    from bnstudy.run import load_data

    tiny_study["data"] = {"name": "cifar10", "root": str(tmp_path)}
    with pytest.raises(FileNotFoundError) as err:
        load_data(validate_study(tiny_study, "s.yaml"), torch.device("cpu"))
    assert "no folder" in _one_line(err) and "data.download: true" in str(err.value)
