"""Import the published Jung et al. (ICLR 2023) release into a robustbench-nas Zarr store.

The release is read completely and checked first (:func:`.jung2023.read_release`); only then is the store
created, under a temporary name that is renamed into place at the end, so a bad or interrupted import never leaves
a half-written store at the target path, and an existing store is never touched.

Mapping (see ``docs/storage.md``):

- ``arch`` = the release's uids (``isomorph``; checked equal to our NB201 uid for all 15625 indices, so any
  isomorphic cell is found through ``get_search_space("nb201").uid(index_or_string)``); ``seed`` = ``[0]`` (the
  release has one evaluation per cell, of NB201's pretrained networks);
- eps: the release's /255 grids divided by 255 (``eps`` in [0, 1]); off-grid (attack, eps) pairs stay NaN;
- release ``accuracy`` -> ``*_accuracy``; ``confidence`` (of the predicted class) -> ``*_confidence``;
  ``cm`` -> ``*_confusion`` (int32, -1 where absent); ``*_confidence_true`` is not in the release (stays NaN);
- a stage (``clean``, ``adversarial``, ``corruptions``) is marked done for a cell when the release has at least one
  accuracy of that stage for it. Missing files and uids are listed in the store attribute ``import_report``.

The store holds what the release has: a result array of a stage (``*_confidence``, ``*_confusion``,
``*_confidence_true``, ``adv_clean_accuracy``, ...) that no release file fills is not kept (the published CIFAR-10
release has accuracies and the clean confusion matrices only; its adversarial and corruption confusion arrays
would be 310 MB of -1 in memory on ``xr.open_zarr(STORE).load()``). Their names are in the store attribute
``absent_arrays``; a missing file of a measure the release does have (a partial download) still reads as NaN / -1.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
import warnings
from pathlib import Path

import numpy as np

import xarray as xr

from ..storage import DONE, RobustnessStore, StoreError, StoreSpec, create_store
from ..storage.schema import array_specs
from ..utils.atomic import rename_into_place
from .jung2023 import RELEASE_MEASURES, ReleaseReport, read_release

log = logging.getLogger(__name__)

_STAGE_OF = {"clean": "clean", "adv": "adversarial", "corruption": "corruptions"}
_STORE_METRIC = {"accuracy": "accuracy", "confidence": "confidence", "cm": "confusion"}


def import_jung2023(
    root: str | os.PathLike,
    store_path: str | os.PathLike,
    *,
    dataset: str = "cifar10",
    measures: tuple[str, ...] = RELEASE_MEASURES,
    shard_cells: int = 256,
    chunk_cells: int | None = None,
    progress: bool = False,
) -> ReleaseReport:
    """Read the release at ``root`` and write it as a new store at ``store_path``.

    Arguments:
        root: release root (``meta.json`` and ``<dataset>/<key>_<measure>.json``).
        store_path: the new store (must not exist).
        dataset: ``cifar10``, ``cifar100`` or ``ImageNet16-120``.
        measures: release measures to import (``accuracy``, ``confidence``, ``cm``).
        shard_cells: cells per shard file (the layout ``rbnas run`` writes).
        chunk_cells: cells per inner chunk (``None``: ~4 MiB per chunk, see :class:`StoreSpec`).
        progress: progress bar while reading.

    Returns:
        The :class:`.jung2023.ReleaseReport` (files read / missing, uids missing per file, meta mismatches).

    Raises:
        StoreError: ``store_path`` exists (it is never overwritten).
        FileNotFoundError, ReleaseFormatError: the release cannot be read; nothing is written.
        ValueError: ``meta.json`` disagrees with the NB201 search space, or no accuracy file was found.

    Example:
        >>> rep = import_jung2023("../shared/data/jung2023", "jung2023_cifar10.zarr")  # doctest: +SKIP
    """
    store_path = Path(store_path)
    if store_path.exists():
        raise StoreError(f"{store_path} already exists; refusing to overwrite it (choose a new --store path)")
    ds, report = read_release(root, dataset, measures=measures, progress=progress)
    if report.mismatches:
        raise ValueError(
            f"meta.json disagrees with the NB201 search space in {len(report.mismatches)} place(s), e.g. "
            f"{report.mismatches[0]}; refusing to import cells that would be linked to the wrong uid"
        )
    if not any(f.endswith("_accuracy.json") for f in report.files_read):
        raise ValueError(f"no accuracy file found under {Path(root) / dataset}; nothing to import")

    uids = [int(u) for u in ds["arch"].values]
    attacks = {str(a): [] for a in ds["attack"].values}
    grids = json.loads(ds.attrs["eps_grids_255"])
    for a in attacks:
        attacks[a] = [float(e) / 255.0 for e in grids[a]]
    present = {_STAGE_OF[name.split("_", 1)[0]] for name in ds.data_vars if name.split("_", 1)[0] in _STAGE_OF}
    stages = [s for s in ("clean", "adversarial", "corruptions") if s in present]
    K = int(ds.sizes.get("true_class", {"cifar10": 10, "cifar100": 100}.get(dataset, 120)))
    spec = StoreSpec(
        archs=uids,
        arch_str=[str(s) for s in ds["arch_str"].values],
        seeds=[0],
        attacks=attacks if "adversarial" in stages else {},
        corruptions=[str(c) for c in ds["corruption"].values] if "corruptions" in stages else [],
        severities=[int(s) for s in ds["severity"].values],
        num_classes=K,
        stages=stages,
        arch_coords={"nb201_index": list(uids)},
        shard_cells=shard_cells,
        chunk_cells=chunk_cells,
    )
    absent = absent_arrays(spec, ds)
    attrs = {
        "source": ds.attrs["source"],
        "dataset": dataset,
        "imported_from": "jung2023",
        "release_root": str(Path(root).resolve()),
        "seed_meaning": "0 = the single published evaluation (NAS-Bench-201 pretrained networks)",
        "import_report": report.summary(),
        "isomorph_check": "meta.json isomorph equals the NB201 unique-string uid for every index",
        "absent_arrays": absent,
    }
    tmp = store_path.with_name(f".{store_path.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")  # never shared
    try:
        store = create_store(tmp, spec, attrs=attrs)
        _write(store, ds, uids)
        _drop_arrays(tmp, absent)
        if store_path.exists():  # made by someone else meanwhile: never replaced
            raise StoreError(f"{store_path} appeared while importing; refusing to overwrite it")
        rename_into_place(tmp, store_path)  # files fsync'd, renamed, folder fsync'd
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("imported %d cells of %s into %s", len(uids), dataset, store_path)
    return report


def absent_arrays(spec: StoreSpec, ds: xr.Dataset) -> list[str]:
    """The result arrays of ``spec``'s stages that no variable of the tidy release ``ds`` fills (sorted)."""
    supplied = set()
    for name in ds.data_vars:
        prefix, _, metric = name.partition("_")
        if prefix in _STAGE_OF and metric in _STORE_METRIC:
            supplied.add(f"{prefix}_{_STORE_METRIC[metric]}")
    stages = set(_STAGE_OF.values())
    return sorted(a.name for a in array_specs(spec).values() if a.stage in stages and a.name not in supplied)


