"""The DARTS space: strings, count, index, canonical uid, networks and their costs, errors, enumeration refusals."""

from __future__ import annotations

import json
from math import comb

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from robustbench_nas.cli.main import cli
from robustbench_nas.search_spaces import ArchitectureError, NotEnumerableError, get_search_space
from robustbench_nas.search_spaces.darts import CELL_CHOICES, NAMED_GENOTYPES, NUM_GENOTYPES
from robustbench_nas.search_spaces.darts_genotype import DARTS_OPS, DartsCell, DartsGenotype, parse_genotype

SPACE = get_search_space("darts")
# DARTS_V2 exactly as printed by the DARTS repository (``cnn/genotypes.py``)
DARTS_V2 = NAMED_GENOTYPES["DARTS_V2"]
# its NASLib compact form, written by hand from the string (op index = PRIMITIVES index - 1)
DARTS_V2_COMPACT = ("(((0, 3), (1, 3), (0, 3), (1, 3), (1, 3), (0, 2), (0, 2), (2, 5)), "
                    "((0, 0), (1, 0), (2, 2), (1, 0), (0, 0), (2, 2), (2, 2), (1, 0)))")


def random_genotype(rng: np.random.Generator) -> DartsGenotype:
    """A genotype with random (non-canonical) edge order, drawn independently of the space's sampler."""
    def cell() -> DartsCell:
        edges = []
        for node in range(2, 6):
            a, b = rng.permutation(node)[:2]
            edges += [(DARTS_OPS[rng.integers(7)], int(a)), (DARTS_OPS[rng.integers(7)], int(b))]
        return DartsCell(tuple(edges))

    return DartsGenotype(cell(), cell())


# ---- strings, count, index -----------------------------------------------------------------------------------------
def test_count_by_hand():
    per_cell = comb(2, 2) * comb(3, 2) * comb(4, 2) * comb(5, 2) * 7**8  # unordered input pairs x an op per edge
    assert per_cell == CELL_CHOICES == 1_037_664_180
    assert SPACE.num_cells == NUM_GENOTYPES == 1_076_746_950_455_072_400 == per_cell**2
    assert NUM_GENOTYPES < np.iinfo(np.int64).max
    assert np.int64(SPACE.num_cells - 1) == SPACE.num_cells - 1  # the store's arch coordinate holds every index


