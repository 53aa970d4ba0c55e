"""Ours vs GRAF (robustbench_nas.analysis.graf): same splits, paired difference, twin-grouped inner CV, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from robustbench_nas.analysis.graf import compare_with_graf, graf_feature_columns, paired_difference
from robustbench_nas.analysis.prediction import feature_views, group_folds, make_model


def test_group_folds_keep_every_group_in_one_fold():
    groups = ["a", "a", "a", "b", "b", "c", None, float("nan"), "d", "d", "e", "f"]
    folds = group_folds(groups, 3, seed=0)
    tests = [set(te.tolist()) for _, te in folds]
    assert sorted(i for t in tests for i in t) == list(range(len(groups)))  # a partition
    for tr, te in folds:
        assert not set(tr.tolist()) & set(te.tolist())
        seen = {groups[i] for i in tr if isinstance(groups[i], str)}
        assert not any(isinstance(groups[i], str) and groups[i] in seen for i in te)  # no twin on both sides
    # the two rows without a key are groups of their own: they may land in different folds, never merged with "a"
    fold_of = {i: k for k, t in enumerate(tests) for i in t}
    assert fold_of[0] == fold_of[1] == fold_of[2] and fold_of[3] == fold_of[4] and fold_of[8] == fold_of[9]
    # 12 rows in 3 folds, largest group (3 rows) first: loads stay within one group of each other
    assert max(len(t) for t in tests) - min(len(t) for t in tests) <= 3


def test_paired_difference_by_hand():
    # differences 0.1, 0.2, 0.0: mean 0.1, sample std 0.1, SE 0.1 / sqrt(3)
    m, se = paired_difference([0.5, 0.7, 0.6], [0.4, 0.5, 0.6])
    assert m == pytest.approx(0.1) and se == pytest.approx(0.1 / math.sqrt(3))
    m, se = paired_difference([0.5, float("nan")], [0.4, 0.1])  # a NaN repeat is left out
    assert m == pytest.approx(0.1) and math.isnan(se)


def test_graf_model_is_a_default_random_forest():
    from sklearn.ensemble import RandomForestRegressor

    got = make_model("graf_rf", 3).get_params()
    ref = RandomForestRegressor().get_params()
    assert {k: v for k, v in got.items() if k not in ("random_state", "n_jobs")} == \
        {k: v for k, v in ref.items() if k not in ("random_state", "n_jobs")}
    assert got["n_estimators"] == 100 and got["max_features"] == 1.0 and got["random_state"] == 3


def test_views_keep_graf_out_of_ours_except_the_union():
    cols = ["count_none", "route_p0_live", "graf:op_count_none", "graf:min_path_len_(none)", "params", "flops",
            "path=c3", "e0(1<-0)=none"]
    v = {k: [cols[i] for i in idx] for k, idx in feature_views(cols).items()}
    assert v["compact"] == ["count_none", "route_p0_live", "params", "flops"]
    assert v["graf"] == ["graf:op_count_none", "graf:min_path_len_(none)", "params", "flops"]
    assert v["union"] == ["count_none", "route_p0_live", "graf:op_count_none", "graf:min_path_len_(none)", "params",
                          "flops"]
    assert feature_views(["a", "b"])["union"].tolist() == [0, 1]  # no GRAF columns: union = compact


def _table(n: int = 240, seed: int = 0) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """GRAF's columns are noise; the target is a function of one of our columns: ours must win by a margin."""
    rng = np.random.default_rng(seed)
    idx = pd.Index(np.arange(n), name="arch")
    ours = rng.normal(size=n)
    F = pd.DataFrame({"route_x": ours, "count_y": rng.normal(size=n), "graf:a": rng.normal(size=n),
                      "graf:b": rng.normal(size=n), "params": rng.normal(size=n), "flops": rng.normal(size=n)},
                     index=idx)  # fmt: skip
    y = pd.Series(ours + 0.05 * rng.normal(size=n), index=idx, name="t")
    keys = pd.Series([f"k{i // 2}" for i in range(n)], index=idx)  # pairs of twins
    return F, y, keys


