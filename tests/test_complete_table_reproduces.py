"""Rows of the complete NB201 proxy table (``nb201_cifar10_proxies_all.csv``, protocol ``nb201-proxies-all``, one
torch thread) reproduce bit for bit through the ``reproduce_cell`` command of its JSON (``rbnas proxies`` with the
pinned images, seed, thread count and engine), every proxy: the rows whose ``device`` is this machine's
(``cpu AVX2``, ``cpu AVX512``: other float32 kernels sum in another order, see tests/test_images.py for the
cross-machine agreement).

Skips where the shared CIFAR-10 file is absent, or where no row was computed on this machine's CPU capability."""

from __future__ import annotations

import csv
import io
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
NPZ = REPO.parent / "shared" / "data" / "cifar10_test.npz"
TABLE = REPO / "robustbench_nas" / "analysis" / "data" / "nb201_cifar10_proxies_all.csv"


def test_complete_table_is_consistent_with_its_protocol():
    from robustbench_nas.analysis.proxy_table import table_meta
    from robustbench_nas.pipelines import get_protocol
    from robustbench_nas.proxies import list_proxies
    from robustbench_nas.proxies.sample import shipped_order

    if not TABLE.is_file():
        pytest.skip("the complete table has no rows yet")
    raw = pd.read_csv(TABLE)
    meta = table_meta(TABLE)
    proto = get_protocol("nb201-proxies-all")
    assert list(raw.columns) == ["arch_str", "uid", *list_proxies(), "device"] and meta["cells"] == len(raw)
    assert meta["devices"] == raw["device"].value_counts().to_dict() and raw["device"].str.startswith("cpu ").all()
    assert "cpu_capability" not in meta  # one value for the whole table would be wrong for some rows
    assert meta["cells_planned"] == len(proto.archs) == 6466 and meta["protocol"] == "nb201-proxies-all"
    assert meta["proxy_engine"] == "fast" and meta["protocol_fields"]["proxy_engine"] == "fast"
    assert raw["uid"].is_unique and set(raw["uid"]) <= set(shipped_order())
    assert meta["nan_per_proxy"] == {p: int(raw[p].isna().sum()) for p in list_proxies()}
    assert meta["infinite_per_proxy"] == {p: int(np.isinf(raw[p].to_numpy(dtype=float)).sum()) for p in list_proxies()}
    # computed in the run order by a few workers: the rows are (nearly) a prefix of it
    pos = sorted(shipped_order().index(u) for u in raw["uid"])
    assert pos[-1] < len(raw) + 16


