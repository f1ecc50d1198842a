import os
import warnings

import pytest
import torch

from bnstudy.device import (
    CUBLAS_WORKSPACE_CONFIG,
    device_label,
    is_out_of_memory,
    peak_memory,
    resolve_devices,
    run_flags,
    synchronized_clock,
    worker_environment,
)

CPU = torch.device("cpu")
CUDA = torch.device("cuda")  # only its type is read: run_flags does no CUDA work


def global_flags():
    cudnn = torch.backends.cudnn
    return (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        cudnn.deterministic,
        cudnn.benchmark,
        os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    )


@pytest.mark.parametrize("device", [CPU, CUDA])
@pytest.mark.parametrize("deterministic", [True, False])
def test_run_flags_are_set_for_the_run_and_restored_even_on_error(
    device, deterministic, monkeypatch
):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "")  # so that monkeypatch unsets it after
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    before = global_flags()
    with pytest.raises(KeyError), run_flags(deterministic, device) as flags:
        assert torch.are_deterministic_algorithms_enabled() is deterministic
        assert torch.backends.cudnn.deterministic is deterministic
        benchmark = device.type == "cuda" and not deterministic
        assert torch.backends.cudnn.benchmark is benchmark
        cublas = CUBLAS_WORKSPACE_CONFIG if deterministic and device.type == "cuda" else None
        assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == cublas
        raise KeyError("a failing run")
    # all restored but the cuBLAS setting, which stays for the process once set
    assert global_flags()[:-1] == before[:-1]
    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == cublas
    assert flags["deterministic"] is deterministic
    assert flags["cudnn_benchmark"] is benchmark
    assert flags["cublas_workspace_config"] == cublas
    assert flags["nondeterministic_ops"] == []


def test_cublas_is_left_alone_once_cuda_started(monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "")
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with run_flags(True, CUDA) as flags:
        warnings.warn(
            "Deterministic behavior was enabled with either `torch.use_deterministic_algorithms"
            "(True)` ..., but this operation is not deterministic because it uses CuBLAS and you "
            "have CUDA >= 10.2. ... set ... CUBLAS_WORKSPACE_CONFIG=:4096:8 ...",
            UserWarning,
            stacklevel=1,
        )
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    assert flags["cuda_initialized_before"] is True
    assert flags["nondeterministic_ops"] == ["cuBLAS"]


def test_a_users_cublas_setting_is_kept(monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    with run_flags(True, CUDA) as flags:
        pass
    assert flags["cublas_workspace_config"] == ":16:8"
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_ops_without_a_deterministic_kernel_are_listed_not_fatal():
    with pytest.warns(UserWarning) as seen, run_flags(True, CPU) as flags:
        tensor = torch.zeros(3)
        for _ in range(3):  # put_ without accumulate has no deterministic kernel, CPU included
            tensor.put_(torch.tensor([0]), torch.tensor([1.0]))
        warnings.warn("unrelated", UserWarning, stacklevel=1)
    assert flags["nondeterministic_ops"] == ["put_"]
    assert [str(w.message) for w in seen] == ["unrelated"]  # other warnings pass through
    with run_flags(False, CPU) as flags:
        torch.zeros(3).put_(torch.tensor([0]), torch.tensor([1.0]))
    assert flags["nondeterministic_ops"] == []


def test_out_of_memory_is_recognized_and_nothing_else():
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate"))
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory."))
    assert is_out_of_memory(MemoryError())
    try:  # the CPU allocator's real failure: 128 TiB
        torch.empty(2**45)
    except RuntimeError as error:
        assert is_out_of_memory(error)
    else:
        pytest.skip("this machine allocated 128 TiB")
    assert is_out_of_memory(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling"))
    assert is_out_of_memory(RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory\nCUDA kernel errors ..."))
    assert not is_out_of_memory(RuntimeError("Expected more than 1 value per channel"))
    assert not is_out_of_memory(RuntimeError("CUDA error: an illegal memory access"))
    assert not is_out_of_memory(ValueError("DefaultCPUAllocator: can't allocate memory"))
    assert not is_out_of_memory(RuntimeError("Storage size calculation overflowed"))


def test_cpu_peak_memory_is_the_process_peak_in_mib():
    peak = peak_memory(CPU)
    assert peak["peak_memory_of"] == "process (ru_maxrss)"
    assert 10 < peak["peak_memory_mib"] < 1e6


def test_the_clock_reads_perf_counter_on_the_cpu():
    first = synchronized_clock(CPU)
    assert synchronized_clock(CPU) >= first


def test_devices_list_one_cuda_device_per_worker_and_refuse_what_cannot_run():
    assert resolve_devices("cpu") == [CPU]
    with pytest.raises(ValueError, match="a list names CUDA devices by index"):
        resolve_devices("cpu,cpu")
    with pytest.raises(ValueError, match="use auto, cpu, cuda or cuda:N"):
        resolve_devices("tpu,cuda:0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_devices("cuda:0,cuda:0")


def test_a_cuda_worker_sees_its_gpu_alone_through_this_processs_own_mapping(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert worker_environment(torch.device("cuda", 1)) == {"CUDA_VISIBLE_DEVICES": "1"}
    assert worker_environment(CPU) == {} and worker_environment(CUDA) == {}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4, 6")  # this process sees GPUs 4 and 6
    assert worker_environment(torch.device("cuda", 1)) == {"CUDA_VISIBLE_DEVICES": "6"}
    assert device_label(torch.device("cuda", 0)) == "cuda:4"
    assert device_label(CPU) == "cpu"
