"""Ranking table, prediction, search and architecture analyses on small synthetic stores with known structure,
and ``rbnas analyze`` / ``rbnas import`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats as st

from robustbench_nas.analysis import architecture as arch
from robustbench_nas.analysis.prediction import (
    PredictionConfig,
    feature_groups,
    feature_importance,
    kfold_splits,
    summarize_curve,
    train_size_curve,
)
from robustbench_nas.analysis.ranking import RankingConfig, rank_features, to_markdown, write_ranking
from robustbench_nas.analysis.search import Objective, list_searches, regret_curve, run_searches
from robustbench_nas.analysis.targets import features_table, load_store, targets_table
from robustbench_nas.cli.main import cli
from robustbench_nas.search_spaces import get_search_space
from robustbench_nas.storage import DONE, StoreSpec, create_store


def _synthetic_store(path: Path, n: int = 120, seed: int = 0) -> tuple[Path, pd.DataFrame]:
    """A store whose accuracies are known functions of the cells: clean ~ #conv3x3, pgd ~ proxy 'good'."""
    space = get_search_space("nb201")
    uids = space.sample(n, seed=seed)
    rng = np.random.default_rng(seed)
    n3 = np.array([space.cell(u).ops.count("nor_conv_3x3") for u in uids], dtype=float)
    good = rng.normal(size=n)
    clean = 0.5 + 0.07 * n3 + 0.01 * rng.normal(size=n)
    pgd = np.clip(0.3 + 0.1 * good + 0.01 * rng.normal(size=n), 0, 1)
    spec = StoreSpec(
        archs=uids, arch_str=[space.arch_str(u) for u in uids], seeds=[0],
        attacks={"pgd@Linf": [1 / 255, 8 / 255], "fgsm@Linf": [1 / 255]}, corruptions=["fog"],
        proxies=["good", "noise"], stages=["clean", "adversarial", "corruptions", "proxies"], shard_cells=n,
    )  # fmt: skip
    store = create_store(path, spec)
    store.write_array("clean_accuracy", clean[:, None])
    adv = np.full((n, 1, 2, 2), np.nan)
    e1, e8 = spec.eps_values().index(1 / 255), spec.eps_values().index(8 / 255)
    adv[:, 0, 0, e1], adv[:, 0, 0, e8], adv[:, 0, 1, e1] = pgd, pgd / 10, 0.5 * pgd + 0.2
    store.write_array("adv_accuracy", adv)
    store.write_array("corruption_accuracy", np.repeat(clean[:, None, None, None] - 0.1, 5, axis=3))
    store.write_array("proxy_value", np.stack([good, rng.normal(size=n)], axis=1)[:, None, :])
    for stage in ("clean", "adversarial", "corruptions", "proxies"):
        store.set_status(stage, DONE)
    truth = pd.DataFrame({"clean": clean, "pgd1": pgd, "good": good, "n3": n3}, index=pd.Index(uids, name="arch"))
    return path, truth


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    return _synthetic_store(tmp_path_factory.mktemp("synth") / "s.zarr")


def test_targets_and_features_from_store(synth):
    path, truth = synth
    ds = load_store(str(path))
    T = targets_table(ds)
    np.testing.assert_allclose(T["clean"], truth["clean"])
    np.testing.assert_allclose(T["pgd@Linf@1/255"], truth["pgd1"])
    np.testing.assert_allclose(T["pgd@Linf@8/255"], truth["pgd1"] / 10)
    # mean over the three evaluated (attack, eps) pairs; the off-grid fgsm@8/255 is not counted
    np.testing.assert_allclose(T["adv_mean"], (truth["pgd1"] * 1.1 + 0.5 * truth["pgd1"] + 0.2) / 3)
    np.testing.assert_allclose(T["corruption:fog"], truth["clean"] - 0.1)
    assert "fgsm@Linf@8/255" not in T
    F = features_table(ds, encodings="opcount")
    np.testing.assert_allclose(F["proxy:good"], truth["good"])
    np.testing.assert_array_equal(F["count_nor_conv_3x3"], truth["n3"])
    assert (F["params"] > 0).all()


