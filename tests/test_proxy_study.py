"""Proxy table export / load, the proxy study and ``rbnas predict`` on stores with known structure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st
from click.testing import CliRunner

from robustbench_nas.analysis.prediction import predict_heldout, select_model
from robustbench_nas.analysis.proxy_study import (ProxyStudyConfig, complementarity, published_comparison,
                                                  rank_proxies, run_proxy_study, study_targets,
                                                  topk_column)
from robustbench_nas.analysis.proxy_table import export_table, load_table, seed_noise, table_meta
from robustbench_nas.analysis.targets import load_store
from robustbench_nas.cli.main import cli
from tests.test_analysis_pipeline import _synthetic_store


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    return _synthetic_store(tmp_path_factory.mktemp("synth16") / "s.zarr")


def _table_csv(path: Path, truth: pd.DataFrame) -> Path:
    from robustbench_nas.search_spaces import get_search_space

    space = get_search_space("nb201")
    rng = np.random.default_rng(5)
    df = pd.DataFrame({"arch_str": [space.arch_str(u) for u in truth.index], "uid": truth.index,
                       "good": truth["good"].to_numpy(), "noise": rng.normal(size=len(truth))})
    df.to_csv(path, index=False)
    return path


def test_study_ranks_joined_proxies(synth, tmp_path):
    path, truth = synth
    ds = load_store(str(path))
    csv = _table_csv(tmp_path / "t.csv", truth.iloc[:90])  # a table covering part of the store's cells
    P = load_table(csv)
    assert list(P.columns) == ["proxy:good", "proxy:noise"] and P.index.name == "uid"
    body, summary = run_proxy_study(ds, P, tmp_path, ProxyStudyConfig(n_boot=200, trees=20))
    assert summary["cells"] == 90
    R = pd.read_csv(tmp_path / "proxy_study" / "proxy_ranking.csv")
    row = R[(R.feature == "good") & (R.target == "pgd@Linf@1/255") & (R.subset == "all")].iloc[0]
    sub = truth.iloc[:90]
    assert row.spearman == pytest.approx(st.spearmanr(sub["good"], sub["pgd1"]).statistic)
    assert row.spearman_lo <= row.spearman <= row.spearman_hi and row.n == 90
    assert summary["best_proxy"]["pgd@Linf@1/255"]["feature"] == "good"
    # severities are targets of their own; HRS needs FGSM at 8/255, absent here
    assert "corruption:fog@s3" in set(R.target) and "hrs@fgsm@Linf@8/255" not in set(R.target)
    assert (tmp_path / "proxy_study" / "proxy_heatmap_all.png").stat().st_size > 0
    assert "Published findings" in body
    assert "Seed noise" not in body and not (tmp_path / "proxy_study" / "seed_noise.csv").exists()
    noise = {"good": {"spearman_between_seeds": 0.9, "noise_ratio": 0.2, "cells": 10, "seeds": [0, 1, 2]},
             "noise": {"spearman_between_seeds": 0.1, "noise_ratio": 1.1, "cells": 10, "seeds": [0, 1, 2]}}
    body, summary = run_proxy_study(ds, P, tmp_path / "n", ProxyStudyConfig(n_boot=50, trees=10), seed_noise=noise)
    S = pd.read_csv(tmp_path / "n" / "proxy_study" / "seed_noise.csv")
    assert list(S["proxy"]) == ["good", "noise"] and list(S["noise_ratio"]) == [0.2, 1.1]  # quietest first
    assert "Seed noise" in body and summary["seed_noise_cells"] == 10
    assert "same batch" in body
    note = "seeds 1 and 2 ran on other images"  # the shipped table's caveat replaces "same batch"
    body, _ = run_proxy_study(ds, P, tmp_path / "m", ProxyStudyConfig(n_boot=50, trees=10), seed_noise=noise,
                              seed_noise_note=note)
    assert "same batch" not in body and f"Caveat</b>: {note}" in body


def test_complementarity_sees_a_sum_of_two_proxies():
    # y = a + b with independent a, b: one proxy explains half, both together nearly all
    rng = np.random.default_rng(0)
    n = 300
    a, b = rng.random(n), rng.random(n)
    idx = pd.Index(range(n), name="arch")
    # "a" at synflow's scale (~1e49, beyond float32, which the forests cast to): handled by a monotone transform
    P = pd.DataFrame({"proxy:a": a * 1e49, "proxy:b": b, "proxy:z": rng.random(n)}, index=idx)
    T = pd.DataFrame({"clean": a + b, "pgd@Linf@1/255": a}, index=idx)
    E = pd.DataFrame({"e": rng.random(n)}, index=idx)
    cfg = ProxyStudyConfig(n_boot=50, trees=50)
    R = rank_proxies(P, T, cfg)
    scores, imp = complementarity(P, E, T, cfg, R, targets=("clean", "pgd@Linf@1/255"))
    s = scores.set_index(["target", "features"])["r2"]
    single = [k for k in s.loc["clean"].index if k.startswith("best single")][0]
    assert s.loc[("clean", "all proxies")] > s.loc[("clean", single)] + 0.3
    assert s.loc[("clean", "encodings")] < 0.1
    top = imp[imp.target == "clean"].sort_values("importance_mean", ascending=False).proxy.tolist()
    assert set(top[:2]) == {"a", "b"}
    comp = published_comparison(R, scores)
    assert comp["claim"].str.contains("one proxy vs on all proxies, clean").any()


def test_study_targets_hrs(synth):
    path, _ = synth
    T = study_targets(load_store(str(path)))
    assert all(f"corruption:fog@s{s}" in T for s in range(1, 6))


def test_heldout_choice_ignores_test_targets():
    # the model is chosen inside the training cells: scrambling the held-out targets changes no choice
    rng = np.random.default_rng(1)
    n = 400
    X = pd.DataFrame(rng.random((n, 4)), index=pd.Index(range(n), name="arch"), columns=list("abcd"))
    y = pd.Series(np.sin(3 * X["a"]) + X["b"] ** 2 + 0.05 * rng.normal(size=n), index=X.index, name="t")
    res = predict_heldout(X, y, train_size=80, repeats=2, seed=0)
    assert res["spearman_mean"] > 0.8 and res["n_test"] == n - 80 and len(res["models"]) == 2
    for r in range(2):
        train = np.random.default_rng(r).permutation(n)[:80]
        y2 = y.copy()
        test = np.setdiff1d(np.arange(n), train)
        y2.iloc[test] = rng.permutation(y2.iloc[test].to_numpy())
        again = predict_heldout(X, y2, train_size=80, repeats=2, seed=0)
        assert again["models"][r] == res["models"][r]
        assert again["per_repeat"][r] != res["per_repeat"][r]  # the scores did see the scrambled targets
    name, cv = select_model(X.to_numpy()[:80], y.to_numpy()[:80], {"rf3": (("rf3", "all"),), "gp": (("gp", "all"),)},
                            folds=4)
    assert name in cv and all(-1 <= v <= 1 for v in cv.values())


def test_predict_cli(synth):
    path, _ = synth
    r = CliRunner().invoke(cli, ["predict", str(path), "--target", "pgd@Linf@1/255", "--train-size", "60",
                                 "--repeats", "2", "--encodings", "none", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    # the store's proxy 'good' drives pgd in the synthetic store: predictable from it
    assert {"spearman_mean", "spearman_std", "kendall_mean", "n_test", "models"} <= set(out)
    assert out["spearman_mean"] > 0.8 and out["n_test"] == 60
    r = CliRunner().invoke(cli, ["predict", str(path), "--target", "pgd@Linf@1/255", "--train-size", "30",
                                 "--repeats", "1", "--encodings", "none", "--json", "--train-select", "kmeans",
                                 "--selection", "best"])
    assert r.exit_code == 0, r.output
    km = json.loads(r.stdout)
    assert km["train_select"] == "kmeans" and km["selection"] == "best" and km["n_test"] == 90
    r = CliRunner().invoke(cli, ["predict", str(path), "--target", "nope", "--json"])
    assert r.exit_code == 2 and "unknown target" in r.output
    r = CliRunner().invoke(cli, ["predict", str(path), "--train-size", "5000"])
    assert r.exit_code == 2 and "only 120 cells" in r.output


def test_predict_cli_on_the_proxy_table_cells_only(synth, tmp_path):
    path, truth = synth
    full = pd.read_csv(_table_csv(tmp_path / "t.csv", truth))
    full.iloc[::3].to_csv(tmp_path / "part.csv", index=False)  # 40 of the 120 cells have proxies
    args = ["predict", str(path), "--target", "pgd@Linf@1/255", "--train-size", "25", "--repeats", "2",
            "--encodings", "none", "--no-store-proxies", "--json", "--model", "rf3"]
    r = CliRunner().invoke(cli, args + ["--proxies", str(tmp_path / "part.csv"), "--proxy-cells-only"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["n_test"] == 40 - 25  # held-out cells are the table's other cells, none with imputed proxies
    assert out["spearman_mean"] > 0.6  # the table's 'good' drives pgd
    r = CliRunner().invoke(cli, args + ["--proxies", str(tmp_path / "part.csv")])
    assert r.exit_code == 0 and json.loads(r.stdout)["n_test"] == 120 - 25
    # the same cells without the table's proxies as features: one feature fewer per dropped proxy, and 'good' gone
    r = CliRunner().invoke(cli, args + ["--proxies", str(tmp_path / "part.csv"), "--proxy-cells-only",
                                        "--proxy-names", "noise"])
    assert r.exit_code == 0, r.output
    nogood = json.loads(r.stdout)
    assert nogood["n_test"] == 15 and nogood["features"] == out["features"] - 1
    assert nogood["spearman_mean"] < out["spearman_mean"] - 0.2
    r = CliRunner().invoke(cli, args + ["--proxies", str(tmp_path / "part.csv"), "--proxy-names", "nope"])
    assert r.exit_code == 2 and "proxy:nope not in the table" in r.output
    r = CliRunner().invoke(cli, args + ["--proxy-cells-only"])
    assert r.exit_code == 2 and "need --proxies" in r.output


def test_analyze_with_proxy_table(synth, tmp_path):
    path, truth = synth
    csv = _table_csv(tmp_path / "t.csv", truth)
    r = CliRunner().invoke(cli, ["analyze", str(path), "--out", str(tmp_path / "rep"), "--sections", "ranking",
                                 "--n-boot", "50", "--n-boot-kendall", "0", "--proxies", str(csv), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "Zero-cost proxies vs the published robustness" in (tmp_path / "rep" / "report.html").read_text()
    r = CliRunner().invoke(cli, ["analyze", str(path), "--out", str(tmp_path / "rep2"), "--sections", "ranking",
                                 "--proxies", str(tmp_path / "missing.csv"), "--no-progress"])
    assert r.exit_code == 2 and "not found" in r.output


def test_seed_noise_invariants():
    rng = np.random.default_rng(0)
    base = rng.normal(size=30)
    long = pd.DataFrame([{"uid": u, "seed": s, "stable": base[u], "noisy": rng.normal()}
                         for u in range(30) for s in (0, 1, 2)])
    out = seed_noise(long, ["stable", "noisy"])
    assert out["stable"]["spearman_between_seeds"] == pytest.approx(1.0) and out["stable"]["noise_ratio"] < 1e-12
    assert abs(out["noisy"]["spearman_between_seeds"]) < 0.4 and out["noisy"]["noise_ratio"] > 1.0


@pytest.mark.slow
def test_export_from_a_pipeline_store(tmp_path):
    from distributed import Client, LocalCluster

    from robustbench_nas.pipelines import get_protocol, run_pipeline

    proto = get_protocol("tiny", archs=[5, 300], proxies=("params", "synflow", "nwot"), stages=("info", "proxies"),
                         proxy_images=8)  # fmt: skip
    seeds = proto.replace(archs=[5], seeds=(1, 2))
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as lc, \
            Client(lc) as c:
        run_pipeline(tmp_path / "p.zarr", proto, client=c, progress=False)
        run_pipeline(tmp_path / "s.zarr", seeds, client=c, progress=False)
    meta = export_table(tmp_path / "p.zarr", tmp_path / "t.csv", seeds_store=tmp_path / "s.zarr")
    df = pd.read_csv(tmp_path / "t.csv")
    assert list(df.columns) == ["arch_str", "uid", "params", "synflow", "nwot", "device"] and len(df) == meta["cells"] == 2
    from robustbench_nas.utils import device_label

    assert (df["device"] == device_label("cpu")).all() and meta["devices"] == {device_label("cpu"): 2}
    ds = load_store(str(tmp_path / "p.zarr"))
    np.testing.assert_array_equal(df["nwot"].to_numpy(), ds["proxy_value"].sel(proxy="nwot").values[:, 0])
    assert meta["batch_size"] == 8 and meta["seed"] == 0 and "torch" in meta["software"]
    assert meta["cost_per_cell_s"]["median"] > 0
    assert table_meta(tmp_path / "t.csv")["cells"] == 2
    s = pd.read_csv(tmp_path / "t_seeds.csv")
    assert sorted(s["seed"]) == [0, 1, 2] and set(meta["seed_noise"]) == {"params", "synflow", "nwot"}
    assert (s["device"] == device_label("cpu")).all()
    # a later export without the seeds store (another sitting) keeps the seed rows and their seed noise
    seeds_before = (tmp_path / "t_seeds.csv").read_bytes()
    again = export_table(tmp_path / "p.zarr", tmp_path / "t.csv")
    assert json.dumps(again["seed_noise"], sort_keys=True) == json.dumps(meta["seed_noise"], sort_keys=True)
    assert table_meta(tmp_path / "t.csv")["seed_noise"]["nwot"]["seeds"] == [0, 1, 2]
    assert (tmp_path / "t_seeds.csv").read_bytes() == seeds_before
    # ... unless those rows no longer match the table: named, and the files already written stay as they were
    s.loc[s["seed"] == 0, "nwot"] += 1.0
    s.to_csv(tmp_path / "t_seeds.csv", index=False, float_format="%.17g")
    before = {n: (tmp_path / n).read_bytes() for n in ("t.csv", "t.json")}
    with pytest.raises(ValueError, match=r"cell 5, nwot"):
        export_table(tmp_path / "p.zarr", tmp_path / "t.csv")
    assert {n: (tmp_path / n).read_bytes() for n in before} == before


@pytest.mark.slow
def test_a_partial_table_continues_on_another_machine(tmp_path):
    """resume_into: a store started from a partial table computes only the missing cells, and its export is the
    complete table bit for bit (the same run on one machine); another data file is refused before anything is made."""
    from distributed import Client, LocalCluster

    from robustbench_nas.analysis.proxy_table import resume_into
    from robustbench_nas.pipelines import get_protocol, run_pipeline
    from robustbench_nas.storage import DONE, RobustnessStore

    proto = get_protocol("tiny", archs=[5, 300, 1000], proxies=("params", "synflow", "nwot"),
                         stages=("info", "proxies"), proxy_images=8)  # fmt: skip
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as lc, \
            Client(lc) as c:
        run_pipeline(tmp_path / "full.zarr", proto, client=c, progress=False)
        export_table(tmp_path / "full.zarr", tmp_path / "full.csv")
        part = pd.read_csv(tmp_path / "full.csv")
        part.drop(index=1).to_csv(tmp_path / "part.csv", index=False, float_format="%.17g")  # a run stopped early
        (tmp_path / "part.json").write_text((tmp_path / "full.json").read_text())
        assert resume_into(tmp_path / "cont.zarr", tmp_path / "part.csv") == 2
        st = RobustnessStore.open(tmp_path / "cont.zarr")
        k = st.stage_pos("proxies")
        assert [int(v) for v in st.status()[:, 0, k]] == [DONE, 0, DONE]  # uid order: 5, 300, 1000
        with pytest.raises(FileExistsError, match="creates a new store"):
            resume_into(tmp_path / "cont.zarr", tmp_path / "part.csv")
        report = run_pipeline(tmp_path / "cont.zarr", None, client=c, progress=False)
    assert report.submitted == 4 and report.counts["proxies"]["done"] == 1  # 3 info units + the missing cell
    st = RobustnessStore.open(tmp_path / "cont.zarr")
    secs = st.stage_seconds()[:, 0, st.stage_pos("proxies")]
    assert np.isnan(secs[[0, 2]]).all() and secs[1] > 0  # restored rows were not recomputed
    export_table(tmp_path / "cont.zarr", tmp_path / "cont.csv")
    assert (tmp_path / "cont.csv").read_bytes() == (tmp_path / "full.csv").read_bytes()


def test_resume_into_refuses_other_images(tmp_path):
    from robustbench_nas.analysis.proxy_table import resume_into

    if not NPZ.is_file():
        pytest.skip("../shared/data/cifar10_test.npz not present")
    other = tmp_path / "other.npz"
    with np.load(NPZ) as z:
        np.savez(other, **{k: (255 - z[k]) if k == "x" else z[k] for k in z.files})
    with pytest.raises(ValueError, match=r"gives other proxy images .* pass the table's data file"):
        resume_into(tmp_path / "s.zarr", "shipped", data_root=other)
    assert not (tmp_path / "s.zarr").exists()


NPZ = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10_test.npz"


def test_shipped_table_is_consistent():
    from robustbench_nas.proxies.sample import shipped_sample
    from robustbench_nas.proxies import list_proxies

    raw_path = (Path(__file__).resolve().parents[1] / "robustbench_nas" / "analysis" / "data"
                / "nb201_cifar10_proxies.csv")
    raw = pd.read_csv(raw_path)
    assert list(raw.columns) == ["arch_str", "uid", *list_proxies()]
    meta = table_meta()
    assert meta["cells"] == len(raw) and meta["batch_size"] == 64 and meta["seed"] == 0
    # the whole stratified sample, once each
    sample = shipped_sample()
    assert len(raw) == meta["cells_planned"] == len(sample) == 500 and set(raw["uid"]) == set(sample)
    P = load_table()
    assert P.shape == (len(raw), len(list_proxies())) and np.isfinite(P.to_numpy()).mean() > 0.9
    # the seed-noise rows: the seeds protocol's cells at seeds 0, 1, 2 (seed 0 = the main table's rows: files in step)
    from robustbench_nas.pipelines import get_protocol

    seeds = pd.read_csv(raw_path.with_name("nb201_cifar10_proxies_seeds.csv"))
    cells = list(get_protocol("nb201-proxies-seeds").archs)
    assert sorted(seeds["seed"].unique()) == [0, 1, 2] and set(seeds["uid"]) == set(cells)
    assert len(seeds) == 3 * len(cells) and set(meta["seed_noise"]) == set(list_proxies())
    s0 = seeds[seeds["seed"] == 0].set_index("uid").loc[cells, list_proxies()]
    pd.testing.assert_frame_equal(s0, raw.set_index("uid").loc[cells, list_proxies()], check_exact=True)
    assert (seeds[seeds["seed"] == 1].set_index("uid").loc[cells, "plain"] != s0["plain"]).all()  # seeds differ


@pytest.mark.skipif(not NPZ.is_file(), reason="../shared/data/cifar10_test.npz not present")
def test_shipped_values_recompute():
    """Independent of the pipeline: the same images, network and seed through compute_proxies give the stored values,
    bit for bit for the proxies computed in float64 or from weights alone (params, flops, synflow, l2_norm), and to
    1e-3 relative for the float32 sums of gradients and activations (snip, fisher, jacob_cov, nwot, zen): another
    CPU sums them in another order (AVX2 vs AVX-512 kernels). Measured on an AMD EPYC (AVX2) against the table made
    on the team's earlier machine: up to 1.7e-4 relative (fisher), 1.1e-4 (snip); 0 on the same machine."""
    from robustbench_nas.pipelines.stages import derived_seed
    from robustbench_nas.data import get_dataset
    from robustbench_nas.proxies import compute_proxies

    raw = pd.read_csv(Path(__file__).resolve().parents[1] / "robustbench_nas" / "analysis" / "data"
                      / "nb201_cifar10_proxies.csv")
    row = raw.iloc[0]
    ds = get_dataset("npz", str(NPZ))
    sub = ds.split("train").subset(64, seed=derived_seed("nb201-proxies", "train", 64))
    cheap = ["params", "flops", "snip", "fisher", "synflow", "jacob_cov", "nwot", "zen", "l2_norm"]
    vals = compute_proxies(row["arch_str"], sub.images("cpu"), sub.labels("cpu"), cheap, seed=0, num_classes=10,
                           C=16, N=5, mean=ds.info.mean, std=ds.info.std)  # fmt: skip
    for name in ("params", "flops", "synflow", "l2_norm"):
        assert vals[name] == row[name], name  # %.17g in the CSV round-trips a double exactly
    for name in ("snip", "fisher", "jacob_cov", "nwot", "zen"):
        assert vals[name] == pytest.approx(row[name], rel=1e-3), name


