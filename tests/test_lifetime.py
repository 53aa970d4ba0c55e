"""The lifetime rule (issue 29): a worker near the end of its wall time takes no unit it cannot finish, estimated
from the store's recorded stage times. Clocks are mocked; the last test runs the rule on real (in-process) Dask
workers, where the refused unit must end up on the other worker and the refusing worker must retire."""

from __future__ import annotations

import importlib
import threading
import time
import types

import numpy as np
import pytest

from robustbench_nas.pipelines import lifetime
from robustbench_nas.pipelines.lifetime import MARGIN, StageTimes, fits, refuse_if_too_late, time_left
from robustbench_nas.pipelines.protocol import get_protocol
from robustbench_nas.pipelines.stages import StageDef

runner = importlib.import_module("robustbench_nas.pipelines.runner")


def _worker(lifetime_s: float | None) -> types.SimpleNamespace:
    calls: list[tuple] = []
    loop = types.SimpleNamespace(add_callback=lambda fn, **kw: calls.append((fn, kw)))
    return types.SimpleNamespace(lifetime=lifetime_s, loop=loop, close_gracefully=object(), calls=calls)


# ---- time left ---------------------------------------------------------------------------------------------------
def test_time_left_from_lifetime_and_slurm_end() -> None:
    w = _worker(1000.0)  # started at t=5000, retires at 6000
    assert time_left(w, clock=lambda: 5900.0, env={}, process_start=lambda: 5000.0) == 100.0
    # the SLURM job ends earlier than the worker would retire: that counts
    assert time_left(w, clock=lambda: 5900.0, env={"SLURM_JOB_END_TIME": "5950"},
                     process_start=lambda: 5000.0) == 50.0
    assert time_left(_worker(None), clock=lambda: 1.0, env={}, process_start=lambda: 0.0) is None
    assert time_left(_worker(None), clock=lambda: 100.0, env={"SLURM_JOB_END_TIME": "400"},
                     process_start=lambda: 0.0) == 300.0
    assert time_left(_worker(None), clock=lambda: 1.0, env={"SLURM_JOB_END_TIME": "soon"}) is None


def test_fits() -> None:
    assert fits(100.0, 100.0) and not fits(100.1, 100.0)
    assert fits(None, 1.0) and fits(5.0, None) and fits(float("nan"), 1.0)


# ---- estimates from recorded stage times ------------------------------------------------------------------------
def test_stage_times_hand_computed() -> None:
    nan = float("nan")
    # 3 cells x 2 seeds x stages (train, adversarial); cell 30 failed its adversarial unit (its time must not count)
    seconds = np.array([[[100.0, 40.0], [120.0, nan]],
                        [[200.0, 10.0], [nan, nan]],
                        [[300.0, 999.0], [nan, nan]]])
    done = np.isfinite(seconds)
    done[2, 0, 1] = False
    t = StageTimes(["train", "adversarial"], [10, 20, 30], seconds, done)
    assert t.expected(10, "train") == pytest.approx(120.0 * MARGIN)  # its own slowest seed
    # no time of its own: the 90th percentile of the stage's times (100, 120, 200, 300) = 300 - 0.3 * 100 = 270
    assert t.expected(99, "train") == pytest.approx(270.0 * MARGIN)
    assert t.expected(30, "adversarial") == pytest.approx((10 + 0.9 * 30) * MARGIN)  # 90 % of (10, 40): 37
    assert t.expected(10, "corruptions") is None
    empty = StageTimes(["train"], [1], np.full((1, 1, 1), nan), np.zeros((1, 1, 1), bool))
    assert empty.expected(1, "train") is None
    with pytest.raises(ValueError, match="same"):
        StageTimes(["train"], [1], np.zeros((1, 1, 1)), np.zeros((1, 2, 1), bool))


def test_stage_times_from_a_real_store(tmp_path) -> None:
    store, proto = runner.prepare_store(tmp_path / "s.zarr", get_protocol("tiny"))
    uid, other = store.spec.archs[0], store.spec.archs[1]
    seed = store.spec.seeds[0]
    store.write_cell(uid, seed, {"params": 1, "flops": 1.0, "flops_plain": 1.0}, stage="info", seconds=8.0)
    t = StageTimes.from_store(store)
    assert t.expected(uid, "info") == pytest.approx(8.0 * MARGIN)
    assert t.expected(other, "info") == pytest.approx(8.0 * MARGIN)  # the only time of that stage
    assert t.expected(uid, "train") is None


