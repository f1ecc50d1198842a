"""The norm registry: one :class:`NormSpec` per normalization layer, and everything bnstudy
asks about a norm goes through it.

A spec says how to build the layer (channels first), which typed options it takes (the
``model.<norm>`` section of a study file), what one statistic averages over, whether its
training statistics mix the samples of a batch, whether it keeps running statistics, what it
does with one value per statistic, whether it fuses its activation, whether it needs to know
how far training has got, and which convolution it pairs with. The config, the models, the
training loop, the diagnostics, ``inspect`` and the report read these fields; none keeps its
own table of norms. Adding a norm is one module that calls :func:`register_norm`, imported in
``bnstudy/norms/__init__.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from bnstudy.norm_catalog import NORM_NAMES, uses_batch_statistics

# Axes of an (N, C, *spatial) input that one statistic averages over; axis 1 stands for the
# C/G channels of a group (the module has ``num_groups``).
StatisticAxes = Callable[[nn.Module, int], tuple[int, ...]]
# Names a model may ask for after a norm; "prelu" has slope 0.2 at init (the zeros-net question).
ACTIVATIONS: dict[str, Callable[[int], nn.Module]] = {
    "relu": lambda channels: nn.ReLU(inplace=True),
    "prelu": lambda channels: nn.PReLU(channels, init=0.2),
    "tanh": lambda channels: nn.Tanh(),
    "identity": lambda channels: nn.Identity(),  # a norm before a residual sum
}
FUSABLE_ACTIVATION = "relu"  # the activation a fused norm-activation unit replaces
# model.* keys that are not norm sections
RESERVED_NAMES = ("name", "widths", "norm", "replace_norms")


class NormOptions(BaseModel):
    """Base of the per-norm options: strict, frozen, unknown keys rejected. Each field states
    its unit and convention in a comment, as the config's fields do."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        allow_inf_nan=False,
        use_attribute_docstrings=True,  # each field's docstring is its description
    )


class NoOptions(NormOptions):
    """A norm without settings."""


class EpsOptions(NormOptions):
    """A norm whose only setting is its eps."""

    eps: float = Field(1e-5, gt=0)
    """added to the variance inside the sqrt (torch 1e-5)"""


class GroupOptions(EpsOptions):
    """A norm over groups of channels."""

    groups: int = Field(8, ge=1)
    """channel groups; must divide every layer's channel count"""


def batch_axes(module: nn.Module, ndim: int) -> tuple[int, ...]:
    """Per channel over N and every spatial axis (BN)."""
    return (0, *range(2, ndim))


def spatial_axes(module: nn.Module, ndim: int) -> tuple[int, ...]:
    """Per sample and channel over the spatial axes (InstanceNorm, FRN)."""
    return tuple(range(2, ndim))


def group_axes(module: nn.Module, ndim: int) -> tuple[int, ...]:
    """Per sample over the C/G channels of a group and the spatial axes (GroupNorm)."""
    return (1, *range(2, ndim))


def no_axes(module: nn.Module, ndim: int) -> tuple[int, ...]:
    """No statistic at all (identity, a frozen BN's fixed statistics)."""
    return ()


def fixed(text: str) -> Callable[[nn.Module], str]:
    """An ``at_one_value`` that does not depend on the module's settings."""
    return lambda module: text


@dataclass(frozen=True)
class NormSpec:
    """What bnstudy knows about one norm.

    build: ``(channels, spatial_dims, options) -> module``; with ``fused_activation`` also a
        keyword ``activation: bool`` (False: the norm without the activation it fuses, for a
        model whose next activation is not a ReLU, or none before a residual sum).
    options: the typed options model (``model.<name>`` in a study file).
    modules: the classes it builds; diagnostics recognize a layer by them (first match in
        registration order).
    statistic_axes: what one statistic averages over (:data:`StatisticAxes`); no axes for a
        module that computes no statistic (identity, a frozen BN).
    at_one_value: what the module does in training with one value per statistic.
    running_statistics: keeps running estimates that training updates and eval mode uses
        (PreciseBN recomputes them); false for a frozen BN, whose statistics stay fixed.
    fused_activation: the module includes the activation that replaces the ReLU after it.
    needs_progress: the module's behaviour depends on the fraction of training done
        (``set_progress``), which the training loop sets each optimizer step.
    conv: the convolution classes by spatial dims the model must use with this norm (weight
        standardization), or None for the standard ones.
    spatial_dims: the input ranks (axes after C) it supports.
    legacy_keys: option -> the flat ``model.*`` key it had before per-norm options; run
        identities are hashed with these names, so ids from before stay the same.
    loads_state_of: the norms whose trained state (same names, same meaning) a fine-tuning run
        loads into this one (``train.init_from``, :mod:`bnstudy.finetune`), which it then needs:
        a frozen BN takes over a BN's statistics. Empty: it loads only its own norm's state.
    """

    name: str
    summary: str
    build: Callable[..., nn.Module]
    options: type[NormOptions]
    modules: tuple[type[nn.Module], ...]
    statistic_axes: StatisticAxes
    at_one_value: Callable[[nn.Module], str]
    running_statistics: bool = False
    fused_activation: bool = False
    needs_progress: bool = False
    conv: Mapping[int, type[nn.Module]] | None = None
    spatial_dims: tuple[int, ...] = (1, 2, 3)
    legacy_keys: Mapping[str, str] = field(default_factory=dict)
    loads_state_of: tuple[str, ...] = ()

    @property
    def batch_statistics(self) -> bool:
        """Training statistics mix the samples of a batch: the normalization batch size (ghost
        batches) applies and train and eval mode differ (:mod:`bnstudy.norm_catalog`)."""
        return uses_batch_statistics(self.name)


