"""The shipped NB201 proxy table: export it from a pipeline store, load it, join it onto a store's cells.

``robustbench_nas/analysis/data/nb201_cifar10_proxies.csv``: one row per computed cell, ``arch_str``, ``uid`` (the
NB201 isomorphism-class uid = the ``arch`` coordinate of a Jung et al. import), one column per proxy (seed 0) and
``device``: what the row was computed on (:func:`robustbench_nas.utils.device_label`, e.g. ``cpu AVX2``: float32
kernels of other CPU capabilities sum in another order, so a row reproduces bit for bit on its own device class);
``nb201_cifar10_proxies.json`` beside it: protocol, batch size, seed, data, software versions, cost per cell, counts,
the images (their indices, the data file's sha256), the torch thread count, the rows per device, a ``reproduce_cell``
command template (``{arch}``: one row's values from ``rbnas proxies``), and (from a second store at other seeds)
each proxy's seed noise; ``nb201_cifar10_proxies_seeds.csv`` holds the per-seed values behind the noise figures.

Export (resumable computation first, see ``docs/proxies.md``)::

    python -m robustbench_nas.analysis.proxy_table /tmp/i16/proxies.zarr --seeds-store /tmp/i16/seeds.zarr \\
        --out robustbench_nas/analysis/data/nb201_cifar10_proxies.csv
"""

from __future__ import annotations

import argparse
import json
import platform
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

TABLE_FILE = "nb201_cifar10_proxies.csv"
SHIPPED = "shipped"
#: The complete table (protocol ``nb201-proxies-all``, computed across sittings; partial while it grows).
ALL_TABLE_FILE = "nb201_cifar10_proxies_all.csv"
SHIPPED_ALL = "shipped-all"
_PACKAGED = {SHIPPED: TABLE_FILE, SHIPPED_ALL: ALL_TABLE_FILE}


def _read_csv(path: str | Path) -> pd.DataFrame:
    """A table's CSV: ``"shipped"`` / ``"shipped-all"`` name the packaged ones."""
    if str(path) in _PACKAGED:
        with resources.files("robustbench_nas.analysis").joinpath("data", _PACKAGED[str(path)]).open() as f:
            return pd.read_csv(f)
    if not Path(path).is_file():
        raise FileNotFoundError(f"proxy table {path} not found (a CSV with arch_str, uid and proxy columns)")
    return pd.read_csv(path)


