"""Does packing pay here? Training steps of K copies of a net, packed (bnstudy.packing) against
K separate models stepped one after the other, at several normalization batch sizes.

    .venv/bin/python scripts/bench_packing.py
    .venv/bin/python scripts/bench_packing.py --copies 1 8 --norm-batch-sizes 1 32 --repeats 5

Each measurement is the model-samples per second (K × batch per step) of a few SGD steps
(forward, backward, update, ghost batches as the run path sets them) after a warm-up step;
packed and separate alternate (A B A B ...). Prints medians with min–max and the ratio
packed / separate, with the CPU flags, the torch version and its threads. This measures the
training step only, not bnstudy's run path (data order, diagnostics, tests).
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from bnstudy import packing
from bnstudy.config import ModelConfig
from bnstudy.models import InputShape
from bnstudy.preflight import make_model
from bnstudy.train import normalization_batch


def nets(copies: int, norm: str, widths: list[int], shape: InputShape) -> list[torch.nn.Module]:
    built = []
    for seed in range(copies):
        torch.manual_seed(seed)
        built.append(make_model(ModelConfig(name="cnn", widths=widths, norm=norm), shape, 10))
    return built


def step_time(steps) -> float:
    """Seconds per step of the training steps ``steps`` runs, after one warm-up step."""
    steps()
    start = time.perf_counter()
    for _ in range(3):
        steps()
    return (time.perf_counter() - start) / 3


def separate_steps(models, optimizers, xs, ys, norm_batch):
    def run() -> None:
        for model, optimizer, x, y in zip(models, optimizers, xs, ys, strict=True):
            with normalization_batch(model, norm_batch):
                optimizer.zero_grad()
                F.cross_entropy(model(x), y).backward()
                optimizer.step()

    return run


def packed_steps(packed, optimizer, xs, ys, norm_batch):
    copies = len(xs)
    x = packing.pack_inputs(xs)

    def run() -> None:
        with normalization_batch(packed, norm_batch):
            optimizer.zero_grad()
            logits = packing.unpack_outputs(packed(x), copies)
            sum(F.cross_entropy(logits[k], ys[k]) for k in range(copies)).backward()
            optimizer.step()

    return run


def sgd(params) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)


def measure(copies: int, norm_batch: int, args: argparse.Namespace) -> tuple[list, list]:
    shape = InputShape(3, 2, args.size)
    separate = nets(copies, args.norm, args.widths, shape)
    packed = packing.pack(nets(copies, args.norm, args.widths, shape))
    for model in [*separate, packed]:
        model.train()
    xs = [torch.randn(args.batch, 3, args.size, args.size) for _ in range(copies)]
    ys = [torch.randint(10, (args.batch,)) for _ in range(copies)]
    runs = {
        "separate": separate_steps(
            separate, [sgd(m.parameters()) for m in separate], xs, ys, norm_batch
        ),
        "packed": packed_steps(packed, sgd(packed.parameters()), xs, ys, norm_batch),
    }
    rates: dict[str, list[float]] = {"separate": [], "packed": []}
    for _ in range(args.repeats):
        for name, run in runs.items():
            rates[name].append(copies * args.batch / step_time(run))
    return rates["separate"], rates["packed"]


def cpu_flags() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return " ".join(sorted(set(re.findall(r"\b(avx512[a-z]*|avx2)\b", text)))) or "unknown"


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):7.0f} ({min(values):.0f}–{max(values):.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--norm-batch-sizes", type=int, nargs="+", default=[1, 2, 8, 32])
    parser.add_argument("--norm", default="batch")
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU: {cpu_flags()} "
        f"({platform.processor() or platform.machine()}); {args.norm}, cnn {args.widths}, "
        f"batch {args.batch}, {args.size}², {args.repeats} repeats A/B; model-samples/s, "
        "median (min–max)"
    )
    for norm_batch in args.norm_batch_sizes:
        for copies in args.copies:
            separate, packed = measure(copies, norm_batch, args)
            ratios = [p / s for p, s in zip(packed, separate, strict=True)]
            print(
                f"norm batch {norm_batch:2} K={copies:2}: separate {spread(separate)}  "
                f"packed {spread(packed)}  packed/separate {statistics.median(ratios):.2f}× "
                f"({min(ratios):.2f}–{max(ratios):.2f})"
            )


if __name__ == "__main__":
    main()