def test_choose_candidate_one_standard_error_rule():
    from robustbench_nas.analysis.prediction import choose_candidate

    # hand-computed: 'a' has mean 0.78 and fold std 0.0570 (ddof=1), so SE 0.0255 and the bar is 0.7545
    cv = {"a": [0.8, 0.7, 0.75, 0.85, 0.8], "ab": [0.78, 0.7, 0.74, 0.82, 0.79], "abc": [0.6] * 5,
          "ac": [0.76, 0.7, 0.74, 0.8, 0.76]}  # ac: mean 0.752, just below the bar
    n = {"a": 1, "ab": 2, "abc": 3, "ac": 2}
    assert choose_candidate(cv, n, "best") == "a"
    assert choose_candidate(cv, n, "1se") == "ab"
    cv["abc"] = [0.77, 0.7, 0.75, 0.8, 0.76]  # mean 0.756 >= 0.7545: the most-averaged near candidate wins
    assert choose_candidate(cv, n, "1se") == "abc"
    cv["a"] = [0.8, float("nan"), 0.75, 0.85, 0.8]  # NaN folds are left out of mean and SE
    assert choose_candidate(cv, n, "best") == "a"
    with pytest.raises(KeyError, match="unknown selection rule"):
        choose_candidate(cv, n, "median")