@pytest.mark.slow
@pytest.mark.skipif(not NPZ.is_file(), reason="../shared/data/cifar10_test.npz not present")
def test_three_rows_of_this_cpu_class_reproduce_bit_for_bit_from_the_json_command():
    from click.testing import CliRunner

    from robustbench_nas.analysis.proxy_table import table_meta
    from robustbench_nas.cli.main import cli
    from robustbench_nas.proxies import list_proxies
    from robustbench_nas.utils import device_label

    here = device_label("cpu")
    raw = pd.read_csv(TABLE) if TABLE.is_file() else pd.DataFrame(columns=["device"])
    mine = raw[raw["device"] == here]
    if len(mine) < 3:
        pytest.skip(f"fewer than 3 rows of the complete table were computed on this CPU class ({here}; the table "
                    f"has {raw['device'].value_counts().to_dict()}): other kernels round float32 sums otherwise")
    rows = mine.iloc[[0, len(mine) // 2, len(mine) - 1]]
    template = table_meta(TABLE)["reproduce_cell"]
    assert "--engine fast" in template and "--threads 1" in template
    prev = torch.get_num_threads()
    try:
        for _, row in rows.iterrows():
            args = shlex.split(template.format(arch=row["arch_str"]))[1:]
            args = [a.replace("../shared/data/cifar10_test.npz", str(NPZ)) for a in args]
            args = [a.replace("@robustbench_nas/", f"@{REPO}/robustbench_nas/") for a in args]
            r = CliRunner().invoke(cli, args)
            assert r.exit_code == 0, r.output
            got = next(csv.DictReader(io.StringIO(r.stdout)))
            for name in list_proxies():
                want = row[name]
                assert (pd.isna(want) and got[name] in ("", "nan")) or float(got[name]) == want, (row["uid"], name)
    finally:
        torch.set_num_threads(prev)


def test_seed_rows_of_the_complete_table_are_in_step_with_it():
    """``nb201_cifar10_proxies_all_seeds.csv`` (protocol ``nb201-proxies-all-seeds``: the first cells of the run
    order at seeds 1 and 2, same images): its seed-0 rows are the table's rows, bit for bit; each cell's seeds
    differ (the initialisation is seeded); the JSON's seed noise covers every proxy."""
    from robustbench_nas.analysis.proxy_table import table_meta
    from robustbench_nas.pipelines import get_protocol
    from robustbench_nas.proxies import list_proxies

    path = TABLE.with_name("nb201_cifar10_proxies_all_seeds.csv")
    if not path.is_file():
        pytest.skip("the complete table's seed rows are not computed yet")
    raw, seeds, meta = pd.read_csv(TABLE), pd.read_csv(path), table_meta(TABLE)
    assert list(seeds.columns) == ["arch_str", "uid", "seed", *list_proxies(), "device"]
    assert set(seeds["uid"]) <= set(get_protocol("nb201-proxies-all-seeds").archs)
    per_cell = seeds.groupby("uid")["seed"].apply(sorted)
    assert all(s == [0, 1, 2] for s in per_cell), "every cell of the seed rows has seeds 0, 1, 2"
    s0 = seeds[seeds["seed"] == 0].set_index("uid").sort_index()
    pd.testing.assert_frame_equal(s0[[*list_proxies(), "device"]],
                                  raw.set_index("uid").loc[s0.index, [*list_proxies(), "device"]], check_exact=True)
    s1 = seeds[seeds["seed"] == 1].set_index("uid").loc[s0.index]
    assert (s1["plain"] != s0["plain"]).all()
    assert set(meta["seed_noise"]) == set(list_proxies()) and len(per_cell) >= 100


#: The CPU class the 500-cell table (``nb201_cifar10_proxies.csv``, shared engine) was computed on: its values are
#: the complete table's rows of this class (checked below), and differ from the other class's by float32 rounding.
REFERENCE_TABLE_CLASS = "cpu AVX512"
#: Proxies finished in float64 by numpy / LAPACK (correlation matrices, eigenvalues, log-determinants): equal to
#: about 1e-12 relative on machines of the same class (measured: 1.2e-12), not to the bit.
FLOAT64_FINISHED = ("jacob_cov", "nwot", "epe_nas")


def test_complete_table_agrees_with_the_500_cell_reference_table_on_their_common_cells():
    """The complete table (fast engine) against the 500-cell table (shared engine: the reference's values bit for
    bit) on the cells both hold, same network, seed and 64 images: on rows of the reference table's CPU class every
    proxy the fast engine computes the reference way is equal (float64-finished ones to 1e-9), croze and hessian_eig
    are within their stated ``FAST_TOLERANCE``; on every row, whatever its class, the cell ranking of each proxy
    agrees (Spearman >= 0.999, the issue's criterion for the fast engine)."""
    from scipy.stats import spearmanr

    from robustbench_nas.proxies import list_proxies
    from robustbench_nas.proxies.engine import FAST_TOLERANCE

    ref = pd.read_csv(TABLE.with_name("nb201_cifar10_proxies.csv")).set_index("uid")
    raw = pd.read_csv(TABLE).set_index("uid") if TABLE.is_file() else pd.DataFrame()
    common = raw.index.intersection(ref.index)
    if len(common) < 20:
        pytest.skip(f"only {len(common)} cells of the 500-cell table are in the complete table yet")
    mine = common[(raw.loc[common, "device"] == REFERENCE_TABLE_CLASS).to_numpy()]
    assert len(mine) >= 20, f"rows of {REFERENCE_TABLE_CLASS}: {len(mine)}"
    for name in list_proxies():
        fast, want = raw.loc[mine, name].to_numpy(float), ref.loc[mine, name].to_numpy(float)
        if name in FAST_TOLERANCE:
            np.testing.assert_allclose(fast, want, rtol=FAST_TOLERANCE[name], atol=0, err_msg=name)
        elif name in FLOAT64_FINISHED:
            np.testing.assert_allclose(fast, want, rtol=1e-9, atol=0, err_msg=name)
        else:
            np.testing.assert_array_equal(fast, want, err_msg=name)
        rho = spearmanr(raw.loc[common, name].to_numpy(float), ref.loc[common, name].to_numpy(float)).statistic
        assert rho >= 0.999, (name, rho)
