"""How much of a target is the training run's own noise: a test-retest estimate from functional twins.

A search space's isomorphism rule can be finer than its functions: NAS-Bench-201's keeps apart cells that compute
the same function (:func:`robustbench_nas.search_spaces.nb201.functional_key`; 6466 NB201 cells, 4660
functions). Every published NB201 dataset trained and evaluated each of the 6466 separately, so the members of a
twin group are *repeated measurements of one architecture* with different initialisations and batch orders: their
spread is the noise of one training run (+ one evaluation), free of any architecture effect.

With ``y = g(arch) + e`` (``e`` the run's noise, independent of the architecture, one variance everywhere):

* ``noise_var``: the pooled within-group variance ``sum_g sum_i (y_gi - mean_g)^2 / sum_g (n_g - 1)`` (unbiased
  for ``var(e)``);
* ``noise_fraction = noise_var / var(y)`` over all cells (bootstrap interval over groups);
* ``ceiling = sqrt(1 - noise_fraction)``: the largest Pearson correlation any function of the architecture can
  reach with ``y`` (``corr(f, y) <= corr(g, y)``); for near-normal targets Spearman's ceiling is about the same;
* ``twin_spearman``: Spearman between two members of each group, over groups (test-retest rank correlation).

Example:
    >>> import pandas as pd
    >>> T = pd.DataFrame({"acc": [0.1, 0.3, 0.5, 0.5, 0.9, 0.2]})
    >>> groups = twin_groups(["a", "a", "b", "b", "c", "d"])
    >>> [g.tolist() for g in groups]
    [[0, 1], [2, 3]]
    >>> r = target_reliability(T, groups, n_boot=0, min_groups=1).iloc[0]
    >>> round(float(r["noise_var"]), 4), int(r["twin_groups"]), int(r["twin_cells"])  # (0.1^2 + 0.1^2 + 0) / (1 + 1)
    (0.01, 2, 4)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from .sections import SectionContext, register_section

#: Fewer twin groups than this with a finite target: no estimate (NaN), the interval would be meaningless.
MIN_GROUPS = 10


def twin_groups(keys: Sequence[object]) -> list[np.ndarray]:
    """Positions of the entries sharing a key, one array per key held by two or more entries (sorted, in order of
    first appearance); ``None`` / NaN keys belong to no group."""
    first: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        if k is None or (isinstance(k, float) and np.isnan(k)):
            continue
        first.setdefault(str(k), []).append(i)
    return [np.asarray(v, dtype=np.int64) for v in first.values() if len(v) > 1]


def functional_keys(ds: xr.Dataset) -> pd.Series:
    """Each cell's :meth:`~robustbench_nas.search_spaces.base.SearchSpace.functional_key` under the store's search
    space, indexed by ``arch`` like :func:`.targets.targets_table` (empty without ``arch_str``)."""
    from ..search_spaces import get_search_space
    from .targets import _arch_index, _arch_strs, _has_arch_str, store_space

    if not _has_arch_str(ds):
        return pd.Series(dtype=object, name="functional_key")
    space = get_search_space(store_space(ds))
    return pd.Series([space.functional_key(a) for a in _arch_strs(ds)], index=_arch_index(ds),
                     name="functional_key", dtype=object)


def store_twin_groups(ds: xr.Dataset, index: pd.Index) -> list[np.ndarray]:
    """:func:`twin_groups` of the store's cells listed in ``index`` (``arch`` values), as positions into ``index``."""
    return twin_groups(list(functional_keys(ds).reindex(index)))


def store_reliability(ds: xr.Dataset, targets: pd.DataFrame | None = None, **kwargs: Any) -> pd.DataFrame:
    """:func:`target_reliability` of a store's targets (default: :func:`.targets.targets_table`) over its
    functional twins; ``kwargs`` go to :func:`target_reliability`."""
    from .targets import targets_table

    T = targets_table(ds) if targets is None else targets
    return target_reliability(T, store_twin_groups(ds, T.index), **kwargs)


