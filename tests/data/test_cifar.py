"""Tests for bnstudy.data.cifar: reading, subsets, errors, download and fingerprint."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CIFAR_NAMES, write_pickle
from data_helpers import _assert_standardized, _expected, _load, _one_line, _own_standardized

from bnstudy.data import DATASETS, data_fingerprint, download_dataset


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
    from bnstudy.preflight import load_data

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


def test_a_run_with_cifar_missing_reports_where_and_how(tiny_study, tmp_path):
    from bnstudy.config import validate_study
    from bnstudy.preflight import load_data

    tiny_study["data"] = {"name": "cifar10", "root": str(tmp_path)}
    with pytest.raises(FileNotFoundError) as err:
        load_data(validate_study(tiny_study, "s.yaml"), torch.device("cpu"))
    assert "no folder" in _one_line(err) and "data.download: true" in str(err.value)
