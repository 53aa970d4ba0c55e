"""Store throughput: our Zarr v3 store vs JSON files (the reference dataset's format), full ``jung2023`` size.

A synthetic result set with the shape of a full ``jung2023`` run: all 6466 unique NB201 cells, 1 seed, FGSM/PGD/
APGD-CE/Square on the union eps grid, 15 corruptions x 5 severities, 14 proxies, the measures, 200-epoch training
curves, and confusion matrices for clean / every attack-eps / every corruption-severity. Values are seeded and
realistic in structure (confusion matrices of 1000 images per class whose diagonals give the accuracies, so the
data compress like real results do; accuracies are multiples of 1/10000 as real ones are).

Compared, on the same numbers:

* **per-cell write** (how the distributed pipeline writes: each worker writes one cell's stages as it finishes them):
  :meth:`RobustnessStore.write_cell` per (cell, stage) vs one JSON file per cell with all its values (the natural
  way to dump per-cell results without a shared file). Timed on a sample of cells, reported per cell and projected
  to 6466.
* **bulk write** (one writer, e.g. an import): :meth:`RobustnessStore.write_array` for every array vs the reference
  release layout (Jung et al. 2023): one JSON file per (key, metric) ``{"cifar10": {key: {metric: {uid: value}}}}``.
* **read all**: ``open_dataset(...).load()`` (every array into memory) vs parsing every reference-layout JSON file into
  arrays; **read one**: PGD accuracies of every cell (one array, lazily) vs parsing ``pgd@Linf_accuracy.json``.
* **size on disk** of both.

``results_agree``: the values read back from both formats equal the values written (exactly: float64 round-trips
through JSON's shortest repr, and zarr is lossless).

Run: ``python -m benchmarks.bench_store [--quick]`` (quick: 400 cells instead of 6466, per-cell sample 40).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import Timer, bench_main, make_result, mark_quick, save_result

log = logging.getLogger(__name__)

DATASET_KEY = "cifar10"
#: cells per chunk of the compacted layout (a finished store rewritten for publishing and analysis)
COMPACT_CHUNK = 1024


# ----------------------------------------------------------------------------------------------------------------
# the synthetic result set
# ----------------------------------------------------------------------------------------------------------------
def jung2023_spec(n_cells: int | None = None):
    """The :class:`~robustbench_nas.storage.StoreSpec` of a ``jung2023`` run (first ``n_cells`` unique cells)."""
    from pipelines import get_protocol
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
# ours
# ----------------------------------------------------------------------------------------------------------------
def _stage_groups(spec: Any) -> dict[str, list[str]]:
    from robustbench_nas.storage import array_specs

    groups: dict[str, list[str]] = {}
    for name, a in array_specs(spec).items():
        if a.stage is not None:
            groups.setdefault(a.stage, []).append(name)
    return groups


def write_per_cell(path: Path, spec: Any, data: dict[str, np.ndarray], cells: list[int]) -> None:
    """The pipeline's way: create the store, then each (cell, stage) written with ``write_cell`` (status last)."""
    from robustbench_nas.storage import create_store

    st = create_store(path, spec, overwrite=True)
    groups = _stage_groups(spec)
    seed = spec.seeds[0]
    for i in cells:
        arch = spec.archs[i]
        for stage, names in groups.items():
            vals = {nm: data[nm][i] if st.arrays[nm].dims[1:2] != ("seed",) else data[nm][i, 0] for nm in names}
            st.write_cell(arch, seed, vals, stage=stage)


def write_bulk(path: Path, spec: Any, data: dict[str, np.ndarray]) -> None:
    """One writer: ``write_array`` per array for all cells, then every stage marked done."""
    from robustbench_nas.storage import DONE, create_store

    st = create_store(path, spec, overwrite=True)
    for name, values in data.items():
        st.write_array(name, values)
    for stage in _stage_groups(spec):
        st.set_status(stage, DONE)


def read_all(path: Path) -> dict[str, np.ndarray]:
    """Every data array of the store into memory."""
    from robustbench_nas.storage import open_dataset

    ds = open_dataset(path).load()
    return {k: ds[k].values for k in ds.data_vars}