def test_ranking_table_matches_scipy(synth, tmp_path):
    path, truth = synth
    ds = load_store(str(path))
    T, F = targets_table(ds), features_table(ds)
    R = rank_features(F, T, RankingConfig(n_boot=100, n_boot_kendall=30, clean_threshold=0.7),
                      target_names=["clean", "pgd@Linf@1/255"])  # fmt: skip
    assert len(R) == F.shape[1] * 2 * 2
    row = R[(R.feature == "proxy:good") & (R.target == "pgd@Linf@1/255") & (R.subset == "all")].iloc[0]
    assert row.spearman == pytest.approx(st.spearmanr(truth["good"], truth["pgd1"]).statistic)
    assert row.kendall == pytest.approx(st.kendalltau(truth["good"], truth["pgd1"]).statistic)
    assert row.spearman > 0.9 and row.spearman_lo <= row.spearman <= row.spearman_hi
    sub = R[(R.feature == "proxy:good") & (R.target == "pgd@Linf@1/255") & (R.subset == "clean>=0.7")].iloc[0]
    assert sub.n == int((truth["clean"] >= 0.7).sum()) < len(truth)
    # within a target/subset the rows are sorted by |spearman|: the informative proxy beats the noise one
    block = R[(R.target == "pgd@Linf@1/255") & (R.subset == "all")]
    assert block.iloc[0].feature == "proxy:good"
    csv, md = write_ranking(R, tmp_path)
    back = pd.read_csv(csv)
    np.testing.assert_allclose(back["spearman"], R["spearman"])
    assert md.read_text().count("\n") == len(R) + 2 and "| proxy:good |" in md.read_text()
    with pytest.raises(KeyError, match="unknown target"):
        rank_features(F, T, target_names=["nope"])


def test_markdown_escapes_and_nan():
    md = to_markdown(pd.DataFrame({"a": ["x|y"], "b": [float("nan")]}))
    assert "x\\|y" in md and "| - |" in md


def test_prediction_recovers_signal_and_is_seeded(synth):
    path, truth = synth
    ds = load_store(str(path))
    T, F = targets_table(ds), features_table(ds, encodings="opcount")
    groups = feature_groups(F)
    assert {"single:proxy:good", "proxies", "encodings", "all"} <= set(groups)
    cfg = PredictionConfig(models=("ridge",), train_sizes=(60,), repeats=2, seed=3)
    sub = {k: groups[k] for k in ("single:proxy:good", "single:proxy:noise", "encodings")}
    c1 = train_size_curve(F, T["pgd@Linf@1/255"], sub, cfg)
    c2 = train_size_curve(F, T["pgd@Linf@1/255"], sub, cfg)
    pd.testing.assert_frame_equal(c1, c2)
    S = summarize_curve(c1).set_index("group")
    assert S.loc["single:proxy:good", "spearman_mean"] > 0.9
    assert abs(S.loc["single:proxy:noise", "spearman_mean"]) < 0.4
    assert S.loc["single:proxy:good", "r2_mean"] > 0.8 and (c1["n_test"] == len(T) - 60).all()
    # clean accuracy is a function of the conv3x3 count: the encodings predict it, the proxies do not
    cc = summarize_curve(train_size_curve(F, T["clean"], sub, cfg)).set_index("group")
    assert cc.loc["encodings", "spearman_mean"] > 0.9 > cc.loc["single:proxy:good", "spearman_mean"] + 0.5
    imp = feature_importance(F, T["pgd@Linf@1/255"], groups["all"], model="rf", train_size=80, n_repeats=2)
    assert imp.table.iloc[0]["feature"] == "proxy:good"


def test_kfold_partitions_cells():
    seen = []
    for _f, tr, te in kfold_splits(23, 5, seed=1):
        assert not set(tr) & set(te) and len(tr) + len(te) == 23
        seen += list(te)
    assert sorted(seen) == list(range(23))
    with pytest.raises(ValueError):
        list(kfold_splits(3, 5, 0))


def test_search_finds_optimum_and_regret_is_monotone():
    space = get_search_space("nb201")
    uids = space.unique_indices()
    # objective = number of conv3x3 edges minus pools: smooth on the one-edge neighbourhood
    vals = {u: space.cell(u).ops.count("nor_conv_3x3") - 0.5 * space.cell(u).ops.count("avg_pool_3x3") for u in uids}
    obj = Objective(vals, name="toy")
    assert obj.optimum == 6
    algs = [a for a in list_searches() if a != "bananas"]  # BANANAS trains networks: tests/test_bananas.py
    C = run_searches(obj, algs, budget=150, repeats=2, seed=0)
    for (_alg, _r), g in C.groupby(["algorithm", "repeat"]):
        assert (np.diff(g["regret"].to_numpy()) <= 0).all() and (g["regret"] >= 0).all()
    final = C[C.queries == 150].groupby("algorithm")["regret"].mean()
    assert final["local"] == 0 and final["evolution"] == 0  # hill climbing reaches the all-conv3x3 cell
    pd.testing.assert_frame_equal(C, run_searches(obj, algs, budget=150, repeats=2, seed=0))
    assert list(regret_curve(obj, [uids[0]], 3)) == [6 - vals[uids[0]]] * 3
    with pytest.raises(KeyError, match="unknown search"):
        run_searches(obj, ["bogus"])


