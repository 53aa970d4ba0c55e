"""One held-out protocol behind ``rbnas predict`` and the report's "Predicting robustness" section.

Both build the features with :func:`heldout_inputs` (the cells' encodings and costs, the store's proxies, an
optional proxy table; never measures, which need a trained network) and score with
:func:`.prediction.predict_heldout` under one :class:`.prediction.PredictProtocol` (model, repeats, seed, training
cell choice, model-selection rule; the same defaults). So a number in the report is the number ``rbnas predict``
prints for the command the report names beside it (:func:`predict_command`), to the digit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pandas as pd
import xarray as xr

from .predict_protocol import DEFAULT_ENCODINGS, PredictProtocol
from .prediction import predict_heldout


@dataclass
class HeldoutInputs:
    """What :func:`.prediction.predict_heldout` reads of a store.

    Attributes:
        features: cells x free features (encodings, params / FLOPs in millions, proxies; NaN where a proxy is
            missing, filled with the training median per split).
        targets: cells x targets (accuracies in [0, 1]), the same cells.
        twins: each cell's functional key when the store has functional twins (scores on twin-free held-out cells
            are added), else ``None``.
    """

    features: pd.DataFrame
    targets: pd.DataFrame
    twins: pd.Series | None


def parse_encodings(text: str) -> list[str] | None:
    """``--encodings`` as a list (``none``: ``None``; ``all`` wins over any other name)."""
    if text.strip().lower() == "none":
        return None
    enc = [e.strip() for e in text.split(",") if e.strip()]
    return ["all"] if "all" in enc else enc


def heldout_inputs(ds: xr.Dataset, *, encodings: Sequence[str] | None, proxy_table: str | None = None,
                   proxy_names: str | None = None, proxy_cells_only: bool = False,
                   no_store_proxies: bool = False) -> HeldoutInputs:  # fmt: skip
    """The features, targets and twin keys of a store, as ``rbnas predict`` uses them.

    Arguments:
        encodings: cell encodings of the store's space (``["all"]``, names, or ``None`` for none).
        proxy_table: also a proxy table's proxies (``"shipped"`` or a CSV; ``sign(x) log(1 + |x|)``, monotone, so
            synflow's ~1e49 fits the trees' float32).
        proxy_names: comma list of the table's proxies to use (``None``: all; ``"none"``: none of them).
        proxy_cells_only: keep only the cells the table covers.
        no_store_proxies: leave out the store's own proxies.

    Raises:
        ValueError: bad encodings, a table without ``uid``, unknown ``proxy_names``, no cell in the table, or
            ``proxy_cells_only`` / ``proxy_names`` without a table. FileNotFoundError: no such table.
    """
    from .targets import features_table, targets_table
    from .twins import functional_keys, twin_groups

    T = targets_table(ds)
    F = features_table(ds, encodings=list(encodings) if encodings else None, measures=False)
    if no_store_proxies:
        F = F[[c for c in F.columns if not c.startswith(("proxy:", "measure:"))]]
    if proxy_table:
        from .proxy_study import signed_log
        from .proxy_table import load_table

        P = load_table(proxy_table)
        covered_by_table = P.dropna(how="all").index
        if proxy_names is not None:
            keep = [] if proxy_names.strip().lower() == "none" else [
                f"proxy:{n.strip().removeprefix('proxy:')}" for n in proxy_names.split(",") if n.strip()]
            unknown = [c for c in keep if c not in P.columns]
            if unknown:
                raise ValueError(f"--proxy-names: {', '.join(unknown)} not in the table (it has "
                                 f"{', '.join(P.columns)})")  # fmt: skip
            P = P[keep]
        F = pd.concat([F, signed_log(P.reindex(F.index))], axis=1)
        if proxy_cells_only:
            covered = F.index.intersection(covered_by_table)
            if covered.empty:
                raise ValueError(f"--proxy-cells-only: none of the store's cells is in the proxy table "
                                 f"{proxy_table!r}")  # fmt: skip
            F, T = F.loc[covered], T.loc[covered]
    elif proxy_cells_only or proxy_names is not None:
        raise ValueError("--proxy-cells-only / --proxy-names need --proxies (the table)")
    keys = functional_keys(ds)
    twins = keys if twin_groups(list(keys.reindex(T.index))) else None  # no twins: nothing to add
    return HeldoutInputs(F, T, twins)


def heldout_scores(inputs: HeldoutInputs, target: str, train_size: int, protocol: PredictProtocol, *,
                   progress: bool = False) -> dict[str, object]:  # fmt: skip
    """:func:`.prediction.predict_heldout` of ``target`` at ``train_size`` under ``protocol`` (see its Returns)."""
    return predict_heldout(inputs.features, inputs.targets[target], train_size=train_size, repeats=protocol.repeats,
                           seed=protocol.seed, model=protocol.model, train_select=protocol.train_select,
                           selection=protocol.selection, twin_keys=inputs.twins, progress=progress)  # fmt: skip


def predict_command(store: str, target: str, train_size: int, protocol: PredictProtocol, *,
                    encodings: Sequence[str] | None, proxy_table: str | None = None) -> str:  # fmt: skip
    """The ``rbnas predict`` command line that prints the same scores (options at their defaults left out)."""
    d = PredictProtocol()
    parts = ["rbnas predict", store, "--target", f"'{target}'", "--train-size", str(train_size)]
    for opt, v, dv in (("--repeats", protocol.repeats, d.repeats), ("--seed", protocol.seed, d.seed),
                       ("--model", protocol.model, d.model), ("--train-select", protocol.train_select, d.train_select),
                       ("--selection", protocol.selection, d.selection)):  # fmt: skip
        if v != dv:
            parts += [opt, str(v)]
    enc = ",".join(encodings) if encodings else "none"
    if enc != DEFAULT_ENCODINGS:
        parts += ["--encodings", enc]
    if proxy_table:
        parts += ["--proxies", proxy_table]
    return " ".join(parts)

__all__ = ["DEFAULT_ENCODINGS", "HeldoutInputs", "heldout_inputs", "heldout_scores", "parse_encodings",
           "predict_command"]