def read_all_zarr(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    """Every data array through the zarr API directly (no xarray / dask task per chunk)."""
    import zarr

    g = zarr.open_group(str(path), mode="r")
    return {k: g[k][...] for k in names}


def read_one(path: Path, attack: str = "pgd@Linf") -> np.ndarray:
    """``adv_accuracy`` of one attack for every cell (seed 0), ``(arch, eps)``."""
    from robustbench_nas.storage import open_dataset

    return open_dataset(path)["adv_accuracy"].sel(attack=attack).isel(seed=0).values


# ----------------------------------------------------------------------------------------------------------------
# baseline: JSON
# ----------------------------------------------------------------------------------------------------------------
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


def write_json_reference(root: Path, spec: Any, data: dict[str, np.ndarray]) -> None:
    """The reference release layout: ``root/cifar10/<key>_<metric>.json`` holding every cell."""
    d = root / DATASET_KEY
    d.mkdir(parents=True, exist_ok=True)
    (root / "meta.json").write_text(json.dumps({"ids": {str(a): {"nb201-string": s, "isomorph": str(a)}
                                                        for a, s in zip(spec.archs, spec.arch_str)},
                                                "epsilons": {k: [e * 255 for e in v] for k, v in spec.attacks.items()}}))
    for stem, key, metric, values in _json_entries(spec, data):
        with open(d / f"{stem}.json", "w", encoding="utf-8") as fh:
            json.dump({DATASET_KEY: {key: {metric: values}}}, fh)


def write_json_per_cell(root: Path, spec: Any, data: dict[str, np.ndarray], cells: list[int]) -> None:
    """One JSON file per cell with every value of that cell (what a per-cell pipeline without a store writes)."""
    root.mkdir(parents=True, exist_ok=True)
    for i in cells:
        rec = {name: (arr[i].tolist()) for name, arr in data.items()}
        with open(root / f"{spec.archs[i]}.json", "w", encoding="utf-8") as fh:
            json.dump(rec, fh)


def read_json_reference(root: Path) -> dict[str, dict[str, Any]]:
    """Every reference-layout file parsed: ``{stem: {uid: value}}`` (values as arrays)."""
    out = {}
    for p in sorted((root / DATASET_KEY).glob("*.json")):
        with open(p, encoding="utf-8") as fh:
            d = json.load(fh)[DATASET_KEY]
        (key, metrics), = d.items()
        (_, values), = metrics.items()
        out[p.stem] = values
    return out


def read_json_one(root: Path, attack: str = "pgd@Linf") -> np.ndarray:
    with open(root / DATASET_KEY / f"{attack}_accuracy.json", encoding="utf-8") as fh:
        values = json.load(fh)[DATASET_KEY][attack]["accuracy"]
    return np.array(list(values.values()), dtype=float)


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


# ----------------------------------------------------------------------------------------------------------------
# run
# ----------------------------------------------------------------------------------------------------------------
def _subset(spec: Any, data: dict[str, np.ndarray], m: int) -> tuple[Any, dict[str, np.ndarray]]:
    """The first ``m`` cells of a spec and its data."""
    sub = jung2023_spec(m)
    return sub, {k: v[:m] for k, v in data.items()}


def layout_records(tmp: Path, spec: Any, data: dict[str, np.ndarray], arch_chunk: int, tag: str,
                   full_n: int = 6466) -> list[dict[str, Any]]:
    """Bulk write, read-all, read-one and size of one zarr layout vs the reference JSON files, on the same cells."""
    n = len(spec.archs)
    spec.arch_chunk = arch_chunk
    zpath, jpath = tmp / f"{tag}.zarr", tmp / f"{tag}_json"
    with Timer() as t_w:
        write_bulk(zpath, spec, data)
    with Timer() as t_jw:
        write_json_reference(jpath, spec, data)
    zbytes, zfiles = _du(zpath)
    jbytes, jfiles = _du(jpath)
    with Timer() as t_r:
        back = read_all(zpath)
    with Timer() as t_jr:
        jback = read_json_reference(jpath)
    with Timer() as t_z:
        zback = read_all_zarr(zpath, list(data))
    agree_all = all(_equal(back[k], v) and _equal(zback[k], v) for k, v in data.items()) and _json_matches(
        jback, spec, data)
    with Timer() as t_1:
        one = read_one(zpath)
    with Timer() as t_j1:
        jone = read_json_one(jpath)
    pgd = data["adv_accuracy"][:, 0, list(spec.attacks).index("pgd@Linf")]
    cols = [spec.eps_values().index(e) for e in sorted(spec.attacks["pgd@Linf"])]
    agree_one = _equal(one[:, cols], pgd[:, cols]) and _equal(jone.reshape(n, -1), pgd[:, cols])
    values = int(sum(v.size for v in data.values()))
    detail = {"n_cells": n, "arch_chunk": arch_chunk, "values": values, "dims": spec.dim_sizes(),
              "baseline": "reference release layout (Jung et al. 2023: one JSON per key and metric, all cells)",
              "via": "write_array / open_dataset (xarray + dask)"}
    layout = f"arch_chunk={arch_chunk}" + (" (as the pipeline writes)" if arch_chunk == 1 else " (compacted)")
    mb = values * 8 / 1e6
    out = []
    for name, t_o, t_b, agree, unit in (
        (f"store_write_bulk{tag}", t_w, t_jw, agree_all, f"s to write all {n} cells"),
        (f"store_read_all{tag}", t_r, t_jr, agree_all, f"s to read every value of {n} cells"),
        (f"store_read_all_zarr_direct{tag}", t_z, t_jr, agree_all, f"s to read every value of {n} cells, zarr API"),
        (f"store_read_one_array{tag}", t_1, t_j1, agree_one, f"s to read PGD accuracy of {n} cells"),
    ):
        out.append(make_result(
            name, t_o.seconds, t_b.seconds, agree, kind="measured", unit=unit, layout=layout,
            cpu_s={"ours": t_o.cpu_seconds, "baseline": t_b.cpu_seconds}, mb_per_s=mb / t_o.seconds,
            projected_full_s={"ours": t_o.seconds * full_n / n, "baseline": t_b.seconds * full_n / n}, **detail,
            note=f"{layout}: {n / t_o.seconds:.0f} vs {n / t_b.seconds:.0f} cells/s",
        ))
    out.append(make_result(
        f"store_size{tag}", zbytes / 1e6, jbytes / 1e6, agree_all, kind="measured", unit="MB on disk (not seconds)",
        layout=layout, ours_files=zfiles, baseline_files=jfiles, raw_mb=mb,
        projected_full_mb={"ours": zbytes / 1e6 * full_n / n, "baseline": jbytes / 1e6 * full_n / n}, **detail,
        note=f"{zbytes / 1e6:.1f} MB in {zfiles} files vs JSON {jbytes / 1e6:.1f} MB (ratio = JSON/zarr size)",
    ))
    return out


def run(quick: bool = False, workdir: str | None = None) -> list[dict[str, Any]]:
    """All store records (see the module docstring).

    Full mode: the compacted layout and JSON on all 6466 cells; the per-cell layout (``arch_chunk=1``, tens of
    thousands of small chunk files) on the first 1000 cells, per-cell writes on 400 cells, projected to 6466.
    Quick mode: 200 / 100 / 20 cells.
    """
    n_cells, n_small, n_sample = (200, 100, 20) if quick else (None, 1000, 400)
    spec = jung2023_spec(n_cells)
    n = len(spec.archs)
    data = synthetic_results(spec)
    records: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="rbnas_bench_store_", dir=workdir))
    try:
        # ---- per-cell writes (the pipeline's way), on a sample of cells -------------------------------------
        sample = [int(i) for i in np.linspace(0, n - 1, n_sample).astype(int)]
        with Timer() as t_pc:
            write_per_cell(tmp / "percell.zarr", spec, data, sample)
        with Timer() as t_pj:
            write_json_per_cell(tmp / "percell_json", spec, data, sample)
        agree = _check_cells(tmp / "percell.zarr", spec, data, sample) and _check_json_cells(
            tmp / "percell_json", spec, data, sample)
        records.append(make_result(
            "store_write_per_cell", t_pc.seconds / len(sample), t_pj.seconds / len(sample), agree,
            kind="measured", unit="s per cell (all 7 stages' values, status last)", cells_timed=len(sample),
            projected_full_s={"ours": t_pc.seconds / len(sample) * 6466, "baseline": t_pj.seconds / len(sample) * 6466},
            baseline="one JSON file per cell", n_cells=n,
            note=f"{len(sample) / t_pc.seconds:.0f} vs {len(sample) / t_pj.seconds:.0f} cells/s",
        ))
        shutil.rmtree(tmp / "percell.zarr", ignore_errors=True)
        # ---- the two layouts -------------------------------------------------------------------------------
        sspec, sdata = _subset(spec, data, n_small)
        records += layout_records(tmp, sspec, sdata, 1, "")
        records += layout_records(tmp, spec, data, min(COMPACT_CHUNK, n), "_compacted")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    mark_quick(records, quick)
    for r in records:
        save_result(r)
    return records


