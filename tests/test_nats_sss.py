"""NATS-Bench size space (SSS): index order, strings, costs on every architecture against an independent count,
the network against NATS-Bench's layout, stores of both spaces side by side, analysis on an SSS store, CLI."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from robustbench_nas.cli.main import cli
from robustbench_nas.models import count_flops, count_params
from robustbench_nas.search_spaces import ArchitectureError, get_search_space, list_search_spaces
from robustbench_nas.storage import DONE, create_store
from synthetic_stores import write_clean_pgd_store

WIDTHS = (8, 16, 24, 32, 40, 48, 56, 64)


@pytest.fixture(scope="module")
def sss():
    return get_search_space("nats-sss")


# ---- an independent count: every layer listed explicitly, vectorised over all 32768 architectures ----------------
def _all_channels() -> np.ndarray:
    """(32768, 5) channels with C1 the most significant digit, built with itertools order (independent of the space)."""
    import itertools

    return np.array(list(itertools.product(WIDTHS, repeat=5)), dtype=np.int64)


def _independent_counts(ch: np.ndarray, num_classes: int = 10, hw: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(params, NATS-Bench FLOPs) from an explicit list of conv / BN / linear layers of DynamicShapeTinyNet.

    Conv FLOPs = out_h * out_w * Cout * Cin * k * k (no bias); linear = in * out + out; BN and pooling are free.
    """
    C1, C2, C3, C4, C5 = (ch[:, k] for k in range(5))
    convs: list[tuple[np.ndarray, np.ndarray, int, int, np.ndarray]] = []  # (cin, cout, k, out_hw, present)
    bns: list[tuple[np.ndarray, np.ndarray]] = []  # (channels, present)
    one = np.ones_like(C1, dtype=bool)
    r1, r2, r3 = hw * hw, (hw // 2) ** 2, (hw // 4) ** 2
    convs.append((np.full_like(C1, 3), C1, 3, r1, one)); bns.append((C1, one))  # stem
    for ci, co, r in ((C1, C1, r1), (C2, C3, r2), (C4, C5, r3)):  # cells: edges 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2
        for src_is_input in (True, True, False):
            convs.append((ci if src_is_input else co, co, 3, r, one)); bns.append((co, one))
        proj = ci != co  # 3<-0 skip_connect: conv1x1 + BN only when the width changes
        convs.append((ci, co, 1, r, proj)); bns.append((co, proj))
        for _ in range(2):
            convs.append((co, co, 3, r, one)); bns.append((co, one))
    for ci, co, r in ((C1, C2, r2), (C3, C4, r3)):  # residual blocks: conv_a (stride 2), conv_b, shortcut 1x1
        convs.append((ci, co, 3, r, one)); bns.append((co, one))
        convs.append((co, co, 3, r, one)); bns.append((co, one))
        convs.append((ci, co, 1, r, one))
    bns.append((C5, one))  # lastact
    params = sum(np.where(p, ci * co * k * k, 0) for ci, co, k, _r, p in convs)
    params = params + sum(np.where(p, 2 * c, 0) for c, p in bns) + C5 * num_classes + num_classes
    flops = sum(np.where(p, r * ci * co * k * k, 0) for ci, co, k, r, p in convs) + C5 * num_classes + num_classes
    return params, flops


def test_independent_count_matches_published_values():
    ch = np.array([[8] * 5, [64] * 5])
    params, flops = _independent_counts(ch)
    # NATS-Bench SSS (CIFAR-10 head): 8:8:8:8:8 0.011714 M / 4.481114 MFLOPs; 64:64:64:64:64 0.713674 M / 274.399882
    assert params.tolist() == [11714, 713674]
    assert flops.tolist() == [4481114, 274399882]


def test_costs_of_every_architecture_equal_the_independent_count(sss):
    ch = _all_channels()
    params, flops = _independent_counts(ch)
    got_p = np.empty(len(ch), dtype=np.int64)
    got_f = np.empty(len(ch), dtype=np.int64)
    for i in range(sss.num_cells):
        c = sss.cost(i)
        got_p[i], got_f[i] = c.params, c.flops.published
    np.testing.assert_array_equal(got_p, params)
    np.testing.assert_array_equal(got_f, flops)
    assert sss.cost("8:8:8:8:8").params / 1e6 == 0.011714
    assert sss.cost("64:64:64:64:64").flops.published / 1e6 == pytest.approx(274.399882, abs=1e-9)


def test_costs_equal_counting_on_the_built_network(sss):
    idx = sss.sample(12, seed=1) + [0, 32767, sss.index_of("64:8:64:8:64"), sss.index_of("8:64:8:64:8")]
    for i in idx:
        net = sss.build_network(i)
        f = count_flops(net)  # hooks on the real network, the SSS convention taken from the model
        c = sss.cost(i)
        assert count_params(net) == c.params, sss.arch_str(i)
        assert f.published == c.flops.published and f.plain == c.flops.plain, sss.arch_str(i)
        assert f.published == f.plain + 10  # conv + linear MACs + the linear bias
    # another input size and head (digits-like 8x8 grey images, 100 classes)
    net = sss.build_network(idx[0], 100, in_channels=1, mean=(0.5,), std=(0.25,))
    assert count_params(net) == sss.cost(idx[0], 100, (1, 8, 8)).params
    assert count_flops(net, (1, 8, 8)).published == sss.cost(idx[0], 100, (1, 8, 8)).flops.published


# ---- index order, strings, isomorphism, neighbourhoods -------------------------------------------------------------
def test_registry_and_aliases(sss):
    assert {"nb201", "nats-sss"} <= set(list_search_spaces())
    assert get_search_space("sss") is sss and get_search_space("NATS-Bench-SSS") is sss
    with pytest.raises(KeyError, match="unknown search space"):
        get_search_space("nats-xyz")


def test_index_order_and_roundtrip(sss):
    assert sss.num_cells == sss.num_unique == 32768
    assert [sss.arch_str(i) for i in (0, 1, 7, 8, 32767)] == [
        "8:8:8:8:8", "8:8:8:8:16", "8:8:8:8:64", "8:8:8:16:8", "64:64:64:64:64"]
    assert sss.arch_str(8 ** 4) == "16:8:8:8:8"  # C1 is the most significant digit
    strs = [sss.arch_str(i) for i in range(sss.num_cells)]
    assert strs == [":".join(map(str, r)) for r in _all_channels()]
    assert all(sss.index_of(s) == i for i, s in enumerate(strs))
    np.testing.assert_array_equal(sss.uid_table(), np.arange(32768))  # no isomorphism: every arch is its own class
    assert sss.uid("24:8:64:8:40") == sss.index_of("24:8:64:8:40") and sss.unique_indices() == list(range(32768))
    np.testing.assert_array_equal(sss.channel_table(), _all_channels())
    assert sss.index_of((64, 8, 16, 8, 8)) == sss.index_of("64:8:16:8:8") == sss.index_of(str(sss.index_of("64:8:16:8:8")))


@pytest.mark.parametrize("bad, msg", [
    ("8:8:8:8", "expected 5 channel counts"), ("8:8:8:8:8:8", "expected 5 channel counts"),
    ("8:8:x:8:8", "C3 = 'x' is not a whole number"), ("8:8:8:12:8", "C4 = 12"), ("8:8:8:8:72", "C5 = 72"),
    ("", "expected 5 channel counts"), ("32768", "out of range"), ("-1", "out of range"), (3.5, "cannot read"),
    ((8, 8, 8), "has 5 channel counts"), ("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", "malformed"),
])
def test_malformed_architectures_are_clear_errors(sss, bad, msg):
    with pytest.raises(ArchitectureError, match=msg):
        sss.index_of(bad)


def test_neighbours_mutation_and_sampling(sss):
    a = sss.index_of("8:16:24:32:40")
    nb = sss.neighbours(a)
    assert len(nb) == len(set(nb)) == 35 and a not in nb
    base = np.array(sss.decode(a))
    assert all((np.array(sss.decode(n)) != base).sum() == 1 for n in nb)
    rng = np.random.default_rng(0)
    assert all(sss.mutate(a, rng) in nb for _ in range(50))
    s1, s2 = sss.sample(20, seed=3), sss.sample(20, seed=3)
    assert s1 == s2 == sorted(set(s1)) and len(s1) == 20


# ---- the network -------------------------------------------------------------------------------------------------
def test_network_layout_follows_natsbench(sss):
    net = sss.build_network("16:32:48:64:8")
    assert net.stem[0].in_channels == 3 and net.stem[0].out_channels == 16
    kinds = [type(m).__name__ for m in net.cells]
    assert kinds == ["InferCell", "ResNetBasicBlock", "InferCell", "ResNetBasicBlock", "InferCell"]
    c2 = net.cells[2]  # cell 32 -> 48: edges from the input map 32 -> 48, skip 3<-0 becomes conv1x1 + BN (no ReLU)
    convs = [[m for m in e.modules() if isinstance(m, nn.Conv2d)] for e in c2.edges]
    assert [(c[0].in_channels, c[0].out_channels, c[0].kernel_size[0]) for c in convs] == [
        (32, 48, 3), (32, 48, 3), (48, 48, 3), (32, 48, 1), (48, 48, 3), (48, 48, 3)]
    assert not any(isinstance(m, nn.ReLU) for m in c2.edges[3].modules())
    assert isinstance(net.cells[0].edges[3], nn.Identity)  # cell 16 -> 16: a plain skip
    assert net.cells[1].conv_a[1].stride == (2, 2) and net.classifier.in_features == 8
    x = torch.rand(3, 3, 32, 32)
    assert net(x).shape == (3, 10) and net.features(x).shape == (3, 8, 8, 8)


def test_seeded_build_and_checkpoint_roundtrip(sss, tmp_path):
    from robustbench_nas.training import load_checkpoint, save_checkpoint

    torch.manual_seed(3)
    a = sss.build_network("24:40:8:64:16")
    torch.manual_seed(3)
    b = sss.build_network("24:40:8:64:16")
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    path = save_checkpoint(tmp_path / "m", a.eval(), {"note": "sss"})
    m, meta = load_checkpoint(path)
    assert meta["model"]["space"] == "nats-sss" and m.arch_str == "24:40:8:64:16"
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(m(x), a(x))
    with pytest.raises(TypeError, match="C does not apply"):
        sss.build_network(0, C=16)


def test_proxies_on_an_sss_network(sss):
    from robustbench_nas.proxies import compute_proxies

    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.arange(8) % 10
    v = compute_proxies("8:16:24:32:40", x, y, ["params", "flops", "synflow", "nwot", "croze"], seed=0,
                        space="nats-sss")
    c = sss.cost("8:16:24:32:40")
    assert v["params"] == pytest.approx(c.params / 1e6) and v["flops"] == pytest.approx(c.flops.published / 1e6)
    assert all(np.isfinite(list(v.values())))
    again = compute_proxies("8:16:24:32:40", x, y, ["synflow", "nwot"], seed=0, space="nats-sss")
    assert again["synflow"] == v["synflow"] and again["nwot"] == v["nwot"]


def test_training_profiles():
    from robustbench_nas.training import get_profile

    for name, epochs in (("nats-sss-90e", 90), ("nats-sss-12e", 12)):
        p = get_profile(name)  # NATS-Bench hyper-opts 90E / 12E: SGD nesterov, lr 0.1 cosine to 0, wd 5e-4, bs 256
        assert (p.epochs, p.lr, p.schedule, p.nesterov, p.momentum, p.weight_decay, p.batch_size, p.warmup_fraction) \
            == (epochs, 0.1, "cosine", True, 0.9, 5e-4, 256, 0.0)


# ---- encodings ---------------------------------------------------------------------------------------------------
def test_encodings_and_costs_table():
    from robustbench_nas.analysis.encodings import arch_costs, encode, list_encodings

    X = encode(["8:16:64:8:32"], "all", space="nats-sss").iloc[0]
    assert [X[f"C{k}"] for k in range(1, 6)] == [8, 16, 64, 8, 32]
    assert X["C3=64"] == 1 and X["C3=8"] == 0 and sum(X[f"C1={w}"] for w in WIDTHS) == 1
    assert X["width_min"] == 8 and X["width_max"] == 64 and X["width_narrowings"] == 1 and X["width_widenings"] == 3
    assert X["width_bottleneck"] == 8 / 64 and X["width_blocks_mean"] == 12
    assert {"channels", "onehot", "width", "default"} <= set(list_encodings("nats-sss"))
    assert list(encode(["8:8:8:8:8"], "default", space="nats-sss").columns[:5]) == [f"C{k}" for k in range(1, 6)]
    with pytest.raises(ValueError, match="unknown encoding"):
        encode(["8:8:8:8:8"], "graf", space="nats-sss")
    c = arch_costs(["8:8:8:8:8", "64:64:64:64:64"], space="nats-sss")
    assert c["params"].tolist() == [11714, 713674] and c["flops"].tolist() == pytest.approx([4.481114, 274.399882])


# ---- stores of both spaces side by side ------------------------------------------------------------------------------
def test_stores_of_both_spaces_side_by_side(tmp_path):
    import xarray as xr

    from robustbench_nas.pipelines import get_protocol

    paths = {}
    for space in ("nb201", "nats-sss"):
        proto = get_protocol("tiny", search_space=space, archs=4)
        spec = proto.store_spec()
        paths[space] = tmp_path / f"{space}.zarr"
        create_store(paths[space], spec)
    nb = xr.open_zarr(paths["nb201"])
    ss = xr.open_zarr(paths["nats-sss"])
    nb201, sss = get_search_space("nb201"), get_search_space("nats-sss")
    assert all(nb201.index_of(str(s)) >= 0 for s in nb["arch_str"].values) and "nb201_index" in nb.coords
    assert all(len(str(s).split(":")) == 5 for s in ss["arch_str"].values) and "nb201_index" not in ss.coords
    for k in range(1, 6):  # the per-layer widths are coordinates of the SSS store
        assert [int(v) for v in ss[f"c{k}"].values] == [sss.decode(int(a))[k - 1] for a in ss["arch"].values]
    assert [str(s) for s in ss["arch_str"].values] == [sss.arch_str(int(a)) for a in ss["arch"].values]
    assert nb.attrs["spec"]["search_space"] == "nb201" and ss.attrs["spec"]["search_space"] == "nats-sss"


def test_protocol_space_names():
    from robustbench_nas.pipelines import get_protocol

    assert get_protocol("tiny", search_space="SSS").search_space == "nats-sss"
    assert get_protocol("tiny").search_space == "nb201"
    with pytest.raises(ValueError, match="unknown search space"):
        get_protocol("tiny", search_space="no-such-space")
    ref = get_protocol("nats-sss-jung2023")
    j = get_protocol("jung2023")
    assert ref.search_space == "nats-sss" and ref.train_profile == "nats-sss-90e" and ref.archs == "all"
    assert ref.attacks == j.attacks and ref.corruptions == j.corruptions and ref.proxies == j.proxies
    assert len(ref.resolve_archs()) == 32768


# ---- analysis on an SSS store --------------------------------------------------------------------------------------
def _synthetic_sss_store(path: Path, n: int = 300, seed: int = 0):
    """Accuracies known functions of width: clean grows with C5, PGD with the mean width."""
    sp = get_search_space("nats-sss")
    uids = sp.sample(n, seed=seed)
    ch = sp.channel_table(uids).astype(float)
    rng = np.random.default_rng(seed)
    clean = 0.5 + 0.005 * ch[:, 4] + 0.005 * rng.normal(size=n)
    pgd = 0.1 + 0.004 * ch.mean(axis=1) + 0.005 * rng.normal(size=n)
    write_clean_pgd_store(path, sp, uids, clean, pgd, [sp.cost(u) for u in uids])
    return path, ch, clean


def test_analysis_of_an_sss_store(tmp_path):
    from robustbench_nas.analysis import architecture as arch
    from robustbench_nas.analysis.targets import features_table, load_store, store_space, targets_table

    path, ch, clean = _synthetic_sss_store(tmp_path / "sss.zarr")
    ds = load_store(str(path))
    assert store_space(ds) == "nats-sss"
    T, F = targets_table(ds), features_table(ds, encodings="default")
    assert {"C1", "C5", "width_mean", "params", "flops"} <= set(F.columns)
    np.testing.assert_array_equal(F["C5"].to_numpy(), ch[:, 4])
    eff = arch.choice_effects(T, ["clean"], "nats-sss")
    c5 = eff[eff["position_label"] == "C5"].sort_values("choice")
    assert c5["choice"].tolist() == list(WIDTHS) and np.all(np.diff(c5["mean"]) > 0)  # clean grows with C5
    by = arch.robustness_by_params(T, F["params"], "clean", rel_width=0.02)
    assert len(by) and (by["n"] >= 2).all() and (by["range"] >= 0).all()
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["analyze", str(path), "--out", str(out), "--space", "nats-sss", "--n-boot", "20",
                                 "--n-boot-kendall", "5", "--train-sizes", "100", "--repeats", "1", "--models",
                                 "ridge", "--search-budget", "30", "--search-repeats", "2", "--no-progress"])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["search_space"] == "nats-sss" and summary["same_params_rule"].startswith("within 2 %")
    pred = {(p["target"], p["train_size"]): p["spearman_mean"] for p in summary["prediction"]}
    assert pred[("clean", 100)] > 0.8  # the channel encodings (free features, as rbnas predict) predict a width-driven target
    assert (out / "figures" / "width_effects.png").is_file() and (out / "width_effects.csv").is_file()
    assert "width_slopes_per_channel" in summary and not (out / "op_edge_effects.csv").exists()
    best = (out / "best_cells.csv").read_text()
    assert ":" in best.splitlines()[1]
    bad = CliRunner().invoke(cli, ["analyze", str(path), "--out", str(out), "--space", "nb201"])
    assert bad.exit_code == 2 and "holds the nats-sss search space" in bad.output


