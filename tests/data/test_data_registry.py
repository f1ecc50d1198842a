"""Tests for bnstudy.data.registry: the data sets by name, loading onto a device, and the
data config fields that reach the registry (download) or run identity."""

import pytest
from data_helpers import _load

from bnstudy.data import DATASETS


def test_registry_names_and_specs():
    names = (
        "synthetic2d",
        "synthetic3d",
        "cifar10",
        "medmnist3d",
        "fashion_mnist",
        "mnist",
        "imagefolder",
        "npz",
    )
    assert set(DATASETS) == set(names)
    assert [DATASETS[n].spatial_dims for n in names] == [2, 3, 2, 3, 2, 2, 2, 0]
    assert [n for n in names if DATASETS[n].validates] == ["fashion_mnist", "mnist"]
    assert DATASETS["fashion_mnist"].default_root == "/usr/share/datasets/fashion-mnist"
    assert not DATASETS["synthetic2d"].needs_root and DATASETS["npz"].needs_root
    assert [n for n in names if DATASETS[n].download] == ["cifar10"]
    assert [n for n in names if DATASETS[n].resizes] == ["imagefolder"]
    assert all(spec.description for spec in DATASETS.values())


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError) as err:
        _load("imagenet")
    for name in DATASETS:
        assert name in str(err.value)


def test_load_dataset_moves_to_device():
    data = _load("synthetic2d", image_size=8, device="meta")
    assert {data.train.x.device.type, data.train.y.device.type, data.test.x.device.type} == {"meta"}


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