def test_cli_count_json():
    res = CliRunner().invoke(cli, ["space", "count", "--space", "darts", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["cells"] == 1_076_746_950_455_072_400


def test_darts_string_round_trip():
    assert str(parse_genotype(DARTS_V2)) == DARTS_V2
    for s in NAMED_GENOTYPES.values():
        g = parse_genotype(s)
        assert parse_genotype(str(g)) == g
        assert parse_genotype(g.compact_str()) == g  # compact form carries the same edges in the same order
    # range(2, 6) as in the DARTS repository reads as [2, 3, 4, 5]
    assert "range" not in str(parse_genotype(NAMED_GENOTYPES["PDARTS"]))


def test_compact_form_by_hand():
    g = parse_genotype(DARTS_V2)
    assert g.compact_str() == DARTS_V2_COMPACT
    assert parse_genotype(DARTS_V2_COMPACT) == g
    assert SPACE.index_of(DARTS_V2_COMPACT) == SPACE.index_of(DARTS_V2) == SPACE.index_of("darts_v2")


def test_first_and_last_index_by_hand():
    first = SPACE.decode(0)
    assert first.normal.edges == (("max_pool_3x3", 0), ("max_pool_3x3", 1)) * 4 == first.reduce.edges
    last = SPACE.decode(SPACE.num_cells - 1)
    assert [i for _, i in last.normal.edges] == [0, 1, 1, 2, 2, 3, 3, 4]  # the last pair of each node
    assert {op for op, _ in last.normal.edges + last.reduce.edges} == {"dil_conv_5x5"}
    # the least significant digit is the op of the higher input of the reduce cell's last node
    one = SPACE.decode(1)
    assert one.reduce.edges[-1] == ("avg_pool_3x3", 1) and one.normal == first.normal
    with pytest.raises(ArchitectureError, match="out of range"):
        SPACE.decode(SPACE.num_cells)


def test_index_round_trip_random():
    rng = np.random.default_rng(0)
    for _ in range(300):
        g = random_genotype(rng)
        i = SPACE.index_of(g)
        assert 0 <= i < SPACE.num_cells
        assert SPACE.decode(i) == g.canonical()
        assert SPACE.index_of(SPACE.format(g)) == i == SPACE.index_of(SPACE.arch_str(i))
    for i in rng.integers(0, SPACE.num_cells, size=300, dtype=np.int64):
        assert SPACE.index_of(SPACE.decode(int(i))) == int(i)


def test_edge_order_within_a_node_is_the_same_index():
    g = parse_genotype(NAMED_GENOTYPES["DARTS_V1"])  # its first normal node lists input 1 before input 0
    assert g.normal.edges[:2] == (("sep_conv_3x3", 1), ("sep_conv_3x3", 0))
    assert SPACE.uid(g) == SPACE.uid(g.canonical()) == SPACE.index_of(g)
    assert SPACE.functional_key(g) == SPACE.functional_key(g.canonical())


# ---- errors ----------------------------------------------------------------------------------------------------------
def _with(cell: str, edges: str) -> str:
    other = "[" + ", ".join(["('max_pool_3x3', 0), ('max_pool_3x3', 1)"] * 4) + "]"
    normal, reduce = (edges, other) if cell == "normal" else (other, edges)
    return f"Genotype(normal={normal}, normal_concat=[2, 3, 4, 5], reduce={reduce}, reduce_concat=[2, 3, 4, 5])"


@pytest.mark.parametrize("cell, edges, message", [
    ("reduce", "[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
               "('conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1)]",
     r"reduce cell, node 4 \(edge 4\): unknown op 'conv_3x3'"),
    ("normal", "[('none', 0), ('max_pool_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
               "('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1)]",
     r"normal cell, node 2 \(edge 0\): op 'none' is not chosen"),
    ("normal", "[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('sep_conv_3x3', 2), ('sep_conv_3x3', 3), "
               "('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1)]",
     r"normal cell, node 3 \(edge 3\): input 3 is not an earlier node"),
    ("reduce", "[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
               "('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 4), ('skip_connect', 4)]",
     r"reduce cell, node 5: both edges take input 4"),
    ("normal", "[('max_pool_3x3', 0), ('max_pool_3x3', 1)]", r"normal cell has 2 edges, expected 8"),
])
def test_errors_name_cell_node_and_problem(cell, edges, message):
    with pytest.raises(ArchitectureError, match=message):
        SPACE.decode(_with(cell, edges))


def test_other_errors():
    bad_concat = DARTS_V2.replace("reduce_concat=[2, 3, 4, 5]", "reduce_concat=[2, 3]")
    with pytest.raises(ArchitectureError, match=r"reduce_concat = \[2, 3\]"):
        SPACE.decode(bad_concat)
    with pytest.raises(ArchitectureError, match=r"reduce cell, node 5 \(edge 7\): op index 7 is not in 0..6"):
        SPACE.decode(DARTS_V2_COMPACT[:-4] + "7)))")
    with pytest.raises(ArchitectureError, match="not a Genotype"):
        SPACE.decode("Genotype(normal=[")
    with pytest.raises(ArchitectureError, match="missing field"):
        SPACE.decode("Genotype(normal=[], reduce=[])")


# ---- enumeration refusals --------------------------------------------------------------------------------------------
def test_enumeration_is_refused_with_what_to_do():
    assert not SPACE.enumerable and get_search_space("nb201").enumerable
    for call in (SPACE.uid_table, SPACE.unique_indices):
        with pytest.raises(NotEnumerableError, match="--archs N"):
            call()
    from robustbench_nas.pipelines import get_protocol

    with pytest.raises(NotEnumerableError, match="@FILE"):
        get_protocol("tiny", search_space="darts", archs="all").resolve_archs()
    res = CliRunner().invoke(cli, ["space", "list", "--space", "darts"])
    assert res.exit_code == 2 and "cannot be enumerated" in res.output and len(res.output.strip().splitlines()) == 1


# ---- sampling and search ---------------------------------------------------------------------------------------------
def test_sampling_seeded_distinct_uniform():
    a = SPACE.sample(500, seed=3)
    assert a == SPACE.sample(500, seed=3) != SPACE.sample(500, seed=4)
    assert len(set(a)) == 500 and a == sorted(a)
    ops = np.array([[DARTS_OPS.index(op) for op, _ in SPACE.decode(i).normal.edges] for i in a])
    counts = np.bincount(ops.ravel(), minlength=7)
    # each op 1/7 of the 4000 edges: a 5-sigma band around 571
    assert np.all(np.abs(counts - 4000 / 7) < 5 * np.sqrt(4000 * (1 / 7) * (6 / 7))), counts
    last_pairs = [tuple(i for _, i in SPACE.decode(i).reduce.edges[6:]) for i in a]
    assert len(set(last_pairs)) == comb(5, 2)  # node 5 picks among all 10 input pairs


def test_neighbours_and_mutate():
    i = SPACE.index_of(DARTS_V2)
    nb = SPACE.neighbours(i)
    # per cell: 8 edges x 6 other ops + each edge of node j may move to the j - 2 unused earlier nodes
    assert len(nb) == len(set(nb)) == 2 * (8 * 6 + 2 * (0 + 1 + 2 + 3)) and i not in nb
    g = SPACE.decode(i)
    for j in nb:
        h = SPACE.decode(j)
        diff = sum(a != b for c in ("normal", "reduce") for a, b in zip(g.cell(c).edges, h.cell(c).edges))
        assert diff in (1, 2)  # one edge changed (2 when re-sorting the node's pair swaps the edges' positions)
    rng = np.random.default_rng(0)
    assert all(SPACE.mutate(i, rng) in set(nb) for _ in range(50))


# ---- networks and costs ----------------------------------------------------------------------------------------------
def test_published_param_counts():
    assert SPACE.cost("DARTS_V2", C=36, layers=20).params == 3_349_342  # DARTS README: 3.3M; count_parameters_in_MB
    assert round(SPACE.cost("PC_DARTS", C=36, layers=20).params / 1e6, 1) == 3.6  # PC-DARTS paper
    assert round(SPACE.cost("PDARTS", C=36, layers=20).params / 1e6, 1) == 3.4  # P-DARTS paper


def test_darts_v2_built_full_size():
    net = SPACE.build_network("DARTS_V2", C=36, layers=20, auxiliary=True)
    as_darts = sum(p.numel() for n, p in net.named_parameters() if "auxiliary" not in n)
    assert as_darts == 3_349_342
    assert sum(p.numel() for p in net.parameters()) > as_darts  # the auxiliary head exists and is left out


def test_analytic_costs_equal_built_networks():
    rng = np.random.default_rng(1)
    configs = [(4, 5, (3, 32, 32)), (6, 8, (3, 32, 32)), (4, 3, (1, 16, 16)), (8, 6, (3, 24, 24))]
    for k, i in enumerate(SPACE.sample(20, seed=11)):
        C, layers, shape = configs[k % len(configs)]
        n_cls = int(rng.integers(2, 20))
        analytic = SPACE.cost(i, n_cls, shape, C=C, layers=layers)
        built = SPACE.measure_cost(i, n_cls, shape, C=C, layers=layers)
        assert analytic == built, (i, C, layers, shape)


def test_builder_takes_a_decoded_genotype():
    from robustbench_nas.models.darts import DartsNetwork

    with pytest.raises(TypeError, match="decoded DartsGenotype"):
        DartsNetwork(DARTS_V2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unknown DARTS network options"):
        SPACE.build_network("DARTS_V2", N=5)


def _swap_node_edges(g: DartsGenotype, kind: str, node: int) -> DartsGenotype:
    edges = list(g.cell(kind).edges)
    edges[2 * node], edges[2 * node + 1] = edges[2 * node + 1], edges[2 * node]
    cell = DartsCell(tuple(edges))
    return DartsGenotype(cell, g.reduce) if kind == "normal" else DartsGenotype(g.normal, cell)


def test_equal_uids_give_equal_outputs():
    """Swapping the two edges of a node keeps the uid; carrying the weights across (op 2k <-> 2k + 1 of every cell
    of that type) gives the same outputs on random weights, so the uid merges only equal functions."""
    torch.manual_seed(0)
    rng = np.random.default_rng(5)
    x = torch.rand(3, 3, 16, 16)
    for trial in range(3):
        g = random_genotype(rng)
        kind, node = ("normal", "reduce")[trial % 2], int(rng.integers(4))
        h = _swap_node_edges(g, kind, node)
        assert SPACE.uid(g) == SPACE.uid(h) and g != h
        a = SPACE.build_network(g, C=4, layers=5).eval()
        b = SPACE.build_network(h, C=4, layers=5).eval()
        with torch.no_grad():
            for p in a.parameters():
                p.normal_()
            for m in a.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.normal_()
                    m.running_var.uniform_(0.5, 2)
        state = {}
        for key, v in a.state_dict().items():
            parts = key.split(".")
            if parts[0] == "cells" and parts[2] == "_ops" and a.cells[int(parts[1])].reduction == (kind == "reduce"):
                e = int(parts[3])
                if e // 2 == node:
                    parts[3] = str(e ^ 1)
            state[".".join(parts)] = v
        b.load_state_dict(state)
        with torch.no_grad():
            ya, yb = a(x), b(x)
        torch.testing.assert_close(ya, yb, rtol=1e-5, atol=1e-5)
        assert SPACE.uid(SPACE.neighbours(g)[0]) != SPACE.uid(g)


def test_network_conventions():
    net = SPACE.build_network("PC_DARTS", num_classes=7, C=4, layers=5, in_channels=1, mean=(0.5,), std=(0.25,))
    assert net.space_name == "darts" and net.arch_str == str(parse_genotype(NAMED_GENOTYPES["PC_DARTS"]))
    x = torch.rand(2, 1, 16, 16)
    assert net(x).shape == (2, 7) and net.features(x).shape == (2, 4 * 4 * 4, 4, 4)
    rebuilt = SPACE.build_network(**{k: v for k, v in net.config.items() if k != "space"})
    rebuilt.load_state_dict(net.state_dict())  # the config rebuilds the network (checkpoints)
    net.eval(), rebuilt.eval()
    torch.testing.assert_close(net(x), rebuilt(x))


def test_cli_show_darts_v2():
    for arch in (DARTS_V2, DARTS_V2_COMPACT, "DARTS_V2"):
        res = CliRunner().invoke(cli, ["space", "show", arch, "--space", "darts", "--C", "36", "--layers", "20",
                                       "--json"])
        assert res.exit_code == 0, res.output
        row = json.loads(res.output)
        assert row["params"] == 3.349342 and row["flops"] == SPACE.cost(DARTS_V2, C=36, layers=20).flops.published / 1e6
    res = CliRunner().invoke(cli, ["space", "show", "DARTS_V3", "--space", "darts"])
    assert res.exit_code == 2 and "malformed DARTS genotype" in res.output


# ---- encodings -------------------------------------------------------------------------------------------------------
def test_encodings_by_hand():
    f = SPACE.encode_one("DARTS_V2", SPACE.resolve_encodings("all"))
    # normal cell (canonical): n2 = sep(0) + sep(1), n3 = sep(0) + sep(1), n4 = skip(0) + sep(1), n5 = skip(0) + dil(2)
    assert f["normal_count_sep_conv_3x3"] == 5 and f["normal_count_skip_connect"] == 2 and f["normal_parametric"] == 6
    assert f["normal_adj_2->5"] == 1 and f["normal_adj_1->5"] == 0
    everything = "pool+skip+sep+dil"
    # paths from the inputs: n2, n3, n4 two each, n5 one via skip and two via n2: 9; shortest 1, longest 2
    assert (f[f"normal_{everything}_paths"], f[f"normal_{everything}_min_path"],
            f[f"normal_{everything}_max_path"]) == (9, 1, 2)
    assert f[f"normal_{everything}_outdeg0"] == 4 and f[f"normal_{everything}_outdeg1"] == 3
    # only skips: n4 and n5 reached from input 0, one path each
    assert f["normal_skip_paths"] == 2 and f["normal_skip_reached"] == 2 and f["normal_skip_max_path"] == 1
    assert set(SPACE.resolve_encodings("default")) <= set(SPACE.list_encodings())


# ---- profiles, training, pipeline ------------------------------------------------------------------------------------
def test_darts_profiles_and_network_options():
    from robustbench_nas.training import get_profile

    nb301 = get_profile("darts-nb301")
    assert (nb301.C, nb301.epochs, nb301.batch_size, nb301.auxiliary_weight, nb301.drop_path_prob, nb301.cutout,
            nb301.grad_clip) == (32, 100, 96, 0.4, 0.2, 16, 5.0)
    assert SPACE.network_options(nb301) == {"C": 32, "layers": 8}
    assert SPACE.training_network_options(nb301) == {"C": 32, "layers": 8, "auxiliary": True}
    assert SPACE.network_options(get_profile("darts-eval")) == {"C": 36, "layers": 20}
    assert SPACE.network_options(get_profile("tiny")) == {"C": 4, "layers": 5}
    # NB301's network: DARTS_V2 at C=32, 8 cells
    assert SPACE.cost("DARTS_V2", C=32, layers=8) == SPACE.measure_cost("DARTS_V2", C=32, layers=8)


def test_cutout_by_hand():
    from robustbench_nas.training.cutout import cutout

    x = torch.zeros(64, 2, 10, 10)
    y = cutout(x, 4, (0.25, 0.75), torch.Generator().manual_seed(0))
    covered = (y[:, 0] == 0.25)
    assert torch.equal(covered, y[:, 1] == 0.75)
    sides = covered.sum(dim=(1, 2))
    assert sides.max() == 16 and sides.min() >= 4  # a 4x4 square, clipped at the border (at least 2x2)
    rows = covered.any(dim=2).sum(dim=1)
    assert rows.max() == 4


def test_drop_path_and_auxiliary_training(tmp_path):
    from robustbench_nas.data import get_dataset
    from robustbench_nas.training import get_profile, load_checkpoint, save_checkpoint, train_model

    net = SPACE.build_network("DARTS_V2", C=4, layers=5)
    x = torch.rand(8, 3, 32, 32)
    net.train()
    net.drop_path_prob = 0.5
    torch.manual_seed(0)
    a = net(x)
    b = net(x)
    assert not torch.allclose(a, b)  # drop path is random in training
    net.eval()
    torch.testing.assert_close(net(x), net(x))  # and off in eval mode

    rng = np.random.default_rng(0)
    npz = tmp_path / "d.npz"
    np.savez(npz, x=rng.integers(0, 256, (60, 32, 32, 3), dtype=np.uint8), y=np.arange(60) % 3)
    ds = get_dataset("npz", str(npz))
    prof = get_profile("darts-nb301", epochs=2, batch_size=16, C=4, N=1, max_train_images=32)
    res = train_model("PC_DARTS", ds, prof, seed=0, device="cpu", progress=False, space="darts")
    assert res.model.auxiliary_head is None and res.model.config["auxiliary"] is False
    assert res.model.drop_path_prob == 0.0 and len(res.history) == 2
    path = save_checkpoint(tmp_path / "ck", res.model, res.meta)
    again, _ = load_checkpoint(path)
    torch.testing.assert_close(again(x[:2]), res.model(x[:2]))
    with pytest.raises(ValueError, match="no drop path"):
        train_model(0, ds, get_profile("tiny", drop_path_prob=0.1, epochs=1), space="nb201", progress=False)


def test_parse_archs_genotypes():
    from robustbench_nas.pipelines import parse_archs

    assert parse_archs(DARTS_V2) == [DARTS_V2] and parse_archs(DARTS_V2_COMPACT) == [DARTS_V2_COMPACT]
    assert parse_archs("DARTS_V2,PC_DARTS") == ["DARTS_V2", "PC_DARTS"]
    assert parse_archs("3,1") == [3, 1]


def test_run_refuses_all_and_writes_a_darts_store(tmp_path):
    import xarray as xr

    res = CliRunner().invoke(cli, ["run", "--space", "darts", "--protocol", "tiny", "--archs", "all", "--store",
                                   str(tmp_path / "all.zarr")])
    assert res.exit_code == 2 and "--archs N" in res.output and len(res.output.strip().splitlines()) == 1
    store = tmp_path / "s.zarr"
    res = CliRunner().invoke(cli, ["run", "--space", "darts", "--protocol", "tiny", "--archs", "DARTS_V2",
                                   "--stages", "info,proxies", "--set", "proxies=[\"params\", \"flops\", \"croze\"]",
                                   "--workers", "1", "--no-progress", "--store", str(store)])
    assert res.exit_code == 0, res.output
    ds = xr.open_zarr(store)
    assert ds["arch"].values.tolist() == [SPACE.index_of(DARTS_V2)]
    assert str(ds["arch_str"].values[0]) == SPACE.arch_str(SPACE.index_of(DARTS_V2))
    assert parse_genotype(str(ds["compact"].values[0])) == parse_genotype(DARTS_V2).canonical()


def test_darts_jung2023_protocol():
    from robustbench_nas import attacks, corruptions
    from robustbench_nas.pipelines import ProtocolConfig, get_protocol
    from robustbench_nas.proxies import list_proxies
    from robustbench_nas.training import list_profiles

    p = get_protocol("darts-jung2023")
    j = get_protocol("jung2023")
    assert p.search_space == "darts" and p.train_profile == "darts-nb301" in list_profiles()
    assert p.attacks == j.attacks and p.corruptions == j.corruptions and set(p.proxies) <= set(list_proxies())
    assert set(p.attacks) <= set(attacks.list_attacks()) and set(p.corruptions) <= set(corruptions.list_corruptions())
    cells = p.resolve_archs()
    assert len(cells) == 100
    uids = {c[0] for c in cells}
    assert {SPACE.uid(n) for n in NAMED_GENOTYPES} <= uids
    assert uids - {SPACE.uid(n) for n in NAMED_GENOTYPES} == set(SPACE.sample(96, seed=0))
    q = ProtocolConfig.from_dict(p.to_dict())
    assert q == p and q.fingerprint() == p.fingerprint()