def test_representative_splits_cover_every_cluster_and_ignore_targets():
    from robustbench_nas.analysis.prediction import predict_heldout, representative_splits

    rng = np.random.default_rng(0)
    centres = rng.normal(scale=20.0, size=(12, 4))
    feats = np.concatenate([c + rng.normal(size=(30, 4)) for c in centres])  # 12 well-separated blobs of 30 cells
    blob = np.repeat(np.arange(12), 30)
    splits = list(representative_splits(feats, 12, repeats=3, seed=0))
    for r, tr, te in splits:
        assert tr.size == 12 and np.array_equal(np.sort(np.concatenate([tr, te])), np.arange(360))
        assert sorted(blob[tr]) == list(range(12))  # one training cell per blob: the sample represents all cells
    again = list(representative_splits(feats, 12, repeats=3, seed=0))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(splits, again))  # seeded
    # the selection never reads the target: any target gives the same training cells in predict_heldout
    X = pd.DataFrame(feats, columns=["route_a", "route_b", "prop_c", "prop_d"])
    y1 = pd.Series(blob + rng.normal(scale=0.1, size=360), name="t")
    y2 = pd.Series(rng.permutation(y1.to_numpy()), name="t")
    r1 = predict_heldout(X, y1, train_size=40, repeats=2, seed=0, model="rf3", train_select="kmeans")
    r2 = predict_heldout(X, y2, train_size=40, repeats=2, seed=0, model="rf3", train_select="kmeans")
    assert r1["n_test"] == r2["n_test"] == 320 and r1["train_select"] == "kmeans"
    assert r1["spearman_mean"] > 0.9 and r2["spearman_mean"] < 0.5  # learns y1's blob structure, not y2's noise
    with pytest.raises(KeyError, match="unknown train selection"):
        predict_heldout(X, y1, train_size=40, repeats=1, model="rf3", train_select="sobol")


