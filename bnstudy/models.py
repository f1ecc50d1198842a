"""Small conv nets that build the same way in 2D and 3D.

Models receive what they need (input shape, class count, widths, a norm-plus-activation
constructor taking channels, a convolution class) and never read a config. The norm and its
activation come as one unit (:func:`bnstudy.norms.create_norm_act`), so a norm that fuses its
activation (FRN's TLU) replaces the ReLU instead of being followed by one. Dimension is data:
:func:`layer_class` maps ``(kind, spatial_dims)`` to the PyTorch class, so no 2D/3D copies of
the same code exist.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

# (channels, activation name) -> norm followed by the activation, as a Sequential
NormAct = Callable[[int, str], nn.Sequential]
ConvLayer = Callable[..., nn.Module]  # a conv class: (in, out, kernel, stride=, padding=)

_LAYERS: dict[tuple[str, int], type[nn.Module]] = {
    ("conv", 1): nn.Conv1d,
    ("maxpool", 1): nn.MaxPool1d,
    ("avgpool", 1): nn.AdaptiveAvgPool1d,
    ("conv", 2): nn.Conv2d,
    ("conv", 3): nn.Conv3d,
    ("maxpool", 2): nn.MaxPool2d,
    ("maxpool", 3): nn.MaxPool3d,
    ("avgpool", 2): nn.AdaptiveAvgPool2d,
    ("avgpool", 3): nn.AdaptiveAvgPool3d,
}


def layer_class(kind: str, spatial_dims: int) -> type[nn.Module]:
    """The PyTorch class for layer ``kind`` ('conv', 'maxpool', 'avgpool') in 1D, 2D or 3D."""
    return _LAYERS[(kind, spatial_dims)]


@dataclass(frozen=True)
class InputShape:
    """Shape of one input sample: ``channels`` × ``size`` along each of ``spatial_dims`` axes."""

    channels: int
    spatial_dims: int
    size: int


class ConvNet(nn.Module):
    """Blocks of conv3×3 → norm → ReLU (or a fused norm-activation) with 2× max-pool between
    blocks, then global average pooling and a linear classifier. With widths (32, 64, 128) on
    32×32 inputs the norms see 32², 16² and 8² positions per sample."""

    def __init__(
        self,
        shape: InputShape,
        num_classes: int,
        widths: Sequence[int],
        norm_act: NormAct,
        conv: ConvLayer,
    ) -> None:
        super().__init__()
        pool = layer_class("maxpool", shape.spatial_dims)
        layers: list[nn.Module] = []
        channels = shape.channels
        for index, width in enumerate(widths):
            if index > 0:
                layers.append(pool(2))
            layers += [conv(channels, width, 3, padding=1), *norm_act(width, "relu")]
            channels = width
        self.features = nn.Sequential(*layers)
        self.pool = layer_class("avgpool", shape.spatial_dims)(1)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


class ZerosNet(nn.Module):
    """The network of StackOverflow q. 48320854 ("outputs all zeros at batch size 1"): per
    width, a 5×5 stride-2 'valid' conv → norm → PReLU (slope 0.2 at init); then a conv whose
    kernel covers the whole remaining map, so the output is 1×1 per channel, → norm → tanh.

    Widths default to the question's (64, 128, 256, 256, 256) on 256×256 inputs. The output has
    ``num_classes`` channels (100 in the question) so that it trains with the same loop; its
    last norm sees one value per channel per sample, the case that yields all zeros."""

    def __init__(
        self,
        shape: InputShape,
        num_classes: int,
        widths: Sequence[int],
        norm_act: NormAct,
        conv: ConvLayer,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels, size = shape.channels, shape.size
        for width in widths:
            size = (size - 5) // 2 + 1
            if size < 1:
                raise ValueError(
                    f"zeros_net: input size {shape.size} is too small for "
                    f"{len(widths)} stride-2 5×5 layers"
                )
            layers += [conv(channels, width, 5, stride=2), *norm_act(width, "prelu")]
            channels = width
        layers += [conv(channels, num_classes, size), *norm_act(num_classes, "tanh")]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).flatten(1)


class BasicBlock(nn.Module):
    """He et al. 2016's basic residual block: conv3×3 → norm → ReLU → conv3×3 → norm, plus the
    shortcut, → ReLU. The shortcut is the identity; where the block halves the map and widens
    the channels it subsamples with stride 2 and pads the new channels with zeros (the paper's
    option A for CIFAR, §4.2), so it adds no parameters and no norm."""

    def __init__(
        self, in_channels: int, channels: int, stride: int, norm_act: NormAct, conv: ConvLayer
    ) -> None:
        super().__init__()
        self.stride, self.extra = stride, channels - in_channels
        self.conv1 = conv(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = norm_act(channels, "relu")
        self.conv2 = conv(channels, channels, 3, padding=1, bias=False)
        self.norm2 = norm_act(channels, "identity")
        self.relu = nn.ReLU(inplace=True)

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """x subsampled by the stride along every spatial axis, zero channels added evenly."""
        x = x[(slice(None), slice(None)) + (slice(None, None, self.stride),) * (x.dim() - 2)]
        if not self.extra:
            return x
        pad = (0, 0) * (x.dim() - 2) + (self.extra // 2, self.extra - self.extra // 2)
        return nn.functional.pad(x, pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm2(self.conv2(self.norm1(self.conv1(x))))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """The CIFAR ResNets of He et al. 2016 (arXiv 1512.03385, §4.2): conv3×3 → norm → ReLU,
    then three stages of ``blocks`` basic blocks with ``widths`` (16, 32, 64) channels on maps
    of 32², 16², 8² (the first block of stages 2 and 3 has stride 2), global average pooling
    and a linear classifier; 6·blocks + 2 layers (resnet20: 3 blocks). Convolutions get He
    (fan-in) initialization, as in the paper. Works in 2D and 3D."""

    def __init__(
        self,
        shape: InputShape,
        num_classes: int,
        widths: Sequence[int],
        norm_act: NormAct,
        conv: ConvLayer,
        blocks: int = 3,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            conv(shape.channels, widths[0], 3, padding=1, bias=False),
            *norm_act(widths[0], "relu"),
        ]
        channels = widths[0]
        for stage, width in enumerate(widths):
            for block in range(blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(BasicBlock(channels, width, stride, norm_act, conv))
                channels = width
        self.features = nn.Sequential(*layers)
        self.pool = layer_class("avgpool", shape.spatial_dims)(1)
        self.head = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.modules.conv._ConvNd):
                nn.init.kaiming_normal_(module.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


ModelBuilder = Callable[[InputShape, int, "Sequence[int] | None", NormAct, ConvLayer], nn.Module]


def _cnn(
    shape: InputShape,
    num_classes: int,
    widths: Sequence[int] | None,
    norm_act: NormAct,
    conv: ConvLayer,
) -> nn.Module:
    return ConvNet(shape, num_classes, widths or (32, 64, 128), norm_act, conv)


def _zeros_net(
    shape: InputShape,
    num_classes: int,
    widths: Sequence[int] | None,
    norm_act: NormAct,
    conv: ConvLayer,
) -> nn.Module:
    return ZerosNet(shape, num_classes, widths or (64, 128, 256, 256, 256), norm_act, conv)


def _resnet20(
    shape: InputShape,
    num_classes: int,
    widths: Sequence[int] | None,
    norm_act: NormAct,
    conv: ConvLayer,
) -> nn.Module:
    return CifarResNet(shape, num_classes, widths or (16, 32, 64), norm_act, conv, blocks=3)


def _resnet8(
    shape: InputShape,
    num_classes: int,
    widths: Sequence[int] | None,
    norm_act: NormAct,
    conv: ConvLayer,
) -> nn.Module:
    """One block per stage: the small residual net for volumes (32³ costs 32× a 32² image)."""
    return CifarResNet(shape, num_classes, widths or (16, 32, 64), norm_act, conv, blocks=1)


MODELS: dict[str, ModelBuilder] = {
    "cnn": _cnn,
    "zeros_net": _zeros_net,
    "resnet20": _resnet20,
    "resnet8": _resnet8,
}


def build_model(
    name: str,
    shape: InputShape,
    num_classes: int,
    widths: Sequence[int] | None,
    norm_act: NormAct,
    conv: ConvLayer | None = None,
) -> nn.Module:
    """Build model ``name``; ``widths`` None means the model's default widths, ``conv`` None
    the standard convolution."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    conv = conv or layer_class("conv", shape.spatial_dims)
    return MODELS[name](shape, num_classes, widths, norm_act, conv)
