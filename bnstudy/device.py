"""What a run needs from the device beyond tensors: honest clocks, the global kernel flags of a
run (determinism, cuDNN autotuning) set and restored, out-of-memory recognized, and peak memory.

CUDA kernels run asynchronously: a clock read right after launching them times the launches.
:func:`synchronized_clock` waits for the device first. Global flags (torch's deterministic
mode, ``torch.backends.cudnn``) belong to the process; :func:`run_flags` sets them for one run
and puts back what was there, so a run, a test or the next run of a sweep is not affected.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator
from typing import Any

import torch

CUBLAS_WORKSPACE_CONFIG = ":4096:8"  # a setting cuBLAS is deterministic with (CUDA >= 10.2)
# torch's CPU allocator fails with a RuntimeError (not torch.OutOfMemoryError) whose message
# contains this (c10/core/impl/alloc_cpu.cpp, torch 2.14: "[enforce fail at alloc_cpu.cpp:127]
# err == 0. DefaultCPUAllocator: can't allocate memory: you tried to allocate N bytes. ...").
CPU_ALLOCATOR_FAILURE = "DefaultCPUAllocator: can't allocate memory"
# CUDA libraries that fail to allocate their workspace raise a RuntimeError (torch.AcceleratorError
# for the CUDA runtime's own) with one of these in the message
CUDA_ALLOCATION_FAILURES = (
    "CUDA error: out of memory",
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_ALLOC_FAILED",
)
MIB = 2**20


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; otherwise ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise ValueError(f"device {name!r}: use auto, cpu, cuda or cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    device = torch.device(name)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA devices")
    return device


def resolve_devices(text: str) -> list[torch.device]:
    """The devices of ``--devices``: one (``auto``, ``cpu``, ``cuda``, ``cuda:N``) or a comma
    list with one entry per worker (``cuda:0,cuda:1``: a worker on each GPU; ``cuda:0,cuda:0``:
    two on GPU 0). A list holds CUDA devices only: CPU workers share the CPU's threads."""
    names = [name.strip() for name in text.split(",")]
    devices = [resolve_device(name) for name in names]
    if len(devices) > 1 and any(d.type != "cuda" or d.index is None for d in devices):
        raise ValueError(f"{text!r}: a list names CUDA devices by index (cuda:0,cuda:1)")
    return devices


def worker_environment(device: torch.device) -> dict[str, str]:
    """The environment of a worker process on ``device``: a CUDA worker sees its GPU alone
    (``CUDA_VISIBLE_DEVICES``, mapped through this process's own setting, if any) and trains
    on ``cuda``; a CPU worker needs nothing."""
    if device.type != "cuda" or device.index is None:
        return {}
    return {"CUDA_VISIBLE_DEVICES": physical_gpu(device.index)}