def test_predict_cli_choices_are_the_library_ones():
    # the CLI lists the choices literally (importing sklearn at CLI start-up is slow); they must stay the library's
    from robustbench_nas.analysis.prediction import SELECTION_RULES, TRAIN_SELECTIONS
    from robustbench_nas.cli.commands.predict import command

    opts = {p.name: p for p in command.params}
    assert tuple(opts["train_select"].type.choices) == TRAIN_SELECTIONS
    assert tuple(opts["selection"].type.choices) == SELECTION_RULES


def _naive_variance_design(feats: np.ndarray, k: int, noise: float = 0.1) -> list[int]:
    """The greedy design written the obvious way: the whole n x n posterior covariance, updated after each pick."""
    from sklearn.preprocessing import StandardScaler

    Z = StandardScaler().fit_transform(feats)
    D2 = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1)
    ell2 = np.median(D2[~np.eye(len(Z), dtype=bool)][::97])
    C = np.exp(-D2 / (2 * ell2))
    chosen: list[int] = []
    for _ in range(k):
        score = (C**2).sum(0) / (np.diag(C) + noise)
        score[chosen] = -np.inf
        x = int(np.argmax(score))
        chosen.append(x)
        c = C[:, x].copy()
        C -= np.outer(c, c) / (c[x] + noise)
    return sorted(chosen)


