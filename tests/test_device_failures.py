"""GPU failures, simulated on the CPU (issue 29): OOM halves the batch, other CUDA errors end the worker, a worker
advertising a GPU without CUDA refuses the unit."""

from __future__ import annotations

import importlib
import types

import pytest
import torch

from robustbench_nas.pipelines.protocol import get_protocol
from robustbench_nas.pipelines.stages import StageDef
from robustbench_nas.utils import device_failures as df

runner = importlib.import_module("robustbench_nas.pipelines.runner")



class WorkerExited(BaseException):
    """Raised by the patched ``os._exit`` of :func:`in_worker`: the worker would have ended with ``args[0]``."""


@pytest.fixture
def in_worker(monkeypatch):
    """A call that makes the test run as inside a Dask worker without a GPU resource, ``os._exit`` raising
    :class:`WorkerExited`."""

    def fake_exit(code):
        raise WorkerExited(code)

    def enter() -> None:
        monkeypatch.setattr(df, "_dask_worker", lambda: types.SimpleNamespace(state=types.SimpleNamespace(
            total_resources={})))
        monkeypatch.setattr(df.os, "_exit", fake_exit)

    return enter


def _run(monkeypatch, tmp_path, fn, *, retries: int = 2, batch_size: int = 64, stage: str = "adversarial"):
    monkeypatch.setattr(runner, "get_stage", lambda name: StageDef(name, fn, (), True, True))
    proto = get_protocol("tiny").replace(retries=retries, batch_size=batch_size)
    return runner.execute_unit(str(tmp_path / "s.zarr"), proto.to_dict(), 0, 0, stage, device="cpu")


def test_oom_retries_with_half_the_batch_without_using_up_retries(monkeypatch, tmp_path) -> None:
    seen: list[int] = []
    freed: list[bool] = []
    monkeypatch.setattr(df, "free_device_memory", lambda: freed.append(True))

    def fn(ctx):
        seen.append(ctx.protocol.batch_size)
        if ctx.protocol.batch_size > 8:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return {"v": ctx.protocol.batch_size}

    out = _run(monkeypatch, tmp_path, fn, retries=0, batch_size=64)
    assert seen == [64, 32, 16, 8]
    assert out["status"] == "done" and out["values"] == {"v": 8} and out["batch_size"] == 8
    assert len(freed) == 3 and out["attempts"] == 4


def test_oom_at_batch_one_is_an_ordinary_failure(monkeypatch, tmp_path) -> None:
    def fn(ctx):
        raise torch.OutOfMemoryError("CUDA out of memory")

    out = _run(monkeypatch, tmp_path, fn, retries=1, batch_size=2)
    assert out["status"] == "failed" and "OutOfMemoryError" in out["error"]
    assert out["attempts"] == 3  # 2 -> 1, then the one retry at batch 1


def test_other_cuda_error_ends_the_worker(monkeypatch, tmp_path, in_worker) -> None:
    calls: list[int] = []

    def fn(ctx):
        calls.append(1)
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    in_worker()
    with pytest.raises(WorkerExited) as ei:
        _run(monkeypatch, tmp_path, fn, retries=2)
    assert ei.value.args == (df.EXIT_CUDA_ERROR,)
    assert calls == [1]  # no retry on a poisoned context


def test_cuda_error_outside_a_worker_raises(monkeypatch, tmp_path) -> None:
    def fn(ctx):
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(df, "_dask_worker", lambda: None)
    with pytest.raises(df.FatalDeviceError, match="device-side assert"):
        _run(monkeypatch, tmp_path, fn)


def test_ordinary_errors_keep_the_retry_rule(monkeypatch, tmp_path) -> None:
    calls: list[int] = []

    def fn(ctx):
        calls.append(1)
        raise ValueError("bad value")

    out = _run(monkeypatch, tmp_path, fn, retries=2)
    assert out["status"] == "failed" and len(calls) == 3 and "ValueError: bad value" in out["error"]


def test_worker_advertising_a_gpu_without_cuda_refuses(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv(df.CPU_GPU_WORKERS_ENV, raising=False)
    ran: list[int] = []
    monkeypatch.setattr(df, "_dask_worker", lambda: types.SimpleNamespace(state=types.SimpleNamespace(
        total_resources={"GPU": 1})))
    out = _run(monkeypatch, tmp_path, lambda ctx: ran.append(1) or {})
    assert out["status"] == "failed" and "WorkerGPUError" in out["error"] and "refusing" in out["error"]
    assert ran == []
    with pytest.raises(df.WorkerGPUError, match="SLURM_JOB_GPUS"):
        df.check_advertised_gpu(torch.device("cpu"))
    monkeypatch.setenv(df.CPU_GPU_WORKERS_ENV, "1")  # a CPU-only test cluster: GPU slots for scheduling only
    df.check_advertised_gpu(torch.device("cpu"))
    monkeypatch.delenv(df.CPU_GPU_WORKERS_ENV)
    monkeypatch.setattr(df, "_dask_worker", lambda: None)
    df.check_advertised_gpu(torch.device("cpu"))  # no worker, no GPU advertised: fine


def test_error_classification() -> None:
    assert df.is_oom(torch.OutOfMemoryError("CUDA out of memory"))
    assert df.is_oom(RuntimeError("CUDA out of memory. Tried to allocate 20 MiB"))
    assert not df.is_oom(MemoryError("host"))  # host memory is not the batch's fault on the device
    assert df.is_fatal_cuda_error(RuntimeError("CUDA error: unspecified launch failure"))
    assert df.is_fatal_cuda_error(RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED"))
    assert not df.is_fatal_cuda_error(torch.OutOfMemoryError("CUDA out of memory"))
    assert not df.is_fatal_cuda_error(ValueError("shape mismatch"))


def test_unit_timeout(monkeypatch, tmp_path, in_worker) -> None:
    import time as _time

    from robustbench_nas.pipelines.protocol import get_protocol as gp

    def slow(ctx):
        _time.sleep(3)
        return {}

    monkeypatch.setattr(runner, "get_stage", lambda name: StageDef(name, slow, (), False, True))
    proto = gp("tiny").replace(unit_timeout_s=0.3)
    assert proto.fingerprint() == gp("tiny").fingerprint()  # a runtime setting
    monkeypatch.setattr(df, "_dask_worker", lambda: None)
    t0 = _time.perf_counter()
    with pytest.raises(df.UnitTimeout, match="0.3 s limit"):
        runner.execute_unit(str(tmp_path / "s.zarr"), proto.to_dict(), 0, 0, "clean", device="cpu")
    assert _time.perf_counter() - t0 < 2.5

    in_worker()
    with pytest.raises(WorkerExited):
        runner.execute_unit(str(tmp_path / "s.zarr"), proto.to_dict(), 0, 0, "clean", device="cpu")
    # within the limit: the value comes back, errors keep their type
    assert df.call_with_timeout(lambda: 5, 1.0, "x") == 5
    with pytest.raises(ZeroDivisionError):
        df.call_with_timeout(lambda: 1 / 0, 1.0, "x")
    with pytest.raises(ValueError, match="unit_timeout_s"):
        gp("tiny").replace(unit_timeout_s=0)