def _drop_arrays(path: Path, names: list[str]) -> None:
    """Remove the arrays ``names`` from the (not yet published) store at ``path`` and rebuild its consolidated
    metadata, so readers (``xr.open_zarr``, :func:`..storage.open_dataset`) see only what the release holds."""
    import zarr

    from ..storage.root_meta import quiet_zarr

    if not names:
        return
    for name in names:
        shutil.rmtree(path / name)
    with quiet_zarr(), warnings.catch_warnings():  # zarr's notes on consolidated metadata in v3 and on the
        warnings.filterwarnings("ignore", message=".*not recognized as a component.*")  # store's .journal folder
        zarr.consolidate_metadata(str(path))


def _write(store: RobustnessStore, ds: xr.Dataset, uids: list[int]) -> None:
    """Write every variable of the tidy release dataset into ``store`` (bulk, one writer) and mark stages done."""
    sizes = store.sizes
    for name in ds.data_vars:
        prefix, _, metric = name.partition("_")
        if prefix not in _STAGE_OF or metric not in _STORE_METRIC:
            continue
        target = f"{prefix}_{_STORE_METRIC[metric]}"
        da = ds[name]
        if prefix == "adv":
            # reorder eps to the store's coordinate (same union; matched by value, not position)
            store_eps = np.asarray(store.spec.eps_values())
            ours = np.asarray(da["eps"].values)
            order = [int(np.argmin(np.abs(ours - e))) for e in store_eps]
            if not np.allclose(ours[order], store_eps, rtol=0, atol=1e-12):
                raise ValueError("eps grid of the release does not match the store's eps coordinate")
            da = da.isel(eps=order)
        vals = np.asarray(da.values)
        if metric == "cm":
            vals = vals.astype(np.int32)  # already int32 with -1 = absent (see read_release)
        vals = vals[:, None]  # the seed axis
        expect = (len(uids), *(sizes[d] for d in store.arrays[target].dims[1:]))
        if vals.shape != expect:
            raise ValueError(f"{target}: release data has shape {vals.shape}, store expects {expect}")
        store.write_array(target, vals, archs=uids)
    for prefix, stage in _STAGE_OF.items():
        acc = f"{prefix}_accuracy"
        if acc not in ds.data_vars:
            continue
        v = np.asarray(ds[acc].values).reshape(len(uids), -1)
        have = [u for u, ok in zip(uids, np.isfinite(v).any(axis=1)) if ok]
        if have:
            store.set_status(stage, DONE, archs=have)
