"""Ranking-table speed: bootstrap intervals of Spearman's rho, ours (vectorised) vs a per-resample scipy loop.

Work measured: the 95 % percentile bootstrap interval of Spearman's rho between two columns over ``n`` cells (6466,
the number of unique NB201 cells, by default) with ``B`` resamples: one cell of the ranking table that
``rbnas analyze`` fills for every (feature, target, subset).

* **baseline**: ``scipy.stats.spearmanr`` on every resample (one sort-based scipy call each), then percentiles;
* **ours**: :func:`robustbench_nas.analysis.stats.correlation_ci`: ranks of each resample from counts of the
  original values (:func:`~robustbench_nas.analysis.stats.spearman_resamples`, O(n) per resample, vectorised).

Both use the same resample indices (same seeded generator, same batches), so ``results_agree`` requires every
resample's rho and the interval to be equal (to 1e-9).
The data are real: params of every unique cell (computed exactly) against the published PGD accuracy at 1/255
from ``../shared/data/jung2023`` when present, else a seeded synthetic pair.

Run: ``python -m benchmarks.bench_analysis [--quick]``.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from scipy import stats as st

from benchmarks.common import SHARED_DATA, Timer, make_result, save_result


def _data(n: int | None) -> tuple[np.ndarray, np.ndarray, str]:
    root = SHARED_DATA / "jung2023"
    if (root / "meta.json").is_file():
        from robustbench_nas.analysis.encodings import arch_costs
        from robustbench_nas.analysis.jung2023 import read_release
        from robustbench_nas.analysis.targets import targets_table

        ds, _ = read_release(root, measures=["accuracy"], attacks=["pgd@Linf"], corruptions=[])
        T = targets_table(ds)
        x = arch_costs(list(T.index))["params"].to_numpy(np.float64)
        y = T["pgd@Linf@1/255"].to_numpy(np.float64)
        src = "params vs published PGD@1/255 accuracy (Jung 2023, CIFAR-10)"
    else:
        rng = np.random.default_rng(0)
        x = rng.normal(size=6466)
        y = x + rng.normal(size=6466)
        src = "synthetic (shared data absent)"
    if n is not None:
        x, y = x[:n], y[:n]
    return x, y, src


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Time both interval computations; return one result record."""
    from robustbench_nas.analysis.stats import bootstrap_indices, correlation_ci, spearman_resamples

    B = 200 if quick else 1000
    x, y, src = _data(2000 if quick else None)

    def baseline() -> tuple[float, float, np.ndarray]:
        rng = np.random.default_rng(0)  # the generator correlation_ci(seed=0) uses, drawn in the same batches
        boot = np.array([st.spearmanr(x[i], y[i]).statistic
                         for idx in bootstrap_indices(x.size, B, rng) for i in idx])  # fmt: skip
        lo, hi = np.nanpercentile(boot, [2.5, 97.5])
        return float(lo), float(hi), boot

    with Timer() as t_ours:
        ours = correlation_ci(x, y, "spearman", n_resamples=B, confidence=0.95, seed=0)
    with Timer() as t_base:
        lo, hi, boot = baseline()
    idx_batches = bootstrap_indices(x.size, B, np.random.default_rng(0))
    ours_boot = np.concatenate([spearman_resamples(x, y, i) for i in idx_batches])
    agree = bool(abs(ours.low - lo) < 1e-9 and abs(ours.high - hi) < 1e-9 and np.allclose(ours_boot, boot, atol=1e-9))
    return [
        make_result(
            "analysis_bootstrap_spearman",
            t_ours.cpu_seconds,
            t_base.cpu_seconds,
            agree,
            cells=int(x.size),
            resamples=B,
            data=src,
            ours_interval=[ours.low, ours.high],
            baseline_interval=[lo, hi],
            wall_ours_s=t_ours.seconds,
            wall_baseline_s=t_base.seconds,
            timing="process CPU seconds (the machine is shared; wall times as details)",
            quick=quick,
        )
    ] + [r for r in [_ranking_record(quick), _analyze_record(quick)] if r is not None]


