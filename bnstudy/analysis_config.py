"""The ``analysis`` section of a study: how the report decides its verdicts. Read by the
report without the rest of the study config (which needs the norm, model and data registries,
and so torch); not part of a run's identity.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Section(BaseModel):
    """A section of a study file: strict types, frozen, unknown keys rejected, and no infinite
    or NaN number (YAML's ``.inf`` and ``.nan`` would pass a ``gt=0`` bound)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        allow_inf_nan=False,
        use_attribute_docstrings=True,  # each field's docstring is its description
    )


class AnalysisConfig(Section):
    """How the report decides its verdicts (bnstudy.report.verdicts); not part of a run's
    identity."""

    primary: list[str] = []
    """the claims the study is designed to answer, as shell-style patterns over finding keys
    (findings.md lists each finding's key, e.g. "recovery/batch@1", "collapse/*"): Holm's adjustment
    controls the family-wise error over them; every other finding is adjusted by Benjamini-Hochberg
    (false discovery rate). Verdicts use the adjusted p-values
    """
    alpha: float = Field(0.05, gt=0, lt=1)
    """level of every test, after adjustment"""
    equivalence_margin: float = Field(1.0, gt=0)
    """equivalence margin in percentage points of test accuracy: "no effect" (flat controls, equal
    test modes or norms) is a claim only when two one-sided tests put the difference within ±margin
    """
    noise_slope_margin: float = Field(0.1, gt=0)
    """noise law: margin around the predicted exponent −0.5 of batch-mean noise vs images per
    statistic (log-log slope) within which the law is supported
    """
    bootstrap_resamples: int = Field(2000, ge=100)
    """bootstrap replicates over seeds and test images"""
    bootstrap_seed: int = 0
    """seed of the bootstrap's random draws (the same runs give the same intervals)"""