def test_variance_design_is_the_greedy_gp_design():
    from robustbench_nas.analysis.prediction import predict_heldout, variance_reduction_design, variance_splits

    rng = np.random.default_rng(3)
    feats = rng.normal(size=(240, 5)) * [1, 2, 0.5, 1, 3]
    tr = variance_reduction_design(feats, 25)
    assert tr.tolist() == _naive_variance_design(feats, 25)  # the in-place, low-memory updates change nothing
    # separated blobs: the first picks cover every blob (a second cell of a blob explains less than a new blob)
    centres = rng.normal(scale=20.0, size=(6, 3))
    blobs = np.concatenate([c + rng.normal(size=(40, 3)) for c in centres])
    assert sorted(np.repeat(np.arange(6), 40)[variance_reduction_design(blobs, 6)]) == list(range(6))
    # large stores: a seeded subset of reference cells bounds the memory; still a valid design
    sub = variance_reduction_design(feats, 25, max_entries=240 * 60, seed=1)
    assert sub.size == 25 and len(set(sub.tolist())) == 25
    splits = list(variance_splits(feats, 25, repeats=2, seed=0))
    assert all(np.array_equal(s[1], tr) and s[1].size + s[2].size == 240 for s in splits)
    X = pd.DataFrame(feats, columns=["route_a", "route_b", "prop_c", "prop_d", "prop_e"])
    y = pd.Series(feats[:, 0] + 0.1 * rng.normal(size=240), name="t")
    res = predict_heldout(X, y, train_size=25, repeats=2, model="rf3", train_select="variance")
    assert res["train_select"] == "variance" and res["n_test"] == 215
    with pytest.raises(ValueError, match="train size"):
        variance_reduction_design(feats, 240)