# ---- CLI -----------------------------------------------------------------------------------------------------------
def test_space_cli():
    r = CliRunner().invoke(cli, ["space", "count", "--space", "nats-sss", "--json"])
    assert json.loads(r.output) == {"cells": 32768, "unique": 32768, "functions": 32768}
    r = CliRunner().invoke(cli, ["space", "--space", "nats-sss", "show", "8:8:8:8:8", "--json"])
    assert json.loads(r.output) == {"index": 0, "arch_str": "8:8:8:8:8", "uid": 0, "params": 0.011714,
                                    "flops": 4.481114, "flops_plain": 4.481104}
    r = CliRunner().invoke(cli, ["space", "list", "--space", "nats-sss", "--format", "csv", "--no-progress"])
    rows = list(csv.DictReader(io.StringIO(r.output)))
    assert len(rows) == 32768 and list(rows[0])[:5] == ["index", "arch_str", "uid", "params", "flops"]
    assert rows[-1]["arch_str"] == "64:64:64:64:64" and float(rows[-1]["flops"]) == 274.399882
    r = CliRunner().invoke(cli, ["space", "show", "--space", "nats-sss", "8:8:8:8:9"])
    assert r.exit_code == 2 and "C5 = 9" in r.output
    r = CliRunner().invoke(cli, ["space", "count", "--space", "no-such-space"])
    assert r.exit_code == 2 and "unknown search space" in r.output