NORMS: dict[str, NormSpec] = {}


def register_norm(**fields: Any) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register the decorated factory as ``build`` of a :class:`NormSpec` made
    from ``fields`` (every field but ``build``)."""

    def add(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        spec = NormSpec(build=build, **fields)
        if spec.name in NORMS or spec.name in RESERVED_NAMES:
            raise ValueError(f"norm name {spec.name!r} is taken")
        if spec.name not in NORM_NAMES:
            raise ValueError(f"norm {spec.name!r}: add its name to bnstudy.norm_catalog")
        NORMS[spec.name] = spec
        return build

    return add


def norm_spec(name: str) -> NormSpec:
    """The spec of norm ``name``."""
    if name not in NORMS:
        raise ValueError(f"unknown norm {name!r}; known: {', '.join(NORMS)}")
    return NORMS[name]


def create_norm(
    name: str, channels: int, spatial_dims: int, options: NormOptions | None = None
) -> nn.Module:
    """The norm ``name`` for ``channels`` channels and ``spatial_dims`` axes after C, with
    ``options`` (None: the norm's defaults); a fused norm includes its activation."""
    spec = _spec_for(name, spatial_dims)
    fused = {"activation": True} if spec.fused_activation else {}
    return spec.build(channels, spatial_dims, _options(spec, options), **fused)


def create_norm_act(
    name: str,
    channels: int,
    spatial_dims: int,
    options: NormOptions | None = None,
    activation: str = FUSABLE_ACTIVATION,
) -> nn.Sequential:
    """Norm followed by ``activation`` (a name in :data:`ACTIVATIONS`), as one unit. A norm that
    fuses a ReLU-like activation (FRN's TLU, EvoNorm's x·σ(v·x)) stands in for the ReLU, so no
    ReLU is applied after it (timm's ``create_norm_act``). Before another activation (zeros_net's
    PReLU and tanh, ``identity`` before a residual sum) it is built with ``activation=False``
    and that activation follows: FRN without its TLU, and EvoNorm as its authors and timm define
    it there, an affine map (EvoNorm normalizes only as the activation)."""
    spec = _spec_for(name, spatial_dims)
    options = _options(spec, options)
    if not spec.fused_activation:
        norm = spec.build(channels, spatial_dims, options)
    elif activation == FUSABLE_ACTIVATION:
        return nn.Sequential(create_norm(name, channels, spatial_dims, options))
    else:
        norm = spec.build(channels, spatial_dims, options, activation=False)
    return nn.Sequential(norm, ACTIVATIONS[activation](channels))


def _spec_for(name: str, spatial_dims: int) -> NormSpec:
    spec = norm_spec(name)
    if spatial_dims not in spec.spatial_dims:
        raise ValueError(f"{name}: no {spatial_dims}D form (supported: {spec.spatial_dims})")
    return spec


def conv_layer(name: str, spatial_dims: int) -> type[nn.Module] | None:
    """The convolution class norm ``name`` pairs with, or None for the standard one."""
    conv = norm_spec(name).conv
    return None if conv is None else conv[spatial_dims]


def _options(spec: NormSpec, options: NormOptions | None) -> NormOptions:
    if options is None:
        return spec.options()
    if not isinstance(options, spec.options):
        raise TypeError(f"{spec.name} takes {spec.options.__name__}, not {type(options).__name__}")
    return options


def module_spec(module: nn.Module) -> NormSpec | None:
    """The spec whose classes ``module`` is an instance of (first in registration order)."""
    return next((s for s in NORMS.values() if isinstance(module, s.modules)), None)


def progress_layers(model: nn.Module) -> list[nn.Module]:
    """The layers of ``model`` whose norm needs the fraction of training done: the training
    loop calls their ``set_progress(fraction)`` each optimizer step."""
    return [m for m in model.modules() if (spec := module_spec(m)) and spec.needs_progress]
