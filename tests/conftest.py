"""Shared test fixtures: one torch thread per test process, the shared reference data, a tiny trained model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

TEST_THREADS = int(os.environ.get("RBNAS_TEST_THREADS", "1"))
torch.set_num_threads(TEST_THREADS)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RBNAS_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _torch_threads_and_precision():
    """Every test starts with the same torch thread count and float32 precision flags: CLI commands under test set
    their own thread count (all cores by default), and results computed in the test process are compared bit for bit
    with fresh 1-thread worker processes (a float32 matmul precision left at ``medium`` by one test made the test
    process train other weights on CPUs with bfloat16 units)."""
    from robustbench_nas.utils.precision import saved_precision

    torch.set_num_threads(TEST_THREADS)
    with saved_precision():
        yield
    torch.set_num_threads(TEST_THREADS)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (the team's reference data); skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared reference data not found at {SHARED_DATA} (set RBNAS_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def cifar10_npz(shared_data: Path) -> Path:
    """Path of the shared CIFAR-10 test set (x uint8 NHWC, y int64)."""
    p = shared_data / "cifar10_test.npz"
    if not p.is_file():
        pytest.skip(f"{p} not found")
    return p


@pytest.fixture(scope="session")
def jung2023_root(shared_data: Path) -> Path:
    """Root of the published Jung et al. 2023 release (meta.json + cifar10/)."""
    p = shared_data / "jung2023"
    if not (p / "meta.json").is_file():
        pytest.skip(f"{p}/meta.json not found")
    return p


@pytest.fixture(scope="module")
def client():
    """An in-process Dask client (one worker, one thread) per test module: tests can patch stage functions and the
    trainer, which real worker processes would not see (those are covered by the slow tests)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as lc, \
            Client(lc) as c:
        yield c