def test_rank_proxies_topk_precision_at_1_and_5_percent():
    # 200 cells: the target's top 1 % is cells {0, 1}, its top 5 % cells {0..9}. Proxy "half" puts cell 0 and
    # cells 0, 2, 4, 6, 8 of the top 5 % first; "rev" orders everything backwards (precision 0 at both fractions)
    n = 200
    idx = pd.Index(range(n), name="arch")
    y = np.arange(n, 0, -1, dtype=np.float64)  # cell 0 best
    half = np.zeros(n)
    half[[0, 2, 4, 6, 8]] = [10, 9, 8, 7, 6]
    half[[100, 101, 102, 103, 104]] = [5.5, 5.4, 5.3, 5.2, 5.1]  # the other half of its top 10 lies outside
    half[[1]] = -1.0  # cell 1 (target's second) is nowhere near its top
    P = pd.DataFrame({"proxy:half": half, "proxy:rev": -y}, index=idx)
    T = pd.DataFrame({"clean": y / n}, index=idx)
    R = rank_proxies(P, T, ProxyStudyConfig(n_boot=20, clean_threshold=None)).set_index("feature")
    assert topk_column(0.01) == "top1%_precision" and topk_column(0.05) == "top5%_precision"
    assert R.loc["half", "top1%_precision"] == 0.5  # top 2: {0, 2} vs {0, 1}
    assert R.loc["half", "top5%_precision"] == 0.5  # top 10: {0,2,4,6,8,100..104} vs {0..9}
    assert R.loc["rev", "top1%_precision"] == 0.0 and R.loc["rev", "top5%_precision"] == 0.0


