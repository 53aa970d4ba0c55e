"""Store throughput: the store ``rbnas run`` leaves vs JSON files (the reference dataset's format), full size.

A synthetic result set with the shape of a full ``jung2023`` run: all 6466 unique NB201 cells, 1 seed, FGSM/PGD/
APGD-CE/Square on the union eps grid, 15 corruptions x 5 severities, 14 proxies, the measures, 200-epoch training
curves, and confusion matrices for clean / every attack-eps / every corruption-severity. Values are seeded and
realistic in structure (confusion matrices of 1000 images per class whose diagonals give the accuracies;
accuracies are multiples of 1/10000 as real ones are).

The store is written exactly as the pipeline writes it: :class:`robustbench_nas.pipelines.runner.ResultWriter` (the client's write
path) journals every (cell, stage) result as it arrives and commits each block of ``shard_cells`` cells as whole
shards once complete. Everything then is read from that store as it was left. Compared, side by side, on the same
numbers (every record says ``same_work``):

* **per-cell write**: the pipeline's write path for every (cell, stage) result vs one JSON file per cell with all
  its values (``fh.write(json.dumps(rec))``; ``orjson.dumps`` too). Same durability on both sides (survives a killed
  process; no fsync); the fsync'd default is a separate record on a sample.
* **bulk write** (an import): :meth:`RobustnessStore.write_array` for every array vs the reference release layout
  (Jung et al. 2023): one JSON file per (key, metric) ``{"cifar10": {key: {metric: {uid: value}}}}``.
* **read all**: ``open_dataset(...).load()`` (every array into memory) and plain ``xarray.open_zarr(...).load()``
  (zarr-python's reader) vs ``json.loads`` of every reference-layout file (and ``orjson.loads``); **read one
  array**: PGD accuracies of every cell (``open_dataset``, ``open_store().read_array``, plain ``xarray.open_zarr``)
  vs parsing ``pgd@Linf_accuracy.json``; **read one cell**: one cell's full record (every array) from a freshly
  opened store (the same three routes) vs its per-cell JSON file.
* **size and file count** of both.
* **simulated run**: 6466 cells' results written by 4 client processes (as ``--task i/4``) in random completion
  order; one is SIGKILLed at a random moment, a fifth process resumes its cells; every value is compared with the
  expected arrays. Reports the wall time and the file count.

``results_agree``: the values read back from both formats equal the values written (exactly: float64 round-trips
through JSON's shortest repr, and the store is lossless).

Run: ``python -m benchmarks.bench_store [--quick]`` (quick: 400 cells).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import Timer, bench_main, make_result, save_records

log = logging.getLogger(__name__)

DATASET_KEY = "cifar10"


# ----------------------------------------------------------------------------------------------------------------
# the synthetic result set
# ----------------------------------------------------------------------------------------------------------------
def jung2023_spec(n_cells: int | None = None):
    """The :class:`~robustbench_nas.storage.StoreSpec` of a ``jung2023`` run (first ``n_cells`` unique cells)."""
    from robustbench_nas.pipelines import get_protocol
    from robustbench_nas.search_spaces import get_search_space
    from robustbench_nas.storage import StoreSpec

    p = get_protocol("jung2023")
    space = get_search_space("nb201")
    uids = space.unique_indices()[: n_cells or None]
    return StoreSpec(
        archs=uids, arch_str=[space.arch_str(i) for i in uids], seeds=list(p.seeds),
        attacks={k: list(v) for k, v in p.attacks.items()}, corruptions=list(p.corruptions),
        severities=list(p.severities), proxies=list(p.proxies), measures=p.measure_outputs(), num_classes=10,
        epochs=p.profile().epochs,
    )


def _confusions(rng: np.random.Generator, acc: np.ndarray, per_class: int = 1000) -> np.ndarray:
    """Confusion matrices ``acc.shape + (10, 10)`` of ``per_class`` images per class with diagonal rate ``acc``."""
    diag = rng.binomial(per_class, np.broadcast_to(acc[..., None], acc.shape + (10,)))
    off = rng.multinomial(per_class - diag, np.full(9, 1 / 9))  # (..., 10, 9)
    cm = np.zeros(acc.shape + (10, 10), dtype=np.int32)
    eye = np.eye(10, dtype=bool)
    cm[..., eye] = diag
    cm[..., ~eye] = off.reshape(acc.shape + (90,))
    return cm


def synthetic_results(spec: Any, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded values of every data array of a store made from ``spec``: ``{name: array of the full shape}``.

    Arrays outside the attack grid hold the fill values (NaN / -1), as a real run leaves them.
    """
    from robustbench_nas.storage import array_specs

    rng = np.random.default_rng(seed)
    sizes = spec.dim_sizes()
    n, s = sizes["arch"], sizes["seed"]
    out: dict[str, np.ndarray] = {}
    grid = spec.attack_grid()  # (attack, eps)
    for name, a in array_specs(spec).items():
        if a.stage is None:
            continue
        shape = tuple(sizes[d] for d in a.dims)
        if name.endswith("_confusion"):
            continue  # made with the accuracies below
        if name == "checkpoint":
            out[name] = np.array([[f"checkpoints/{arch}/seed{sd}.safetensors" for sd in spec.seeds]
                                  for arch in spec.archs], dtype=object)
        elif a.dtype.startswith("int"):
            out[name] = rng.integers(10_000, 2_000_000, shape).astype(a.dtype)
        else:
            out[name] = rng.random(shape)
    for prefix in ("clean", "adv", "corruption"):
        key = f"{prefix}_accuracy"
        if key not in out:
            continue
        acc = rng.beta(5, 2, out[key].shape) if prefix != "adv" else rng.beta(1, 3, out[key].shape)
        cm = _confusions(rng, acc)
        out[key] = np.trace(cm, axis1=-2, axis2=-1) / 10_000.0  # exact multiples of 1/10000, as real results
        out[f"{prefix}_confusion"] = cm
        if prefix == "adv":
            mask = np.broadcast_to(grid[None, None], out[key].shape)
            for k in (key, "adv_confidence", "adv_confidence_true"):
                out[k] = np.where(mask, out[k], np.nan)
            out["adv_confusion"] = np.where(mask[..., None, None], cm, -1).astype(np.int32)
    return out


