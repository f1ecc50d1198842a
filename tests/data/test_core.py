"""Tests for bnstudy.data.core: per-sample intensity normalization."""

import pytest
import torch
from data_helpers import _load


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