def _group_sums(y: np.ndarray, groups: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Per usable group (two or more finite values): squared deviations from its mean, degrees of freedom, and
    its finite positions."""
    ss, dof, kept = [], [], []
    for g in groups:
        g = g[np.isfinite(y[g])]
        if len(g) > 1:
            v = y[g]
            ss.append(float(((v - v.mean()) ** 2).sum()))
            dof.append(len(g) - 1)
            kept.append(g)
    return np.asarray(ss, dtype=np.float64), np.asarray(dof, dtype=np.float64), kept


def target_reliability(targets: pd.DataFrame, groups: Sequence[np.ndarray], *, n_boot: int = 1000,
                       seed: int = 0, min_groups: int = MIN_GROUPS) -> pd.DataFrame:  # fmt: skip
    """One row per target column: twin groups / cells used, ``noise_sd``, ``total_sd``, ``noise_var``,
    ``noise_fraction`` with a 95 % bootstrap interval over groups (``n_boot`` resamples; 0: none),
    ``ceiling`` and ``twin_spearman`` (see the module docstring). ``groups``: positions into ``targets``' rows.
    Targets with fewer than ``min_groups`` usable groups get NaN estimates."""
    from .stats import spearman

    rng = np.random.default_rng(seed)
    rows = []
    for name in targets.columns:
        y = targets[name].to_numpy(np.float64)
        total = float(np.nanvar(y, ddof=1)) if np.isfinite(y).sum() > 1 else float("nan")
        ss, dof, kept = _group_sums(y, groups)
        row = {"target": name, "twin_groups": len(kept), "twin_cells": int(sum(len(g) for g in kept)),
               "total_sd": float(np.sqrt(total)), "noise_var": float("nan"), "noise_sd": float("nan"),
               "noise_fraction": float("nan"), "noise_fraction_lo": float("nan"), "noise_fraction_hi": float("nan"),
               "ceiling": float("nan"), "twin_spearman": float("nan")}  # fmt: skip
        if len(kept) >= min_groups and total > 0:
            noise = float(ss.sum() / dof.sum())
            frac = noise / total
            pairs = np.array([g[:2] for g in kept])
            row.update(noise_var=noise, noise_sd=float(np.sqrt(noise)), noise_fraction=frac,
                       ceiling=float(np.sqrt(max(0.0, 1.0 - frac))),
                       twin_spearman=spearman(y[pairs[:, 0]], y[pairs[:, 1]]))  # fmt: skip
            if n_boot:  # resample whole groups: the groups are the independent units
                pick = rng.integers(len(kept), size=(n_boot, len(kept)))
                boot = ss[pick].sum(1) / dof[pick].sum(1) / total
                lo, hi = np.quantile(boot, [0.025, 0.975])
                row["noise_fraction_lo"], row["noise_fraction_hi"] = float(lo), float(hi)
        rows.append(row)
    return pd.DataFrame(rows)


#: Targets shown in the report's table (those present), in this order; the CSV has every target.
REPORT_TARGETS = ("clean", "fgsm@Linf@1/255", "fgsm@Linf@8/255", "pgd@Linf@0.5/255", "pgd@Linf@1/255",
                  "pgd@Linf@2/255", "aa_apgd-ce@Linf@1/255", "aa_square@Linf@1/255", "adv_mean",
                  "corruption_mean")  # fmt: skip


def plot_twins(targets: pd.DataFrame, groups: Sequence[np.ndarray], names: Sequence[str], out: Path,
               name: str = "twin_scatter") -> Path:
    """One panel per target: the first vs the second member of each twin group (a dot per group) on the
    diagonal's scale; the spread around the diagonal is the noise of one training run."""
    from .figures import _save, plt

    names = [n for n in names if n in targets]
    pairs = np.array([g[:2] for g in groups], dtype=np.int64).reshape(-1, 2)
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.3), squeeze=False)
    data = {}
    for ax, n in zip(axes[0], names):
        y = targets[n].to_numpy(np.float64)
        a, b = y[pairs[:, 0]], y[pairs[:, 1]]
        data[f"{n}:a"], data[f"{n}:b"] = a, b
        ax.scatter(a, b, s=4, alpha=0.5)
        lo, hi = np.nanmin([a, b]), np.nanmax([a, b])
        ax.plot([lo, hi], [lo, hi], lw=0.8, color="k")
        ax.set_title(n, fontsize=9)
        ax.set_xlabel("twin 1")
    axes[0][0].set_ylabel("twin 2")
    return _save(fig, pd.DataFrame(data), Path(out), name)


@register_section("target_reliability", order=110)
def target_reliability_section(ctx: SectionContext) -> None:
    """The report section: each target's test-retest noise from the store's functional twins (skipped when the
    store has fewer than :data:`MIN_GROUPS` twin groups, e.g. a pipeline run on a few cells)."""
    from .report_html import figure, table_data

    groups = store_twin_groups(ctx.ds, ctx.targets.index)
    if len(groups) < MIN_GROUPS:
        return
    R = target_reliability(ctx.targets, groups, seed=ctx.config.seed)
    R.to_csv(ctx.out / "target_reliability.csv", index=False)
    ctx.report.file("target_reliability.csv", "each target's run-to-run noise from functional twins")
    shown = [t for t in REPORT_TARGETS if t in set(R["target"])]
    fig = plot_twins(ctx.targets, groups, [t for t in ("clean", "pgd@Linf@1/255", "aa_square@Linf@1/255")
                                           if t in ctx.targets], ctx.fig_dir)  # fmt: skip
    cols = ["target", "twin_groups", "noise_sd", "total_sd", "noise_fraction", "noise_fraction_lo",
            "noise_fraction_hi", "ceiling", "twin_spearman"]  # fmt: skip
    tab = R.set_index("target").loc[shown].reset_index()[cols].round(4)
    ctx.summary["target_reliability"] = {r["target"]: {"noise_fraction": float(r["noise_fraction"]),
                                                       "ceiling": float(r["ceiling"]),
                                                       "twin_spearman": float(r["twin_spearman"])}
                                         for _, r in tab.iterrows()}  # fmt: skip
    pgd = R.set_index("target")["noise_fraction"].get("pgd@Linf@1/255")
    if pgd is not None and np.isfinite(pgd):
        ctx.report.finding(f"Run-to-run noise is {100 * pgd:.1f} % of the variance of PGD@1/255 accuracy "
                           f"({len(groups)} groups of functional twins): no predictor of it from the architecture "
                           f"can pass a correlation of about {np.sqrt(1 - pgd):.2f}.")  # fmt: skip
    ctx.report.render_section("target_reliability", "How noisy are the targets? (functional twins)",
                              groups=len(groups), cells=sum(len(g) for g in groups), table=table_data(tab),
                              figure=figure(fig, "first vs second twin of each group: the spread around the "
                                                 "diagonal is one run's noise"))  # fmt: skip


__all__ = ["MIN_GROUPS", "REPORT_TARGETS", "functional_keys", "plot_twins", "store_reliability", "store_twin_groups",
           "target_reliability", "target_reliability_section", "twin_groups"]
