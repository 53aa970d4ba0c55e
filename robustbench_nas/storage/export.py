"""Exporting a store's scalar results as one tidy pandas table (long: one row per value; wide: per (arch, seed)).

Confusion matrices are left out (not scalars); per-arch arrays are repeated at every seed so both layouts have one
key, ``(arch, seed)``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .schema import eps_label
from .xarray_backend import mask_not_done, open_dataset

#: the per-evaluation arrays exported as rows:
_LONG_SOURCES: tuple[tuple[str, str, str | None, str | None, tuple[str, ...]], ...] = (
    # (group, array prefix, name dim, level dim, metrics)
    ("clean", "clean", None, None, ("accuracy", "confidence", "confidence_true")),
    ("adversarial", "adv", "attack", "eps", ("accuracy", "confidence", "confidence_true")),
    ("corruption", "corruption", "corruption", "severity", ("accuracy", "confidence", "confidence_true")),
)


def to_dataframe(ds_or_path: Any, kind: str = "long", *, done_only: bool = True) -> Any:
    """One tidy pandas table of a store's scalar results (confusion matrices are left out).

    Arguments:
        ds_or_path: a store path or the Dataset from :func:`open_dataset`.
        kind: ``"long"``: one row per value, columns ``arch, arch_str, <arch_coords...>, seed, group, name, level,
            level_label, metric, value`` (group: info / train / proxy / clean / adversarial / corruption /
            measure; name: attack, corruption, proxy or measure name; level: eps in [0, 1], severity or epoch).
            ``"wide"``: one row per (arch, seed), one column per (group, name, level_label, metric) joined by ``:``.
        done_only: keep only values whose stage is marked done.
    """
    import pandas as pd

    ds = open_dataset(ds_or_path) if isinstance(ds_or_path, (str, os.PathLike)) else ds_or_path
    if kind not in ("long", "wide"):
        raise ValueError(f"kind must be 'long' or 'wide', got {kind!r}")
    if done_only:
        ds = mask_not_done(ds)
    ds = ds.load()
    spec = ds.attrs.get("spec") if isinstance(ds.attrs.get("spec"), dict) else {}
    named = [c for c in (spec.get("arch_coords") or {}) if c in ds.coords]
    extra = named + sorted(str(c) for c in ds.coords
                           if c not in ("arch", "arch_str", *named) and ds[c].dims == ("arch",))
    base = pd.DataFrame({"arch": ds["arch"].values, "arch_str": [str(v) for v in ds["arch_str"].values],
                         **{c: ds[c].values for c in extra}})
    frames = []

    def add(var: Any, group: str, name: str | None, name_dim: str | None, level_dim: str | None, metric: str,
            labels: dict[float, str] | None = None) -> None:
        if "seed" not in var.dims:
            var = var.expand_dims(seed=ds["seed"].values)
        df = var.to_dataframe(name="value").reset_index()
        df = df[["arch", "seed"] + [d for d in (name_dim, level_dim) if d] + ["value"]]
        df["group"] = group
        df["name"] = [str(v) for v in df.pop(name_dim)] if name_dim else (name or group)
        if level_dim:
            lv = df.pop(level_dim)
            df["level"] = lv.astype(float)
            df["level_label"] = lv.map(labels).astype(str) if labels else lv.astype(str)
        else:
            df["level"] = np.nan
            df["level_label"] = ""
        df["metric"] = metric
        frames.append(df)

    eps_labels = {float(e): eps_label(e) for e in ds["eps"].values} if "eps" in ds.dims else {}
    for name in ("params", "flops", "flops_plain"):
        if name in ds:
            var = ds[name]
            add(var.where(var >= 0) if var.dtype.kind in "iu" else var, "info", name, None, None, "value")
    for v in ds.data_vars:
        if str(v).startswith("history_"):
            add(ds[v], "train", str(v)[len("history_"):], None, "epoch", "value")
    if "proxy_value" in ds:
        add(ds["proxy_value"], "proxy", None, "proxy", None, "value")
    for group, prefix, name_dim, level_dim, metrics in _LONG_SOURCES:
        for m in metrics:
            if f"{prefix}_{m}" in ds:
                var = ds[f"{prefix}_{m}"]
                if group == "adversarial" and "attack_grid" in ds.coords:
                    var = var.where(ds["attack_grid"])
                add(var, group, None, name_dim, level_dim, m, eps_labels if level_dim == "eps" else None)
    if "measure_value" in ds:
        add(ds["measure_value"], "measure", None, "measure", None, "value")
    cols = ["arch", "arch_str", *extra, "seed", "group", "name", "level", "level_label", "metric", "value"]
    if not frames:
        return pd.DataFrame(columns=cols)
    long = pd.concat(frames, ignore_index=True)
    long = long[long["value"].notna()]
    long = long.merge(base, on="arch", how="left")[cols].reset_index(drop=True)
    if kind == "long":
        return long
    key = long["group"] + ":" + long["name"] + ":" + long["level_label"] + ":" + long["metric"]
    wide = long.assign(column=key).pivot_table(index=["arch", "arch_str", *extra, "seed"], columns="column",
                                               values="value", aggfunc="first", sort=False)
    wide.columns.name = None
    return wide.reset_index()



__all__ = ["to_dataframe"]
