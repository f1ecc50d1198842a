"""Disk cost of kept models and mid-run checkpoints (bnstudy.checkpoint), in bytes.

For each study file given (default: every configs/*.yaml whose data loads here), the size of
the model.pt its first run writes (the run's model built and saved as a run saves it; the
weights do not change the size). With ``--checkpoint CONFIG --at-step N``, also the size of
the checkpoint.pt that config's first run writes at optimizer step N (trained for real up to
there: the training state holds the epoch's tally, which grows with the step in its epoch).

    .venv/bin/python scripts/checkpoint_sizes.py
    .venv/bin/python scripts/checkpoint_sizes.py \
        --checkpoint configs/fashion-nbs.yaml --at-step 1800
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from bnstudy.checkpoint import RunFiles
from bnstudy.config import ConfigError, read_config_file
from bnstudy.preflight import load_data, model_for_data
from bnstudy.run import execute_run
from bnstudy.store import CHECKPOINT, MODEL
from bnstudy.sweep import Run, plan

CPU = torch.device("cpu")


def first_run(path: Path, **train: int) -> Run:
    raw = read_config_file(path)
    raw["train"] = {**raw.get("train", {}), **train}
    return plan(raw, str(path))[1][0]


def model_size(run: Run, folder: Path) -> tuple[int, int]:
    """The run's model's parameters and the bytes of the model.pt it saves."""
    model = model_for_data(run.config, load_data(run.config, CPU))
    RunFiles.of(folder, run).keep_model(model)
    return sum(p.numel() for p in model.parameters()), (folder / MODEL).stat().st_size


class _Stop(BaseException):
    """Ends the run right after its first checkpoint."""


class _StopAfterCheckpoint(RunFiles):
    def keep_state(self, state: dict) -> None:
        super().keep_state(state)
        raise _Stop


def checkpoint_bytes(path: Path, step: int, folder: Path) -> int:
    run = first_run(path, checkpoint_every=step)
    files = _StopAfterCheckpoint.of(folder, run)
    try:
        execute_run(run.config, CPU, files=files)
    except _Stop:
        return (folder / CHECKPOINT).stat().st_size
    raise SystemExit(f"{path}: its first run ends before step {step}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", type=Path)
    parser.add_argument("--checkpoint", type=Path, help="study file of the checkpoint to size")
    parser.add_argument("--at-step", type=int, default=100)
    args = parser.parse_args()
    configs = args.configs or sorted(Path("configs").glob("*.yaml"))
    with tempfile.TemporaryDirectory() as scratch:
        for index, path in enumerate(configs):
            try:
                run = first_run(path)
            except ConfigError as error:
                print(f"{path}: skipped ({error.lines()[0]})")
                continue
            params, size = model_size(run, Path(scratch) / str(index))
            name = run.config.model.name
            print(f"{path}: {name}, {params:,} parameters: model.pt {size:,} bytes")
        if args.checkpoint:
            size = checkpoint_bytes(args.checkpoint, args.at_step, Path(scratch) / "checkpoint")
            print(f"{args.checkpoint}: checkpoint.pt at step {args.at_step}: {size:,} bytes")


if __name__ == "__main__":
    main()
