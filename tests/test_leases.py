"""Each unit computed once: leases on a store's cells (pipelines/leases.py) and the runner's use of them."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from robustbench_nas.pipelines import get_protocol, run_pipeline
from robustbench_nas.pipelines.leases import LEASE_DIR, Holder, LeaseBook, skipped_line
from robustbench_nas.pipelines.runner import prepare_store
from store_equality import MICRO, assert_same_store

HOST = socket.gethostname().split(".")[0]


def fake_holder(store: Path, holder: str, *, host: str, pid: int, expires: float, cells: list[int]) -> None:
    """Leases of another run, written as that run would have (holder file + one file per cell)."""
    d = store / LEASE_DIR
    (d / "holders").mkdir(parents=True, exist_ok=True)
    (d / "holders" / f"{holder}.json").write_text(json.dumps(
        {"holder": holder, "host": host, "pid": pid, "expires": expires, "ttl_s": 60}))
    for c in cells:
        (d / f"cell-{c}").write_text(json.dumps({"holder": holder, "host": host, "pid": pid}))


def lease_holder(store: Path, cell: int) -> str | None:
    p = store / LEASE_DIR / f"cell-{cell}"
    return json.loads(p.read_text())["holder"] if p.exists() else None


# ---- the lease book alone -------------------------------------------------------------------------------------------
def test_two_holders_never_share_a_cell_and_give_back_only_their_own(tmp_path: Path) -> None:
    with LeaseBook(tmp_path) as a, LeaseBook(tmp_path) as b:
        assert a.acquire([1, 2, 3]) == ([1, 2, 3], {})
        got, held = b.acquire([2, 3, 4])
        assert got == [4]
        assert set(held) == {2, 3} and {h.holder for h in held.values()} == {a.holder}
        assert all(h.alive() and h.host == HOST for h in held.values())
        a.release([2, 4])  # 4 is b's: not a's to give back
        assert lease_holder(tmp_path, 4) == b.holder
        assert b.acquire([2])[0] == [2]
        assert set(b.held_by_others([1, 2, 3, 4])) == {1, 3}
    # closed: every lease given back, the holder files gone (the lock file stays: removing a lock file races)
    assert [p.name for p in (tmp_path / LEASE_DIR).rglob("*")] == ["lock"]


def test_expired_lease_is_taken_over_and_a_live_one_is_not(tmp_path: Path) -> None:
    fake_holder(tmp_path, "gone", host="node-that-died", pid=1, expires=time.time() - 1, cells=[7])
    fake_holder(tmp_path, "busy", host="other-node", pid=1, expires=time.time() + 600, cells=[8])
    with LeaseBook(tmp_path) as me:
        got, held = me.acquire([7, 8, 9])
        assert got == [7, 9]
        assert lease_holder(tmp_path, 7) == me.holder  # taken over
        assert set(held) == {8} and held[8].label() == "busy@other-node"
        assert lease_holder(tmp_path, 8) == "busy"


def test_a_killed_run_on_this_host_frees_its_cells_at_once(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead_pid = int(proc.stdout)  # that process has exited: its leases are not live, however far their expiry
    fake_holder(tmp_path, "killed", host=HOST, pid=dead_pid, expires=time.time() + 600, cells=[5])
    with LeaseBook(tmp_path) as me:
        assert me.acquire([5]) == ([5], {})


def test_heartbeat_renews_the_expiry(tmp_path: Path) -> None:
    with LeaseBook(tmp_path, ttl_s=0.5) as me:
        me.acquire([1])
        time.sleep(1.2)  # more than twice the ttl: only renewals keep it live
        h = json.loads(me.holder_file.read_text())
        assert h["expires"] > time.time()
        with LeaseBook(tmp_path) as other:
            assert set(other.acquire([1])[1]) == {1}
    with pytest.raises(ValueError, match="ttl_s"):
        LeaseBook(tmp_path, ttl_s=0)


def test_processes_racing_for_the_same_cells_get_disjoint_sets(tmp_path: Path) -> None:
    """Three processes acquire the same 300 cells at the same moment: every cell goes to exactly one of them."""
    script = (
        "import json, sys, time\n"
        "from robustbench_nas.pipelines.leases import LeaseBook\n"
        "b = LeaseBook(sys.argv[1]).start()\n"
        "while time.time() < float(sys.argv[2]): time.sleep(0.001)\n"
        "got, held = b.acquire(range(300))\n"
        "print(json.dumps(got)); sys.stdout.flush()\n"
        "sys.stdin.read()\n"  # hold the leases until the test has looked
    )
    start = time.time() + 15  # after every interpreter has started
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(start)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(3)]
    try:
        sets = [set(json.loads(p.stdout.readline())) for p in procs]
    finally:
        for p in procs:
            p.communicate("", timeout=60)
    assert set().union(*sets) == set(range(300))
    assert sum(map(len, sets)) == 300, [len(s) for s in sets]


def test_skip_line_names_holder_host_and_expiry() -> None:
    h = Holder("rbnas-1-abc", "node7", 1, 0.0)
    assert skipped_line(56, {1: h, 2: h}) == "skipping 56 units leased by rbnas-1-abc@node7 until 1970-01-01 00:00:00 UTC"


# ---- the runner -----------------------------------------------------------------------------------------------------
ARCHS = [6, 1462, 12000]


def info_only():
    return get_protocol("tiny", archs=ARCHS, stages=("info",))


def test_run_skips_cells_a_live_run_holds_saying_so_in_one_line(tmp_path: Path, client, caplog) -> None:
    store, p = prepare_store(tmp_path / "s.zarr", info_only())
    uids = sorted(store.spec.archs)
    with LeaseBook(store.path) as other:
        other.acquire(uids[:2])
        with caplog.at_level(logging.INFO, logger="robustbench_nas.pipelines"):
            rep = run_pipeline(store.path, p, client=client, progress=False)
        assert rep.submitted == 1 and rep.progress["info"]["done"] == 1
        assert rep.extra["skipped_leased"] == {f"{other.holder}@{HOST}": 2}
        lines = [r.getMessage() for r in caplog.records if "leased by" in r.getMessage()]
        assert len(lines) == 1 and lines[0].startswith(f"skipping 2 units leased by {other.holder}@{HOST} until ")
        assert lease_holder(store.path, uids[2]) is None  # the run gave its cell back
    rep = run_pipeline(store.path, p, client=client, progress=False)  # the other run is gone: the rest runs
    assert rep.submitted == 2 and rep.progress["info"] == {"done": 3, "failed": 0, "pending": 0}


def test_run_takes_over_an_expired_lease(tmp_path: Path, client) -> None:
    store, p = prepare_store(tmp_path / "s.zarr", info_only())
    fake_holder(store.path, "crashed", host="other-node", pid=1, expires=time.time() - 5, cells=list(store.spec.archs))
    rep = run_pipeline(store.path, p, client=client, progress=False)
    assert rep.submitted == 3 and not rep.extra["skipped_leased"]
    assert rep.progress["info"]["done"] == 3


def test_run_with_wait_computes_the_cells_once_they_are_free(tmp_path: Path, client) -> None:
    store, p = prepare_store(tmp_path / "s.zarr", info_only())
    other = LeaseBook(store.path).start()
    other.acquire([store.spec.archs[0]])
    threading.Timer(2.0, other.close).start()  # the other run ends (without computing the cell) after 2 s
    rep = run_pipeline(store.path, p, client=client, progress=False, wait=True, lease_ttl_s=5)
    assert rep.submitted == 3 and rep.progress["info"]["done"] == 3


# ---- two real `rbnas run` processes on one store ------------------------------------------------------------------


def _cli(store: Path) -> list[str]:
    args = [sys.executable, "-m", "robustbench_nas.cli.main", "run", "--protocol", "tiny", "--store", str(store),
            "--workers", "1", "--threads", "1", "--no-progress", "--no-dashboard", "--json"]
    for k, v in MICRO.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    return args


@pytest.mark.slow
def test_two_concurrent_runs_compute_each_of_the_56_units_once(tmp_path: Path) -> None:
    """Two `rbnas run --protocol tiny --store S` started together: 8 cells x 7 stages = 56 units, each computed by
    exactly one of them (their reports and the store's log), and the store equals a single run's."""
    store = tmp_path / "s.zarr"
    procs = [subprocess.Popen(_cli(store), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=1500) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    reports = [json.loads(out) for out, _ in outs]
    assert sum(r["submitted"] for r in reports) == 56, [r["submitted"] for r in reports]
    # the store's log (both runs append to it): every unit finished exactly once
    done = [line.split(": ", 1)[1] for line in (tmp_path / "s.zarr.log").read_text().splitlines()
            if line.endswith(" done") and ": cell " in line]
    assert len(done) == 56 and len(set(done)) == 56
    for (_, err), r in zip(outs, reports):  # a run that skipped units said so in one line
        skipped = sum(r["extra"]["skipped_leased"].values())
        assert err.count("leased by") == (1 if skipped else 0), err[-2000:]
    # equal to one run alone
    single = tmp_path / "single.zarr"
    out = subprocess.run(_cli(single), capture_output=True, text=True, timeout=1500)
    assert out.returncode == 0 and json.loads(out.stdout)["submitted"] == 56, out.stderr[-3000:]
    assert_same_store(single, store, required=("adv_accuracy", "corruption_accuracy", "measure_value"))
    assert [p.name for p in (store / LEASE_DIR).rglob("*")] == ["lock"]  # both gave everything back
