"""Targets and features as tidy tables (one row per cell), from a store's :class:`xarray.Dataset`.

Targets (columns of :func:`targets_table`), all accuracies in [0, 1]:

- ``clean``: clean test accuracy;
- ``<attack>@<eps*255>/255`` (e.g. ``pgd@Linf@1/255``): accuracy under each attack at each eps of its grid;
- ``adv_mean``: mean over every (attack, eps) present for the cell (Jung et al.'s "mean adversarial accuracy");
- ``corruption_mean``: mean over corruptions and severities; ``corruption:<name>``: mean over severities.

Features (:func:`features_table`): every proxy (``proxy:<name>``) and measure (``measure:<name>``) in the store,
``params`` / ``flops`` (both in millions, the NB201 unit) when stored, and zero-cost cell encodings
(:mod:`.encodings`) on request. Measures need a trained network: they are not zero-cost (``measures=False`` leaves
them out).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from .encodings import arch_costs, encode

#: Our variable name -> names a store may use for it (the first found is taken).
VARIABLES: dict[str, tuple[str, ...]] = {
    "clean": ("clean_accuracy",),
    "adv": ("adv_accuracy", "adversarial_accuracy"),
    "corruption": ("corruption_accuracy", "corr_accuracy"),
    "proxies": ("proxy_value", "proxies"),
    "measures": ("measure_value", "measures"),
    "params": ("params", "num_params"),
    "flops": ("flops", "flops_nb201"),
}


def find_var(ds: xr.Dataset, what: str) -> xr.DataArray | None:
    """The variable of ``ds`` holding ``what`` (a key of :data:`VARIABLES`), or ``None``."""
    for name in VARIABLES[what]:
        if name in ds.data_vars:
            return ds[name]
    return None


def _eps_label(eps: float) -> str:
    return f"{round(eps * 255, 4):g}/255"


def target_name(attack: str, eps: float) -> str:
    """Column name of an adversarial target, eps in [0, 1]: ``target_name("pgd@Linf", 1/255) == "pgd@Linf@1/255"``."""
    return f"{attack}@{_eps_label(eps)}"


def store_space(ds: xr.Dataset) -> str:
    """The search space a store's dataset holds (its spec's ``search_space``; ``nb201`` for stores without one)."""
    spec = ds.attrs.get("spec")
    if isinstance(spec, str):  # some readers leave JSON attributes as text
        import json

        spec = json.loads(spec)
    name = (spec or {}).get("search_space") or ds.attrs.get("search_space") or "nb201"
    from ..search_spaces import canonical_name

    return canonical_name(str(name))


def _arch_index(ds: xr.Dataset) -> pd.Index:
    return pd.Index(np.asarray(ds["arch"].values).astype(np.int64), name="arch")


def _reduce_extra(da: xr.DataArray, keep: tuple[str, ...]) -> xr.DataArray:
    """Average dimensions we do not index targets by (e.g. ``seed``), skipping NaN."""
    extra = [d for d in da.dims if d not in keep]
    return da.mean(extra, skipna=True) if extra else da


#: The store's clean accuracy of exactly the images a robust target was measured on (attacks and corruptions use
#: subsets of the evaluation split, so the whole split's ``clean`` is not their baseline): kind -> variable.
SAME_IMAGES_CLEAN: dict[str, str] = {"adversarial": "adv_clean_accuracy", "corruption": "corruption_clean_accuracy"}


def clean_on_same_images(ds: xr.Dataset) -> pd.DataFrame:
    """Per cell, the clean accuracy (fraction in [0, 1], mean over seeds) of the images the attacks
    (column ``adversarial``) and the corruptions (``corruption``) used; a column only where the store has a value
    for some cell (a pipeline store has both, an imported release neither). Indexed like :func:`targets_table`."""
    idx = _arch_index(ds)
    cols = {kind: _reduce_extra(ds[var], ("arch",)).transpose("arch").values.astype(np.float64)
            for kind, var in SAME_IMAGES_CLEAN.items() if var in ds.variables}  # fmt: skip
    return pd.DataFrame({k: v for k, v in cols.items() if np.isfinite(v).any()}, index=idx)


def targets_table(ds: xr.Dataset) -> pd.DataFrame:
    """One row per cell (index = ``arch``), one column per target (see the module docstring).

    Raises:
        ValueError: the dataset has no accuracy variable at all.
    """
    idx = _arch_index(ds)
    cols: dict[str, np.ndarray] = {}
    clean = find_var(ds, "clean")
    if clean is not None:
        cols["clean"] = _reduce_extra(clean, ("arch",)).transpose("arch").values.astype(np.float64)
    adv = find_var(ds, "adv")
    if adv is not None:
        adv = _reduce_extra(adv, ("arch", "attack", "eps")).transpose("arch", "attack", "eps")
        vals = adv.values.astype(np.float64)
        for a, attack in enumerate(adv["attack"].values):
            for e, eps in enumerate(adv["eps"].values):
                col = vals[:, a, e]
                if np.isfinite(col).any():
                    cols[target_name(str(attack), float(eps))] = col
        if np.isfinite(vals).any():
            cols["adv_mean"] = _nanmean(vals.reshape(len(idx), -1))
    cor = find_var(ds, "corruption")
    if cor is not None:
        cor = _reduce_extra(cor, ("arch", "corruption", "severity")).transpose("arch", "corruption", "severity")
        vals = cor.values.astype(np.float64)
        if np.isfinite(vals).any():
            cols["corruption_mean"] = _nanmean(vals.reshape(len(idx), -1))
            for c, name in enumerate(cor["corruption"].values):
                cols[f"corruption:{name}"] = _nanmean(vals[:, c])
    if not cols:
        raise ValueError(f"no accuracy variables found (looked for {VARIABLES['clean'] + VARIABLES['adv'] + VARIABLES['corruption']})")
    return pd.DataFrame(cols, index=idx)


def _nanmean(a: np.ndarray) -> np.ndarray:
    """Row means over finite values; NaN (without a warning) for rows with none."""
    ok = np.isfinite(a)
    n = ok.sum(axis=1)
    s = np.where(ok, a, 0.0).sum(axis=1)
    return np.where(n > 0, s / np.maximum(n, 1), np.nan)


def features_table(ds: xr.Dataset, *, encodings: str | list[str] | None = None, costs: bool = True,
                   measures: bool = True) -> pd.DataFrame:  # fmt: skip
    """One row per cell, one column per zero-cost feature available for it.

    Arguments:
        ds: the store's dataset.
        encodings: also add architecture encodings of the store's search space (NB201: ``onehot``, ``opcount``,
            ``path``, ``graf``; NATS-Bench SSS: ``channels``, ``onehot``, ``width``; or ``all`` / ``default``),
            computed from ``arch_str``.
        costs: add ``params`` and ``flops`` (read from the store, else computed exactly by the space's cost,
            :func:`.encodings.arch_costs`).
        measures: add the store's measures (``measure:<name>``). They need a *trained* network, so they are not
            zero-cost: a predictor of untrained cells (``rbnas predict``) leaves them out.

    Returns:
        DataFrame indexed by ``arch``; proxies as ``proxy:<name>``, measures as ``measure:<name>``.
    """
    idx = _arch_index(ds)
    parts: list[pd.DataFrame] = []
    kinds = (("proxies", "proxy", "proxy:"),) + ((("measures", "measure", "measure:"),) if measures else ())
    for what, dim, prefix in kinds:
        da = find_var(ds, what)
        if da is not None and dim in da.dims:
            da = _reduce_extra(da, ("arch", dim)).transpose("arch", dim)
            parts.append(pd.DataFrame(da.values.astype(np.float64), index=idx,
                                      columns=[f"{prefix}{n}" for n in da[dim].values]))
    if costs:
        got = {k: find_var(ds, k) for k in ("params", "flops")}
        stored = {k: _reduce_extra(v, ("arch",)).values.astype(np.float64) for k, v in got.items() if v is not None}
        stored = {k: np.where(v < 0, np.nan, v) for k, v in stored.items()}  # -1 = int fill (not computed)
        if len(stored) == 2 and all(np.isfinite(v).all() for v in stored.values()):
            c = pd.DataFrame(stored, index=idx)
        elif _has_arch_str(ds):  # exact, from the space's own cost (see encodings.arch_costs)
            c = arch_costs(_arch_strs(ds), space=store_space(ds))[["params", "flops"]]
            c.index = idx
        else:
            c = None
        if c is not None:
            c["params"] = c["params"] / 1e6  # millions, like FLOPs and the `params` proxy (NB201's unit)
            parts.append(c)
    if encodings:
        if not _has_arch_str(ds):
            raise ValueError("architecture encodings need a store with an 'arch_str' coordinate")
        e = encode(_arch_strs(ds), encodings, space=store_space(ds))
        e.index = idx
        parts.append(e)
    if not parts:
        return pd.DataFrame(index=idx)
    return pd.concat(parts, axis=1)


def _has_arch_str(ds: xr.Dataset) -> bool:
    return "arch_str" in ds.coords or "arch_str" in ds.data_vars


def _arch_strs(ds: xr.Dataset) -> list[str]:
    return [str(s) for s in ds["arch_str"].values]


def load_store(path: str, *, confusion: bool = False) -> xr.Dataset:
    """Open a store for analysis: values whose stage is not done masked (NaN), loaded into memory.

    Confusion matrices and training curves are left out unless ``confusion`` (they are most of a store's bytes
    and no analysis here needs them).
    """
    from ..storage import mask_not_done, open_dataset

    ds = open_dataset(path, done_only=False)
    if not confusion:  # drop before masking: masking the big arrays is most of the time
        ds = ds.drop_vars([v for v in ds.data_vars if "confusion" in v or v.startswith("history_")])
    return mask_not_done(ds.load())
