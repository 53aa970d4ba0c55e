"""Ours vs GRAF on the same held-out splits, per target and training size (issue 26): the docs/proxies.md table.

Usage (from the repository root; the published figures use the seeds declared in docs/proxies.md):

    rbnas import jung2023 ../shared/data/jung2023 --store /tmp/graf/jung.zarr
    python benchmarks/graf_compare.py /tmp/graf/jung.zarr --sizes 20,100 --repeats 10 --seed 1000 \
        --out docs/results/graf_compare.jsonl
    python benchmarks/graf_compare.py --table docs/results/graf_compare.jsonl   # the markdown table

Each (target, size) result is appended to ``--out`` as one JSON line as soon as it is done, so a long run can be
stopped and its finished rows kept. Features: every encoding of the store's space (including GRAF's ``graf_exact``),
params and FLOPs; no proxy table (it covers only some cells) and no measure (they need a trained network).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

#: The targets of the issue: PGD, FGSM, APGD-CE and Square at 1/255 and 8/255, mean corruption, clean accuracy.
TARGETS: tuple[str, ...] = ("pgd@Linf@1/255", "pgd@Linf@8/255", "fgsm@Linf@1/255", "fgsm@Linf@8/255",
                            "aa_apgd-ce@Linf@1/255", "aa_apgd-ce@Linf@8/255", "aa_square@Linf@1/255",
                            "aa_square@Linf@8/255", "corruption_mean", "clean")  # fmt: skip


def _features(store: str, cache: str | None):  # type: ignore[no-untyped-def]
    """The feature table (encodings ``all`` + costs, no measures), cached as a pickle: encoding 6466 cells takes
    a minute or two."""
    import pandas as pd

    from robustbench_nas.analysis.targets import features_table, load_store

    ds = load_store(store)
    if cache and os.path.exists(cache):
        F = pd.read_pickle(cache)
    else:
        F = features_table(ds, encodings="all", measures=False)
        if cache:
            F.to_pickle(cache)
    return ds, F


def run(args: argparse.Namespace) -> None:
    from robustbench_nas.analysis.graf import compare_with_graf
    from robustbench_nas.analysis.targets import targets_table
    from robustbench_nas.analysis.twins import functional_keys

    ds, F = _features(args.store, args.features_cache)
    T = targets_table(ds)
    keys = functional_keys(ds)
    targets = args.targets.split(",") if args.targets else list(TARGETS)
    unknown = [t for t in targets if t not in T.columns]
    if unknown:
        sys.exit(f"unknown target(s) {unknown}; the store has {list(T.columns)}")
    for size in [int(s) for s in args.sizes.split(",")]:
        for t in targets:
            t0 = time.perf_counter()
            res = compare_with_graf(F, T[t], train_size=size, repeats=args.repeats, seed=args.seed, twin_keys=keys,
                                    union=not args.no_union)  # fmt: skip
            res["seconds"] = time.perf_counter() - t0
            o, g, d = res["ours"], res["graf"], res["diff"]
            print(f"{t} @ {size}: ours {o['spearman_mean']:.3f} GRAF {g['spearman_mean']:.3f} "
                  f"diff {d['spearman_mean']:+.3f} +- {d['spearman_se']:.3f}  (twin-free diff "
                  f"{d['spearman_twin_free_mean']:+.3f} +- {d['spearman_twin_free_se']:.3f}; models {o['models']}; "
                  f"{res['seconds']:.0f} s)", flush=True)  # fmt: skip
            if args.out:
                with open(args.out, "a") as fh:
                    fh.write(json.dumps(res, default=float) + "\n")


def table(path: str) -> str:
    """The markdown side-by-side table of a ``--out`` file (last result per target and size)."""
    rows: dict[tuple[str, int], dict] = {}
    for line in Path(path).read_text().splitlines():
        r = json.loads(line)
        rows[(r["target"], r["train_size"])] = r
    out = ["| target | cells | repeats (seeds) | ours | GRAF | ours - GRAF (+- SE) | twin-free: ours | GRAF | diff (+- SE) |",
           "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    order = {t: i for i, t in enumerate(TARGETS)}
    for (t, size), r in sorted(rows.items(), key=lambda kv: (kv[0][1], order.get(kv[0][0], 99))):
        o, g, d = r["ours"], r["graf"], r["diff"]
        seeds = f"{r['seed']}..{r['seed'] + r['repeats'] - 1}"
        out.append(f"| {t} | {size} | {r['repeats']} ({seeds}) | {o['spearman_mean']:.3f} | {g['spearman_mean']:.3f} | "
                   f"{d['spearman_mean']:+.3f} +- {d['spearman_se']:.3f} | {o['spearman_twin_free_mean']:.3f} | "
                   f"{g['spearman_twin_free_mean']:.3f} | {d['spearman_twin_free_mean']:+.3f} +- "
                   f"{d['spearman_twin_free_se']:.3f} |")  # fmt: skip
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store", nargs="?", help="an imported store (e.g. the Jung et al. CIFAR-10 release)")
    p.add_argument("--targets", default=None, help=f"comma list (default: {','.join(TARGETS)})")
    p.add_argument("--sizes", default="20,100,1000", help="training cells, comma list")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--seed", type=int, default=1000, help="first split seed (declared in docs/proxies.md)")
    p.add_argument("--features-cache", default=None, help="pickle of the feature table (made if absent)")
    p.add_argument("--no-union", action="store_true", help="ours never sees GRAF's features")
    p.add_argument("--out", default=None, help="append one JSON line per (target, size)")
    p.add_argument("--table", default=None, metavar="JSONL", help="print the markdown table of a --out file")
    args = p.parse_args()
    if args.table:
        print(table(args.table))
        return
    if not args.store:
        p.error("STORE is required unless --table")
    run(args)


if __name__ == "__main__":
    main()
