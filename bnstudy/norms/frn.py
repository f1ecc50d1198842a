"""Filter Response Normalization with its Thresholded Linear Unit (FRN + TLU).

Singh & Krishnan 2020 (arXiv 1911.09737), eqs. 1-3. Per sample and channel, over the spatial
axes (no mean subtraction, no batch statistics)::

    nu2   = mean of x^2 over the spatial axes
    x_hat = x / sqrt(nu2 + eps)
    y     = gamma * x_hat + beta
    z     = max(y, tau)             (TLU; only with ``activation=True``)

gamma 1, beta 0 and tau 0 per channel at initialization. The same computation in train and eval
mode at every batch size: a batch-independent control like GroupNorm. It carries its own
activation (the TLU replaces the ReLU after the norm), so a model should not apply another.

Small maps: with one spatial value (1×1 maps, or ``spatial_dims=0`` for (N, C) inputs, which
this module accepts) ``nu2 = x^2`` and ``x_hat = x / sqrt(x^2 + eps)``, which is about
``sign(x)`` with almost no gradient when ``|x| >> sqrt(eps)``. The paper points at this for the
1×1 layers of InceptionV3 and VGG-A and makes eps learnable there. ``learned_eps=True`` adds one
learned scalar per layer, ``eps_learned`` (initialized to 1e-4), and uses
``eps + |eps_learned|``, so the effective eps never drops below ``eps``. This form and its
initial value are tensorflow_addons' ``FilterResponseNormalization(learned_epsilon=True)``;
timm's ``FilterResponseNormTlu2d`` has no learned eps (and defaults to eps 1e-5; the paper and
this module use 1e-6). A (N, C) input gets the same formula rather than an error: it is the
1×1 case, and rejecting it while accepting (N, C, 1, 1) would be arbitrary.

Statistics are computed in at least float32 (:func:`bnstudy.norms.precision.at_least_float32`):
``x^2`` in float16 overflows past |x| = 256.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from bnstudy.norms.precision import at_least_float32
from bnstudy.norms.registry import NormOptions, fixed, register_norm, spatial_axes

LEARNED_EPS_INIT = 1e-4  # tensorflow_addons' initial value for the learned eps


def mean_square(x: torch.Tensor) -> torch.Tensor:
    """nu^2: the mean of x^2 over the spatial axes of (N, C, *spatial), shaped to broadcast
    against x; for a (N, C) input it is x^2 itself."""
    n, c = x.shape[:2]
    nu2 = x.reshape(n, c, -1).square().mean(dim=-1)
    return nu2.reshape(n, c, *([1] * (x.dim() - 2)))


class FilterResponseNorm(nn.Module):
    """FRN (+ TLU) over inputs of shape (N, C, *spatial).

    ``FilterResponseNorm(num_features, spatial_dims, *, eps=1e-6, learned_eps=False,
    activation=True)``. ``spatial_dims`` fixes the input rank (0 for (N, C) inputs: see the
    module docstring). ``activation=False`` drops the TLU (y = gamma * x_hat + beta) and the
    ``tau`` parameter. ``learned_eps``: add the learned ``eps_learned`` scalar to ``eps``.
    """

    def __init__(
        self,
        num_features: int,
        spatial_dims: int,
        *,
        eps: float = 1e-6,
        learned_eps: bool = False,
        activation: bool = True,
    ) -> None:
        super().__init__()
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.num_features, self.spatial_dims, self.eps = num_features, spatial_dims, eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.tau = nn.Parameter(torch.zeros(num_features)) if activation else None
        self.eps_learned = nn.Parameter(torch.full((1,), LEARNED_EPS_INIT)) if learned_eps else None

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, learned_eps={self.eps_learned is not None}, "
            f"activation={self.tau is not None}"
        )

    def effective_eps(self) -> torch.Tensor | float:
        """The eps added to nu^2: ``eps``, plus ``|eps_learned|`` when it is learned."""
        if self.eps_learned is None:
            return self.eps
        return self.eps + self.eps_learned.abs()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != self.spatial_dims + 2:
            raise ValueError(
                f"expected a {self.spatial_dims + 2}D input, got shape {tuple(x.shape)}"
            )
        channel = (1, -1) + (1,) * (x.dim() - 2)
        xf = at_least_float32(x)
        x_hat = xf * torch.rsqrt(mean_square(xf) + self.effective_eps())
        y = self.weight.reshape(channel) * x_hat + self.bias.reshape(channel)
        if self.tau is not None:
            y = torch.maximum(y, self.tau.reshape(channel).to(y.dtype))
        return y.to(x.dtype)


class FRNOptions(NormOptions):
    """``model.frn``: eps and whether a learned part is added to it."""

    eps: float = Field(1e-6, gt=0)
    """added to the mean square inside the sqrt (paper: 1e-6)"""
    learned_eps: bool = False
    """eps + |learned scalar| per layer (paper: for 1×1 maps)"""


@register_norm(
    name="frn",
    summary="per sample and channel, x / √(mean of x² over the spatial axes + ε), no "
    "centering, then the TLU max(y, τ) (Singh & Krishnan 2020, arXiv 1911.09737)",
    options=FRNOptions,
    modules=(FilterResponseNorm,),
    statistic_axes=spatial_axes,
    at_one_value=fixed("x/√(x²+ε) ≈ sign(x) (a learned ε softens it)"),
    fused_activation=True,
    spatial_dims=(0, 1, 2, 3),
)
def _frn(channels: int, spatial_dims: int, options: FRNOptions, activation: bool) -> nn.Module:
    return FilterResponseNorm(
        channels,
        spatial_dims,
        eps=options.eps,
        learned_eps=options.learned_eps,
        activation=activation,
    )