def physical_gpu(index: int) -> str:
    """The GPU that CUDA device ``index`` of this process is, as ``CUDA_VISIBLE_DEVICES``
    names it (its index on the machine unless the variable remaps it)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return visible.split(",")[index].strip() if visible else str(index)


def device_label(device: torch.device) -> str:
    """Where a run trains, for ``bnstudy status``: ``cpu``, or ``cuda:N`` with N the GPU's
    index on the machine (a worker's ``cuda:0`` is the GPU its environment left visible)."""
    if device.type != "cuda":
        return device.type
    return f"cuda:{physical_gpu(device.index or 0)}"


def synchronized_clock(device: torch.device) -> float:
    """``time.perf_counter()`` once the work queued on ``device`` has finished (CUDA), so that
    a difference of two readings times the work, not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says that memory ran out: torch.OutOfMemoryError (CUDA's caching
    allocator; ``torch.cuda.OutOfMemoryError`` is the same class), the CPU allocator's
    RuntimeError, a CUDA library's failed allocation (:data:`CUDA_ALLOCATION_FAILURES`), or
    Python's MemoryError. Nothing else: an error that merely mentions memory stays an error.
    On Linux a CPU process that overcommits is usually killed by the kernel's OOM killer
    instead, which no exception reports."""
    if isinstance(error, torch.OutOfMemoryError | MemoryError):
        return True
    if not isinstance(error, RuntimeError):
        return False
    message = str(error)
    return any(failure in message for failure in (CPU_ALLOCATOR_FAILURE, *CUDA_ALLOCATION_FAILURES))


def free_memory(device: torch.device) -> None:
    """Collect unreachable tensors and hand CUDA's cached blocks back (call once the references
    to the model, optimizer and the failed step's tensors are gone)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def reset_peak_memory(device: torch.device) -> None:
    """Start measuring the run's peak CUDA memory (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict[str, Any]:
    """``peak_memory_mib`` and what it measures (``peak_memory_of``): on CUDA the tensors
    allocated by this run (torch.cuda.max_memory_allocated since :func:`reset_peak_memory`;
    cached but unused blocks not counted); on the CPU the process's peak resident set
    (getrusage ru_maxrss), which includes earlier runs of the process and the data."""
    if device.type == "cuda":
        return {
            "peak_memory_mib": torch.cuda.max_memory_allocated(device) / MIB,
            "peak_memory_of": "run (torch.cuda.max_memory_allocated)",
        }
    import resource  # POSIX only

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    scale = 1 if sys.platform == "darwin" else 1024
    return {"peak_memory_mib": rss * scale / MIB, "peak_memory_of": "process (ru_maxrss)"}


@contextlib.contextmanager
def run_flags(deterministic: bool, device: torch.device) -> Iterator[dict[str, Any]]:
    """Set the process-wide kernel flags of one run and restore them on exit, even on error.

    ``deterministic``: ``torch.use_deterministic_algorithms(True, warn_only=True)``,
    ``cudnn.deterministic = True``, ``cudnn.benchmark = False``, and on CUDA
    ``CUBLAS_WORKSPACE_CONFIG`` = :data:`CUBLAS_WORKSPACE_CONFIG` unless already set. warn_only,
    because torch 2.14 has no deterministic CUDA backward for AdaptiveAvgPool2d/3d (every
    model's global pooling) and would otherwise fail every CUDA run; the ops that warned are
    listed in the yielded ``nondeterministic_ops``, so a run claims determinism only where it
    had it.

    CUBLAS_WORKSPACE_CONFIG is the exception to "restored": it is set only while CUDA has not
    started in this process (torch sizes each cuBLAS workspace from it, and re-reads it for
    workspaces already allocated, so changing it later could declare a workspace larger than
    its buffer), and then stays set for the process. A deterministic run in a process whose
    CUDA already started without it lists ``cuBLAS`` among its nondeterministic ops: export
    CUBLAS_WORKSPACE_CONFIG=:4096:8 before starting bnstudy to be sure.

    Otherwise deterministic mode off and ``cudnn.benchmark = True`` on CUDA (autotuned
    convolution algorithms: faster, not bitwise reproducible), off on the CPU.

    Yields the flags in effect, a dict that gains ``nondeterministic_ops`` on exit.
    """
    cudnn = torch.backends.cudnn
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        cudnn.deterministic,
        cudnn.benchmark,
    )
    saved_env = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    cuda = device.type == "cuda"
    flags: dict[str, Any] = {"cuda_initialized_before": torch.cuda.is_initialized()}
    if deterministic and cuda and saved_env is None and not flags["cuda_initialized_before"]:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE_CONFIG
    torch.use_deterministic_algorithms(deterministic, warn_only=deterministic)
    cudnn.deterministic = deterministic
    cudnn.benchmark = cuda and not deterministic
    flags |= {
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": cudnn.deterministic,
        "cudnn_benchmark": cudnn.benchmark,
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }
    alerts: set[str] = set()
    try:
        with _nondeterminism_alerts(alerts) if deterministic else contextlib.nullcontext():
            yield flags
    finally:
        flags["nondeterministic_ops"] = sorted(alerts)
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        cudnn.deterministic, cudnn.benchmark = saved[2], saved[3]


@contextlib.contextmanager
def _nondeterminism_alerts(alerts: set[str]) -> Iterator[None]:
    """Collect into ``alerts`` the names of the ops that warned "... does not have a
    deterministic implementation", and ``cuBLAS`` when torch warned that CUBLAS_WORKSPACE_CONFIG
    is missing (each once; other warnings pass through)."""
    marker = " does not have a deterministic implementation"
    with warnings.catch_warnings():
        previous = warnings.showwarning

        def show(message: Warning | str, category: type[Warning], *args: Any, **kw: Any) -> None:
            text = str(message)
            if marker in text:
                alerts.add(text.split(marker, 1)[0].strip())
            elif "CUBLAS_WORKSPACE_CONFIG" in text:
                alerts.add("cuBLAS")
            else:
                previous(message, category, *args, **kw)

        warnings.showwarning = show
        warnings.filterwarnings("always", message=f".*{marker}")
        warnings.filterwarnings("always", message=".*CUBLAS_WORKSPACE_CONFIG")
        yield
