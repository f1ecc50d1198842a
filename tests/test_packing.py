"""Packed training computes exactly what separate training computes: K = 3 copies of a small
net, each with its own seed, data order and ghost batches, trained a few SGD steps (momentum,
weight decay) in float64, packed and apart, for every norm in the registry in 2D and 3D."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bnstudy import packing
from bnstudy.config import ModelConfig
from bnstudy.models import InputShape
from bnstudy.norm_catalog import NORM_NAMES, uses_batch_statistics
from bnstudy.preflight import make_model
from bnstudy.train import normalization_batch, norms_in_train_mode

COPIES, STEPS, BATCH, CLASSES = 3, 3, 8, 4
TOLERANCE = 1e-8  # relative, float64


def models(norm: str, dims: int) -> list[torch.nn.Module]:
    shape = InputShape(channels=2, spatial_dims=dims, size=8 if dims == 2 else 4)
    built = []
    for seed in range(COPIES):
        torch.manual_seed(seed)
        model = make_model(ModelConfig(name="cnn", widths=[8, 16], norm=norm), shape, CLASSES)
        built.append(model.double())
    return built


def batches(dims: int) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Per copy, its own STEPS batches (its own data order)."""
    size = (8,) * 2 if dims == 2 else (4,) * 3
    generator = torch.Generator().manual_seed(0)
    return [
        [
            (
                torch.randn(BATCH, 2, *size, generator=generator, dtype=torch.float64),
                torch.randint(CLASSES, (BATCH,), generator=generator),
            )
            for _ in range(STEPS)
        ]
        for _ in range(COPIES)
    ]


def sgd(params) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)


def train_apart(nets, data, norm_batch) -> None:
    for net, own in zip(nets, data, strict=True):
        optimizer = sgd(net.parameters())
        net.train()
        with normalization_batch(net, norm_batch):
            for x, y in own:
                optimizer.zero_grad()
                F.cross_entropy(net(x), y).backward()
                optimizer.step()


def train_packed(packed, data, norm_batch) -> None:
    optimizer = sgd(packed.parameters())
    packed.train()
    with normalization_batch(packed, norm_batch):
        for step in range(STEPS):
            x = packing.pack_inputs([own[step][0] for own in data])
            logits = packing.unpack_outputs(packed(x), COPIES)
            optimizer.zero_grad()
            loss = sum(F.cross_entropy(logits[k], data[k][step][1]) for k in range(COPIES))
            loss.backward()
            optimizer.step()


def assert_close(packed_value: torch.Tensor, alone: torch.Tensor, what: str) -> None:
    scale = alone.abs().max().clamp_min(1e-12)
    error = (packed_value.double() - alone.double()).abs().max() / scale
    assert error <= TOLERANCE, f"{what}: relative error {error:.2e}"


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("norm", NORM_NAMES)
def test_packed_copies_train_and_test_exactly_as_separate_runs(norm, dims):
    norm_batch = 2 if uses_batch_statistics(norm) else None
    apart = models(norm, dims)
    packed = packing.pack(models(norm, dims))  # the same initial weights
    data = batches(dims)
    train_apart(apart, data, norm_batch)
    train_packed(packed, data, norm_batch)
    for k, net in enumerate(apart):  # weights and buffers (running statistics)
        state = packing.copy_state(packed, net, k, COPIES)
        for key, value in net.state_dict().items():
            assert_close(state[key], value, f"copy {k} {key}")
    test = [own[0][0] for own in data]
    with torch.no_grad():
        packed.eval()
        evaluated = packing.unpack_outputs(packed(packing.pack_inputs(test)), COPIES)
        norms_in_train_mode(packed)
        trained = packing.unpack_outputs(packed(packing.pack_inputs(test)), COPIES)
        for k, net in enumerate(apart):
            net.eval()
            assert_close(evaluated[k], net(test[k]), f"copy {k} eval-mode outputs")
            norms_in_train_mode(net)
            assert_close(trained[k], net(test[k]), f"copy {k} train-mode outputs")


def test_models_whose_forward_may_mix_channels_are_refused_with_the_reason():
    shape = InputShape(channels=3, spatial_dims=2, size=8)
    resnet = make_model(ModelConfig(name="resnet8", norm="batch"), shape, CLASSES)
    with pytest.raises(packing.CannotPack, match="CifarResNet: only ConvNet, ZerosNet pack"):
        packing.pack([resnet, resnet])
    convnet = make_model(ModelConfig(name="cnn", widths=[8], norm="batch"), shape, CLASSES)
    convnet.features.append(torch.nn.GLU(dim=1))
    with pytest.raises(packing.CannotPack, match="features.3: GLU"):
        packing.pack([convnet, convnet])