def test_signed_log_is_monotone_and_finite_for_the_references_infinite_values() -> None:
    from robustbench_nas.analysis.proxy_study import signed_log

    df = pd.DataFrame({"nwot": [-np.inf, 120.0, 80.5, np.nan, -np.inf], "synflow": [1e49, 0.0, -3.0, 2.0, 5.0],
                       "zen": [np.inf, 1.0, 2.0, 3.0, 4.0]})
    out = signed_log(df)
    by_hand = np.sign(df["synflow"]) * np.log1p(df["synflow"].abs())
    assert out["synflow"].tolist() == by_hand.tolist()  # finite columns: the plain transform
    nwot = out["nwot"].to_numpy()
    assert np.isnan(nwot[3]) and np.isfinite(np.delete(nwot, 3)).all()
    assert nwot[0] == nwot[4] == np.log1p(80.5) - 1.0  # one unit below the finite minimum: still the lowest rank
    assert out["zen"][0] == np.log1p(4.0) + 1.0
    fin = ~df["nwot"].isna()
    assert (st.rankdata(df["nwot"][fin]) == st.rankdata(out["nwot"][fin])).all()


def test_export_keeps_a_finer_device_label_of_the_same_row(tmp_path: Path) -> None:
    from robustbench_nas.analysis.proxy_table import _kept_device_labels

    old = pd.DataFrame({"arch_str": ["a", "b", "c", "d"], "uid": [1, 2, 3, 4], "p": [0.5, np.nan, 2.0, 3.0],
                        "device": ["cpu AVX512 (Intel AMX BF16 VNNI)", "cpu AVX512 (Intel AMX BF16 VNNI)",
                                   "cpu AVX512 (Intel AMX BF16 VNNI)", "cpu AVX2"]})
    out = tmp_path / "t.csv"
    old.to_csv(out, index=False, float_format="%.17g")
    store_rows = pd.DataFrame({"uid": [1, 2, 3, 4, 5], "p": [0.5, np.nan, 2.0000000000000004, 3.0, 1.0],
                               "device": ["cpu AVX512", "cpu AVX512", "cpu AVX512", "cpu AVX512", "cpu AVX512"]})
    got = _kept_device_labels(out, store_rows, ["p"])["device"].tolist()
    # 1, 2: same values (NaN = NaN), finer label kept; 3: another value; 4: not a refinement; 5: not in the table
    assert got == ["cpu AVX512 (Intel AMX BF16 VNNI)", "cpu AVX512 (Intel AMX BF16 VNNI)", "cpu AVX512", "cpu AVX512",
                   "cpu AVX512"]
    assert _kept_device_labels(tmp_path / "absent.csv", store_rows, ["p"]) is store_rows