# ---- the rule ---------------------------------------------------------------------------------------------------
def test_refuse_hands_back_and_retires() -> None:
    from distributed import Reschedule

    w = _worker(1000.0)
    clock = {"t": 5000.0}
    kw = dict(clock=lambda: clock["t"], env={}, process_start=lambda: 5000.0)
    refuse_if_too_late(w, 900.0, "unit", **kw)  # 1000 s left: fits
    refuse_if_too_late(None, 1e9, "unit", **kw)  # not in a worker: nothing to decide
    refuse_if_too_late(w, None, "unit", **kw)  # no estimate: runs
    assert w.calls == []
    clock["t"] = 5200.0  # 800 s left
    with pytest.raises(Reschedule, match="needs ~900 s, 800 s left"):
        refuse_if_too_late(w, 900.0, "unit", **kw)
    assert len(w.calls) == 1 and w.calls[0][0] is w.close_gracefully


def _fake_stage(monkeypatch, ran: list) -> None:
    def fn(ctx):
        ran.append(threading.current_thread().name)
        return {"v": 1}

    monkeypatch.setattr(runner, "get_stage", lambda name: StageDef(name, fn, (), True, False))


def test_execute_unit_applies_the_rule(monkeypatch, tmp_path) -> None:
    from distributed import Reschedule

    ran: list = []
    _fake_stage(monkeypatch, ran)
    w = _worker(1000.0)
    monkeypatch.setattr(lifetime, "current_worker", lambda: w)
    monkeypatch.setattr(lifetime, "_process_start", lambda: 0.0)
    monkeypatch.setattr(lifetime, "_now", lambda: 950.0)  # 50 s left
    monkeypatch.delenv("SLURM_JOB_END_TIME", raising=False)
    proto = get_protocol("tiny").to_dict()
    out = runner.execute_unit(str(tmp_path / "s.zarr"), proto, 0, 0, "clean", device="cpu", expected_s=49.0)
    assert out["status"] == "done" and len(ran) == 1
    with pytest.raises(Reschedule):
        runner.execute_unit(str(tmp_path / "s.zarr"), proto, 0, 0, "clean", device="cpu", expected_s=51.0)
    assert len(ran) == 1 and len(w.calls) == 1  # not started; the worker retires


def test_refused_unit_runs_on_another_real_worker(monkeypatch, tmp_path) -> None:
    """Two in-process Dask workers; the first has 60 s left (mocked clock), the unit is expected to take 100 s.
    Sent to the first, it must be handed back, run on the second, and the first must retire."""
    from distributed import Client, LocalCluster

    ran: list = []
    _fake_stage(monkeypatch, ran)
    monkeypatch.setattr(lifetime, "_process_start", lambda: 0.0)
    monkeypatch.setattr(lifetime, "_now", lambda: 1000.0)
    monkeypatch.delenv("SLURM_JOB_END_TIME", raising=False)
    proto = get_protocol("tiny").to_dict()
    with LocalCluster(n_workers=2, processes=False, threads_per_worker=1, dashboard_address=None) as lc, \
            Client(lc) as client:
        client.wait_for_workers(2)
        short, long_ = sorted(lc.workers.values(), key=lambda w: w.name)
        short.lifetime = 1060.0  # 60 s left at t = 1000 (process started at 0)
        long_.lifetime = None
        fut = client.submit(runner.execute_unit, str(tmp_path / "s.zarr"), proto, 0, 0, "clean", "cpu",
                            expected_s=100.0, workers=[short.address], allow_other_workers=True, pure=False)
        out = fut.result(timeout=60)
        assert out["status"] == "done" and out["values"] == {"v": 1}
        assert list(client.who_has(fut)[fut.key]) == [long_.address]
        deadline = time.monotonic() + 30
        while short.address in client.scheduler_info()["workers"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert short.address not in client.scheduler_info()["workers"], "the refusing worker did not retire"
    assert len(ran) == 1
