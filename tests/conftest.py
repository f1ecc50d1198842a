"""Shared fixtures: tiny studies that train in well under a second on a CPU."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

TINY_STUDY = {
    "name": "tiny",
    "data": {"name": "synthetic2d", "train_size": 48, "test_size": 24, "image_size": 8},
    "model": {"widths": [4, 8], "norm": "batch", "group": {"groups": 2}},
    "train": {"epochs": 1, "batch_size": 8, "lr": 0.05},
    "eval": {"batch_size": 12},
}


@pytest.fixture
def tiny_study() -> dict:
    """A fresh copy of a minimal valid study mapping."""
    return yaml.safe_load(yaml.safe_dump(TINY_STUDY))


@pytest.fixture
def write_study(tmp_path: Path):
    """Write a study mapping to a YAML file and return its path."""

    def write(study: dict, name: str = "study.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(study, sort_keys=False))
        return path

    return write


# ------------------------------------------------------------------- real-format data files

CIFAR_NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


@pytest.fixture
def write_cifar(monkeypatch):
    """Write tiny files in the real CIFAR-10 python format (what torchvision's CIFAR10
    unpickles with encoding latin1: str keys, uint8 (n, 3072) data, int labels, and the
    batches.meta it reads the class names from). torchvision checks each file's published
    MD5; for the files written here, and only those, that check is replaced by "exists"."""
    import torchvision.datasets.cifar as tv_cifar

    generated: set[Path] = set()
    real_check = tv_cifar.check_integrity

    def check(fpath, md5=None):
        path = Path(fpath).resolve()
        return path.is_file() if path in generated else real_check(fpath, md5)

    monkeypatch.setattr(tv_cifar, "check_integrity", check)

    def write(root, counts=(4, 3, 5, 2, 4), test_count=3, labels=None, trusted=True):
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        raw = []
        for name, n in zip(CIFAR_NAMES, (*counts, test_count), strict=True):
            y = rng.integers(0, 10, size=n).tolist() if labels is None else labels(n)
            data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
            batch = {"batch_label": name, "labels": y, "data": data, "filenames": ["x.png"] * n}
            write_pickle(folder / name, batch)
            raw.append((data.reshape(n, 3, 32, 32) / 255.0, y))
        meta = {"label_names": [f"c{i}" for i in range(10)], "num_cases_per_batch": 10000}
        write_pickle(folder / "batches.meta", meta)
        if trusted:
            generated.update(p.resolve() for p in folder.iterdir())
        train_x = np.concatenate([x for x, _ in raw[:-1]])
        return folder, (train_x, sum((y for _, y in raw[:-1]), [])), raw[-1]

    return write


def write_pickle(path, obj):
    with path.open("wb") as f:
        pickle.dump(obj, f)


def write_medmnist(path, size=28, counts=(12, 6), classes=11, drop=(), **replace):
    """A file in the published MedMNIST 3D layout: {split}_images (N, D, H, W) uint8 and
    {split}_labels (N, 1); labels cycle through the classes."""
    rng = np.random.default_rng(4)
    arrays = {}
    for split, n in zip(("train", "val", "test"), (counts[0], 2, counts[1]), strict=True):
        arrays[f"{split}_images"] = rng.integers(0, 256, size=(n, size, size, size), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % classes).reshape(-1, 1).astype(np.uint8)
    arrays |= replace
    np.savez_compressed(path, **{k: v for k, v in arrays.items() if k not in drop})
    return arrays


def write_images(root, classes=("cat", "dog"), per_split=(3, 2)):
    """PNG files in root/{train,test}/<class>/, of different sizes and modes (RGB, grey, RGBA)."""
    from PIL import Image

    rng = np.random.default_rng(5)
    modes = [("RGB", 3), ("L", 1), ("RGBA", 4)]
    paths = []
    for split, n in zip(("train", "test"), per_split, strict=True):
        for name in classes:
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                mode, channels = modes[i % 3]
                pixels = rng.integers(0, 256, size=(7 + i, 10, channels), dtype=np.uint8)
                image = Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode)
                image.save(root / split / name / f"{i}.png")
                paths.append(root / split / name / f"{i}.png")
    return paths


def hold_claim(folder: Path) -> subprocess.Popen:
    """Another process that claims the run in ``folder`` (bnstudy.claims) and holds it for a
    minute unless killed; returned once the claim is made."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from bnstudy import"
            " claims; claims.try_claim(Path(sys.argv[1])); print(flush=True); time.sleep(60)",
            str(folder),
        ],
        stdout=subprocess.PIPE,
    )
    holder.stdout.readline()  # it holds the claim
    return holder
