"""Statistics in at least float32 when activations are in reduced precision.

Under autocast or a half-precision model, a convolution's output is float16 or bfloat16. A
variance over thousands of such values loses digits (bfloat16 keeps about 3 significant
decimals) and a sum of squares in float16 overflows past 65504, so the norms here compute
their statistics and the normalization in float32 and cast the result back to the input's
dtype at the end, as timm's ``evo_norm.py`` does with ``x.float().var(...)``. float32 and
float64 pass through unchanged: float64 parity tests stay float64.
"""

from __future__ import annotations

import torch


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` as float32 if it is a floating dtype narrower than 32 bits (float16, bfloat16,
    float8), else ``x`` itself (float32 and float64 unchanged). Differentiable."""
    if x.is_floating_point() and torch.finfo(x.dtype).bits < 32:
        return x.float()
    return x
