"""Benchmark: training speed and peak memory by train.precision and train.channels_last.

Times ``--steps`` optimizer steps of bnstudy's own training loop (bnstudy.train.train: autocast,
the fp16 loss scaler, channels-last inputs) on random CIFAR-shaped data already on the device,
after ``--warmup`` untimed steps, with the clock read after synchronizing the device. Each
setting runs in a fresh process, so its peak memory is its own: on CUDA the peak allocated
tensors (torch.cuda.max_memory_allocated), on the CPU the process's peak resident set
(ru_maxrss, which includes the interpreter, torch and the data). fp16 is timed by default on
CUDA only. Usage:

    .venv/bin/python scripts/bench_precision.py [--model resnet20] [--batch-size 64]
        [--steps 20] [--device auto] [--precisions fp32 bf16] [--threads 2]
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import torch

from bnstudy.config import StudyConfig
from bnstudy.data import Split
from bnstudy.device import (
    peak_memory,
    reset_peak_memory,
    resolve_device,
    run_flags,
    synchronized_clock,
)
from bnstudy.models import InputShape
from bnstudy.preflight import make_model
from bnstudy.record import cpu_capability, cpu_name
from bnstudy.run import run_compute
from bnstudy.train import Batching, Position, Schedule, train

IMAGE, CHANNELS, CLASSES = 32, 3, 10


def measure(
    model_name: str,
    norm: str,
    batch_size: int,
    precision: str,
    channels_last: bool,
    steps: int,
    warmup: int,
    device_name: str,
    threads: int,
) -> dict[str, float]:
    """Steps/s and peak memory of one setting (run in a fresh process)."""
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    config = StudyConfig(
        name="bench",
        model={"name": model_name, "norm": norm},
        train={"batch_size": batch_size, "precision": precision, "channels_last": channels_last},
    )
    compute = run_compute(config)
    torch.manual_seed(0)
    shape = InputShape(CHANNELS, 2, IMAGE)
    model = compute.prepare(make_model(config.model, shape, CLASSES).to(device), 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    n = batch_size * (steps + warmup)
    generator = torch.Generator().manual_seed(0)
    split = Split(
        x=torch.randn(n, CHANNELS, IMAGE, IMAGE, generator=generator).to(device),
        y=torch.randint(0, CLASSES, (n,), generator=generator).to(device),
    )

    def run(total: int) -> None:
        train(
            model,
            split,
            optimizer,
            batching=Batching(batch_size),
            schedule=Schedule(total=total),
            generator=torch.Generator().manual_seed(0),
            position=Position(),
            compute=compute,
        )

    with run_flags(deterministic=False, device=device):  # the flags runs use (cuDNN autotuning)
        run(warmup)  # kernels chosen, caches warm, allocator grown
        reset_peak_memory(device)
        start = synchronized_clock(device)
        run(steps)
        seconds = synchronized_clock(device) - start
    return {"steps_per_sec": steps / seconds, **peak_memory(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--norm", default="batch")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precisions", nargs="+", default=None)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    precisions = args.precisions or (["fp32", "bf16", "fp16"] if cuda else ["fp32", "bf16"])
    where = torch.cuda.get_device_name(device) if cuda else f"{cpu_name()}, {args.threads} threads"
    print(
        f"{args.model} ({args.norm}), batch {args.batch_size}, {args.steps} steps after "
        f"{args.warmup} warm-up; {where}; torch {torch.__version__}, "
        f"CPU kernels {cpu_capability()}, CUDA {torch.version.cuda if cuda else '-'}"
    )
    print(f"{'precision':>9} {'channels_last':>13} {'steps/s':>8} {'samples/s':>9} {'peak MiB':>9}")
    context = multiprocessing.get_context("spawn")
    for precision, channels_last in itertools.product(precisions, (False, True)):
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            result = pool.submit(
                measure,
                args.model,
                args.norm,
                args.batch_size,
                precision,
                channels_last,
                args.steps,
                args.warmup,
                str(device),
                args.threads,
            ).result()
        rate = result["steps_per_sec"]
        print(
            f"{precision:>9} {channels_last!s:>13} {rate:>8.2f} {rate * args.batch_size:>9.0f} "
            f"{result['peak_memory_mib']:>9.0f}"
        )
    print(f"peak memory: {result['peak_memory_of']}")


if __name__ == "__main__":
    main()