# ----------------------------------------------------------------------------------------------------------------
# ours: the pipeline's write path, then reads of the store as it is left
# ----------------------------------------------------------------------------------------------------------------
def _stage_groups(spec: Any) -> dict[str, list[str]]:
    from robustbench_nas.storage import array_specs

    groups: dict[str, list[str]] = {}
    for name, a in array_specs(spec).items():
        if a.stage is not None:
            groups.setdefault(a.stage, []).append(name)
    return groups


def _in_stage_order(units: list[tuple[int, int, str]], stages: list[str]) -> list[tuple[int, int, str]]:
    """``units`` with each cell's stages put back in pipeline order on the positions that cell's units hold.

    Cells stay randomly interleaved, but a cell's results arrive as in a real run: a stage only after the stages it
    needs (``train`` before the evaluations of its weights; a train result recorded after them would, rightly, reset
    them to pending: they could only have come from other weights).
    """
    slots: dict[tuple[int, int], list[int]] = {}
    for k, (uid, seed, _stage) in enumerate(units):
        slots.setdefault((uid, seed), []).append(k)
    out = list(units)
    for (uid, seed), where in slots.items():
        mine = sorted((units[k][2] for k in where), key=stages.index)
        for k, stage in zip(where, mine):
            out[k] = (uid, seed, stage)
    return out


def write_pipeline(path: Path, spec: Any, data: dict[str, np.ndarray], cells: list[int], *, fsync: bool = False,
                   order_seed: int | None = None, store: Any = None, die_after: int | None = None,
                   max_batch: int = 1) -> Any:
    """The pipeline's way: each (cell, stage) result handed to :class:`ResultWriter` as it "arrives" (one at a
    time, in ``cells`` order or shuffled with ``order_seed``); blocks committed whole once complete.
    ``die_after``: SIGKILL this process after that many results (the simulated run's crash). ``max_batch``: hand
    results over in batches of 1..max_batch (as ``as_completed(...).batches()`` does when several finish at once)."""
    from robustbench_nas.pipelines.runner import ResultWriter
    from robustbench_nas.storage import RobustnessStore, create_store

    if store is None:
        create_store(path, spec)
        store = RobustnessStore.open(path, mode="r+", fsync=fsync)
    groups = _stage_groups(spec)
    units = [(spec.archs[i], spec.seeds[0], stage) for i in cells for stage in groups]
    if order_seed is not None:
        np.random.default_rng(order_seed).shuffle(units)
        units = _in_stage_order(units, list(spec.stages))
    pos = {a: k for k, a in enumerate(spec.archs)}
    seeded = {name: "seed" in a.dims for name, a in store.arrays.items()}
    writer = ResultWriter(store, units)
    rng = np.random.default_rng(order_seed)
    batch: list[Any] = []
    size = 1
    for k, (uid, seed, stage) in enumerate(units):
        if die_after is not None and k == die_after:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        i = pos[uid]
        values = {nm: data[nm][i, 0] if seeded[nm] else data[nm][i] for nm in groups[stage]}
        batch.append((uid, seed, stage, {"status": "done", "values": values, "seconds": 1.0, "attempts": 1,
                                         "error": ""}))
        if len(batch) >= size:
            writer.add(batch)
            batch = []
            size = int(rng.integers(1, max_batch + 1))
    if batch:
        writer.add(batch)
    writer.close()
    return store


