"""K models of one architecture as one network: packed training.

Runs that differ only in seed train the same architecture on different data orders. Packed,
their K copies sit side by side along the channel axis: every convolution becomes one grouped
convolution (``groups × K``), each copy's input goes to its own channel group, and the head is a
grouped linear layer, so a step launches the kernels of one model instead of K (HFTA, Wang et
al., MLSys 2021, fuses models that differ in hyper-parameters into grouped operators the same
way; ``torch.func.vmap`` cannot carry BN's running-statistics updates).

A packed network computes exactly what the K models compute: no statistic crosses copies.
A norm whose parameters, buffers and statistics are all per channel (torch's BN with its ghost
batches, :class:`torch.nn.modules.batchnorm._BatchNorm`) packs into one wide layer. Any other
norm stays K layers, each applied to its copy's channels (:class:`Sliced`). With the loss the
sum of the copies' losses, each copy gets its own gradient, and an elementwise optimizer (SGD
with momentum and weight decay, Adam) steps each copy as it would alone.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from bnstudy.models import ConvNet, ZerosNet
from bnstudy.norms import module_spec

# modules that act on each value, or on each channel alone with nothing learned
_SHARED = (
    nn.ReLU,
    nn.Tanh,
    nn.Identity,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.Flatten,
)


# the architectures whose forward keeps each channel group to itself: no reshape, padding or
# reduction across channels outside the modules that packing replaces
PACKABLE = (ConvNet, ZerosNet)


class CannotPack(ValueError):
    """A model that packing does not support, with the reason."""


class GroupedLinear(nn.Module):
    """K linear layers applied to the K channel groups of their input: ``(N, K·in)`` to
    ``(N, K·out)``, copy k's output from copy k's input alone."""

    def __init__(self, layers: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.copies = len(layers)
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))
        biases = [layer.bias for layer in layers]
        self.bias = (
            nn.Parameter(torch.stack([b.detach() for b in biases]))
            if all(b is not None for b in biases)
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grouped = x.reshape(x.shape[0], self.copies, -1)
        out = torch.einsum("nki,koi->nko", grouped, self.weight)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(x.shape[0], -1)


class Sliced(nn.Module):
    """K copies of a module, copy k applied to the k-th of K equal channel groups."""

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        super().__init__()
        self.copies = nn.ModuleList(modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = x.chunk(len(self.copies), dim=1)
        return torch.cat(
            [module(part) for module, part in zip(self.copies, parts, strict=True)], dim=1
        )


def pack(models: Sequence[nn.Module]) -> nn.Module:
    """One network computing what the K ``models`` compute (same architecture, each with its
    own weights and buffers), on inputs whose channels are the K models' inputs side by side
    (:func:`pack_inputs`) and with outputs side by side along dim 1 (:func:`unpack_outputs`).
    Raises :class:`CannotPack` for a module it does not know how to pack."""
    if len(models) < 1:
        raise CannotPack("nothing to pack")
    if not isinstance(models[0], PACKABLE):
        raise CannotPack(
            f"{type(models[0]).__name__}: only {', '.join(c.__name__ for c in PACKABLE)} pack "
            "(a model's own forward may mix channels: ResNet's shortcut pads them)"
        )
    packed = copy.deepcopy(models[0])
    _replace_children(packed, [dict(m.named_children()) for m in models], "")
    return packed


def _replace_children(parent: nn.Module, copies: list[dict[str, nn.Module]], where: str) -> None:
    for name in [name for name, _ in parent.named_children()]:
        setattr(parent, name, _packed_module([c[name] for c in copies], f"{where}{name}"))


def _packed_module(modules: list[nn.Module], where: str) -> nn.Module:
    """The packed counterpart of the K ``modules`` at ``where`` in the model."""
    first = modules[0]
    if isinstance(first, _ConvNd):
        return _packed_conv(modules)
    if isinstance(first, nn.Linear):
        return GroupedLinear(modules)
    if isinstance(first, _BatchNorm) and _per_channel(first):
        return _packed_wide(modules)
    if module_spec(first) is not None:
        return Sliced(modules)
    if isinstance(first, _SHARED):
        return copy.deepcopy(first)
    if isinstance(first, nn.PReLU) and first.num_parameters > 1:
        return _packed_wide(modules)
    if isinstance(first, nn.Sequential):
        packed = copy.deepcopy(first)
        _replace_children(packed, [dict(m.named_children()) for m in modules], f"{where}.")
        return packed
    raise CannotPack(f"{where}: {type(first).__name__} is not a module packing knows")


def _packed_conv(convs: list[_ConvNd]) -> _ConvNd:
    """One convolution with ``groups × K``: copy k's filters read copy k's channels only."""
    first, copies = convs[0], len(convs)
    if first.padding_mode != "zeros":
        raise CannotPack(f"padding mode {first.padding_mode!r}")
    packed = copy.deepcopy(first)
    packed.in_channels, packed.out_channels = (
        first.in_channels * copies,
        first.out_channels * copies,
    )
    packed.groups = first.groups * copies
    packed.weight = nn.Parameter(torch.cat([conv.weight.detach() for conv in convs]))
    if first.bias is not None:
        packed.bias = nn.Parameter(torch.cat([conv.bias.detach() for conv in convs]))
    return packed


def _per_channel(module: nn.Module) -> bool:
    """Whether every parameter and buffer of ``module`` holds one value per channel (or is a
    scalar count), so that K copies concatenate into one layer of K times the channels."""
    channels = getattr(module, "num_features", None)
    tensors = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
    return channels is not None and all(t.dim() == 0 or t.shape == (channels,) for t in tensors)


def _packed_wide(modules: list[nn.Module]) -> nn.Module:
    """One layer with the K modules' per-channel tensors concatenated; scalar buffers (BN's
    ``num_batches_tracked``) must be equal, as they are for copies trained step by step."""
    packed = copy.deepcopy(modules[0])
    for name, value in list(modules[0].named_parameters(recurse=False)):
        joined = torch.cat([getattr(m, name).detach() for m in modules])
        setattr(packed, name, nn.Parameter(joined, requires_grad=value.requires_grad))
    for name, value in list(modules[0].named_buffers(recurse=False)):
        if value is None:
            continue
        values = [getattr(m, name) for m in modules]
        if value.dim() == 0:
            if any(not torch.equal(v, value) for v in values):
                raise CannotPack(f"{name} differs between the copies")
            continue
        packed.register_buffer(name, torch.cat(values))
    for attribute in ("num_features", "num_parameters"):
        if hasattr(packed, attribute):
            setattr(packed, attribute, getattr(packed, attribute) * len(modules))
    return packed


def pack_inputs(inputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """The K models' input batches (each ``(N, C, *spatial)``, equally long) side by side
    (one model's batch as it is)."""
    return inputs[0] if len(inputs) == 1 else torch.cat(list(inputs), dim=1)


def unpack_outputs(output: torch.Tensor, copies: int) -> torch.Tensor:
    """The packed network's ``(N, K·classes)`` output as ``(K, N, classes)``."""
    return output.reshape(output.shape[0], copies, -1).transpose(0, 1)


def copy_state(packed: nn.Module, model: nn.Module, index: int, copies: int) -> dict:
    """Copy ``index``'s weights and buffers, keyed as ``model`` (its unpacked architecture)
    names them: what the copy would hold had it trained alone."""
    state = {}
    packed_state = packed.state_dict()
    for key, value in model.state_dict().items():
        state[key] = _copy_tensor(packed_state, key, value, index, copies)
    return state


def _copy_tensor(
    packed_state: dict[str, torch.Tensor], key: str, value: torch.Tensor, index: int, copies: int
) -> torch.Tensor:
    """Copy ``index``'s part of the packed tensor that holds unpacked ``key``: a slice of K
    concatenated blocks (dim 0), an entry of a stacked one (:class:`GroupedLinear`), a count
    the copies share, or the tensor of its own module in a :class:`Sliced`."""
    if key not in packed_state:
        parts = key.split(".")
        for cut in range(len(parts) - 1, -1, -1):
            sliced = ".".join([*parts[:cut], "copies", str(index), *parts[cut:]])
            if sliced in packed_state:
                return packed_state[sliced]
        raise KeyError(f"{key}: not in the packed network")
    whole = packed_state[key]
    if whole.shape == value.shape:  # a count the copies share
        return whole
    if whole.dim() == value.dim() + 1:  # stacked
        return whole[index]
    return whole.chunk(copies)[index]
