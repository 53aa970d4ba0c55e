"""Reference proxy values of 20 full-size NB201 cells, computed once, for ``tests/test_proxy_engine_fast.py``.

The fast engine (``engine="fast"``) is tested against the reference path on 20 cells, but the reference costs
~25-33 CPU s per full-size cell, too slow to recompute in every test run. This script computes it once and writes
``tests/data/proxy_reference_20cells.json`` (the command, images, seed, machine and every value); the test
recomputes 1 cell of it with ``engine="separate"`` and checks it still equals the file, so the fixture cannot go stale.

Settings: the proxies whose fast-engine values differ from the reference (``FAST_TOLERANCE``: croze, hessian_eig)
and jacobian_fro (computed by the fast engine from the same Jacobian as hessian_eig, differently from the
reference); ``--proxies all`` for every registered proxy (the other 13 run the same group functions in the fast
and the shared engine, checked bit for bit on full-size cells in ``tests/test_proxy_engine.py``, and would add
~7 CPU s per cell). C=16, N=5, seed 0, batch = the first 64 images of
``../shared/data/cifar10_test.npz`` (``benchmarks.common.shared_cifar10(64, stratified=False)``, test indices
0-63, the batch of the ``proxies_all_shared_vs_separate`` record), 1 torch thread, CPU. Cells: the first 20 uids of
the shipped stratified sample (``robustbench_nas.proxies.sample.shipped_sample()``: 2 cells of each of the 10
clean-accuracy strata). Values from ``engine="shared"``, which is the one-at-a-time path (``"separate"``) bit for
bit (``tests/test_proxy_engine.py``) and 1.3x cheaper.

``python -m benchmarks.proxy_reference_cells [--n 20] [--out tests/data/proxy_reference_20cells.json]``
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import machine_description, shared_cifar10

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "proxy_reference_20cells.json"
N_IMAGES, SEED, C, N = 64, 0, 16, 5
#: the proxies whose fast-engine computation differs from the reference's
DEFAULT_PROXIES = ("croze", "jacobian_fro", "hessian_eig")


def reference_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """The 64 images and labels of the fixture (test indices 0-63); ``FileNotFoundError`` without the shared file."""
    data = shared_cifar10(N_IMAGES, stratified=False)
    if data is None:
        raise FileNotFoundError("../shared/data/cifar10_test.npz not found: the reference needs the real images")
    return data


def main(argv: list[str] | None = None) -> None:
    from robustbench_nas.proxies import compute_proxies, list_proxies
    from robustbench_nas.proxies.sample import shipped_sample
    from robustbench_nas.search_spaces import get_search_space

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="cells: the first n uids of the shipped sample")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--proxies", default=",".join(DEFAULT_PROXIES), help="comma-separated, or 'all'")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    names = list_proxies() if args.proxies == "all" else [p for p in args.proxies.split(",") if p]
    x, y = reference_batch()
    space = get_search_space("nb201")
    cells = []
    for uid in shipped_sample()[: args.n]:
        arch = space.arch_str(uid)
        t = time.process_time()
        values = compute_proxies(arch, x, y, names, seed=SEED, C=C, N=N, engine="shared")
        cells.append({"uid": uid, "arch": arch, "cpu_s": time.process_time() - t, "values": values})
        print(f"{uid} {arch} {cells[-1]['cpu_s']:.1f} CPU s", flush=True)
    record = {
        "command": "python -m benchmarks.proxy_reference_cells " + " ".join(argv if argv is not None else sys.argv[1:]),
        "engine": "shared (bitwise the one-at-a-time path, engine='separate')",
        "images": "../shared/data/cifar10_test.npz, test indices 0-63 (shared_cifar10(64, stratified=False))",
        "labels": [int(v) for v in y],
        "seed": SEED, "C": C, "N": N, "n_images": N_IMAGES, "threads": 1,
        "cells_from": "robustbench_nas.proxies.sample.shipped_sample()[:n]",
        "machine": machine_description(), "python": platform.python_version(), "torch": torch.__version__,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "proxies": names,
        "cells": cells,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
