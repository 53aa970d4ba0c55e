"""Ours vs GRAF on the same held-out splits, per target and training size (issue 26): the docs/proxies.md table.

Usage (from the repository root; the published figures use the seeds declared in docs/proxies.md):

    rbnas import jung2023 ../shared/data/jung2023 --store /tmp/graf/jung.zarr
    python benchmarks/graf_compare.py /tmp/graf/jung.zarr --sizes 20,100 --repeats 10 --seed 1000 \
        --out docs/results/graf_compare.jsonl
    python benchmarks/graf_compare.py --table docs/results/graf_compare.jsonl   # the markdown table

Learning curve: ``--sizes 20,50,100,200,500,1000``, drawn with ``--curve-figure TARGET PNG --curve-from FILES``. Ablation (what each feature family adds to ours, on the same
splits; GRAF unchanged): ``--drop-family path`` (or ``all``: every family in turn, one JSON line each, tagged
``"ablation": "-<family>"``, after the full comparison on the same splits), then ``--ablation-table FILE``.
Families: each encoding of the store's space (NB201: onehot, opcount, path, graf, pathstats, propagation,
graf_exact) and ``costs`` (params, FLOPs).

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


def families(F, space: str) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    """Feature family -> its columns in ``F``: each encoding of ``space`` and ``costs`` (params, FLOPs)."""
    from robustbench_nas.search_spaces import get_search_space

    sp = get_search_space(space)
    fam = {e: [c for c in sp.encoding_columns(e) if c in F.columns] for e in sp.list_encodings()}
    fam["costs"] = [c for c in ("params", "flops") if c in F.columns]
    return {k: v for k, v in fam.items() if v}


def run(args: argparse.Namespace) -> None:
    from robustbench_nas.analysis.graf import compare_with_graf
    from robustbench_nas.analysis.targets import store_space, targets_table
    from robustbench_nas.analysis.twins import functional_keys

    ds, F = _features(args.store, args.features_cache)
    T = targets_table(ds)
    keys = functional_keys(ds)
    targets = args.targets.split(",") if args.targets else list(TARGETS)
    unknown = [t for t in targets if t not in T.columns]
    if unknown:
        sys.exit(f"unknown target(s) {unknown}; the store has {list(T.columns)}")
    fam = families(F, store_space(ds))
    drops = list(fam) if args.drop_family == "all" else args.drop_family.split(",") if args.drop_family else []
    unknown_fam = [f for f in drops if f not in fam]
    if unknown_fam:
        sys.exit(f"unknown feature family {unknown_fam}; this store has {list(fam)}")
    # an ablation also runs the full comparison first, so that its file holds the baseline of the same splits
    runs = [(None, [])] + [(f"-{f}", fam[f]) for f in drops]
    for size, t, (tag, exclude) in [(int(s), t, r) for s in args.sizes.split(",") for t in targets for r in runs]:
        t0 = time.perf_counter()
        res = compare_with_graf(F, T[t], train_size=size, repeats=args.repeats, seed=args.seed, twin_keys=keys,
                                union=not args.no_union, ours_exclude=exclude)  # fmt: skip
        res["seconds"] = time.perf_counter() - t0
        if tag:
            res["ablation"] = tag
        o, g, d = res["ours"], res["graf"], res["diff"]
        print(f"{t} @ {size}{' ' + tag if tag else ''}: ours {o['spearman_mean']:.3f} GRAF {g['spearman_mean']:.3f} "
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
        if r.get("ablation") or r.get("ours_excluded"):
            continue  # ablation rows: --ablation-table
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


def curve_rows(paths: list[str], target: str) -> list[dict]:
    """Per training size, the last full (not ablated) comparison of ``target`` in the ``--out`` files ``paths`` (later
    files win): ``size``, ``repeats``, ours / GRAF mean Spearman, the paired difference and its SE."""
    rows: dict[int, dict] = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            r = json.loads(line)
            if r["target"] != target or r.get("ablation") or r.get("ours_excluded"):
                continue
            rows[r["train_size"]] = {"size": r["train_size"], "repeats": r["repeats"], "seed": r["seed"],
                                     "ours": r["ours"]["spearman_mean"], "graf": r["graf"]["spearman_mean"],
                                     "diff": r["diff"]["spearman_mean"], "diff_se": r["diff"]["spearman_se"]}  # fmt: skip
    return [rows[k] for k in sorted(rows)]


def curve_figure(paths: list[str], target: str, out_png: str) -> str:
    """The learning curve of ``target``: ours and GRAF's held-out Spearman against the training cells (log axis),
    and below it the paired difference +- its SE; the data beside the PNG as CSV."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    rows = curve_rows(paths, target)
    if not rows:
        sys.exit(f"no full comparison of {target!r} in {paths}")
    df = pd.DataFrame(rows)
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(6.4, 5.6), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    ax.plot(df["size"], df["ours"], "o-", color="#1f77b4", label="ours (rbnas predict, model auto)")
    ax.plot(df["size"], df["graf"], "s--", color="#d62728", label="GRAF (random forest on its 191 features + costs)")
    for _, r in df.iterrows():
        ax.annotate(f"{int(r['repeats'])}x", (r["size"], r["ours"]), textcoords="offset points", xytext=(4, -12),
                    fontsize=7, color="0.4")
    ax.set_ylabel("held-out Spearman (mean over repeats)")
    ax.set_title(f"{target}: learning curve, ours vs GRAF on the same splits\n"
                 f"CIFAR-10 release, every other cell held out; split seeds from {int(df['seed'].min())}", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    bx.errorbar(df["size"], df["diff"], yerr=df["diff_se"], fmt="o-", color="k", capsize=3, label="ours - GRAF +- SE")
    bx.axhline(0, color="0.5", lw=0.8)
    bx.set_xscale("log")
    bx.set_xlim(df["size"].min() / 1.3, df["size"].max() * 1.3)  # room for the last point's repeats label
    bx.set_xticks(df["size"], [str(v) for v in df["size"]])
    bx.set_xlabel("random training cells (log scale; 'Nx': repeats)")
    bx.set_ylabel("ours - GRAF")
    bx.legend(fontsize=8, loc="upper right")
    bx.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    df.to_csv(Path(out_png).with_suffix(".csv"), index=False)
    return out_png


def ablation_table(path: str) -> str:
    """Markdown: per (target, cells) the full ours and ours without each family, from the same ``--out`` file (same
    seed and repeats, so the same splits); ``change`` = ablated - full (negative: the family helps) ± its SE, paired
    over the repeats where both scores are defined (:func:`~robustbench_nas.analysis.graf.paired_difference`); the
    two means are over those repeats too."""
    import numpy as np

    from robustbench_nas.analysis.graf import paired_difference

    full: dict[tuple[str, int, int, int], np.ndarray] = {}
    abl: dict[tuple[str, int, int, int], dict[str, np.ndarray]] = {}
    for line in Path(path).read_text().splitlines():
        r = json.loads(line)
        key = (r["target"], r["train_size"], r["seed"], r["repeats"])
        scores = np.array([x["spearman"] for x in r["ours"]["per_repeat"]], dtype=float)  # None (undefined): NaN
        if r.get("ablation"):
            abl.setdefault(key, {})[r["ablation"]] = scores
        else:
            full[key] = scores
    out = ["| target | cells | repeats | ours (all features) | without | ours without it | change (+- SE) |",
           "|---|---|---|---|---|---|---|"]
    for key, fams in abl.items():
        base = full.get(key, np.full(key[3], np.nan))
        for fam, scores in sorted(fams.items()):
            both = np.isfinite(scores) & np.isfinite(base)
            change, se = paired_difference(scores, base)
            mean_full, mean_abl = (float(v[both].mean()) if both.any() else float("nan") for v in (base, scores))
            out.append(f"| {key[0]} | {key[1]} | {key[3]} | {mean_full:.3f} | {fam[1:]} | {mean_abl:.3f} | "
                       f"{change:+.3f} +- {se:.3f} |")
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
    p.add_argument("--drop-family", default=None, help="ablation: comma list of feature families ours does not "
                   "see, one run each, or 'all'")
    p.add_argument("--out", default=None, help="append one JSON line per (target, size)")
    p.add_argument("--table", default=None, metavar="JSONL", help="print the markdown table of a --out file")
    p.add_argument("--ablation-table", default=None, metavar="JSONL", help="print the ablation table of a --out file")
    p.add_argument("--curve-figure", nargs=2, default=None, metavar=("TARGET", "PNG"),
                   help="draw TARGET's learning curve from the --curve-from files (no run)")
    p.add_argument("--curve-from", default="docs/results/graf_compare.jsonl",
                   help="comma list of --out files for --curve-figure (later files win per size)")
    args = p.parse_args()
    if args.curve_figure:
        print(curve_figure(args.curve_from.split(","), *args.curve_figure))
        return
    if args.ablation_table:
        print(ablation_table(args.ablation_table))
        return
    if args.table:
        print(table(args.table))
        return
    if not args.store:
        p.error("STORE is required unless --table")
    run(args)


if __name__ == "__main__":
    main()
