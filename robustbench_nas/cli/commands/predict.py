"""``rbnas predict STORE --target T --train-size N``: predict a robustness target of held-out cells."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import click

from ..common import echo_json, fail

if TYPE_CHECKING:
    import pandas as pd


# The defaults of --model, --repeats, --seed, --train-select, --selection and --encodings are those of
# robustbench_nas.analysis.predict_protocol (PredictProtocol, DEFAULT_ENCODINGS), which rbnas analyze shares;
# written out here so that the command line starts without importing the analysis (tests/test_report_predict.py
# checks that both commands' defaults equal the protocol's).
@click.command(name="predict")
@click.argument("store_path", type=click.Path())
@click.option("--target", default="pgd@Linf@1/255", show_default=True,
              help="Target column (as in rbnas analyze: clean, pgd@Linf@1/255, corruption_mean, adv_mean, ...).")
@click.option("--train-size", "train_sizes", default="100", show_default=True,
              help="Training cells (random, per repeat); a comma list gives a learning curve (one result per size).")
@click.option("--repeats", default=5, show_default=True, type=int,
              help="Random splits (seeds seed, seed+1, ...).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--train-select", type=click.Choice(["random", "kmeans", "variance"]), default="random",
              show_default=True,
              help="random: seeded random training cells. kmeans: the cells nearest the centroids of a k-means "
                   "(k = train size) of all cells' route/propagation features. variance: the cells whose labels "
                   "would most reduce a Gaussian process's total predictive variance over all cells (greedy "
                   "transductive design on the same features). Both designs are the cells one would choose to "
                   "evaluate, from features only (no target is read); every other cell is held out.")
@click.option("--model", default="auto", show_default=True,
              help="auto (chosen by 5-fold CV inside the training cells among the AUTO_CANDIDATES of "
                   "robustbench_nas.analysis.prediction: extra-trees, forest and GP on feature views and their rank "
                   "averages) or a registered model.")
@click.option("--selection", type=click.Choice(["1se", "best"]), default="1se", show_default=True,
              help="How --model auto picks a candidate from the inner CV: 1se (the most-averaged candidate within one "
                   "standard error of the best) or best (the best CV mean).")
@click.option("--encodings", default="all", show_default=True,
              help="Cell encodings as features (nb201: onehot, opcount, path, graf, pathstats, propagation, "
                   "graf_exact (GRAF's own 191 features: kept out of --model auto's views; --compare graf adds "
                   "candidates on our features + GRAF's for the inner CV to choose); all), or 'none'.")
@click.option("--proxies", "proxy_table", default=None,
              help="Also use a proxy table's proxies as features ('shipped' or a CSV; NaN where not computed).")
@click.option("--proxy-cells-only", is_flag=True,
              help="Train and test only on the cells the --proxies table covers (the fair test of proxies 'where "
                   "computed': no cell gets imputed proxies).")
@click.option("--proxy-names", default=None,
              help="Comma list of the --proxies table's proxies to use as features (default: all; 'none': no feature, "
                   "e.g. with --proxy-cells-only to score the same cells without proxies).")
@click.option("--no-store-proxies", is_flag=True, help="Ignore proxies stored in STORE (measures are never used).")
@click.option("--compare", type=click.Choice(["graf"]), default=None,
              help="Also score GRAF (its 191 graph features + params + FLOPs, a default random forest) on the same "
                   "splits and print ours, GRAF and the paired difference +- SE (robustbench_nas.analysis.graf). "
                   "Ours may then also choose our features together with GRAF's (by the inner CV).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
def command(store_path: str, target: str, train_sizes: str, repeats: int, seed: int, train_select: str, model: str,
            selection: str, encodings: str, proxy_table: str | None, proxy_cells_only: bool, proxy_names: str | None,
            no_store_proxies: bool, compare: str | None, as_json: bool, progress: bool) -> None:  # fmt: skip
    """Held-out Spearman / Kendall / R^2 of predicting TARGET from free per-cell features (split by uid).

    Features: the cells' encodings and costs (params, FLOPs), plus zero-cost proxies where computed; never the
    store's measures (``measure:*`` need a trained network). Every cell
    with a finite target that is not a training cell is a test cell; scores are the mean over the repeats.
    Example: `rbnas predict runs/jung.zarr --target 'pgd@Linf@1/255' --train-size 100 --repeats 5 --json`.
    """
    from robustbench_nas.analysis.heldout import heldout_inputs, heldout_scores, parse_encodings
    from robustbench_nas.analysis.predict_protocol import PredictProtocol
    from robustbench_nas.analysis.targets import load_store, targets_table
    from robustbench_nas.storage import StoreError

    try:
        sizes = [int(v) for v in train_sizes.split(",") if v.strip()]
    except ValueError:
        fail(f"--train-size must be an integer or a comma list of integers, got {train_sizes!r}")
    if not sizes or min(sizes) < 5 or repeats < 1:
        fail(f"--train-size must be >= 5 and --repeats >= 1, got {train_sizes}, {repeats}")
    t0 = time.perf_counter()
    try:
        ds = load_store(store_path)
    except (StoreError, FileNotFoundError, OSError) as e:
        fail(str(e))
    T = targets_table(ds)
    if target not in T.columns:
        fail(f"unknown target {target!r}; available: {', '.join(T.columns)}")
    enc = parse_encodings(encodings)
    if compare == "graf":
        from robustbench_nas.analysis.targets import store_space
        from robustbench_nas.search_spaces import get_search_space

        space = get_search_space(store_space(ds))
        if "graf_exact" not in space.list_encodings():  # GRAF's published features exist for NB201's cell only
            fail(f"--compare graf: GRAF's own features (encoding 'graf_exact', gabikadlecova/GRAF) are defined for "
                 f"NB201 cells only; this store's space {space.name!r} has encodings "
                 f"{', '.join(space.list_encodings())}: run rbnas predict without --compare")  # fmt: skip
    if compare == "graf" and not (enc and {"all", "graf_exact"} & set(enc)):
        enc = (enc or []) + ["graf_exact"]  # GRAF's own features, needed by its side
    try:  # the report's prediction section reads the store with the same function (heldout.py)
        inputs = heldout_inputs(ds, encodings=enc, proxy_table=proxy_table, proxy_names=proxy_names,
                                proxy_cells_only=proxy_cells_only, no_store_proxies=no_store_proxies)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    F, T, twins = inputs.features, inputs.targets, inputs.twins
    n = int(T[target].notna().sum())
    if max(sizes) >= n:
        fail(f"--train-size {max(sizes)}: the store has only {n} cells with {target}")
    if compare == "graf":
        _compare_graf(F, T[target], sizes, repeats=repeats, seed=seed, train_select=train_select,
                      selection=selection, twins=twins, as_json=as_json, progress=progress)  # fmt: skip
        return
    results = []
    for size in sizes:
        t1 = time.perf_counter()
        try:
            res = heldout_scores(inputs, target, size, PredictProtocol(
                model=model, train_sizes=(size,), repeats=repeats, seed=seed, train_select=train_select,
                selection=selection), progress=progress)
        except (KeyError, ValueError) as e:
            fail(str(e))
        res["seconds"] = time.perf_counter() - t1
        results.append({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in res.items()})
        if not as_json:
            click.echo(f"{target}: held-out Spearman {res['spearman_mean']:.3f} +- {res['spearman_std']:.3f}, "
                       f"Kendall {res['kendall_mean']:.3f} ({size} training cells, {res['n_test']} test cells, "
                       f"{repeats} repeats, {train_select} training cells, models {','.join(res['models'])}, "
                       f"{res['seconds']:.1f} s)")  # fmt: skip
            if "spearman_twin_free_mean" in res:
                click.echo(f"  held-out cells without a functional twin among the training cells "
                           f"({res['n_test_twin_free']:.0f}): Spearman {res['spearman_twin_free_mean']:.3f} +- "
                           f"{res['spearman_twin_free_std']:.3f}")  # fmt: skip
    if as_json:
        if len(results) == 1:
            echo_json({**results[0], "total_seconds": time.perf_counter() - t0})
        else:
            echo_json({"target": target, "curve": results, "total_seconds": time.perf_counter() - t0})


def _compare_graf(F: pd.DataFrame, y: pd.Series, sizes: list[int], *, repeats: int, seed: int, train_select: str,
                  selection: str, twins: pd.Series | None, as_json: bool, progress: bool) -> None:  # fmt: skip
    """``--compare graf``: ours and GRAF on the same splits, per training size."""
    from robustbench_nas.analysis.graf import compare_with_graf

    out = []
    for size in sizes:
        try:
            res = compare_with_graf(F, y, train_size=size, repeats=repeats, seed=seed, twin_keys=twins,
                                    train_select=train_select, selection=selection, progress=progress)  # fmt: skip
        except (KeyError, ValueError) as e:
            fail(str(e))
        out.append(res)
        if not as_json:
            o, g, d = res["ours"], res["graf"], res["diff"]
            click.echo(f"{y.name} ({size} training cells, {o['n_test']} test cells, {repeats} repeats from seed "
                       f"{seed}): held-out Spearman ours {o['spearman_mean']:.3f}, GRAF {g['spearman_mean']:.3f}, "
                       f"ours - GRAF {d['spearman_mean']:+.3f} +- {d['spearman_se']:.3f} (SE, paired); "
                       f"models {','.join(o['models'])}")  # fmt: skip
            if "spearman_twin_free_mean" in d:
                click.echo(f"  twin-free held-out cells: ours {o['spearman_twin_free_mean']:.3f}, GRAF "
                           f"{g['spearman_twin_free_mean']:.3f}, ours - GRAF {d['spearman_twin_free_mean']:+.3f} +- "
                           f"{d['spearman_twin_free_se']:.3f}")  # fmt: skip
    if as_json:
        echo_json(out[0] if len(out) == 1 else {"target": str(y.name), "curve": out})
