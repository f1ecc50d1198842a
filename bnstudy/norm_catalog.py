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


# What figures call each norm: the names of the papers and frameworks (the registry names stay
# in tables, findings and keys, where they are what a study file says)
DISPLAY_NAMES = {
    "batch": "BatchNorm",
    "batch_manual": "BatchNorm (written out)",
    "batch_keras": "BatchNorm (Keras defaults)",
    "batch_renorm": "Batch Renorm",
    "frozen_bn": "FrozenBN",
    "frozen_stats": "BN with frozen statistics",
    "evonorm_b0": "EvoNorm-B0",
    "evonorm_s0": "EvoNorm-S0",
    "group": "GroupNorm",
    "instance": "InstanceNorm",
    "layer": "LayerNorm",
    "group_ws": "GroupNorm + WS",
    "frn": "FRN + TLU",
    "none": "no norm",
}


def display_label(label: str) -> str:
    """A series label (``norm`` or ``norm, key=value``, or ``norm @ ...``) with its norm by its
    display name: ``GroupNorm, model.group.groups=8``; anything else unchanged."""
    for separator in (", ", " @ "):
        norm, found, rest = label.partition(separator)
        if found and norm in DISPLAY_NAMES:
            return DISPLAY_NAMES[norm] + separator + rest
    return DISPLAY_NAMES.get(label, label)


def uses_batch_statistics(name: object) -> bool:
    """Whether the norm named ``name`` normalizes with statistics over the samples of a batch
    (the BN family); False for the others and for anything that is not a norm's name."""
    return isinstance(name, str) and name in BATCH_STATISTICS


def ordered_norms(norms: Iterable[str]) -> list[str]:
    """Distinct ``norms`` in registry order, unknown names after them alphabetically."""
    present = set(norms)
    return [n for n in NORM_NAMES if n in present] + sorted(present - set(NORM_NAMES))
