"""Benchmark: training throughput of the quickstart CNN per batch size and thread count.

Prints samples/s and ms per optimizer step for the configured model on random CIFAR-shaped
inputs (forward, backward, SGD step), so sweep budgets can be planned. Usage:

    .venv/bin/python scripts/bench_train_step.py [--widths 16 32 64] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from bnstudy.config import ModelConfig
from bnstudy.models import InputShape
from bnstudy.run import make_model


def throughput(widths: list[int], norm: str, batch_size: int, seconds: float) -> float:
    """Optimizer steps per second over about ``seconds`` of training."""
    torch.manual_seed(0)
    model = make_model(ModelConfig(widths=widths, norm=norm), InputShape(3, 2, 32), 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(512, 3, 32, 32), torch.randint(0, 10, (512,))
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        index = torch.randint(0, 512, (batch_size,))
        loss = torch.nn.functional.cross_entropy(model(x[index]), y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--norm", default="batch")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"widths {args.widths}, norm {args.norm}"
    )
    print(f"{'threads':>7} {'batch':>5} {'samples/s':>10} {'ms/step':>8}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch_size in args.batch_sizes:
            rate = throughput(args.widths, args.norm, batch_size, args.seconds)
            print(f"{threads:>7} {batch_size:>5} {rate * batch_size:>10.0f} {1000 / rate:>8.2f}")


if __name__ == "__main__":
    main()
