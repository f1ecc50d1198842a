"""Robustness check: two `bnstudy run` of one study at once, one of them SIGKILLed at a random
moment, then the same command once more. Per trial it prints how many runs were finished when
the survivor exited (it picks up the runs the killed one held), whether the sweep completed,
whether any run was trained twice at once (a history with more epoch lines than epochs),
how many runs each survivor trained, and whether any process of the killed run outlived it
(only the run itself is killed: its workers, with --jobs 2 or more, must die with it).

    .venv/bin/python scripts/check_concurrent_kills.py [--trials 10] [--runs 12] [--jobs 1]
        [--latest 8]   # the kill lands uniformly in 0.5 s .. --latest s after the start
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

STUDY = {
    "name": "kills",
    "data": {"name": "synthetic2d", "train_size": 96, "test_size": 24, "image_size": 8},
    "model": {"widths": [4, 8], "norm": "batch"},
    "train": {"epochs": 2, "batch_size": 8, "lr": 0.05},
    "eval": {"batch_size": 12},
}


def trained_count(output: str) -> int:
    match = re.search(r"\((\d+) trained by this process\)", output)
    return int(match[1]) if match else -1


def trial(root: Path, runs: int, jobs: int, latest: float, rng: random.Random) -> str:
    study = {**STUDY, "sweep": {"seed": list(range(runs))}}
    config = root / "study.yaml"
    config.write_text(yaml.safe_dump(study))
    command = [sys.executable, "-m", "bnstudy", "run", str(config), "--out", str(root / "out")]
    command += ["--jobs", str(jobs)]
    processes = [
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        for _ in range(2)
    ]
    moment = rng.uniform(0.5, latest)
    time.sleep(moment)
    victim, survivor = processes
    os.kill(victim.pid, signal.SIGKILL)  # its workers must die of PR_SET_PDEATHSIG
    victim.wait()
    survived = trained_count(survivor.communicate()[0])
    sweep = root / "out" / "kills"
    by_survivor = len(list(sweep.glob("runs/*/result.json")))
    again = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    orphans = subprocess.run(["pgrep", "-g", str(victim.pid)], capture_output=True).stdout
    if orphans:  # not to run into the next trial
        with contextlib.suppress(ProcessLookupError):
            os.killpg(victim.pid, signal.SIGKILL)
    results = len(list(sweep.glob("runs/*/result.json")))
    epochs = STUDY["train"]["epochs"]
    histories = sweep.glob("runs/*/history.jsonl")
    doubled = sum(len(h.read_text().splitlines()) > epochs for h in histories)
    return (
        f"killed at {moment:.1f} s: "
        f"{by_survivor}/{runs} finished when the survivor exited, {results}/{runs} after the "
        f"rerun; histories with doubled epochs: {doubled}; survivor "
        f"trained {survived}, rerun trained {trained_count(again)}; "
        f"processes left from the killed run: {len(orphans.split())}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--latest", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    for index in range(args.trials):
        with tempfile.TemporaryDirectory() as root:
            outcome = trial(Path(root), args.runs, args.jobs, args.latest, rng)
            print(f"trial {index + 1}: {outcome}", flush=True)


if __name__ == "__main__":
    main()