def _ranking_record(quick: bool) -> dict[str, Any] | None:
    """The whole ranking table of ``rbnas analyze`` on the release (every target x params/flops x 2 subsets):
    ours (:func:`rank_features`, all pairs at once) vs the per-pair loop of :func:`correlation_ci` that the
    ranking used before, Spearman with 1000 resamples only in the baseline (ours also computes Kendall and top-k:
    the ratio understates the speed-up). ``results_agree``: every Spearman value and interval equal to 1e-9."""
    root = SHARED_DATA / "jung2023"
    if not (root / "meta.json").is_file():
        return None
    import pandas as pd

    from robustbench_nas.analysis.jung2023 import read_release
    from robustbench_nas.analysis.ranking import RankingConfig, rank_features, ranking_subsets
    from robustbench_nas.analysis.stats import correlation_ci
    from robustbench_nas.analysis.targets import features_table, targets_table

    ds, _ = read_release(root, measures=["accuracy"])
    T, F = targets_table(ds), features_table(ds)
    if quick:
        T = T[["clean", "pgd@Linf@1/255", "adv_mean"]].iloc[:2000]
        F = F.iloc[:2000]
    cfg = RankingConfig(n_boot=1000, clean_threshold=0.8)
    with Timer() as t_ours:
        R = rank_features(F, T, cfg)
    rows = []
    with Timer() as t_base:
        for sname, mask in ranking_subsets(T, cfg.clean_threshold):
            for t in T.columns:
                for f in F.columns:
                    c = correlation_ci(F[f].to_numpy()[mask], T[t].to_numpy()[mask], "spearman", n_resamples=1000,
                                       seed=cfg.seed)  # fmt: skip
                    rows.append({"feature": f, "target": t, "subset": sname, "b": c.value, "blo": c.low, "bhi": c.high})
    m = R.merge(pd.DataFrame(rows), on=["feature", "target", "subset"])
    agree = bool(len(m) == len(R) and np.allclose(m[["spearman", "spearman_lo", "spearman_hi"]].to_numpy(),
                                                   m[["b", "blo", "bhi"]].to_numpy(), atol=1e-9, equal_nan=True))
    return make_result("analysis_ranking_table", t_ours.cpu_seconds, t_base.cpu_seconds, agree, same_work=False,
                       cells=len(T), targets=T.shape[1], features=F.shape[1], pairs=len(R), resamples=1000,
                       wall_ours_s=t_ours.seconds, wall_baseline_s=t_base.seconds, quick=quick,
                       note="ours also does Kendall + top-k; baseline Spearman only")  # fmt: skip


def _analyze_record(quick: bool) -> dict[str, Any] | None:
    """``rbnas analyze`` end to end on the 6466-cell release (every section, the command's defaults) vs the same
    analysis with the budget it had before issue 17: random forests of 300 trees (not 100) and a Kendall bootstrap
    on every pair (not Fisher z above 200 cells). ``same_work: false`` (smaller forests); ``results_agree``: the
    ranking's Spearman values and intervals are identical (they do not depend on the budget)."""
    root = SHARED_DATA / "jung2023"
    if not (root / "meta.json").is_file():
        return None
    import tempfile

    import pandas as pd

    from robustbench_nas.analysis.jung2023 import read_release
    from robustbench_nas.analysis.prediction import PredictionConfig
    from robustbench_nas.analysis.ranking import RankingConfig
    from robustbench_nas.analysis.report import AnalysisConfig, run_analysis

    ds, _ = read_release(root, measures=["accuracy"])
    secs = ("ranking", "architecture") if quick else ("ranking", "prediction", "architecture", "search")
    targets = ["clean", "pgd@Linf@1/255", "adv_mean"] if quick else None
    ours_cfg = AnalysisConfig(sections=secs, rank_targets=targets)
    old_cfg = AnalysisConfig(sections=secs, rank_targets=targets,
                             ranking=RankingConfig(kendall_boot_max_n=10**9),
                             prediction=PredictionConfig(models=("rf",), repeats=2, max_test=2000))  # fmt: skip
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        with Timer() as t_ours:
            s_ours = run_analysis(ds, a, ours_cfg)
        with Timer() as t_base:
            run_analysis(ds, b, old_cfg)
        ra, rb = pd.read_csv(f"{a}/ranking.csv"), pd.read_csv(f"{b}/ranking.csv")
        cols = ["spearman", "spearman_lo", "spearman_hi"]
        agree = bool(ra[["feature", "target", "subset"]].equals(rb[["feature", "target", "subset"]])
                     and np.allclose(ra[cols], rb[cols], atol=1e-12, equal_nan=True))  # fmt: skip
    return make_result("analysis_analyze_jung2023", t_ours.cpu_seconds, t_base.cpu_seconds, agree, same_work=False,
                       cells=int(s_ours["cells"]), sections=list(secs), seconds_by_section=s_ours["seconds"],
                       wall_ours_s=t_ours.seconds, wall_baseline_s=t_base.seconds, quick=quick,
                       note="analyze defaults vs the pre-issue-17 budget (300 trees, Kendall bootstrap everywhere)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    for r in run(quick=args.quick):
        print(save_result(r), f"ours {r['ours_s']:.2f}s baseline {r['baseline_s']:.2f}s ratio {r['ratio']:.1f}x "
              f"agree={r['results_agree']}")  # fmt: skip


if __name__ == "__main__":
    main()
