"""Fingerprints of the project's outputs, to show that a refactoring left every number unchanged.

Prints (or writes with ``--out``) one JSON object: a sha256 per output family, and per item beneath it, of

- ``corruptions``: every corruption x severity on one fixed batch (16 seeded random CIFAR-sized images, fixed
  generator seed), the exact bytes of each output tensor;
- ``attacks``: every attack of the ``tiny`` and ``jung2023`` registries' Linf names (FGSM, PGD, APGD-CE, Square) on
  one fixed seeded network (NB201, C=4, N=1, random weights in eval mode) at two radii, per-image correctness and
  the adversarial loss statistics;
- ``proxies``: the shipped proxy table's first rows recomputed (every proxy, the table's own images and seed),
  when ``../shared/data/cifar10_test.npz`` exists;
- ``store``: a finished tiny-protocol store (``--store PATH``): every data variable's bytes except wall-clock
  times, hosts and timestamps.

Run it before and after a change and compare the two JSON files (``--compare A B``). Works with both the old
top-level package names (``attacks``) and the installed ones (``robustbench_nas.attacks``).

Example::

    python -m benchmarks.output_fingerprints --store runs/tiny.zarr --out /tmp/before.json
    python -m benchmarks.output_fingerprints --compare /tmp/before.json /tmp/after.json
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
NPZ = REPO.parent / "shared" / "data" / "cifar10_test.npz"
# variables whose values are wall-clock facts of one run, not results
VOLATILE = ("seconds", "time", "host", "worker", "started", "finished", "updated", "created", "pid", "duration",
            "attempt", "elapsed")


def _mod(name: str) -> Any:
    try:
        return importlib.import_module(f"robustbench_nas.{name}")
    except ModuleNotFoundError:
        return importlib.import_module(name)


def _sha(*arrays: Any) -> str:
    h = hashlib.sha256()
    for a in arrays:
        if isinstance(a, torch.Tensor):
            a = a.detach().cpu().contiguous().numpy()
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes() if a.dtype != object else repr(a.tolist()).encode())
    return h.hexdigest()


def _combine(items: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()


def corruption_fingerprints() -> dict[str, str]:
    corruptions = _mod("corruptions")
    g = torch.Generator().manual_seed(1234)
    x = torch.rand(16, 3, 32, 32, generator=g)
    out = {}
    for name in corruptions.list_corruptions():
        for sev in (1, 2, 3, 4, 5):
            gen = torch.Generator().manual_seed(7)
            out[f"{name}@{sev}"] = _sha(corruptions.get(name)(x, sev, generator=gen))
    return out


def attack_fingerprints() -> dict[str, str]:
    attacks = _mod("attacks")
    from robustbench_nas.search_spaces import get_search_space

    torch.manual_seed(0)
    space = get_search_space("nb201")
    model = space.build_network(1462, num_classes=10, C=4, N=1).eval()
    g = torch.Generator().manual_seed(99)
    x = torch.rand(24, 3, 32, 32, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)  # every image starts correct, so APGD / Square attack all of them
    y[::5] = (y[::5] + 1) % 10
    out = {}
    budgets = {"pgd@Linf": {"steps": 5}, "aa_apgd-ce@Linf": {"steps": 5}, "aa_square@Linf": {"n_queries": 30}}
    for name in ("fgsm@Linf", "pgd@Linf", "aa_apgd-ce@Linf", "aa_square@Linf"):
        for mode in ("independent", "early_exit"):
            res = attacks.evaluate(model, x, y, name, [1 / 255, 8 / 255], params=budgets.get(name), batch_size=10,
                                   seed=3, mode=mode)
            out[f"{name}/{mode}"] = _sha(*[r.stats.correct for r in res],
                                         *[np.float64(r.stats.accuracy) for r in res],
                                         *[r.stats.confidence_true for r in res])
    return out


def proxy_fingerprints(rows: int) -> dict[str, str]:
    if not NPZ.is_file():
        return {}
    import pandas as pd
    from robustbench_nas.data import get_dataset
    from robustbench_nas.proxies import compute_proxies, list_proxies

    derived_seed = _mod("robustbench_nas.pipelines.stages").derived_seed
    table = pd.read_csv(REPO / "robustbench_nas" / "analysis" / "data" / "nb201_cifar10_proxies.csv")
    ds = get_dataset("npz", str(NPZ))
    sub = ds.split("train").subset(64, seed=derived_seed("nb201-proxies", "train", 64))
    out = {}
    names = list_proxies()
    for _, row in table.head(rows).iterrows():
        vals = compute_proxies(row["arch_str"], sub.images("cpu"), sub.labels("cpu"), names, seed=0, num_classes=10,
                               C=16, N=5, mean=ds.info.mean, std=ds.info.std)
        out[row["arch_str"]] = _sha(np.array([vals[n] for n in names], dtype=np.float64))
        out[row["arch_str"] + "/equals_table"] = str(all(
            (vals[n] == row[n]) or (np.isnan(vals[n]) and np.isnan(row[n])) for n in names))
    return out


def store_fingerprints(path: str) -> dict[str, str]:
    import xarray as xr

    ds = xr.open_zarr(path, consolidated=False)
    out = {}
    for name in sorted(ds.data_vars):
        if any(v in name for v in VOLATILE):
            continue
        out[name] = _sha(ds[name].values)
    for name in sorted(ds.coords):
        out[f"coord:{name}"] = _sha(ds[name].values)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", help="a finished tiny-protocol store to fingerprint")
    ap.add_argument("--proxy-rows", type=int, default=2)
    ap.add_argument("--out")
    ap.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    if a.compare:
        before, after = (json.loads(Path(p).read_text()) for p in a.compare)
        diff = 0
        for fam in sorted(set(before) | set(after)):
            b, c = before.get(fam, {}), after.get(fam, {})
            for k in sorted(set(b) | set(c)):
                if b.get(k) != c.get(k):
                    diff += 1
                    print(f"DIFF {fam}/{k}: {b.get(k)} -> {c.get(k)}")
            print(f"{fam}: {len(b)} before, {len(c)} after, {'equal' if b == c else 'DIFFERENT'}")
        return 1 if diff else 0
    torch.set_num_threads(a.threads)
    fams = {"corruptions": corruption_fingerprints(), "attacks": attack_fingerprints(),
            "proxies": proxy_fingerprints(a.proxy_rows)}
    if a.store:
        fams["store"] = store_fingerprints(a.store)
    result = {k: {**v, "_all": _combine(v)} for k, v in fams.items()}
    text = json.dumps(result, indent=1, sort_keys=True)
    if a.out:
        Path(a.out).write_text(text)
    print(json.dumps({k: v["_all"][:16] for k, v in result.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
