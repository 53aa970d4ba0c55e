"""Task submission: the protocol handed to every Dask task as one JSON string (ours) vs as its dict (the baseline).

``rbnas run`` submits one task per (cell, seed, stage), each with the run's protocol. The complete NB201 proxy table
(protocol ``nb201-proxies-all``) has 6466 cells x 2 stages; its protocol dict holds the 6466 cell indices. Dask's
``Client.submit`` walks every element of a dict or list argument (``dask._task_spec.parse_input``) and keeps its own
copy per task, so the client process (which also hosts the local cluster's scheduler) grew by gigabytes while it
submitted. A string is passed as is.

Measured, side by side, each in a fresh process (memory is not given back to the OS within a process): a local
cluster (1 worker process, 1 thread), then ``n`` tasks ``execute``-like in shape (protocol, cell index) submitted and
gathered; the task rebuilds the protocol and returns its fingerprint. ``ours_s`` / ``baseline_s``: wall seconds of
the submit loop alone; ``rss_growth_mb``: the client process's resident-memory growth from before the submit loop to
after the gather, with every future still held (as the runner holds them until its collection loop ends).
``results_agree``: both give every task the same protocol (same fingerprints). ``same_work: true``.

Run: ``python -m benchmarks.bench_submit [--quick]`` (quick: 1000 tasks; full: 6466, one per cell).
"""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks.common import bench_main, make_result, save_records

PROTOCOL = "nb201-proxies-all"


def _fingerprint_of(protocol: object, uid: int) -> str:
    """The task: rebuild the protocol the worker was given and return its fingerprint (cheap; same for all)."""
    from robustbench_nas.pipelines.protocol import ProtocolConfig

    return ProtocolConfig.from_saved(protocol).fingerprint()


def measure(mode: str, n: int) -> dict[str, object]:
    """One side of the record in this process: ``mode`` ``json`` (ours) or ``dict`` (the baseline)."""
    import time

    import psutil
    from distributed import Client, LocalCluster

    from robustbench_nas.pipelines import get_protocol

    proto = get_protocol(PROTOCOL)
    arg = proto.to_json() if mode == "json" else proto.to_dict()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        me = psutil.Process()
        rss0 = me.memory_info().rss
        t0 = time.perf_counter()
        futures = [client.submit(_fingerprint_of, arg, uid, pure=False) for uid in range(n)]
        submit_s = time.perf_counter() - t0
        prints = client.gather(futures)
        rss_growth = me.memory_info().rss - rss0
        del futures
    return {"submit_s": submit_s, "rss_growth_mb": rss_growth / 1e6, "fingerprints": sorted(set(prints)),
            "protocol_arg_bytes": len(json.dumps(arg))}


def _measure_in_fresh_process(mode: str, n: int) -> dict[str, object]:
    code = f"import json; from benchmarks.bench_submit import measure; print(json.dumps(measure({mode!r}, {n})))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run(quick: bool = False) -> list[dict]:
    n = 1000 if quick else 6466
    ours = _measure_in_fresh_process("json", n)
    base = _measure_in_fresh_process("dict", n)
    rec = make_result(
        "submit_protocol_json_vs_dict", float(ours["submit_s"]), float(base["submit_s"]),
        results_agree=ours["fingerprints"] == base["fingerprints"] and len(ours["fingerprints"]) == 1,
        same_work=True, kind="measured", unit="s (submit loop, wall)", tasks=n, protocol=PROTOCOL,
        baseline="the same tasks with the protocol as its dict (Client.submit walks and copies it per task)",
        rss_growth_mb_ours=round(float(ours["rss_growth_mb"]), 1),
        rss_growth_mb_baseline=round(float(base["rss_growth_mb"]), 1),
        protocol_arg_bytes=ours["protocol_arg_bytes"], cluster="LocalCluster, 1 worker process, 1 thread",
        note=f"client memory growth {float(ours['rss_growth_mb']):.0f} vs {float(base['rss_growth_mb']):.0f} MB "
             f"for {n} tasks",
    )
    return save_records([rec], quick)


if __name__ == "__main__":
    bench_main(run, __doc__)