def write_bulk(path: Path, spec: Any, data: dict[str, np.ndarray]) -> None:
    """One writer (an import): ``write_array`` per array for all cells, then every stage marked done."""
    from robustbench_nas.storage import DONE, RobustnessStore, create_store

    create_store(path, spec)
    st = RobustnessStore.open(path, mode="r+", fsync=False)
    for name, values in data.items():
        st.write_array(name, values)
    for stage in _stage_groups(spec):
        st.set_status(stage, DONE)


def read_all(path: Path) -> dict[str, np.ndarray]:
    """Every data array of the store into memory."""
    from robustbench_nas.storage import open_dataset

    ds = open_dataset(path).load()
    return {k: ds[k].values for k in ds.data_vars}


def read_all_xarray(path: Path) -> dict[str, np.ndarray]:
    """Every array through plain ``xarray.open_zarr(path).load()`` (zarr-python's reader: what a researcher types)."""
    import xarray as xr

    ds = xr.open_zarr(str(path)).load()
    return {k: ds[k].values for k in ds.variables}


def read_one_xarray(path: Path, attack: str = "pgd@Linf") -> np.ndarray:
    """``adv_accuracy`` of one attack for every cell through plain ``xarray.open_zarr``, fresh open."""
    import xarray as xr

    return xr.open_zarr(str(path))["adv_accuracy"].sel(attack=attack).isel(seed=0).values


def read_cell_xarray(path: Path, arch: int) -> dict[str, np.ndarray]:
    """One cell's full record through plain ``xarray.open_zarr``, fresh open: ``.sel(arch=...).load()`` (one dask
    compute for every array; ``ds[name].sel(...).values`` per array pays dask's per-compute overhead ~35 times)."""
    import xarray as xr

    ds = xr.open_zarr(str(path)).sel(arch=arch).load()
    return {k: ds[k].values for k in ds.data_vars}


def read_cell_xarray_nodask(path: Path, arch: int) -> dict[str, np.ndarray]:
    """The same through ``xarray.open_zarr(path, chunks=None)`` (lazily indexed zarr arrays, no dask graph)."""
    import xarray as xr

    ds = xr.open_zarr(str(path), chunks=None).sel(arch=arch).load()
    return {k: ds[k].values for k in ds.data_vars}