def _store_values(store_path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Long table (uid, arch_str, seed, proxy columns) of the cells whose proxies stage is done, and run facts."""
    from ..storage import DONE, open_dataset

    ds = open_dataset(str(store_path), done_only=False)
    proxies = [str(p) for p in ds["proxy"].values]
    status = ds["status"].sel(stage="proxies").values if "status" in ds else None
    vals = ds["proxy_value"].values  # (arch, seed, proxy)
    secs = ds["stage_seconds"].sel(stage="proxies").values if "stage_seconds" in ds else None
    devs = ds["unit_device"].sel(stage="proxies").values if "unit_device" in ds else None
    rows = []
    for a, uid in enumerate(ds["arch"].values):
        for s, seed in enumerate(ds["seed"].values):
            if status is not None and int(status[a, s]) != DONE:
                continue
            rows.append({"uid": int(uid), "arch_str": str(ds["arch_str"].values[a]), "seed": int(seed),
                         **{p: float(vals[a, s, k]) for k, p in enumerate(proxies)},
                         "_seconds": float(secs[a, s]) if secs is not None else float("nan"),
                         "device": str(devs[a, s]) if devs is not None else ""})  # fmt: skip
    protocol = json.loads(ds.attrs["protocol"]) if isinstance(ds.attrs.get("protocol"), str) else ds.attrs.get("protocol")
    images = json.loads(ds.attrs["images"]) if isinstance(ds.attrs.get("images"), str) else ds.attrs.get("images")
    facts = {"protocol": protocol, "cells_in_run": int(ds.sizes["arch"]), "proxies": proxies, "images": images}
    return pd.DataFrame(rows), facts


#: The shipped table's data file, as the commands in its JSON name it (relative to the project root).
DATA_FILE = "../shared/data/cifar10_test.npz"
#: The shipped table's proxy images (package data), as the reproduce command names it.
IMAGES_FILE = "robustbench_nas/analysis/data/nb201_cifar10_proxy_images.txt"


def reproduce_cell(indices: Sequence[int], seed: int, batch_size: int, data_file: str = DATA_FILE,
                   threads: int = 1, engine: str = "fast") -> str:
    """The ``rbnas proxies`` command giving one row of the table, with ``{arch}`` for its architecture string: the
    same images (``--indices``: the shipped file when they are its images, else the list), seed, thread count and
    proxy engine (the protocol's ``proxy_engine``)."""
    from ..pipelines.protocol import shipped_proxy_images

    idx = [int(i) for i in indices]
    where = f"@{IMAGES_FILE}" if tuple(idx) == shipped_proxy_images() else ",".join(map(str, idx))
    return (f"rbnas proxies '{{arch}}' --dataset npz --data-root {data_file} --indices {where} "
            f"--batch-size {batch_size} --seed {seed} --threads {threads} --engine {engine}")


def image_facts(images: dict[str, Any] | None, threads: int) -> dict[str, Any]:
    """The JSON's image fields from a store's ``images`` record: the proxy images (indices, content sha256), the
    data file's sha256 and the torch thread count of the run (the device of each row is the table's ``device``
    column)."""
    rec = (images or {}).get("subsets", {}).get("proxies")
    if rec is None:
        raise ValueError("the store records no proxy images (made before image records?): export from a store made "
                         "by this version, or pin its images (protocol image_indices) and recompute")
    return {"images": {"split": rec["split"], "n": rec["n"], "subset_seed": rec["subset_seed"],
                       "indices": rec["indices"], "sha256": rec["sha256"]},
            "data_sha256": images.get("data_sha256"), "torch_threads": int(threads)}


def seed_noise(long: pd.DataFrame, proxies: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per proxy: mean Spearman between the cell rankings of two seeds, and the within-cell / between-cell spread.

    ``spearman_between_seeds``: mean over seed pairs of Spearman(values at seed a, values at seed b) over cells;
    ``noise_ratio``: mean within-cell std over seeds divided by the std over cells of the per-cell means (0 = no
    seed noise; about 1 = the ranking is noise).
    """
    from .stats import spearman

    out: dict[str, dict[str, float]] = {}
    seeds = sorted(long["seed"].unique())
    for p in proxies:
        wide = long.pivot_table(index="uid", columns="seed", values=p, aggfunc="first")
        pairs = [(a, b) for i, a in enumerate(seeds) for b in seeds[i + 1:] if a in wide and b in wide]
        rho = [spearman(wide[a].to_numpy(), wide[b].to_numpy()) for a, b in pairs]
        between = float(np.nanstd(wide.mean(axis=1).to_numpy()))
        within = float(np.nanmean(wide.std(axis=1, ddof=1).to_numpy())) if wide.shape[1] > 1 else float("nan")
        out[p] = {"spearman_between_seeds": float(np.nanmean(rho)) if rho else float("nan"),
                  "noise_ratio": within / between if between > 0 else float("nan"),
                  "cells": int(wide.dropna().shape[0]), "seeds": [int(s) for s in wide.columns]}  # fmt: skip
    return out


def _cost(seconds: pd.Series) -> dict[str, Any]:
    """Median / mean wall seconds of the rows timed in this store (rows restored by :func:`resume_into` carry no
    time: ``None`` when no row is timed)."""
    timed = seconds.dropna()
    return {"median": float(timed.median()) if len(timed) else None, "mean": float(timed.mean()) if len(timed) else None,
            "cells_timed": int(len(timed)),
            "clock": "wall seconds of the proxies stage on a shared 2-core CPU (other work beside it), 1 torch thread"}


def _versions() -> dict[str, str]:
    import sklearn
    import torch

    from .. import __version__

    return {"robustbench_nas": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "pandas": pd.__version__, "scikit-learn": sklearn.__version__, "python": platform.python_version()}


def _sample_text(cells_in_run: int) -> str:
    from ..proxies.sample import shipped_order

    if cells_in_run == len(shipped_order()):
        return ("every unique cell, in a stratified run order (robustbench_nas.proxies.sample.shipped_order: the "
                "500-cell sample first, then the rest stratified and interleaved); computed in that order, so a "
                "partial table is a stratified subset of the space")
    return ("clean-accuracy-stratified, interleaved (robustbench_nas.proxies.sample); computed in the listed order, "
            "so the rows are a stratified prefix of the sample")


def _kept_seed_noise(seeds_csv: Path, main: pd.DataFrame, proxies: Sequence[str], seed0: int) -> dict[str, Any]:
    """The seed noise of an existing seeds CSV, after checking that its seed-``seed0`` rows equal the table's rows
    bit for bit (ValueError naming the first differing cell and proxy otherwise: the seed rows would describe
    other values than the table's)."""
    both = pd.read_csv(seeds_csv)
    missing = [q for q in ("uid", "seed", *proxies) if q not in both.columns]
    if missing:
        raise ValueError(f"{seeds_csv}: no column(s) {missing}; cannot keep its seed noise")
    ours = main.set_index("uid")
    for _, row in both[both["seed"] == seed0].iterrows():
        uid = int(row["uid"])
        if uid not in ours.index:
            raise ValueError(f"{seeds_csv}: cell {uid} of its seed-{seed0} rows is not in the table")
        for q in proxies:
            a, b = float(row[q]), float(ours.at[uid, q])
            if not (a == b or (np.isnan(a) and np.isnan(b))):
                raise ValueError(f"{seeds_csv}: cell {uid}, {q}: {a!r} at seed {seed0} there, {b!r} in the table")
    return seed_noise(both, proxies)


def _kept_device_labels(out_csv: Path, main: pd.DataFrame, proxies: Sequence[str]) -> pd.DataFrame:
    """``main`` with the ``device`` of the existing table at ``out_csv`` kept where it refines the store's label of
    the same row (``cpu AVX512 (Intel AMX BF16 VNNI)`` over ``cpu AVX512``: rows whose store recorded the label before
    it named the CPU's extensions, relabelled in the table) and the row's values are the table's bit for bit."""
    if not out_csv.is_file():
        return main
    old = pd.read_csv(out_csv)
    if "device" not in old.columns or "uid" not in old.columns:
        return main
    old = old.set_index("uid")
    main = main.copy()
    for i, row in main.iterrows():
        uid, label = int(row["uid"]), str(row["device"])
        if uid not in old.index:
            continue
        kept = str(old.at[uid, "device"])
        if not kept.startswith(label + " ("):
            continue
        same = all(float(row[q]) == float(old.at[uid, q]) or (np.isnan(float(row[q])) and np.isnan(float(old.at[uid, q])))
                   for q in proxies)
        if same:
            main.at[i, "device"] = kept
    return main


def export_table(store: str | Path, out_csv: str | Path, *, seeds_store: str | Path | None = None,
                 data: str = "CIFAR-10 test images (../shared/data/cifar10_test.npz), npz train split",
                 threads: int = 1) -> dict[str, Any]:
    """Write the seed-0 table (CSV) and its metadata (JSON beside it) from a finished or partial run.

    With ``seeds_store`` the seed rows (``<table>_seeds.csv``) and ``seed_noise`` are written from it; without it,
    an existing ``<table>_seeds.csv`` beside ``out_csv`` is kept and its ``seed_noise`` carried into the new JSON
    (its seed-0 rows must still equal the table's).

    Arguments:
        threads: torch threads per task of the run that computed the store (``rbnas run --threads``), recorded with
            the CPU capability of the machine exporting (export where the run ran: on a CPU both can change the
            float32 rounding of the data-dependent proxies).

    Returns:
        The metadata written.
    """
    long, facts = _store_values(store)
    if long.empty:
        raise ValueError(f"{store}: no cell has its proxies stage done yet")
    proxies = facts["proxies"]
    seed0 = int(facts["protocol"]["seeds"][0]) if facts.get("protocol") else 0
    main = long[long["seed"] == seed0].sort_values("uid")
    out_csv = Path(out_csv)
    kept_noise = None
    seeds_csv = out_csv.with_name(out_csv.stem + "_seeds.csv")
    if (seeds_store is None or not Path(seeds_store).exists()) and seeds_csv.is_file():
        # no seeds store here (another machine, a new sitting): the seed rows already written stay, and so does
        # their seed noise, as long as their seed-0 rows are still the table's (checked before anything is written)
        kept_noise = _kept_seed_noise(seeds_csv, main, proxies, seed0)
    main = _kept_device_labels(out_csv, main, proxies)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    main[["arch_str", "uid", *proxies, "device"]].to_csv(out_csv, index=False, float_format="%.17g")
    p = facts["protocol"] or {}
    meta: dict[str, Any] = {
        "description": "zero-cost proxies at initialisation of NB201 cells (full size), one row per cell",
        "cells": int(len(main)), "cells_planned": facts["cells_in_run"],
        "sample": _sample_text(facts["cells_in_run"]),
        "nan_per_proxy": {q: int(main[q].isna().sum()) for q in proxies},
        # -inf is a value the references compute too (nwot's slogdet, zen's log of a zero variance), not a gap
        "infinite_per_proxy": {q: int(np.isinf(main[q].to_numpy(dtype=float)).sum()) for q in proxies},
        "devices": {str(d): int(n) for d, n in main["device"].value_counts().sort_index().items()},
        "proxies": proxies, "seed": seed0, "batch_size": p.get("proxy_images"), "data": data,
        "network": {"search_space": p.get("search_space"), "C": 16, "N": 5, "train_profile": p.get("train_profile")},
        "protocol": p.get("name"), "protocol_fields": p,
        "cost_per_cell_s": _cost(main["_seconds"]),
        "software": _versions(),
        "reproduce": f"rbnas run --protocol {p.get('name', 'nb201-proxies')} --store STORE --data-root "
                     "../shared/data/cifar10_test.npz --workers 1 --threads 1 (resumes), then python -m "
                     "robustbench_nas.analysis.proxy_table STORE",
    }  # fmt: skip
    meta.update(image_facts(facts.get("images"), threads))
    idx = meta["images"]["indices"]
    if idx == "all":
        raise ValueError("the proxies used a whole split: the reproduce command needs the indices of a subset")
    root = p.get("data_root") or DATA_FILE
    data_file = DATA_FILE if Path(root).name == Path(DATA_FILE).name else root  # the shipped table: as docs name it
    # a protocol saved before proxy_engine existed computed with the shared engine (ProtocolConfig.from_dict)
    engine = p.get("proxy_engine", "shared")
    meta["proxy_engine"] = engine
    meta["reproduce_cell"] = reproduce_cell(idx, seed0, len(idx), data_file=data_file, threads=threads,
                                            engine=engine)
    if seeds_store is not None and Path(seeds_store).exists():
        s_long, s_facts = _store_values(seeds_store)
        theirs = image_facts(s_facts.get("images"), threads)["images"]
        if theirs["sha256"] != meta["images"]["sha256"]:
            raise ValueError(f"{seeds_store} evaluated other proxy images ({theirs['n']} images, sha "
                             f"{theirs['sha256'][:12]}) than {store} ({meta['images']['n']} images, sha "
                             f"{meta['images']['sha256'][:12]}): seed noise must be measured on the same batch")
        both = pd.concat([s_long, main[main["uid"].isin(s_long["uid"])]], ignore_index=True)
        both = both.sort_values(["uid", "seed"])
        both[["arch_str", "uid", "seed", *proxies, "device"]].to_csv(seeds_csv, index=False, float_format="%.17g")
        meta["seed_noise"] = seed_noise(both, proxies)
    elif kept_noise is not None:
        meta["seed_noise"] = kept_noise
    out_csv.with_suffix(".json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return meta


def load_table(path: str | Path = SHIPPED) -> pd.DataFrame:
    """The proxy table indexed by ``uid`` (``"shipped"``: the packaged 500-cell one, ``"shipped-all"``: the complete
    one, partial while it grows), proxy columns as ``proxy:<name>``."""
    df = _read_csv(path)
    if "uid" not in df.columns:
        raise ValueError(f"proxy table {path}: no 'uid' column (expected arch_str, uid, one column per proxy)")
    df = df.set_index("uid")
    keep = [c for c in df.columns if c not in ("arch_str", "seed", "device")]
    return df[keep].add_prefix("proxy:").astype(np.float64)


def resume_into(store: str | Path, table: str | Path = SHIPPED, *, data_root: str | Path | None = None) -> int:
    """Continue a table's computation elsewhere: create ``store`` for the table's own protocol and record every row
    as its done ``proxies`` unit, so that ``rbnas run STORE`` computes only the cells the table lacks.

    The table's JSON names the protocol (all its fields), the images and the data file's sha256; the store is made
    for that protocol with ``data_root`` (default: the protocol's) and refused unless the images it would evaluate
    are byte for byte the table's (same indices, same pixel sha256). Values round-trip exactly (the CSV holds
    ``%.17g``). The ``info`` stage of restored cells is left pending (it is recomputed in well under a second).

    Arguments:
        store: a store folder that does not exist yet.
        table: the table's CSV (``"shipped"``: the packaged one).
        data_root: the data file the protocol evaluates (``../shared/data/cifar10_test.npz`` for the shipped table).

    Returns:
        The number of rows recorded.
    """
    from ..pipelines.protocol import ProtocolConfig
    from ..pipelines.runner import prepare_store
    from ..storage import DONE

    store = Path(store)
    if store.exists():
        raise FileExistsError(f"{store} exists: resume_into creates a new store (continue an existing one with "
                              "rbnas run)")
    meta = table_meta(table)
    if not meta.get("protocol_fields"):
        raise ValueError(f"proxy table {table}: no JSON with protocol_fields beside it; cannot know how it was made")
    protocol = ProtocolConfig.from_dict(meta["protocol_fields"])
    if data_root is not None:
        protocol = protocol.replace(data_root=str(data_root))
    rows = _read_csv(table)
    from ..pipelines.image_record import image_record

    want = (meta.get("images") or {}).get("sha256")
    got = image_record(protocol)["subsets"]["proxies"]["sha256"]
    if got != want:
        raise ValueError(f"the data at {protocol.data_root} gives other proxy images (sha {str(got)[:12]}) than the "
                         f"table was computed on (sha {str(want)[:12]}): pass the table's data file (--data-root)")
    st, protocol = prepare_store(store, protocol)
    proxies = list(meta["proxies"])
    if [str(p) for p in st.spec.proxies] != proxies:
        raise ValueError(f"the table's proxies {proxies} are not its protocol's {list(st.spec.proxies)}")
    seed = int(meta.get("seed", protocol.seeds[0]))
    threads = int(meta.get("torch_threads") or 1)
    # each row keeps the device it was computed on (a table exported before the column: its one CPU capability)
    legacy = f"cpu {meta['cpu_capability']}" if meta.get("cpu_capability") else "cpu"
    devices = rows["device"].fillna(legacy) if "device" in rows.columns else pd.Series(legacy, index=rows.index)
    recs = [st.cell_record(int(r.uid), seed, {"proxy_value": np.asarray([getattr(r, p) for p in proxies], float)},
                           stage="proxies", status=DONE, error="", threads=threads, device=str(dev))
            for r, dev in zip(rows.itertuples(index=False), devices)]
    st.append(recs)
    st.commit()
    return len(recs)


def table_meta(path: str | Path = SHIPPED) -> dict[str, Any]:
    """The JSON beside a table (``{}`` when absent)."""
    if str(path) in _PACKAGED:
        f = resources.files("robustbench_nas.analysis").joinpath("data", _PACKAGED[str(path)].replace(".csv", ".json"))
        return json.loads(f.read_text()) if f.is_file() else {}
    p = Path(path).with_suffix(".json")
    return json.loads(p.read_text()) if p.is_file() else {}


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Export the proxy table (CSV + JSON) from a nb201-proxies store, or "
                                             "(--resume-into) start a store from the table to continue it.")
    ap.add_argument("store")
    ap.add_argument("--resume-into", action="store_true",
                    help="Create STORE from the table (--out, default the shipped one): its rows are recorded done, "
                         "so `rbnas run STORE` computes only the missing cells.")
    ap.add_argument("--data-root", default=None, help="With --resume-into: the table's data file.")
    ap.add_argument("--seeds-store", default=None, help="A nb201-proxies-seeds store (seed noise).")
    ap.add_argument("--out", default=str(Path(__file__).parent / "data" / TABLE_FILE))
    ap.add_argument("--threads", type=int, default=1, help="torch threads per task of the run (rbnas run --threads).")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    if a.resume_into:
        n = resume_into(a.store, a.out, data_root=a.data_root)
        print(f"{a.store}: {n} rows of {a.out} recorded done; continue with rbnas run {a.store}")
        return
    meta = export_table(a.store, a.out, seeds_store=a.seeds_store, threads=a.threads)
    print(json.dumps({k: meta[k] for k in ("cells", "cells_planned", "cost_per_cell_s")}, indent=1))


if __name__ == "__main__":
    main()
