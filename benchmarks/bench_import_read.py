"""Reading the imported Jung et al. release with plain xarray vs ``json.load`` of the release's own files.

The published CIFAR-10 release (``../shared/data/jung2023``: ``meta.json`` and 21 result files, 20 accuracy files
and the clean confusion matrices, about 7 MB of JSON) is imported once with :func:`~robustbench_nas.analysis.
importer.import_jung2023`; then, in the same process, alternately:

* **ours**: ``xarray.open_zarr(STORE).load()``: every variable of the store in memory (what a user outside this
  project would type; no helper of ours);
* **baseline**: ``json.load`` of every result file of the release (the form it is published in; ``meta.json``'s
  uid list is not counted, which favours the baseline).

``same_work``: whether both bring the same values into memory, i.e. whether the store holds exactly the release's
measures (no array the release lacks) plus its bookkeeping (stage status per cell). ``results_agree``: every
release value read by ``json.load`` equals the store's at its (uid, key, eps) position (checked on the clean and
PGD accuracies and the clean confusion matrices; the importer's own tests check every value). Timings: the best of
``repeat`` alternating runs of each, wall seconds (I/O is part of the work).

Run: ``python -m benchmarks.bench_import_read [--quick]`` (quick: 1 repeat instead of 5).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import SHARED_DATA, make_result, mark_quick, save_result

RELEASE = SHARED_DATA / "jung2023"


def _json_files(root: Path) -> list[Path]:
    return sorted((root / "cifar10").glob("*.json"))


def read_json(files: list[Path]) -> dict[str, Any]:
    """The baseline: ``json.load`` of every release file."""
    out = {}
    for f in files:
        with open(f) as fh:
            out[f.stem] = json.load(fh)
    return out


def read_xarray(store: Path) -> Any:
    """Ours: plain ``xarray.open_zarr(STORE).load()``."""
    import xarray as xr

    return xr.open_zarr(str(store)).load()


def _release_pairs(files: list[Path]) -> set[tuple[str, str]]:
    """(stage prefix, measure) of every release file: ``pgd@Linf_accuracy`` -> ``("adv", "accuracy")``."""
    out = set()
    for f in files:
        key, _, measure = f.stem.rpartition("_")
        prefix = "clean" if key == "clean" else "adv" if "@" in key else "corruption"
        out.add((prefix, {"cm": "confusion"}.get(measure, measure)))
    return out


def _stored_pairs(ds: Any) -> set[tuple[str, str]]:
    """(stage prefix, measure) of every result variable of the store (bookkeeping such as ``status`` left out)."""
    out = set()
    for name in ds.data_vars:
        prefix, _, measure = str(name).partition("_")
        if prefix in ("clean", "adv", "corruption"):
            out.add((prefix, measure))
    return out


def _agree(ds: Any, js: dict[str, Any]) -> bool:
    """Release values from JSON equal the store's (clean accuracy, PGD accuracy per eps, clean confusion)."""
    pos = {int(a): i for i, a in enumerate(ds["arch"].values)}
    clean = js["clean_accuracy"]["cifar10"]["clean"]["accuracy"]
    got = ds["clean_accuracy"].values[:, 0]
    ok = all(got[pos[int(u)]] == v for u, v in clean.items())
    pgd = js["pgd@Linf_accuracy"]["cifar10"]["pgd@Linf"]["accuracy"]
    eps255 = np.round(ds["eps"].values * 255, 6)
    a = list(ds["attack"].values).index("pgd@Linf")
    cols = [int(np.flatnonzero(eps255 == e)[0]) for e in (0.1, 0.5, 1.0, 2.0, 3.0, 4.0, 8.0)]
    adv = ds["adv_accuracy"].values[:, 0, a]
    ok &= all(np.array_equal(adv[pos[int(u)], cols], v) for u, v in pgd.items())
    cm = js["clean_cm"]["cifar10"]["clean"]["cm"]
    conf = ds["clean_confusion"].values[:, 0]
    ok &= all(np.array_equal(conf[pos[int(u)]], np.asarray(v)) for u, v in list(cm.items())[::50])
    return bool(ok)


def run(quick: bool = False, workdir: str | None = None) -> list[dict[str, Any]]:
    import torch

    torch.set_num_threads(1)
    from robustbench_nas.analysis.importer import import_jung2023

    if not (RELEASE / "meta.json").is_file():
        print(f"skipped: {RELEASE} not found")
        return []
    repeat = 1 if quick else 5
    tmp = Path(tempfile.mkdtemp(prefix="bench_import_read_", dir=workdir))
    try:
        store = tmp / "jung2023_cifar10.zarr"
        import_jung2023(RELEASE, store)
        files = _json_files(RELEASE)
        read_xarray(store), read_json(files[:1])  # imports paid once, outside the timings
        t_ours, t_base = [], []
        for _ in range(repeat):  # alternating: a load spike on the shared machine hits both
            t0 = time.perf_counter()
            ds = read_xarray(store)
            t_ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            js = read_json(files)
            t_base.append(time.perf_counter() - t0)
        same_work = _stored_pairs(ds) <= _release_pairs(files)
        rec = make_result(
            "import_read_jung2023", min(t_ours), min(t_base), _agree(ds, js), same_work=bool(same_work),
            ours="xarray.open_zarr(STORE).load() of the imported release", baseline="json.load of every release file",
            files=len(files), json_mb=round(sum(f.stat().st_size for f in files) / 1e6, 2),
            store_loaded_mb=round(ds.nbytes / 1e6, 2), store_variables=sorted(ds.data_vars),
            absent_arrays=list(ds.attrs.get("absent_arrays", [])), ours_times_s=t_ours, baseline_times_s=t_base,
            repeat=repeat, clock="wall", threads=1,
        )  # fmt: skip
        print(f"xarray {min(t_ours):.3f} s ({rec['store_loaded_mb']} MB in memory) vs json.load "
              f"{min(t_base):.3f} s ({rec['json_mb']} MB of JSON): ratio {rec['ratio']:.2f}, "
              f"same_work: {str(rec['same_work']).lower()}, results_agree: {rec['results_agree']}")
        return mark_quick([rec], quick)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    for r in run(ap.parse_args().quick):
        save_result(r)
