"""Benchmark: training throughput of the quickstart CNN per batch size and thread count.

Prints samples/s and ms per optimizer step for the configured model on random CIFAR-shaped
inputs (forward, backward, SGD step), so sweep budgets can be planned. With
``--norm-batch-sizes`` the batch size stays at the first ``--batch-sizes`` value and BN
normalizes in ghost sub-batches of each given size (what train.norm_batch_size costs). Usage:

    .venv/bin/python scripts/bench_train_step.py [--widths 16 32 64] [--threads 1 2]
    .venv/bin/python scripts/bench_train_step.py --batch-sizes 32 --norm-batch-sizes 1 4 32
"""

from __future__ import annotations

import argparse
import time

import torch

from bnstudy.config import ModelConfig
from bnstudy.models import InputShape
from bnstudy.preflight import make_model
from bnstudy.record import cpu_name
from bnstudy.train import normalization_batch


def throughput(
    widths: list[int], norm: str, batch_size: int, seconds: float, norm_batch: int | None = None
) -> float:
    """Optimizer steps per second over about ``seconds`` of training."""
    torch.manual_seed(0)
    model = make_model(ModelConfig(widths=widths, norm=norm), InputShape(3, 2, 32), 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(512, 3, 32, 32), torch.randint(0, 10, (512,))
    steps, start = 0, time.perf_counter()
    with normalization_batch(model, norm_batch):
        while time.perf_counter() - start < seconds:
            _step(model, optimizer, x, y, batch_size)
            steps += 1
    return steps / (time.perf_counter() - start)


def _step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
) -> None:
    """One SGD step on a random batch of ``batch_size`` of ``x``, ``y``."""
    index = torch.randint(0, 512, (batch_size,))
    loss = torch.nn.functional.cross_entropy(model(x[index]), y[index])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--norm", default="batch")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--norm-batch-sizes", type=int, nargs="+", default=None)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {cpu_name()}, widths {args.widths}, norm {args.norm}")
    rows = (
        [(args.batch_sizes[0], nbs) for nbs in args.norm_batch_sizes]
        if args.norm_batch_sizes
        else [(batch_size, None) for batch_size in args.batch_sizes]
    )
    print(f"{'threads':>7} {'batch':>5} {'norm batch':>10} {'samples/s':>10} {'ms/step':>8}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch_size, nbs in rows:
            rate = throughput(args.widths, args.norm, batch_size, args.seconds, nbs)
            print(
                f"{threads:>7} {batch_size:>5} {nbs or batch_size:>10} "
                f"{rate * batch_size:>10.0f} {1000 / rate:>8.2f}"
            )


if __name__ == "__main__":
    main()
