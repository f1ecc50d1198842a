"""Fashion-MNIST and MNIST from tiny files in the real IDX format, gzipped and raw: what they
hold comes back standardized, the validation split is held out of training, and each bad file
is one line naming it, through the loader and through `bnstudy run` (exit 2, nothing
written)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import _load
from typer.testing import CliRunner

from bnstudy.cli import app
from bnstudy.data.idx import FASHION_MNIST, IMAGES_MAGIC, LABELS_MAGIC, idx_files

BASES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", n) for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(folder: Path, gz: bool = True, n=(40, 20), size=6, **replace: bytes) -> dict:
    """The four files of a 10-class set with ``n`` (train, test) images of ``size``², in
    ``folder``; ``replace`` puts other bytes in a file (by its key in BASES)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for split, count in zip(("train", "test"), n, strict=True):
        arrays[f"{split}_images"] = rng.integers(0, 256, (count, size, size), dtype=np.uint8)
        arrays[f"{split}_labels"] = np.arange(count, dtype=np.uint8) % 10
    for key, base in BASES.items():
        magic = IMAGES_MAGIC if key.endswith("images") else LABELS_MAGIC
        data = replace.get(key, idx_bytes(arrays[key], magic))
        path = folder / (f"{base}.gz" if gz else base)
        path.write_bytes(gzip.compress(data) if gz else data)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_the_files_come_back_standardized_with_their_labels(tmp_path, gz):
    arrays = write_idx(tmp_path, gz=gz)
    data = _load("fashion_mnist", root=str(tmp_path), train_size=None, test_size=None)
    assert data.train.x.shape == (40, 1, 6, 6) and data.test.x.shape == (20, 1, 6, 6)
    raw = arrays["train_images"].astype(np.float64)
    assert data.mean == pytest.approx([raw.mean()]) and data.std == pytest.approx([raw.std()])
    expected = (arrays["test_images"] - raw.mean()) / raw.std()
    torch.testing.assert_close(
        data.test.x[:, 0].double(), torch.from_numpy(expected), atol=1e-5, rtol=0
    )
    assert data.train.y.tolist() == arrays["train_labels"].tolist()


def test_torchvisions_layout_under_the_root_is_found(tmp_path):
    write_idx(tmp_path / "MNIST" / "raw", gz=False)
    assert len(_load("mnist", root=str(tmp_path), train_size=None, test_size=None).train.y) == 40
    files = idx_files(FASHION_MNIST, tmp_path)
    assert [f.name for f in files] == [f"{b}.gz" for b in BASES.values()]


def test_the_validation_split_is_held_out_of_training_class_balanced(tmp_path):
    write_idx(tmp_path)
    data = _load(
        "fashion_mnist", root=str(tmp_path), train_size=None, test_size=None, validation_size=10
    )
    assert len(data.train.y) == 30 and len(data.test.y) == 10
    assert sorted(data.test.y.tolist()) == list(range(10))
    held = {tuple(x.flatten().tolist()) for x in data.test.x}
    assert not held & {tuple(x.flatten().tolist()) for x in data.train.x}


def truncated(key: str) -> bytes:
    whole = idx_bytes(np.zeros((40, 6, 6) if key.endswith("images") else (40,)), IMAGES_MAGIC)
    return whole[:-7]


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        (
            {"train_labels": idx_bytes(np.zeros(40), IMAGES_MAGIC)},
            "train-labels-idx1-ubyte.gz: magic number 0x00000803, not the 0x00000801 of IDX labels",
        ),
        (
            {"test_images": truncated("test_images")},
            "t10k-images-idx3-ubyte.gz: truncated: 1449 bytes where its header (40×6×6) makes 1456",
        ),
        (
            {"train_labels": idx_bytes(np.zeros(39), LABELS_MAGIC)},
            "train-images-idx3-ubyte.gz holds 40 images but",
        ),
        (
            {"test_labels": idx_bytes(np.full(20, 10), LABELS_MAGIC)},
            "t10k-labels-idx1-ubyte.gz: label 10 is outside the classes 0..9",
        ),
    ],
)
def test_a_bad_file_is_one_line_naming_it(tmp_path, replace, message):
    write_idx(tmp_path, **replace)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _load("fashion_mnist", root=str(tmp_path))


def test_a_file_that_is_not_gzip_says_so(tmp_path):
    write_idx(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"plain bytes")
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz: not a readable gzip file"):
        _load("fashion_mnist", root=str(tmp_path))


def test_bnstudy_run_on_bad_or_missing_files_exits_2_with_one_line(tmp_path, write_study):
    write_idx(tmp_path / "data", test_labels=idx_bytes(np.full(20, 12), LABELS_MAGIC))
    study = {"name": "f", "data": {"name": "fashion_mnist", "root": str(tmp_path / "data")}}
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(write_study(study)), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and not (tmp_path / "out").exists()
    [line] = result.stderr.strip().splitlines()
    assert "t10k-labels-idx1-ubyte.gz: label 12 is outside the classes 0..9" in line
    (tmp_path / "empty").mkdir()
    study["data"]["root"] = str(tmp_path / "empty")
    result = runner.invoke(app, ["run", str(write_study(study)), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert "no train-images-idx3-ubyte[.gz] in" in line
    assert "apt-get install dataset-fashion-mnist" in line and "FashionMNIST/raw/" in line


def test_validation_size_is_refused_where_the_loader_holds_none(tmp_path, write_study):
    study = {"name": "s", "data": {"name": "synthetic2d", "validation_size": 10}}
    result = CliRunner().invoke(app, ["run", str(write_study(study)), "--dry-run"])
    assert result.exit_code == 2
    assert "data.validation_size: only fashion_mnist, mnist hold out a validation split" in (
        result.stderr
    )


def test_classes_keep_their_images_relabelled_by_position_before_subsets_are_drawn(tmp_path):
    arrays = write_idx(tmp_path)
    data = _load("fashion_mnist", root=str(tmp_path), train_size=6, test_size=None, classes=[7, 2])
    assert data.num_classes == 2
    assert sorted(data.train.y.tolist()) == [0, 0, 0, 1, 1, 1]  # balanced among the two
    test_labels = arrays["test_labels"]
    kept = np.flatnonzero(np.isin(test_labels, [7, 2]))
    assert data.test.y.tolist() == [0 if test_labels[i] == 7 else 1 for i in kept]
    with pytest.raises(ValueError, match="data.classes: 12 is not a class of fashion_mnist"):
        _load("fashion_mnist", root=str(tmp_path), classes=[1, 12])


def test_classes_are_refused_where_the_loader_selects_none(write_study):
    study = {"name": "s", "data": {"name": "synthetic2d", "classes": [0, 1]}}
    result = CliRunner().invoke(app, ["run", str(write_study(study)), "--dry-run"])
    assert result.exit_code == 2
    assert "data.classes: only fashion_mnist, mnist select classes" in result.stderr