def _check_cells(path: Path, spec: Any, data: dict[str, np.ndarray], cells: list[int]) -> bool:
    from robustbench_nas.storage import open_store

    st = open_store(path)
    seed = spec.seeds[0]
    ok = True
    for i in cells[:: max(1, len(cells) // 10)]:
        for name in data:
            ref = data[name][i] if st.arrays[name].dims[1:2] != ("seed",) else data[name][i, 0]
            ok &= _equal(st.read_cell(spec.archs[i], seed, name), ref)
    status = st.status()
    return bool(ok and (status[cells] == 1).all())


def _check_json_cells(root: Path, spec: Any, data: dict[str, np.ndarray], cells: list[int]) -> bool:
    ok = True
    for i in cells[:: max(1, len(cells) // 10)]:
        rec = json.loads((root / f"{spec.archs[i]}.json").read_text(encoding="utf-8"))
        ok &= all(_equal(np.asarray(rec[k]), data[k][i]) for k in data)
    return bool(ok)


def _json_matches(jback: dict[str, dict[str, Any]], spec: Any, data: dict[str, np.ndarray]) -> bool:
    """Every reference-layout file parsed back holds the same uids and (on a sample of cells) the same values."""
    ok = True
    for stem, _, _, values in _json_entries(spec, data):
        got = jback[stem]
        ok &= list(got) == list(values)
        ok &= all(_equal(np.asarray(got[u]), np.asarray(values[u])) for u in list(values)[:: max(1, len(values) // 50)])
    return bool(ok)


def main(argv: list[str] | None = None) -> None:
    bench_main(run, __doc__, argv)


if __name__ == "__main__":
    main()