def test_architecture_tables(synth):
    path, truth = synth
    ds = load_store(str(path))
    T = targets_table(ds)
    curves = arch.eps_curves(ds)
    pgd = curves[curves.attack == "pgd@Linf"].set_index("eps_255")
    assert pgd.loc[0.0, "mean"] == pytest.approx(truth["clean"].mean())
    assert pgd.loc[1.0, "mean"] == pytest.approx(truth["pgd1"].mean())
    assert set(curves[curves.attack == "fgsm@Linf"].eps_255) == {0.0, 1.0}
    eff = arch.op_edge_effects(T, ["clean"])
    # clean rises with conv3x3 edges: conv3x3 has a positive effect on every edge
    assert (eff[eff.op == "nor_conv_3x3"]["effect"] > 0).all()
    for e, g in eff.groupby("edge"):
        assert g["n"].sum() == len(T)
        assert np.average(g["effect"], weights=g["n"]) == pytest.approx(0, abs=1e-12)
    params = pd.Series(truth["n3"].to_numpy() * 10, index=T.index)
    by = arch.robustness_by_params(T, params, "clean")
    for _, r in by.iterrows():
        m = params == r.params
        assert r.n == m.sum() and r["range"] == pytest.approx(T["clean"][m].max() - T["clean"][m].min())
    best = arch.best_cells(T, ["clean"], 3)
    assert list(best["arch"]) == list(truth["clean"].sort_values(ascending=False).index[:3])
    ov = arch.top_overlap(T, ["clean", "pgd@Linf@1/255", "corruption_mean"], 0.1)
    assert ov.loc["clean", "corruption_mean"] == 1.0 and np.allclose(np.diag(ov), 1)


def test_analyze_cli_end_to_end(synth, tmp_path):
    path, _ = synth
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["analyze", str(path), "--out", str(out), "--n-boot", "50", "--n-boot-kendall", "10",
                                 "--train-sizes", "40", "--repeats", "1", "--models", "ridge", "--search-budget",
                                 "20", "--search-repeats", "2", "--encodings", "opcount", "--no-progress",
                                 "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    got = json.loads(r.output[r.output.index("{"):])
    assert got["cells"] == 120 and got["ranking_best"]["pgd@Linf@1/255"]["feature"] == "proxy:good"
    for f in ("ranking.csv", "ranking.md", "prediction_summary.csv", "search_regret.csv", "report.html",
              "summary.json", "best_cells.csv", "figures/eps_curves.png", "figures/eps_curves.csv"):
        assert (out / f).is_file(), f
    for png in (out / "figures").glob("*.png"):
        assert png.with_suffix(".csv").is_file(), png  # every figure with its data
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(list((out / "figures").glob("*.png")))
    bad = CliRunner().invoke(cli, ["analyze", str(path), "--out", str(out), "--sections", "nope"])
    assert bad.exit_code == 2 and "unknown section" in bad.output
    missing = CliRunner().invoke(cli, ["analyze", str(tmp_path / "none.zarr"), "--out", str(out)])
    assert missing.exit_code != 0
    # an existing output is never replaced silently; --force empties it first (no stale CSV of another section)
    (out / "stale.csv").write_text("x\n1\n")
    args = ["analyze", str(path), "--out", str(out), "--sections", "ranking", "--n-boot", "20", "--n-boot-kendall",
            "0", "--no-progress"]
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 2 and "earlier output" in again.output and "--force" in again.output
    assert (out / "stale.csv").is_file() and (out / "search_regret.csv").is_file()  # nothing touched
    again = CliRunner().invoke(cli, [*args, "--force"])
    assert again.exit_code == 0, again.output
    assert (out / "report.html").is_file() and not (out / "stale.csv").exists()
    assert not (out / "search_regret.csv").exists()  # the search section did not run this time
    assert again.output.startswith("report: ")  # quiet text unless --json
    refuse = CliRunner().invoke(cli, ["analyze", str(path), "--out", str(path.parent), "--force"])
    assert refuse.exit_code == 2 and "refusing to empty" in refuse.output and path.exists()  # holds the store


def test_import_cli(jung2023_root, tmp_path):
    r = CliRunner().invoke(cli, ["import", "jung2023", str(jung2023_root), "--store", str(tmp_path / "j.zarr"),
                                 "--measures", "accuracy", "--no-progress", "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    got = json.loads(r.output[r.output.index("{"):])
    assert got["files_read"] == 20 and got["files_missing"] == 0 and got["mismatches"] == []
    again = CliRunner().invoke(cli, ["import", "jung2023", str(jung2023_root), "--store", str(tmp_path / "j.zarr")])
    assert again.exit_code == 2 and "already exists" in again.output