@pytest.mark.slow  # ours' inner CV: 9 candidates x 5 folds x 3 repeats
def test_compare_pairs_the_same_splits():
    F, y, keys = _table()
    res = compare_with_graf(F, y, train_size=60, repeats=3, seed=5, twin_keys=keys)
    o, g, d = res["ours"], res["graf"], res["diff"]
    assert o["n_test"] == g["n_test"] == 180 and o["models"] != g["models"] and set(g["models"]) == {"graf"}
    per = [a["spearman"] - b["spearman"] for a, b in zip(o["per_repeat"], g["per_repeat"])]
    assert d["spearman_mean"] == pytest.approx(np.mean(per))
    assert d["spearman_se"] == pytest.approx(np.std(per, ddof=1) / math.sqrt(3))
    assert o["spearman_mean"] > 0.9 and abs(g["spearman_mean"]) < 0.5 and d["spearman_mean"] > 0.4
    # GRAF alone again with its own model on its own columns gives the same per-repeat scores: the same splits
    from robustbench_nas.analysis.prediction import predict_heldout

    alone = predict_heldout(F[graf_feature_columns(F.columns)], y, train_size=60, repeats=3, seed=5, model="graf_rf",
                            twin_keys=keys)  # fmt: skip
    assert [r["spearman"] for r in alone["per_repeat"]] == pytest.approx([r["spearman"] for r in g["per_repeat"]])


@pytest.mark.slow  # two comparisons, inner CV each
def test_ablation_drops_only_ours_columns_on_the_same_splits():
    F, y, keys = _table(160)
    full = compare_with_graf(F, y, train_size=50, repeats=2, seed=2, twin_keys=keys)
    abl = compare_with_graf(F, y, train_size=50, repeats=2, seed=2, twin_keys=keys, ours_exclude=["route_x"])
    # GRAF is untouched (same splits, same inputs): identical per-repeat scores
    assert [r["spearman"] for r in abl["graf"]["per_repeat"]] == [r["spearman"] for r in full["graf"]["per_repeat"]]
    # the target is route_x plus noise: without it ours loses nearly everything
    assert full["ours"]["spearman_mean"] > 0.9 and abl["ours"]["spearman_mean"] < 0.5
    assert abl["ours"]["features"] == F.shape[1] - 1 and abl["ours_excluded"] == 1


def test_compare_refuses_measures_and_tables_without_graf():
    F, y, keys = _table(60)
    with pytest.raises(ValueError, match="trained network"):
        compare_with_graf(F.assign(**{"measure:jacobian": 1.0}), y, train_size=20, repeats=1)
    with pytest.raises(ValueError, match="graf_exact"):
        compare_with_graf(F.drop(columns=["graf:a", "graf:b"]), y, train_size=20, repeats=1)
    with pytest.raises(KeyError, match="does not have"):
        compare_with_graf(F, y, train_size=20, repeats=1, ours_exclude=["nope"])
    with pytest.raises(ValueError, match="no feature"):
        compare_with_graf(F, y, train_size=20, repeats=1, ours_exclude=list(F.columns))


@pytest.mark.slow
def test_predict_cli_compare_graf(tmp_path):
    from click.testing import CliRunner

    from robustbench_nas.cli.main import cli
    from tests.test_twins import _twin_store

    path = _twin_store(tmp_path / "s.zarr", noise_sd=0.01)
    r = CliRunner().invoke(cli, ["predict", str(path), "--target", "clean", "--train-size", "40", "--repeats", "2",
                                 "--encodings", "opcount", "--compare", "graf", "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["graf"]["features"] == out["ours"]["features"] and out["graf"]["models"] == ["graf", "graf"]
    assert np.isfinite(out["diff"]["spearman_mean"]) and np.isfinite(out["diff"]["spearman_twin_free_mean"])


def test_features_table_leaves_measures_out_on_request():
    # measures need a trained network: features_table(measures=False) keeps the proxies and drops them
    import xarray as xr

    from robustbench_nas.analysis.targets import features_table

    ds = xr.Dataset({"proxy_value": (("arch", "proxy"), [[1.0], [2.0]]),
                     "measure_value": (("arch", "measure"), [[3.0], [4.0]])},
                    coords={"arch": [5, 7], "proxy": ["synflow"], "measure": ["jacobian_fro"]})  # fmt: skip
    assert list(features_table(ds, costs=False).columns) == ["proxy:synflow", "measure:jacobian_fro"]
    F = features_table(ds, costs=False, measures=False)
    assert list(F.columns) == ["proxy:synflow"] and F["proxy:synflow"].tolist() == [1.0, 2.0]