def read_all_zarr(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    """Every data array through zarr-python directly (the independent reader; slow: ~0.2 ms per inner chunk)."""
    import zarr

    g = zarr.open_group(str(path), mode="r")
    return {k: g[k][...] for k in names}


def read_one(path: Path, attack: str = "pgd@Linf") -> np.ndarray:
    """``adv_accuracy`` of one attack for every cell (seed 0), ``(arch, eps)``, from a freshly opened store."""
    from robustbench_nas.storage import open_dataset

    return open_dataset(path)["adv_accuracy"].sel(attack=attack).isel(seed=0).values


def read_cell(path: Path, arch: int) -> dict[str, np.ndarray]:
    """One cell's full record (every array, every seed) from a freshly opened store."""
    from robustbench_nas.storage import open_dataset

    ds = open_dataset(path)
    return {k: ds[k].sel(arch=arch).values for k in ds.data_vars}


# ----------------------------------------------------------------------------------------------------------------
# baseline: JSON, written and read the fastest standard way (whole files, json.dumps / json.loads; orjson too)
# ----------------------------------------------------------------------------------------------------------------
def _orjson() -> Any:
    try:
        import orjson
    except ImportError:
        return None
    return orjson


def _dumps(obj: Any, lib: str) -> bytes:
    if lib == "orjson":
        return _orjson().dumps(obj)
    return json.dumps(obj).encode()


def _loads(raw: bytes, lib: str) -> Any:
    return _orjson().loads(raw) if lib == "orjson" else json.loads(raw)


def _json_entries(spec: Any, data: dict[str, np.ndarray]):
    """``(file stem, key, metric, {uid: value})`` in the reference layout: per attack / corruption key and metric."""
    attacks, corr = list(spec.attacks), list(spec.corruptions)
    eps = spec.eps_values()
    uids = [str(a) for a in spec.archs]
    metric_of = {"accuracy": "accuracy", "confidence": "confidence", "confidence_true": "confidence_true",
                 "confusion": "cm"}
    for prefix, keys in (("clean", ["clean"]), ("adv", attacks), ("corruption", corr)):
        for suffix, metric in metric_of.items():
            arr = data.get(f"{prefix}_{suffix}")
            if arr is None:
                continue
            for k, key in enumerate(keys):
                if prefix == "clean":
                    vals = arr[:, 0]
                elif prefix == "adv":  # only the eps of this attack's grid, as the reference files
                    cols = [eps.index(e) for e in sorted(spec.attacks[key])]
                    vals = arr[:, 0, k][:, cols]
                else:
                    vals = arr[:, 0, k]
                yield f"{key}_{metric}", key, metric, dict(zip(uids, vals.tolist()))
    for name, arr in data.items():  # the rest (proxies, measures, curves, info) one file per array
        if name.split("_")[0] in ("clean", "adv", "corruption"):
            continue
        yield name, name, "value", dict(zip(uids, arr.tolist()))


def write_json_reference(root: Path, spec: Any, data: dict[str, np.ndarray], lib: str = "json") -> None:
    """The reference release layout: ``root/cifar10/<key>_<metric>.json`` holding every cell."""
    d = root / DATASET_KEY
    d.mkdir(parents=True, exist_ok=True)
    (root / "meta.json").write_bytes(_dumps({"ids": {str(a): {"nb201-string": s, "isomorph": str(a)}
                                                     for a, s in zip(spec.archs, spec.arch_str)},
                                             "epsilons": {k: [e * 255 for e in v] for k, v in spec.attacks.items()}},
                                            lib))
    for stem, key, metric, values in _json_entries(spec, data):
        with open(d / f"{stem}.json", "wb") as fh:
            fh.write(_dumps({DATASET_KEY: {key: {metric: values}}}, lib))


def write_json_per_cell(root: Path, spec: Any, data: dict[str, np.ndarray], cells: list[int],
                        lib: str = "json") -> None:
    """One JSON file per cell with every value of that cell (what a per-cell pipeline without a store writes)."""
    root.mkdir(parents=True, exist_ok=True)
    for i in cells:
        rec = {name: (arr[i].tolist()) for name, arr in data.items()}
        with open(root / f"{spec.archs[i]}.json", "wb") as fh:
            fh.write(_dumps(rec, lib))


def read_json_reference(root: Path, lib: str = "json") -> dict[str, dict[str, Any]]:
    """Every reference-layout file parsed: ``{stem: {uid: value}}``."""
    out = {}
    for p in sorted((root / DATASET_KEY).glob("*.json")):
        d = _loads(p.read_bytes(), lib)[DATASET_KEY]
        (key, metrics), = d.items()
        (_, values), = metrics.items()
        out[p.stem] = values
    return out


def read_json_one(root: Path, attack: str = "pgd@Linf", lib: str = "json") -> np.ndarray:
    values = _loads((root / DATASET_KEY / f"{attack}_accuracy.json").read_bytes(), lib)[DATASET_KEY][attack]["accuracy"]
    return np.array(list(values.values()), dtype=float)


def read_json_cell(root: Path, arch: int, lib: str = "json") -> dict[str, Any]:
    return _loads((root / f"{arch}.json").read_bytes(), lib)


def _du(path: Path) -> tuple[int, int]:
    """(bytes, files) under ``path``."""
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        return a.shape == b.shape and bool(np.array_equal(a.astype(float), b.astype(float), equal_nan=True))
    if a.dtype.kind in "OTU" or b.dtype.kind in "OTU":  # strings (object, StringDType, fixed unicode)
        return a.shape == b.shape and [str(v) for v in a.ravel()] == [str(v) for v in b.ravel()]
    return a.shape == b.shape and bool(np.array_equal(a, b))


def _store_matches(back: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> bool:
    return all(k in back and _equal(back[k], v) for k, v in data.items())


def _json_matches(jback: dict[str, dict[str, Any]], spec: Any, data: dict[str, np.ndarray]) -> bool:
    """Every reference-layout file parsed back holds the same uids and the same values."""
    ok = True
    for stem, _, _, values in _json_entries(spec, data):
        got = jback[stem]
        ok &= list(got) == list(values)
        ok &= all(_equal(np.asarray(got[u]), np.asarray(values[u])) for u in values)
    return bool(ok)


# ----------------------------------------------------------------------------------------------------------------
# the simulated run: several client processes, random completion order, one SIGKILLed, resumed
# ----------------------------------------------------------------------------------------------------------------
def _save_data(root: Path, data: dict[str, np.ndarray]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for k, v in data.items():
        if v.dtype == object:
            (root / f"{k}.json").write_text(json.dumps(v.tolist()))
        else:
            np.save(root / f"{k}.npy", v)


def _load_data(root: Path) -> dict[str, np.ndarray]:
    out = {}
    for p in root.iterdir():
        if p.suffix == ".npy":
            out[p.stem] = np.load(p, mmap_mode="r")
        elif p.suffix == ".json":
            out[p.stem] = np.asarray(json.loads(p.read_text()), dtype=object)
    return out


def _sim_client(store_path: str, data_dir: str, n_cells: int, shard: tuple[int, int] | None, order_seed: int,
                resume: bool, die_after: int | None = None, shard_cells: int = 256) -> int:
    """One client process: its cells' results (``shard``, or every cell not done when ``resume``) in random order."""
    from dataclasses import replace

    from robustbench_nas.storage import DONE, RobustnessStore

    spec = replace(jung2023_spec(n_cells), shard_cells=shard_cells)
    data = _load_data(Path(data_dir))
    store = RobustnessStore.open(store_path, mode="r+", fsync=True)
    if resume:
        store.commit()  # what the killed client left in the journal (as `rbnas run` does first)
        st = store.status()
        cells = [i for i in range(len(spec.archs)) if (st[i, 0] != DONE).any()]
    else:
        # interleaved on purpose (positions p % n), unlike `--task i/n`, which gives whole blocks: here every block
        # gets results from every process, the worst case of overlapping writers that the store's lock must handle
        order = sorted(spec.archs)
        mine = set(order if shard is None else order[shard[0]::shard[1]])
        cells = [i for i, a in enumerate(spec.archs) if a in mine]
    st = store.status()
    groups = list(_stage_groups(spec))
    todo = [i for i in cells if any(st[i, 0, store.stage_pos(g)] != DONE for g in groups)]
    write_pipeline(Path(store_path), spec, data, todo, order_seed=order_seed, store=store, die_after=die_after,
                   max_batch=8)
    return len(todo)


def simulate_run(tmp: Path, spec: Any, data: dict[str, np.ndarray], *, n_clients: int = 4, seed: int = 0,
                 shard_cells: int | None = None) -> dict[str, Any]:
    """``n_clients`` processes write every cell's results into one store (as ``--task i/n``: interleaved cells,
    so every block gets results from every process), each in its own random order; client 0 SIGKILLs itself after a
    random number of its results; one more process resumes (commits the journal, then writes what is not done).
    Returns figures and the value-by-value comparison with ``data``."""
    import multiprocessing as mp
    import signal
    import time
    from dataclasses import replace

    from robustbench_nas.storage import DONE, create_store, open_dataset

    rng = np.random.default_rng(seed)
    spec = replace(spec, shard_cells=shard_cells or spec.shard_cells)
    path = tmp / "sim.zarr"
    data_dir = tmp / "sim_data"
    _save_data(data_dir, data)
    create_store(path, spec)
    n = len(spec.archs)
    units0 = -(-n // n_clients) * len(_stage_groups(spec))
    die_after = int(rng.integers(units0 // 5, 4 * units0 // 5))
    ctx = mp.get_context("spawn")
    t0 = time.perf_counter()
    procs = [ctx.Process(target=_sim_client, args=(str(path), str(data_dir), n, (k, n_clients), seed + k, False,
                                                   die_after if k == 0 else None, spec.shard_cells))
             for k in range(n_clients)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    t_first = time.perf_counter() - t0
    journal_after_kill = len(list((path / ".journal").glob("*.log"))) if (path / ".journal").exists() else 0
    resumed = ctx.Process(target=_sim_client, args=(str(path), str(data_dir), n, None, seed + 99, True, None,
                                                    spec.shard_cells))
    resumed.start()
    resumed.join()
    wall = time.perf_counter() - t0
    ds = open_dataset(path).load()
    back = {k: ds[k].values for k in ds.data_vars}
    status_ok = bool((back["status"] == DONE).all())
    killed = procs[0].exitcode == -signal.SIGKILL
    ok_exits = all(p.exitcode == 0 for p in procs[1:]) and resumed.exitcode == 0
    agree = _store_matches(back, data) and status_ok and killed and ok_exits
    nbytes, nfiles = _du(path)
    return {"wall_s": wall, "first_pass_s": t_first, "files": nfiles, "bytes": nbytes, "agree": bool(agree),
            "status_all_done": status_ok, "killed": killed, "killed_after_results": die_after,
            "results_of_killed_client": units0, "journal_files_after_kill": journal_after_kill,
            "exit_codes": [p.exitcode for p in procs] + [resumed.exitcode], "clients": n_clients,
            "journal_left": len(list((path / ".journal").glob("*.log"))) if (path / ".journal").exists() else 0}


# ----------------------------------------------------------------------------------------------------------------
# run
# ----------------------------------------------------------------------------------------------------------------
def _timed(fn: Any, *args: Any, **kw: Any) -> tuple[Any, Any]:
    with Timer() as t:
        out = fn(*args, **kw)
    return out, t


def _median_s(fn: Any, *args: Any, repeat: int = 5) -> tuple[Any, float]:  # noqa: D401
    """Result and median wall seconds of ``repeat`` calls (short reads on a busy machine: the median, not one)."""
    import time

    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - t0)
    return out, float(np.median(times))


def _tiny_store(tmp: Path) -> Path:
    from robustbench_nas.storage import create_store

    sp = jung2023_spec(2)
    create_store(tmp / "warm.zarr", sp)
    return tmp / "warm.zarr"


def read_one_store_api(path: Path, attack: str = "pgd@Linf") -> np.ndarray:
    """The same array through the store API (``open_store(path).read_array``, no xarray), fresh open."""
    from robustbench_nas.storage import open_store

    st = open_store(path)
    return st.read_array("adv_accuracy")[:, 0, list(st.spec.attacks).index(attack)]


def read_cell_store_api(path: Path, arch: int) -> dict[str, np.ndarray]:
    """One cell's full record through the store API (``open_store(path).read_record``), fresh open."""
    from robustbench_nas.storage import open_store

    return open_store(path).read_record(arch)


def run(quick: bool = False, workdir: str | None = None) -> list[dict[str, Any]]:
    """All store records (see the module docstring). Full: all 6466 cells everywhere; quick: 400 cells."""
    n_cells = 400 if quick else None
    spec = jung2023_spec(n_cells)
    n = len(spec.archs)
    data = synthetic_results(spec)
    values = int(sum(v.size for v in data.values()))
    libs = ["json"] + (["orjson"] if _orjson() is not None else [])
    records: list[dict[str, Any]] = []
    common = {"n_cells": n, "values": values, "dims": spec.dim_sizes(), "shard_cells": spec.shard_cells,
              "chunk_cells": spec.chunk_cells,
              "layout": "as `rbnas run` leaves it (sharded; inner chunks of ~4 MiB, chunk_cells=None)"}
    tmp = Path(tempfile.mkdtemp(prefix="rbnas_bench_store_", dir=workdir))
    try:
        cells = list(range(n))
        # ---- writes: the pipeline's write path vs one JSON file per cell ---------------------------------------
        zpath = tmp / "run.zarr"
        _, t_w = _timed(write_pipeline, zpath, spec, data, cells, order_seed=1)
        for lib in libs:
            _, t_j = _timed(write_json_per_cell, tmp / f"percell_{lib}", spec, data, cells, lib)
            agree = _check_json_cells(tmp / f"percell_{lib}", spec, data, cells, lib)
            records.append(make_result(
                "store_write_per_cell" + ("" if lib == "json" else "_vs_orjson"), t_w.seconds / n, t_j.seconds / n,
                agree, kind="measured", same_work=True, unit="s per cell (7 stage results, random arrival order)",
                cpu_s={"ours": t_w.cpu_seconds, "baseline": t_j.cpu_seconds}, baseline=f"one JSON file per cell ({lib})",
                durability="both: survive a killed process (no fsync on either side)", **common,
                note=f"{n / t_w.seconds:.0f} vs {n / t_j.seconds:.0f} cells/s ({lib})"))
        # fsync'd (the pipeline's default), on a sample
        m = min(n, 256)
        _, t_f = _timed(write_pipeline, tmp / "fsync.zarr", jung2023_spec(m), {k: v[:m] for k, v in data.items()},
                        list(range(m)), fsync=True, order_seed=2)
        records.append(make_result(
            "store_write_per_cell_fsync", t_f.seconds / m, records[0]["baseline_s"], None, kind="measured",
            same_work=False, unit="s per cell (7 fsync'd journal appends + the block commit)", cells_timed=m,
            baseline="one JSON file per cell (json, no fsync: a weaker guarantee)", **{**common, "n_cells": m},
            note=f"{m / t_f.seconds:.0f} cells/s with an fsync per result (survives a machine crash)"))
        shutil.rmtree(tmp / "fsync.zarr", ignore_errors=True)
        # ---- reads of the store as it was left ---------------------------------------------------------------
        jroot = {lib: tmp / f"release_{lib}" for lib in libs}
        t_jw = {}
        for lib in libs:
            _, t_jw[lib] = _timed(write_json_reference, jroot[lib], spec, data, lib)
        read_all(jung_tiny := _tiny_store(tmp))  # imports paid once, outside the timings
        read_all_xarray(jung_tiny)
        shutil.rmtree(jung_tiny, ignore_errors=True)
        t_jr = {}
        jback = None
        for lib in libs:
            jback, t_jr[lib] = _median_s(read_json_reference, jroot["json"], lib, repeat=3)
            json_ok = _json_matches(jback, spec, data)
            del jback
            t_jr[lib] = (t_jr[lib], json_ok)
        agree_all = True
        for via, fn, suffix in (("open_dataset(STORE).load()", read_all, ""),
                                ("xarray.open_zarr(STORE).load() (plain xarray + zarr-python)", read_all_xarray,
                                 "_xarray")):
            back, t_r = _median_s(fn, zpath, repeat=3)
            agree_store = _store_matches(back, data)
            agree_all &= agree_store
            del back
            for lib in libs:
                t_j, json_ok = t_jr[lib]
                records.append(make_result(
                    "store_read_all" + suffix + ("" if lib == "json" else "_vs_orjson"), t_r, t_j,
                    agree_store and json_ok, kind="measured", same_work=True,
                    unit=f"s to read every value of {n} cells (median of 3)",
                    baseline=f"reference release layout, {lib}.loads of every file (values left as Python lists)",
                    via=via, **common, note=f"{n / t_r:.0f} vs {n / t_j:.0f} cells/s ({lib}; {via.split('(')[0]})"))
        pgd = data["adv_accuracy"][:, 0, list(spec.attacks).index("pgd@Linf")]
        cols = [spec.eps_values().index(e) for e in sorted(spec.attacks["pgd@Linf"])]
        read_one(zpath)  # imports (xarray indexing, ...) paid once, outside the timings: a fresh store, not a fresh Python
        one_suffix = {read_one: "", read_one_store_api: "_store_api", read_one_xarray: "_xarray"}
        for via, fn in (("open_dataset(STORE)[...].sel(...)", read_one), ("open_store(STORE).read_array(...)",
                                                                        read_one_store_api),
                        ("xarray.open_zarr(STORE)[...].sel(...) (plain xarray + zarr-python)", read_one_xarray)):
            one, t_1 = _median_s(fn, zpath)
            for lib in libs:
                jone, t_j1 = _median_s(read_json_one, jroot["json"], "pgd@Linf", lib)
                agree = _equal(one[:, cols], pgd[:, cols]) and _equal(jone.reshape(n, -1), pgd[:, cols])
                records.append(make_result(
                    "store_read_one_array" + one_suffix[fn] + (
                        "" if lib == "json" else "_vs_orjson"), t_1, t_j1, agree,
                    kind="measured", same_work=True, unit=f"s to read PGD accuracy of {n} cells (fresh open, median of 5)",
                    baseline=f"{lib}.loads of pgd@Linf_accuracy.json into an array", via=via, **common,
                    note=f"{t_1 * 1e3:.1f} vs {t_j1 * 1e3:.1f} ms ({lib}; {via.split('(')[0]})"))
        rng = np.random.default_rng(5)
        sample = sorted(int(i) for i in rng.choice(n, size=min(n, 25), replace=False))
        cell_suffix = {read_cell: "", read_cell_store_api: "_store_api", read_cell_xarray: "_xarray",
                       read_cell_xarray_nodask: "_xarray_nodask"}
        for via, fn in (("open_dataset(STORE)[name].sel(arch=...)", read_cell),
                        ("open_store(STORE).read_record(arch)", read_cell_store_api),
                        ("xarray.open_zarr(STORE).sel(arch=...).load() (plain xarray + zarr-python)",
                         read_cell_xarray),
                        ("xarray.open_zarr(STORE, chunks=None).sel(arch=...).load() (plain xarray, no dask)",
                         read_cell_xarray_nodask)):
            t_cells, t_jcells, agree = [], [], True
            for i in sample:
                rec, t_c = _timed(fn, zpath, spec.archs[i])
                jrec, t_jc = _timed(read_json_cell, tmp / "percell_json", spec.archs[i])
                t_cells.append(t_c.seconds)
                t_jcells.append(t_jc.seconds)
                agree &= all(_equal(rec[k], data[k][i]) and _equal(np.asarray(jrec[k]), data[k][i]) for k in data)
            records.append(make_result(
                "store_read_one_cell" + cell_suffix[fn], float(np.mean(t_cells)),
                float(np.mean(t_jcells)), bool(agree), kind="measured", same_work=True,
                unit="s per cell: one cell's full record (every array) from a freshly opened store", via=via,
                max_s=float(np.max(t_cells)), median_s=float(np.median(t_cells)), cells_timed=len(sample),
                baseline="json.loads of that cell's own JSON file (one file per cell)", **common,
                note=f"mean {np.mean(t_cells) * 1e3:.1f} ms, max {np.max(t_cells) * 1e3:.1f} ms (target < 50; "
                     f"{via.split('(')[0]})"))
        zbytes, zfiles = _du(zpath)
        jbytes, jfiles = _du(jroot["json"])
        pbytes, pfiles = _du(tmp / "percell_json")
        records.append(make_result(
            "store_size", zbytes / 1e6, jbytes / 1e6, agree_all, kind="measured", same_work=True,
            unit="MB on disk (not seconds)", ours_files=zfiles, baseline_files=jfiles,
            per_cell_json={"mb": pbytes / 1e6, "files": pfiles}, **common,
            note=f"{zbytes / 1e6:.1f} MB in {zfiles} files vs JSON release {jbytes / 1e6:.1f} MB in {jfiles} files "
                 "(ratio = JSON/store size)"))
        shutil.rmtree(zpath, ignore_errors=True)
        for lib in libs:
            shutil.rmtree(tmp / f"percell_{lib}", ignore_errors=True)
        # ---- bulk write (an import) vs the release layout ------------------------------------------------------
        _, t_b = _timed(write_bulk, tmp / "bulk.zarr", spec, data)
        agree = _store_matches(read_all(tmp / "bulk.zarr"), data)
        records.append(make_result(
            "store_write_bulk", t_b.seconds, t_jw["json"].seconds, agree, kind="measured", same_work=True,
            unit=f"s to write all {n} cells", baseline="reference release layout (fh.write(json.dumps(...)))",
            via="write_array per array (the importer's path)", **common,
            note=f"{n / t_b.seconds:.0f} vs {n / t_jw['json'].seconds:.0f} cells/s"))
        shutil.rmtree(tmp / "bulk.zarr", ignore_errors=True)
        for lib in libs:
            shutil.rmtree(jroot[lib], ignore_errors=True)
        # ---- the simulated run ------------------------------------------------------------------------------
        sim = simulate_run(tmp, spec, data, n_clients=4, seed=3)
        records.append(make_result(
            "store_simulated_run", sim.pop("wall_s"), None, sim["agree"], kind="measured", same_work=False,
            unit=f"s wall: {n} cells' results by 4 client processes (random order), one SIGKILLed, resumed",
            **sim, **common,
            note=f"{sim['files']} files, every value equal after kill + resume: {sim['agree']}"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return save_records(records, quick)


def _check_json_cells(root: Path, spec: Any, data: dict[str, np.ndarray], cells: list[int], lib: str) -> bool:
    ok = True
    for i in cells[:: max(1, len(cells) // 20)]:
        rec = read_json_cell(root, spec.archs[i], lib)
        ok &= all(_equal(np.asarray(rec[k]), data[k][i]) for k in data)
    return bool(ok)


def main(argv: list[str] | None = None) -> None:
    bench_main(run, __doc__, argv)


if __name__ == "__main__":
    main()
