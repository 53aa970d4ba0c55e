"""What was tried for `rbnas predict` (docs/proxies.md section 3): held-out Spearman of each model x feature set.

Every configuration is scored on the same seeded splits as ``rbnas predict`` (``random_splits``: repeat r trains on
the first N cells of ``default_rng(r).permutation``, every other cell is held out), one fit per split, no selection:
this is the exploration table the candidates of ``AUTO_CANDIDATES`` come from. ``rbnas predict`` itself chooses among
its candidates by inner cross-validation only; these held-out figures never feed a choice in the package.

Run (about 2 minutes for 100 cells, 3 repeats, one thread)::

    OMP_NUM_THREADS=1 python docs/results/predictor_experiments.py runs/jung.zarr --sizes 100 --repeats 3 \
        --out docs/results/predictor_experiments.json

Feature sets: ``old_compact`` (op counts + GRAF + params/FLOPs, the former default's view), ``old_all`` (+ one-hot and
path encodings), ``signal`` (route + propagation features + params/FLOPs), ``compact`` (old_compact + signal),
``wl<h>`` (Weisfeiler-Lehman subtree counts to depth h). Models: ``rf3``, ``et``, ``gp`` (registered in
``robustbench_nas.analysis.prediction``), ``gp_wl`` (a GP with the normalised WL kernel, Ru et al. 2021:
``Normalizer`` + dot-product kernel + white noise, hyper-parameters by marginal likelihood), ``gp_wlrbf`` (RBF on the
normalised WL counts), and ``et_rank`` (extra-trees on the training targets' ranks). ``a+b`` = rank average.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
from scipy.stats import rankdata

from robustbench_nas.analysis.prediction import make_model, random_splits
from robustbench_nas.analysis.stats import spearman
from robustbench_nas.analysis.targets import features_table, load_store, targets_table
from robustbench_nas.analysis.wl_kernel import wl_features


def _gp_wl(seed: int, rbf: bool = False):  # type: ignore[no-untyped-def]
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, DotProduct, WhiteKernel
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer

    base = RBF(1.0) if rbf else DotProduct(sigma_0=1e-3, sigma_0_bounds="fixed")
    kernel = ConstantKernel(1.0) * base + WhiteKernel(0.1)
    return make_pipeline(Normalizer(), GaussianProcessRegressor(kernel, normalize_y=True, random_state=seed))


def feature_sets(store: str) -> tuple[dict[str, np.ndarray], object]:
    ds = load_store(store)
    F = features_table(ds, encodings=["all"])
    cols = list(F.columns)
    old = ("count_", "live_", "npaths[", "minlen[", "maxlen[", "indeg_out[", "outdeg_in[")
    old_compact = [c for c in cols if c.startswith(old) or c in ("params", "flops")]
    onehot_path = [c for c in cols if c.startswith("path=") or (c.startswith("e") and "=" in c and "(" in c)]
    signal = [c for c in cols if c.startswith(("route_", "prop_")) or c in ("params", "flops")]
    archs = [str(s) for s in ds["arch_str"].values]
    sets = {
        "old_compact": F[old_compact].to_numpy(np.float64),
        "old_all": F[old_compact + onehot_path].to_numpy(np.float64),
        "signal": F[signal].to_numpy(np.float64),
        "compact": F[[c for c in cols if c not in onehot_path]].to_numpy(np.float64),
        "wl1": wl_features(archs, 1).to_numpy(),
        "wl2": wl_features(archs, 2).to_numpy(),
    }
    return sets, targets_table(ds)


#: name -> ((model, feature set), ...)
CONFIGS: dict[str, tuple[tuple[str, str], ...]] = {
    "rf3@old_compact": (("rf3", "old_compact"),),
    "gp@old_compact": (("gp", "old_compact"),),
    "et@old_all": (("et", "old_all"),),
    "rf3@old_compact+gp@old_compact": (("rf3", "old_compact"), ("gp", "old_compact")),
    "gp_wl@wl1": (("gp_wl", "wl1"),),
    "gp_wl@wl2": (("gp_wl", "wl2"),),
    "gp_wlrbf@wl1": (("gp_wlrbf", "wl1"),),
    "rf3@signal": (("rf3", "signal"),),
    "et@signal": (("et", "signal"),),
    "et_rank@signal": (("et_rank", "signal"),),
    "gp@signal": (("gp", "signal"),),
    "et@compact": (("et", "compact"),),
    "et@signal+gp@signal": (("et", "signal"), ("gp", "signal")),
    "et@compact+et@signal+gp@signal": (("et", "compact"), ("et", "signal"), ("gp", "signal")),
}


def _fit_predict(model: str, Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, seed: int) -> np.ndarray:
    if model == "gp_wl":
        return _gp_wl(seed).fit(Xtr, ytr).predict(Xte)
    if model == "gp_wlrbf":
        return _gp_wl(seed, rbf=True).fit(Xtr, ytr).predict(Xte)
    if model == "et_rank":
        return make_model("et", seed).fit(Xtr, rankdata(ytr) / len(ytr)).predict(Xte)
    return make_model(model, seed).fit(Xtr, ytr).predict(Xte)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("store")
    ap.add_argument("--target", default="pgd@Linf@1/255")
    ap.add_argument("--sizes", default="100")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--configs", default="all", help="comma list of CONFIGS names, or all")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    sets, T = feature_sets(a.store)
    y = T[a.target].to_numpy(np.float64)
    ok = np.isfinite(y)
    sets = {k: v[ok] for k, v in sets.items()}
    y = y[ok]
    names = list(CONFIGS) if a.configs == "all" else a.configs.split(",")
    records = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for size in (int(s) for s in a.sizes.split(",")):
            cache: dict[tuple[str, str, int], np.ndarray] = {}
            for name in names:
                t0 = time.perf_counter()
                rhos = []
                for r, tr, te in random_splits(len(y), size, a.repeats, 0):
                    preds = []
                    for m, fs in CONFIGS[name]:
                        key = (m, fs, r)
                        if key not in cache:
                            X = sets[fs]
                            cache[key] = _fit_predict(m, X[tr], y[tr], X[te], r)
                        preds.append(cache[key])
                    p = preds[0] if len(preds) == 1 else np.mean([rankdata(q) for q in preds], axis=0)
                    rhos.append(spearman(p, y[te]))
                rec = {"target": a.target, "config": name, "train_size": size, "repeats": a.repeats,
                       "spearman_mean": float(np.mean(rhos)), "spearman_std": float(np.std(rhos, ddof=1)),
                       "per_repeat": [float(v) for v in rhos], "seconds": time.perf_counter() - t0}  # fmt: skip
                records.append(rec)
                print(f"{size:5d} {name:40s} {rec['spearman_mean']:.3f} +- {rec['spearman_std']:.3f}", flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(records, f, indent=1)


if __name__ == "__main__":
    main()
