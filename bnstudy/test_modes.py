"""Test modes: how a trained model is evaluated. One registry that the config
(``eval.test_modes``), the evaluation (:mod:`bnstudy.run`) and the report ask.

- ``eval``     norm layers in eval mode: BN normalizes with its running statistics (the moving
               average kept during training).
- ``train``    norm layers in train mode: each test batch normalizes with its own statistics,
               the choice pix2pix makes at test time (arXiv 1611.07004 §3.3); evaluated at each
               of ``eval.train_mode_batch_sizes``. Only the layers whose norm uses batch
               statistics go to train mode, as in TENT's BN adaptation (Wang et al. 2021,
               ``DequanWang/tent`` ``norm.py``); dropout and everything else stay in eval mode.
               A prediction then depends on the rest of its batch (the flip rate measures how
               much), so the test batches are drawn by a seeded permutation of the test split,
               never in its file order (a class-sorted folder would give single-class batches).
- ``pix2pix``  the whole model in train mode at test, dropout on (pix2pix, arXiv 1611.07004
               §3.3: its generator keeps dropout as the noise source; junyanz's ``test.py``
               calls ``model.eval()`` only with ``--eval``). As ``train`` otherwise; beside it,
               it shows what dropout adds. Its predictions are random even at a test batch of
               1, so its flip rate counts that randomness too.
- ``precise``  eval mode after PreciseBN: population statistics recomputed on training samples
               with frozen weights (Wu & Johnson 2021, arXiv 2105.07576; :mod:`bnstudy.precise`):
               the variance of all the values pooled, or with ``eval.precise_variance:
               batch_average`` the mean of per-batch variances (what the EMA converges to).
- ``adabn``    eval mode after the same recomputation on the test set: AdaBN (Li et al. 2016,
               arXiv 1603.04779), the test-set statistics that Schneider et al. 2020 (arXiv
               2006.16971) report to lower ResNet-50's ImageNet-C mCE from 76.7 to 62.2. Beside
               ``precise`` it shows whether the test set's statistics differ from the training
               set's (a covariate shift); beside ``train`` whether a population beats per-batch
               statistics.

For norms without running statistics ``eval``, ``train``, ``precise`` and ``adabn`` compute the
same thing.

A run stores its predictions per test setting under :func:`setting_key`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ModeSpec:
    """One test mode.

    description: what it does, for report labels.
    layers_train: norm layers are in train mode while testing (statistics of each test batch,
        in batches drawn by a seeded permutation of the test split).
    whole_model: with ``layers_train``, every module is in train mode, not only the norms
        (dropout on: pix2pix).
    per_test_batch: evaluated once per ``eval.train_mode_batch_sizes`` entry (the test batch
        changes the result); else once, labelled by its name.
    population: the split whose population statistics are recomputed before testing, or None.
    compare_with: the modes the report subtracts from this one within a run (this − that).
    """

    name: str
    description: str
    layers_train: bool = False
    whole_model: bool = False
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
        ModeSpec(
            "pix2pix",
            "whole model in train mode at test, dropout on (pix2pix, arXiv 1611.07004 §3.3)",
            layers_train=True,
            whole_model=True,
            per_test_batch=True,
        ),
    )
}


def setting_key(mode: str, label: str) -> str:
    """The name of a test setting (``test_mode``, ``test_batch`` label) in a run's
    predictions.json: the label for modes evaluated once (their label is the mode's name) and
    for ``train`` (``same``, ``1``: the keys of runs stored before other modes had test
    batches); ``<mode>:<label>`` for the other modes evaluated per test batch
    (``pix2pix:same``), whose labels would otherwise collide with train mode's."""
    if mode == "train" or not TEST_MODES[mode].per_test_batch:
        return label
    return f"{mode}:{label}"
