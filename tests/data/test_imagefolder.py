"""Tests for bnstudy.data.imagefolder: decoding, subsets, errors, memory limit, fingerprint."""

import numpy as np
import pytest
import torch
from conftest import write_images
from data_helpers import _expected, _load, _one_line

from bnstudy.data import DATASETS, data_fingerprint


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
    import bnstudy.data.imagefolder as data_module

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
