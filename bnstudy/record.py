"""What a run's record (result.json) holds besides its measurements: its outcome, ok until a
failure says otherwise (bnstudy.results), and its provenance: where and how it computed.
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

import bnstudy
from bnstudy.device import device_label, is_out_of_memory, peak_memory
from bnstudy.results import (
    BNSTUDY_COMMIT,
    CHANNELS_LAST,
    CPU_CAPABILITY,
    CUDA,
    DEVICE,
    DEVICE_NAME,
    ERROR,
    ERROR_AT,
    ERROR_MESSAGE,
    OK,
    OOM,
    PRECISION,
    STATUS,
    TORCH,
)

if TYPE_CHECKING:
    from bnstudy.train import Compute


def new_record() -> dict[str, Any]:
    """A run's record before it has an outcome: ok so far, nothing trained or measured yet
    (``tests`` and ``provenance`` are added last, as result.json lists them)."""
    return {
        STATUS: OK,
        ERROR_MESSAGE: "",
        ERROR_AT: "",
        "traceback": "",
        "train": {},
        "diagnostics": {},
        "layers": [],
        "predictions": {},
    }


def failure(error: Exception, where: str) -> dict[str, str]:
    """The outcome fields of a run (or test setting) that raised ``error`` at ``where``:
    ``oom`` when memory ran out (bnstudy.device.is_out_of_memory), else ``error``; the message
    verbatim. Call it while handling ``error``: the traceback is the one being handled."""
    return {
        STATUS: OOM if is_out_of_memory(error) else ERROR,
        ERROR_MESSAGE: f"{type(error).__name__}: {error}",
        ERROR_AT: where,
        "traceback": traceback.format_exc(),
    }


@functools.cache
def cpu_name() -> str:
    """The CPU model and whether it has AVX-512 (which changes speed and float rounding), from
    /proc/cpuinfo where there is one."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in info.splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    return f"{model}, {'with' if 'avx512f' in info else 'no'} AVX-512"


def cpu_capability() -> str | None:
    """The CPU kernel set torch dispatches to (``DEFAULT``, ``AVX2``, ``AVX512``, ...: another
    set, other float rounding), or None where this torch cannot say."""
    get = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    return get() if get is not None else None


@functools.cache
def source_commit() -> str | None:
    """The git commit of the bnstudy source tree, with ``+dirty`` when a file of the package
    differs from it (``git status --porcelain`` of the package folder, untracked files
    included); None when the package is not a tracked part of a git checkout (an installed
    copy, even one inside another repository) or git is missing. Once per process."""
    package = Path(bnstudy.__file__).resolve().parent

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=package, capture_output=True, text=True, check=True, timeout=30
        )
        return done.stdout.strip()

    try:
        git("ls-files", "--error-unmatch", "__init__.py")
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--", ".")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def provenance(
    device: torch.device, started: float, compute: Compute, flags: dict[str, Any]
) -> dict[str, Any]:
    """Where and how the run computed: versions, hardware, the numerics and kernel flags in
    effect (bnstudy.device.run_flags), and peak memory (bnstudy.device.peak_memory). ``device``
    is ``cpu`` or ``cuda:N`` with N the GPU's index on the machine (bnstudy.device.device_label:
    a pool worker trains on ``cuda``, the one GPU its environment leaves visible). The CUDA
    and cuDNN versions are those torch was built with (None in a CPU-only build); cuda_capability
    is the GPU's compute capability (CUDA runs only)."""
    cuda = device.type == "cuda"
    return {
        "bnstudy": bnstudy.__version__,
        BNSTUDY_COMMIT: source_commit(),
        TORCH: torch.__version__,
        "torchvision": _package_version("torchvision"),
        CUDA: torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "host": platform.node(),
        DEVICE: device_label(device),
        DEVICE_NAME: torch.cuda.get_device_name(device) if cuda else cpu_name(),
        "cuda_capability": ".".join(map(str, torch.cuda.get_device_capability(device)))
        if cuda
        else None,
        "cpu": cpu_name(),
        CPU_CAPABILITY: cpu_capability(),
        "threads": torch.get_num_threads(),
        PRECISION: compute.precision,
        CHANNELS_LAST: compute.channels_last,
        **flags,
        **peak_memory(device),
        "started": started,
    }
