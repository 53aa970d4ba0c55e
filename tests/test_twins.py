"""Functional twins of NB201 (cells NB201's rule keeps apart although they compute the same function) and the
test-retest noise of a target estimated from them."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustbench_nas.analysis.twins import functional_keys, store_reliability, target_reliability, twin_groups
from robustbench_nas.analysis.report import AnalysisConfig, run_analysis
from robustbench_nas.analysis.targets import load_store
from robustbench_nas.search_spaces import get_search_space
from robustbench_nas.search_spaces.nb201 import OPS, Cell, functional_key, isomorphism_key
from robustbench_nas.storage import DONE, StoreSpec, create_store


def _numeric_outputs(cells: list[Cell], dim: int = 6, seed: int = 0) -> np.ndarray:
    """Each cell evaluated as a formula on one random input: every op a fixed random map with op(0) = 0 (the
    convolutions nonlinear, the pool linear, skip the identity, none zero), shape (cells, dim)."""
    rng = np.random.default_rng(seed)
    W3, W1, P = (rng.normal(size=(dim, dim)) for _ in range(3))
    fn = {"none": lambda v: np.zeros_like(v), "skip_connect": lambda v: v, "nor_conv_3x3": lambda v: np.tanh(v @ W3.T),
          "nor_conv_1x1": lambda v: np.tanh(v @ W1.T) ** 3, "avg_pool_3x3": lambda v: v @ P.T}  # fmt: skip
    x = rng.normal(size=dim)
    ops = np.array([c.ops for c in cells])
    nodes = [np.broadcast_to(x, (len(cells), dim))]
    k = 0
    for j in (1, 2, 3):
        acc = np.zeros((len(cells), dim))
        for i in range(j):
            for op, f in fn.items():
                m = ops[:, k] == op
                acc[m] += f(nodes[i][m])
            k += 1
        nodes.append(acc)
    return nodes[3]


def test_functional_key_is_the_function_of_the_cell():
    # independent truth: equal keys <=> equal outputs of the cell read as a formula with random ops (op(0) = 0,
    # NB201's own assumption), over all 15625 cells
    cells = [Cell(o) for o in itertools.product(OPS, repeat=6)]
    out = np.round(_numeric_outputs(cells), 9)
    by_value: dict[bytes, set[str]] = {}
    by_key: dict[str, set[bytes]] = {}
    for c, row in zip(cells, out):
        k, v = functional_key(c), row.tobytes()
        by_value.setdefault(v, set()).add(k)
        by_key.setdefault(k, set()).add(v)
    assert all(len(s) == 1 for s in by_value.values()) and all(len(s) == 1 for s in by_key.values())
    assert len(by_key) == 4660
    # NB201's 6466 classes each lie inside one functional class (its rule is finer, never coarser)
    nb = {}
    for c in cells:
        nb.setdefault(isomorphism_key(c), set()).add(functional_key(c))
    assert len(nb) == 6466 and all(len(s) == 1 for s in nb.values())


def test_swapping_nodes_one_and_two_is_a_twin():
    # with edge 2<-1 = none, relabelling nodes 1 and 2 is a graph isomorphism: same functional key always,
    # and NB201's rule tells most of these pairs apart
    told_apart = 0
    for o in itertools.product(OPS, repeat=6):
        if o[2] != "none":
            continue
        a, b = Cell(o), Cell((o[1], o[0], "none", o[3], o[5], o[4]))
        assert functional_key(a) == functional_key(b)
        told_apart += isomorphism_key(a) != isomorphism_key(b)
    assert told_apart > 1000


def test_space_functional_keys():
    nb = get_search_space("nb201")
    a = "|nor_conv_3x3~0|+|avg_pool_3x3~0|none~1|+|skip_connect~0|nor_conv_1x1~1|none~2|"
    b = "|avg_pool_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"
    assert nb.uid(a) != nb.uid(b) and nb.functional_key(a) == nb.functional_key(b)
    assert len({nb.functional_key(u) for u in nb.unique_indices()}) == 4660
    sss = get_search_space("nats-sss")  # the default: no twins beyond the isomorphism rule
    keys = [sss.functional_key(i) for i in range(0, sss.num_cells, 97)]
    assert len(set(keys)) == len(keys)


def test_twin_groups_and_hand_computed_reliability():
    groups = twin_groups(["a", "b", "a", None, "c", "b", "b", float("nan"), "d"])
    assert [g.tolist() for g in groups] == [[0, 2], [1, 5, 6]]
    T = pd.DataFrame({"y": [0.1, 0.2, 0.3, 0.9, 0.5, 0.5, 0.8, 0.4, np.nan]})
    r = target_reliability(T, groups, n_boot=0, min_groups=1).iloc[0]
    # group 1: (0.1, 0.3), ss 0.02, dof 1; group 2: (0.2, 0.5, 0.8), mean 0.5, ss 0.18, dof 2 -> 0.2 / 3
    assert r["noise_var"] == pytest.approx(0.2 / 3)
    total = np.var([0.1, 0.2, 0.3, 0.9, 0.5, 0.5, 0.8, 0.4], ddof=1)
    assert r["noise_fraction"] == pytest.approx(0.2 / 3 / total)
    assert r["ceiling"] == pytest.approx(np.sqrt(1 - 0.2 / 3 / total))
    assert (r["twin_groups"], r["twin_cells"]) == (2, 5)
    # too few groups: no estimate rather than a meaningless one
    assert np.isnan(target_reliability(T, groups, n_boot=0).iloc[0]["noise_var"])


def test_reliability_recovers_a_known_noise():
    # y = g(class) + e with sd(e) = 0.05, 400 classes of 1-4 members: the estimate recovers var(e), the interval
    # covers it, and the twins' rank correlation is what the noise implies
    rng = np.random.default_rng(1)
    sizes = rng.integers(1, 5, size=400)
    cls = np.repeat(np.arange(400), sizes)
    g = rng.normal(0.4, 0.1, size=400)[cls]
    y = g + rng.normal(0, 0.05, size=len(cls))
    R = target_reliability(pd.DataFrame({"y": y, "g": g}), twin_groups(list(cls)), n_boot=500)
    r = R.set_index("target").loc["y"]
    assert r["noise_sd"] == pytest.approx(0.05, rel=0.08)
    assert r["noise_fraction_lo"] <= 0.05**2 / np.var(y, ddof=1) <= r["noise_fraction_hi"]
    assert r["ceiling"] == pytest.approx(np.corrcoef(g, y)[0, 1], abs=0.01)
    assert R.set_index("target").loc["g", "noise_var"] < 1e-30  # a noise-free target has none


def _twin_store(path: Path, noise_sd: float, seed: int = 0) -> Path:
    """A store over 60 NB201 functional-twin groups (uids), accuracy = a function of the class + noise."""
    space = get_search_space("nb201")
    by_key: dict[str, list[int]] = {}
    for u in space.unique_indices():
        by_key.setdefault(space.functional_key(u), []).append(u)
    groups = [v for v in by_key.values() if len(v) > 1][:60]
    uids = sorted(u for g in groups for u in g)
    rng = np.random.default_rng(seed)
    level = {k: rng.uniform(0.3, 0.9) for k in by_key}
    clean = np.array([level[space.functional_key(u)] for u in uids]) + rng.normal(0, noise_sd, size=len(uids))
    spec = StoreSpec(archs=uids, arch_str=[space.arch_str(u) for u in uids], seeds=[0], attacks={}, corruptions=[],
                     proxies=[], stages=["clean"], shard_cells=len(uids))  # fmt: skip
    store = create_store(path, spec)
    store.write_array("clean_accuracy", clean[:, None])
    store.set_status("clean", DONE)
    return path


def test_report_section_on_a_store_with_twins(tmp_path):
    path = _twin_store(tmp_path / "s.zarr", noise_sd=0.02)
    ds = load_store(str(path))
    keys = functional_keys(ds)
    assert keys.index.equals(pd.Index(np.asarray(ds["arch"].values).astype(np.int64), name="arch"))
    summary = run_analysis(ds, tmp_path / "rep", AnalysisConfig(sections=("target_reliability",)))
    R = pd.read_csv(tmp_path / "rep" / "target_reliability.csv").set_index("target")
    assert R.loc["clean", "twin_groups"] == 60
    assert R.loc["clean", "noise_sd"] == pytest.approx(0.02, rel=0.25)
    assert summary["target_reliability"]["clean"]["ceiling"] == pytest.approx(R.loc["clean", "ceiling"], abs=1e-4)
    assert (tmp_path / "rep" / "figures" / "twin_scatter.png").stat().st_size > 0
    assert "functional twins" in (tmp_path / "rep" / "report.html").read_text()


def test_report_section_skipped_without_twins(tmp_path):
    from tests.test_analysis_pipeline import _synthetic_store

    path, _ = _synthetic_store(tmp_path / "s.zarr", n=30)
    summary = run_analysis(load_store(str(path)), tmp_path / "rep", AnalysisConfig(sections=("target_reliability",)))
    assert "target_reliability" not in summary and not (tmp_path / "rep" / "target_reliability.csv").exists()


@pytest.mark.slow
def test_release_twins(jung2023_root: Path, tmp_path: Path):
    # the published release: 6466 cells, 4660 functions; the twins' spread is the run-to-run noise
    from robustbench_nas.analysis.importer import import_jung2023

    import_jung2023(jung2023_root, tmp_path / "j.zarr")
    ds = load_store(str(tmp_path / "j.zarr"))
    keys = functional_keys(ds)
    assert len(keys) == 6466 and keys.nunique() == 4660
    R = store_reliability(ds, n_boot=200).set_index("target")
    assert R.loc["pgd@Linf@1/255", "twin_groups"] == 753 and R.loc["pgd@Linf@1/255", "twin_cells"] == 2559
    # clean accuracy repeats to within a fraction of a percent; small-eps PGD much less well
    assert R.loc["clean", "noise_fraction"] < 0.02 < R.loc["pgd@Linf@1/255", "noise_fraction"] < 0.15
    json.dumps(R.reset_index().to_dict(orient="records"))  # plain numbers


def test_predict_scores_the_twin_free_cells_apart():
    # features that only name the function (a random code per class) and a target set by the class: a held-out
    # cell is predicted well only when its twin was a training cell, so the twin-free score is the honest one
    from robustbench_nas.analysis.prediction import predict_heldout

    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 4, size=300)
    cls = np.repeat(np.arange(300), sizes)
    idx = pd.Index(np.arange(len(cls)), name="arch")
    code = rng.normal(size=(300, 3))[cls]
    F = pd.DataFrame(code, index=idx, columns=["a", "b", "c"])
    y = pd.Series(rng.normal(size=300)[cls] + 0.01 * rng.normal(size=len(cls)), index=idx, name="t")
    keys = pd.Series([f"k{c}" for c in cls], index=idx)
    res = predict_heldout(F, y, train_size=250, repeats=3, model="et", twin_keys=keys)
    assert res["spearman_mean"] > res["spearman_twin_free_mean"] + 0.2
    seen_share = 1 - res["n_test_twin_free"] / res["n_test"]
    assert 0.1 < seen_share < 0.9
    assert "spearman_twin_free_mean" not in predict_heldout(F, y, train_size=250, repeats=1, model="et")


def test_predict_cli_reports_twin_free_scores(tmp_path):
    from click.testing import CliRunner

    from robustbench_nas.cli.main import cli

    path = _twin_store(tmp_path / "s.zarr", noise_sd=0.01)
    r = CliRunner().invoke(cli, ["predict", str(path), "--target", "clean", "--train-size", "40", "--repeats", "2",
                                 "--model", "rf", "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["n_test_twin_free"] < out["n_test"] and np.isfinite(out["spearman_twin_free_mean"])


def test_twins_are_the_same_network():
    # the real NB201 network: two parameter-free cells NB201 counts apart, pool(x) + pool(x) and pool(x + x), give
    # the same outputs with the same stem / blocks / head (built from one seed: no cell parameter to differ)
    import torch

    nb = get_search_space("nb201")
    a = "|skip_connect~0|+|skip_connect~0|none~1|+|none~0|avg_pool_3x3~1|avg_pool_3x3~2|"
    b = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|"
    assert nb.uid(a) != nb.uid(b) and nb.functional_key(a) == nb.functional_key(b)
    c = "|skip_connect~0|+|skip_connect~0|none~1|+|none~0|avg_pool_3x3~1|none~2|"  # pool(x): another function
    assert nb.functional_key(c) != nb.functional_key(a)
    nets = []
    for s in (a, b, c):
        torch.manual_seed(0)
        nets.append(nb.build_network(s, C=8, N=1).eval())
    assert [n for n, _ in nets[0].named_parameters()] == [n for n, _ in nets[1].named_parameters()]
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        out = [n(x) for n in nets]
    torch.testing.assert_close(out[0], out[1], rtol=1e-5, atol=1e-6)
    assert (out[0] - out[2]).abs().max() > 1e-3
