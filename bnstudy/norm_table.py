"""The registered norms described for ``bnstudy norms``: one row of plain values per norm."""

from __future__ import annotations

from dataclasses import dataclass

from bnstudy.norms import NORMS, NormSpec, create_norm


@dataclass(frozen=True)
class NormRow:
    """What one registered norm does."""

    name: str
    """Its name in ``model.norm``."""
    averages: str
    """What one statistic averages over, and what else the norm does (fuses its activation,
    standardizes the convs)."""
    batch_statistics: bool
    """Its training statistics mix the samples of a batch."""
    running_statistics: bool
    """It keeps running statistics that eval mode uses."""
    at_one_value: str
    """What it does in training with one value per statistic."""
    options: str
    """Its options with their defaults, ``key=value, ...`` (``model.<norm>.<option>`` in a
    study file); empty for none."""


def norm_rows() -> list[NormRow]:
    """A :class:`NormRow` per registered norm, in registration order."""
    return [_row(spec) for spec in NORMS.values()]


def _row(spec: NormSpec) -> NormRow:
    extras = [
        word
        for flag, word in (
            (spec.fused_activation, "fuses its activation"),
            (spec.conv is not None, "standardizes the convs"),
        )
        if flag
    ]
    return NormRow(
        spec.name,
        "; ".join([spec.summary, *extras]),
        spec.batch_statistics,
        spec.running_statistics,
        spec.at_one_value(create_norm(spec.name, 8, 2)),
        ", ".join(f"{k}={v}" for k, v in spec.options().model_dump().items()),
    )
