"""Training throughput of bnstudy's run path, unpacked and packed, against a plain loop.

    .venv/bin/python scripts/bench.py                   # the grid below, about 10 min on 2 cores
    .venv/bin/python scripts/bench.py --dims 2 --norm-batch-sizes 1 --copies 8 --repeats 5
    .venv/bin/python scripts/bench.py --batch norm      # one normalization batch per step

The runs are those of the shipped studies: configs/nbs.yaml (2D: the cnn of widths 32, 64, 128
on 32² synthetic images, 32 images per optimizer step) and configs/volumetric-bs1.yaml (3D: the
cnn of widths 8, 16, 32 on 32³ synthetic volumes, 16 per step), BN with ghost batches of each
normalization batch size (2D: 1, 2, 8, 32; 3D: 1, 4). With ``--batch norm`` every step is one
normalization batch instead (the regime of a study trained at batch size 1). Three contenders
train ``--steps`` optimizer steps each:

* ``plain``: a minimal loop written here, one model: x[index], forward, cross-entropy,
  backward, SGD step (the model and its ghost batches as bnstudy builds them);
* ``unpacked``: bnstudy's run path for one run (bnstudy.run: its data order, augmentation hook,
  loss and accuracy accumulation, lr schedule; timed by the loop itself);
* ``packed K``: the run path for K runs of the cell (seeds 0..K-1) as one packed network
  (bnstudy.packed_run), K = ``--copies``.

Each measurement is model-samples per second (K × images trained / seconds, after one
warm-up step of its own); every repetition runs each contender once, in turn (A B C A B C).
Printed: the median (min–max) per contender, and its ratio to plain, median (min–max) over the
repetitions, with the CPU flags, torch version and threads.
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
import yaml

from bnstudy import packed_run, run
from bnstudy.config import StudyConfig
from bnstudy.sweep import plan
from bnstudy.train import normalization_batch

ROOT = Path(__file__).resolve().parent.parent
STUDIES = {2: ROOT / "configs" / "nbs.yaml", 3: ROOT / "configs" / "volumetric-bs1.yaml"}
NORM_BATCH_SIZES = {2: [1, 2, 8, 32], 3: [1, 4]}
CPU = torch.device("cpu")


def cell_configs(
    dims: int, norm_batch: int, copies: int, steps: int, batch: str
) -> list[StudyConfig]:
    """The configs of ``copies`` runs of the cell (seeds 0..copies-1), trained ``steps`` steps."""
    raw = yaml.safe_load(STUDIES[dims].read_text())
    per_step = raw["train"]["batch_size"] if batch == "study" else norm_batch
    raw["data"].update(train_size=per_step * steps, test_size=per_step)
    raw["train"].pop("epochs")
    raw["train"].update(
        batch_size=per_step, norm_batch_size=norm_batch, steps=steps, warmup_fraction=0
    )
    raw["eval"] = {"test_modes": ["eval"]}
    raw.pop("analysis", None)
    raw["sweep"] = {"seed": list(range(copies))}
    return [r.config for r in plan(raw, str(STUDIES[dims]))[1]]


def plain(config: StudyConfig, device: torch.device) -> float:
    """Model-samples/s of the minimal loop for the run ``config``."""
    data = run.load_data(config, device)
    model = run.model_for_data(config, data)
    cfg = config.train
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    x, y = data.train.x, data.train.y
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(config.seed))
    batches = order.to(device).split(cfg.batch_size)

    def step(index: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[index]), y[index]).backward()
        optimizer.step()

    model.train()
    with normalization_batch(model, cfg.norm_batch_size):
        step(batches[0])  # warm-up
        _sync(device)
        start = time.perf_counter()
        for index in batches:
            step(index)
        _sync(device)
    return len(y) / (time.perf_counter() - start)


def run_path(cell: list[StudyConfig], device: torch.device) -> float:
    """Model-samples/s of bnstudy's training of the runs ``cell`` (one run: unpacked; K: as
    one pack), as its loop times itself; after a warm-up step of models built alike."""
    one_step = [
        c.model_copy(update={"train": c.train.model_copy(update={"steps": 1})}) for c in cell
    ]
    _train(one_step, device)
    copies = _train(cell, device)
    return sum(copy.result.samples for copy in copies) / copies[0].result.seconds


def _train(cell: list[StudyConfig], device: torch.device) -> list:
    compute = run.run_compute(cell[0])
    datas = [run.load_data(config, device) for config in cell]
    setups = [
        run.setup_model(config, data, compute) for config, data in zip(cell, datas, strict=True)
    ]
    models, lr = [model for model, _, _ in setups], setups[0][2]
    quiet = (lambda k, stats: None, lambda position: None)
    return packed_run.train_together(cell, datas, models, lr, quiet)[1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_flags() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return " ".join(sorted(set(re.findall(r"\b(avx512[a-z]*|avx2)\b", text)))) or "unknown"


def spread(values: list[float], digits: int = 0) -> str:
    return (
        f"{statistics.median(values):.{digits}f} "
        f"({min(values):.{digits}f}–{max(values):.{digits}f})"
    )


def bench_cell(dims: int, norm_batch: int, args: argparse.Namespace, device: torch.device) -> None:
    """Every contender at one normalization batch size, interleaved, and the printed rows."""
    contenders = {"plain": None, "unpacked": 1, **{f"packed K={k}": k for k in args.copies}}
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.repeats):
        for name, copies in contenders.items():
            cell = cell_configs(dims, norm_batch, copies or 1, args.steps, args.batch)
            rates[name].append(plain(cell[0], device) if copies is None else run_path(cell, device))
    for name, values in rates.items():
        ratios = [v / p for v, p in zip(values, rates["plain"], strict=True)]
        print(
            f"{dims}D norm batch {norm_batch:2}  {name:12} {spread(values):>22} model-samples/s"
            f"   × plain {spread(ratios, 2)}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 3], choices=[2, 3])
    parser.add_argument("--norm-batch-sizes", type=int, nargs="+", default=None)
    parser.add_argument("--copies", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--batch",
        choices=["study", "norm"],
        default="study",
        help="images per step: the study's (ghost batches within it) or one norm batch",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_flags()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {device}: {where} "
        f"({platform.processor() or platform.machine()}); {args.steps} steps of "
        f"{args.batch} batch per measurement, {args.repeats} repetitions interleaved; "
        "median (min–max)",
        flush=True,
    )
    for dims in args.dims:
        for norm_batch in args.norm_batch_sizes or NORM_BATCH_SIZES[dims]:
            bench_cell(dims, norm_batch, args, device)


if __name__ == "__main__":
    main()
