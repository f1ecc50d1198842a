"""The registered norms by name, in the report's order, and which of them normalize with batch
statistics: what planning, the runs table and the analysis ask about a norm without importing
torch. The layers themselves, and everything else about them, are in :mod:`bnstudy.norms`,
whose registry accepts exactly these names (a new norm is one entry here and one module
there).
"""

from __future__ import annotations

from collections.abc import Iterable

# registration order is the report's order
NORM_NAMES = (
    "batch",
    "batch_manual",
    "batch_keras",
    "batch_renorm",
    "frozen_bn",
    "frozen_stats",
    "evonorm_b0",
    "evonorm_s0",
    "group",
    "instance",
    "layer",
    "group_ws",
    "frn",
    "none",
)
# Training statistics mix the samples of a batch: the normalization batch size (ghost batches)
# applies and train and eval mode differ. The others compute the same thing at every batch
# size: a study's controls.
BATCH_STATISTICS = frozenset({"batch", "batch_manual", "batch_keras", "batch_renorm", "evonorm_b0"})


def uses_batch_statistics(name: object) -> bool:
    """Whether the norm named ``name`` normalizes with statistics over the samples of a batch
    (the BN family); False for the others and for anything that is not a norm's name."""
    return isinstance(name, str) and name in BATCH_STATISTICS


def ordered_norms(norms: Iterable[str]) -> list[str]:
    """Distinct ``norms`` in registry order, unknown names after them alphabetically."""
    present = set(norms)
    return [n for n in NORM_NAMES if n in present] + sorted(present - set(NORM_NAMES))
