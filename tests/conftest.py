"""Shared fixtures: tiny studies that train in well under a second on a CPU."""

from __future__ import annotations

from pathlib import Path

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
