"""The report's one ranking: every feature (costs, encodings, proxies) on one stated cell set and one stated filter.

The store has known values: PGD@1/255 is a noisy function of the proxy ``anti`` on every cell, and the proxy ``part``
equals PGD@1/255 exactly but exists on only 40 of the 60 cells. So on the 40 cells ``part`` is the best predictor
(Spearman +1 exactly); the free features (``anti``, costs, op counts: a value on every cell) are ranked on all 60
cells beside it, and their best is recomputed here with scipy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr

from robustbench_nas.analysis.encodings import arch_costs, encode
from robustbench_nas.analysis.predict_protocol import PredictProtocol
from robustbench_nas.analysis.ranking import RankingConfig
from robustbench_nas.analysis.ranking_scope import ranking_scope
from robustbench_nas.analysis.report import AnalysisConfig, run_analysis
from robustbench_nas.analysis.targets import load_store
from robustbench_nas.search_spaces import get_search_space
from robustbench_nas.storage import DONE, StoreSpec, create_store

torch.set_num_threads(1)
N, COVERED, MIN_CLEAN = 60, 40, 0.65


def _store(path: Path, part_missing: int) -> tuple[Path, pd.DataFrame]:
    """The store and its known values (index: uid; columns clean, pgd, anti, part)."""
    space = get_search_space("nb201")
    uids = space.sample(N, seed=1)
    rng = np.random.default_rng(1)
    n3 = np.array([space.cell(u).ops.count("nor_conv_3x3") for u in uids], dtype=float)
    clean = 0.6 + 0.05 * n3 + 0.01 * rng.normal(size=N)
    anti = rng.normal(size=N)
    pgd = 0.3 - 0.05 * anti + 0.03 * rng.normal(size=N)
    part = pgd.copy()
    part[:part_missing] = np.nan  # the proxy was computed for the other cells only
    spec = StoreSpec(archs=uids, arch_str=[space.arch_str(u) for u in uids], seeds=[0],
                     attacks={"pgd@Linf": [1 / 255]}, proxies=["anti", "part"],
                     stages=["clean", "adversarial", "proxies"], shard_cells=N)  # fmt: skip
    store = create_store(path, spec)
    store.write_array("clean_accuracy", clean[:, None])
    store.write_array("adv_accuracy", pgd[:, None, None, None])
    store.write_array("proxy_value", np.stack([anti, part], axis=1)[:, None, :])
    for stage in ("clean", "adversarial", "proxies"):
        store.set_status(stage, DONE)
    truth = pd.DataFrame({"clean": clean, "pgd": pgd, "anti": anti, "part": part}, index=pd.Index(uids, name="arch"))
    return path, truth


def _cfg() -> AnalysisConfig:
    return AnalysisConfig(ranking=RankingConfig(n_boot=50, n_boot_kendall=0), rank_encodings=["opcount"],
                          min_clean=MIN_CLEAN, sections=("ranking",),
                          prediction=PredictProtocol(model="ridge", train_sizes=(20,), repeats=1))  # fmt: skip


def test_partial_proxy_ranks_every_feature_on_its_cells_and_free_features_on_all(tmp_path):
    path, truth = _store(tmp_path / "s.zarr", N - COVERED)
    out = tmp_path / "rep"
    summary = run_analysis(load_store(str(path)), out, _cfg())
    scope = summary["ranking_scope"]
    keep = truth["clean"] >= MIN_CLEAN
    covered = truth["part"].notna()
    assert scope["cells"] == COVERED and scope["cells_in_store"] == N and scope["filter"] == f"clean >= {MIN_CLEAN:g}"
    assert scope["cells_filtered"] == int((keep & covered).sum()) and scope["partial_features"] == {"proxy:part": 20}
    assert scope["feature_kinds"]["encoding"] == 9 and scope["feature_kinds"]["proxy"] == 2  # 9 op counts
    best = summary["ranking_best"]["pgd@Linf@1/255"]
    assert best["feature"] == "proxy:part" and best["spearman"] == pytest.approx(1.0)
    assert best["n"] == int((keep & covered).sum())
    # one cell set and filter: every feature of a (target, subset) is scored on the same number of cells
    R = pd.read_csv(out / "ranking.csv")
    assert (R.groupby(["target", "subset"])["n"].nunique() == 1).all()
    assert set(R["n"]) == {COVERED, int((keep & covered).sum())}
    # the free features on all cells, same filter: recomputed with scipy
    space = get_search_space("nb201")
    strs = [space.arch_str(u) for u in truth.index]
    free = pd.concat([truth[["anti"]].rename(columns={"anti": "proxy:anti"}),
                      (arch_costs(strs)[["params", "flops"]].set_axis(truth.index)),
                      encode(strs, "opcount").set_axis(truth.index)], axis=1)  # fmt: skip
    rho = {c: spearmanr(free.loc[keep, c], truth.loc[keep, "pgd"])[0] for c in free.columns
           if free.loc[keep, c].nunique() > 1}  # fmt: skip
    want = max(rho, key=lambda c: abs(rho[c]))
    assert best["free_feature_all_cells"] == want and best["n_all_cells"] == int(keep.sum())
    assert best["spearman_all_cells"] == pytest.approx(rho[want], abs=1e-12)
    html = (out / "report.html").read_text()
    head = html[: html.index("<nav>")]  # stated in the summary, before the contents
    assert f"ranked on the same {COVERED} of the store&#39;s {N} cells" in head
    assert f"clean accuracy &gt;= {MIN_CLEAN:g} ({int((keep & covered).sum())} cells)" in head
    assert "proxy:part is missing on 20" in head and f"on all {N} cells with the same filter" in head


def test_complete_features_one_cell_set_is_the_store(tmp_path):
    path, truth = _store(tmp_path / "s.zarr", 0)
    summary = run_analysis(load_store(str(path)), tmp_path / "rep", _cfg())
    scope = summary["ranking_scope"]
    assert scope["cells"] == N and scope["partial_features"] == {}
    best = summary["ranking_best"]["pgd@Linf@1/255"]
    assert best["feature"] == "proxy:part" and "free_feature_all_cells" not in best
    assert not (tmp_path / "rep" / "ranking_free_all_cells.csv").exists()
    # Kendall intervals: bootstrap for proxies and costs, Fisher's z for the encodings' columns (cheap)
    R = pd.read_csv(tmp_path / "rep" / "ranking.csv")
    enc = ~R["feature"].str.startswith("proxy:") & ~R["feature"].isin(["params", "flops"])
    assert enc.any() and (R.loc[enc, "kendall_ci"] == "fisher-z").all()
    assert (R.loc[~enc, "kendall_ci"] == "bootstrap").all()
    assert "(every cell of the store)" in (tmp_path / "rep" / "report.html").read_text()


def test_ranking_ranks_the_spaces_default_encodings_not_every_column(tmp_path):
    """By default the one ranking ranks NB201's default encodings (op counts and GRAF's features), not the 466
    columns of ``all`` the prediction section predicts from."""
    path, truth = _store(tmp_path / "s.zarr", 0)
    cfg = _cfg()
    cfg.rank_encodings = AnalysisConfig().rank_encodings
    assert cfg.rank_encodings == ["default"] and AnalysisConfig().encodings == ["all"]
    summary = run_analysis(load_store(str(path)), tmp_path / "rep", cfg)
    strs = [get_search_space("nb201").arch_str(u) for u in truth.index]
    default_cols = set(encode(strs, "opcount").columns) | set(encode(strs, "graf").columns)
    assert summary["ranking_scope"]["feature_kinds"]["encoding"] == len(default_cols)
    R = pd.read_csv(tmp_path / "rep" / "ranking.csv")
    ranked_encodings = {f for f in R["feature"] if f not in ("params", "flops") and not f.startswith("proxy:")}
    assert ranked_encodings and ranked_encodings <= default_cols
    assert not set(encode(strs, "onehot").columns) & set(R["feature"])


def test_scope_drops_a_feature_without_values_and_names_it():
    F = pd.DataFrame({"params": [1.0, 2, 3], "proxy:x": [np.nan] * 3, "proxy:y": [1.0, np.nan, 2]})
    T = pd.DataFrame({"clean": [0.9, 0.8, 0.3]})
    s = ranking_scope(F, T, 0.5)
    assert s.empty == ["proxy:x"] and list(s.cells) == [0, 2] and s.n_filtered == 1 and s.n_store_filtered == 2
    assert s.kinds() == {"cost": 1, "proxy": 1}
