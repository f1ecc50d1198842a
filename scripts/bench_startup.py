"""How long the light commands take to start and finish, and whether they import torch.

    .venv/bin/python scripts/bench_startup.py                       # this checkout
    .venv/bin/python scripts/bench_startup.py --baseline /tmp/old   # against another checkout

Times ``bnstudy --help``, ``bnstudy status``, ``bnstudy norms`` and ``bnstudy report`` on a
copy of a sweep (default: the shipped quickstart example), each a fresh interpreter, repeated
and interleaved (this checkout, baseline, this checkout, ...), and prints the median wall time
with its min–max, the ratio to the baseline, whether the command imported torch, the CPU flags
and the torch version. A baseline is another checkout of bnstudy (``git worktree add /tmp/old
<commit>``), run with this interpreter through PYTHONPATH.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "--help": ["--help"],
    "status": ["status", "{sweep}"],
    "norms": ["norms"],
    "report": ["report", "{sweep}"],
}


def run_once(source: Path, args: list[str], importtime: bool = False) -> tuple[float, str]:
    """Wall seconds of ``python -m bnstudy args`` with ``source`` first on the path, and its
    stderr (the import log with ``importtime``)."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    flags = ["-X", "importtime"] if importtime else []
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *flags, "-m", "bnstudy", *args],
        cwd=tempfile.gettempdir(),  # so that the source on PYTHONPATH is the one imported
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{source}: bnstudy {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return seconds, done.stderr


def imports_torch(source: Path, args: list[str]) -> bool:
    _, log = run_once(source, args, importtime=True)
    return re.search(r"\|\s*torch$", log, flags=re.MULTILINE) is not None


def cpu_flags() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = sorted(set(re.findall(r"\b(avx512[a-z]*|avx2)\b", text)))
    return " ".join(flags) or platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="another bnstudy checkout to compare")
    parser.add_argument("--sweep", type=Path, default=ROOT / "results/example/quickstart")
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    sources = {"this": ROOT} | ({"baseline": options.baseline} if options.baseline else {})
    with tempfile.TemporaryDirectory() as scratch:
        copies = {}
        for label in sources:  # each source reports into its own copy of the sweep
            copies[label] = Path(scratch) / label
            shutil.copytree(options.sweep, copies[label])
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(options.repeats):
            for name, args in COMMANDS.items():
                for label, source in sources.items():
                    filled = [arg.format(sweep=copies[label]) for arg in args]
                    times.setdefault((name, label), []).append(run_once(source, filled)[0])
        torch_used = {
            (name, label): imports_torch(source, [a.format(sweep=copies[label]) for a in args])
            for name, args in COMMANDS.items()
            for label, source in sources.items()
        }
    import torch

    print(f"python {platform.python_version()}, torch {torch.__version__}, CPU: {cpu_flags()}")
    print(f"sweep {options.sweep}, {options.repeats} repeats, interleaved; median (min–max) s")
    for name in COMMANDS:
        cells = []
        for label in sources:
            values = times[(name, label)]
            torch_note = "imports torch" if torch_used[(name, label)] else "no torch"
            cells.append(
                f"{label} {statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f}, "
                f"{torch_note})"
            )
        if options.baseline:
            ratio = statistics.median(times[(name, "baseline")]) / statistics.median(
                times[(name, "this")]
            )
            cells.append(f"{ratio:.2f}× faster")
        print(f"bnstudy {name:7} " + "; ".join(cells))


if __name__ == "__main__":
    main()
