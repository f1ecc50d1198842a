"""Test modes: how a trained model is evaluated. One registry that the config
(``eval.test_modes``), the evaluation (:mod:`bnstudy.run`) and the report ask.

- ``eval``     norm layers in eval mode: BN normalizes with its running statistics (the moving
               average kept during training).
- ``train``    norm layers in train mode: each test batch normalizes with its own statistics,
               what pix2pix keeps at test time (arXiv 1611.07004 §3.3); evaluated at each of
               ``eval.train_mode_batch_sizes``. A prediction then depends on the rest of its
               batch (the flip rate measures how much).
- ``precise``  eval mode after PreciseBN: population statistics recomputed on training samples
               with frozen weights (Wu & Johnson 2021, arXiv 2105.07576; :mod:`bnstudy.precise`).
- ``adabn``    eval mode after the same recomputation on the test set: AdaBN (Li et al. 2016,
               arXiv 1603.04779), the test-set statistics that Schneider et al. 2020 (arXiv
               2006.16971) report to lower ResNet-50's ImageNet-C mCE from 76.7 to 62.2. Beside
               ``precise`` it shows whether the test set's statistics differ from the training
               set's (a covariate shift); beside ``train`` whether a population beats per-batch
               statistics.

For norms without running statistics all four compute the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ModeSpec:
    """One test mode.

    description: what it does, for report labels.
    layers_train: norm layers are in train mode while testing (statistics of each test batch).
    per_test_batch: evaluated once per ``eval.train_mode_batch_sizes`` entry (the test batch
        changes the result); else once, labelled by its name.
    population: the split whose population statistics are recomputed before testing, or None.
    compare_with: the modes the report subtracts from this one within a run (this − that).
    """

    name: str
    description: str
    layers_train: bool = False
    per_test_batch: bool = False
    population: Literal["train", "test"] | None = None
    compare_with: tuple[str, ...] = ()


TEST_MODES: dict[str, ModeSpec] = {
    mode.name: mode
    for mode in (
        ModeSpec("eval", "running stats", compare_with=("train",)),
        ModeSpec("train", "batch stats", layers_train=True, per_test_batch=True),
        ModeSpec(
            "precise",
            "population stats recomputed on the training set, PreciseBN",
            population="train",
            compare_with=("eval", "train"),
        ),
        ModeSpec(
            "adabn",
            "population stats recomputed on the test set, AdaBN",
            population="test",
            compare_with=("eval", "precise"),
        ),
    )
}