def test_proxies_and_train_cli(tmp_path):
    r = CliRunner().invoke(cli, ["proxies", "8:16:24:32:40", "0", "--space", "nats-sss", "--proxies",
                                 "params,flops", "--batch-size", "4", "--threads", "1"])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [row["arch_str"] for row in rows] == ["8:16:24:32:40", "8:8:8:8:8"]
    assert float(rows[1]["params"]) == pytest.approx(11714 / 1e6)  # digits: RGB 16x16, 10 classes: the CIFAR-10 parameter count
    r = CliRunner().invoke(cli, ["proxies", "0", "--space", "nats-sss", "--C", "8", "--proxies", "params"])
    assert r.exit_code == 2 and "C does not apply" in r.output
    r = CliRunner().invoke(cli, ["train", "8:8:8:8:16", "--space", "nats-sss", "--set", "epochs=1", "--threads",
                                 "1", "--out", str(tmp_path / "t"), "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout[r.stdout.index("{"):])
    assert m["space"] == "nats-sss" and m["arch_str"] == "8:8:8:8:16" and m["index"] == 1


@pytest.mark.slow
def test_run_tiny_protocol_on_sss_end_to_end(tmp_path):
    """`rbnas run --space nats-sss --protocol tiny --store S` and xarray.open_zarr(S) shows SSS strings."""
    import xarray as xr

    store = tmp_path / "S.zarr"
    r = CliRunner().invoke(cli, ["run", "--space", "nats-sss", "--protocol", "tiny", "--store", str(store),
                                 "--archs", "2", "--set", "attack_images=16", "--set", "corruption_images=20",
                                 "--set", 'profile_overrides={"epochs": 2, "max_train_images": 256}', "--workers", "1", "--threads", "1", "--no-progress"])
    assert r.exit_code == 0, r.output
    ds = xr.open_zarr(store)
    sss = get_search_space("nats-sss")
    assert [str(s) for s in ds["arch_str"].values] == [sss.arch_str(int(a)) for a in ds["arch"].values]
    assert (ds["status"].values == DONE).all()
    assert ds.attrs["protocol"]["search_space"] == "nats-sss"
    np.testing.assert_array_equal(ds["params"].values, [sss.cost(int(a), 10, (3, 16, 16)).params for a in ds["arch"].values])
    assert np.isfinite(ds["clean_accuracy"].values).all() and np.isfinite(ds["adv_accuracy"].values).any()
