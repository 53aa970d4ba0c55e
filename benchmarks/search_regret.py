"""Regret of random search, local search, regularised evolution and BANANAS on an imported release (issue 26).

Usage (from the repository root; the published figure docs/figures/search_regret_bananas.png):

    rbnas import jung2023 ../shared/data/jung2023 --store /tmp/graf/jung.zarr
    nice -n 5 python benchmarks/search_regret.py /tmp/graf/jung.zarr --budget 150 --repeats 10 --seed 0 \
        --out docs/results/search_regret_bananas.csv --figure docs/figures/search_regret_bananas.png

Every algorithm gets the same query budget (distinct cells) and the same run seeds ``seed .. seed + repeats - 1``
(:func:`robustbench_nas.analysis.search.run_searches`). Writes the curves of every run (``--out``), prints the final
regret per (target, algorithm) (mean, std, median over runs, and the median number of queries to reach the optimum
for the runs that did) and draws mean regret +- std per target. This is a quality figure, not a timing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

#: Clean accuracy, PGD at 1/255 and mean adversarial accuracy (the issue's three objectives).
TARGETS: tuple[str, ...] = ("clean", "pgd@Linf@1/255", "adv_mean")
ALGORITHMS: tuple[str, ...] = ("random", "local", "evolution", "bananas")


def final_table(curves, budget: int):  # type: ignore[no-untyped-def]
    """Final regret per (objective, algorithm): mean, std, median over runs; runs that reached the optimum and the
    median queries they needed."""
    import numpy as np
    import pandas as pd

    rows = []
    for (obj, alg), g in curves.groupby(["objective", "algorithm"], sort=False):
        last = g[g["queries"] == budget]["regret"]
        hit = g[g["regret"] <= 0].groupby("repeat")["queries"].min()
        rows.append({"objective": obj, "algorithm": alg, "runs": int(g["repeat"].nunique()), "mean": last.mean(),
                     "std": last.std(), "median": last.median(), "found_optimum": int(hit.size),
                     "median_queries_to_optimum": float(np.median(hit)) if hit.size else float("nan")})  # fmt: skip
    return pd.DataFrame(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store", help="an imported store (e.g. the Jung et al. CIFAR-10 release)")
    p.add_argument("--targets", default=",".join(TARGETS))
    p.add_argument("--algorithms", default=",".join(ALGORITHMS))
    p.add_argument("--budget", type=int, default=150, help="distinct cells queried per run")
    p.add_argument("--repeats", type=int, default=10, help="runs per (target, algorithm)")
    p.add_argument("--seed", type=int, default=0, help="run r uses seed + r")
    p.add_argument("--threads", type=int, default=1, help="torch threads (BANANAS trains its ensemble with torch)")
    p.add_argument("--out", default=None, help="CSV of every run's curve")
    p.add_argument("--figure", default=None, help="PNG of mean regret +- std per target")
    args = p.parse_args()

    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    from robustbench_nas.analysis import figures as figs
    from robustbench_nas.analysis.search import Objective, run_searches, summarize_regret
    from robustbench_nas.analysis.target_names import pretty_target
    from robustbench_nas.analysis.targets import load_store, store_space, targets_table

    ds = load_store(args.store)
    T = targets_table(ds)
    space = store_space(ds)
    targets = args.targets.split(",")
    unknown = [t for t in targets if t not in T.columns]
    if unknown:
        p.error(f"unknown target(s) {unknown}; the store has {list(T.columns)}")
    parts = []
    for t in targets:
        obj = Objective.from_series(T[t], space)
        for alg in args.algorithms.split(","):
            parts.append(run_searches(obj, [alg], budget=args.budget, repeats=args.repeats, seed=args.seed))
            print(final_table(parts[-1], args.budget).to_string(index=False, header=len(parts) == 1), flush=True)
    C = pd.concat(parts, ignore_index=True)
    if args.out:
        C.to_csv(args.out, index=False)
    print(final_table(C, args.budget).to_string(index=False, float_format="{:.4f}".format))
    if args.figure:
        fig = Path(args.figure)
        S = summarize_regret(C)
        S["objective"] = S["objective"].map(pretty_target)
        figs.plot_lines(S, "queries", "mean", ["algorithm"], fig.parent, fig.stem, err="std", nonneg=True, logy=True,
                        panel="objective", title=f"regret (mean +- std over {args.repeats} runs), {space}")  # fmt: skip


if __name__ == "__main__":
    main()
