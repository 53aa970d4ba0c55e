"""`rbnas predict` and `rbnas analyze` on a DARTS store: a synthetic store whose targets are known functions of the
genotype (so the DARTS encodings must recover them), costs from the closed form, CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from robustbench_nas.cli.main import cli
from robustbench_nas.search_spaces import get_search_space
from robustbench_nas.search_spaces.darts_genotype import CELL_TYPES
from synthetic_stores import write_clean_pgd_store

SPACE = get_search_space("darts")


def _sep_counts(indices: list[int]) -> np.ndarray:
    """Per genotype, the number of sep_conv edges of the normal cell (0..8), read from the decoded genotype."""
    out = []
    for i in indices:
        g = SPACE.decode(i)
        out.append(sum(op.startswith("sep_conv") for op, _ in g.cell(CELL_TYPES[0]).edges))
    return np.array(out, dtype=float)


def _synthetic_darts_store(path: Path, n: int = 160, seed: int = 0) -> tuple[Path, list[int], np.ndarray]:
    """A DARTS store of n sampled genotypes whose clean accuracy grows with the normal cell's sep_conv count and whose
    PGD accuracy falls with it (plus small noise): a signal that lives in the op-count encoding only."""
    idx = [int(i) for i in SPACE.sample(n, seed=seed)]
    sep = _sep_counts(idx)
    rng = np.random.default_rng(seed)
    clean = 0.6 + 0.03 * sep + 0.005 * rng.normal(size=n)
    pgd = 0.4 - 0.03 * sep + 0.005 * rng.normal(size=n)
    costs = [SPACE.cost(i, 10, (3, 16, 16), C=4, layers=5) for i in idx]
    write_clean_pgd_store(path, SPACE, idx, clean, pgd, costs)
    return path, idx, sep


@pytest.fixture(scope="module")
def darts_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int], np.ndarray]:
    return _synthetic_darts_store(tmp_path_factory.mktemp("darts") / "darts.zarr")


def test_features_of_a_darts_store(darts_store):
    from robustbench_nas.analysis.targets import features_table, load_store, store_space, targets_table

    path, idx, sep = darts_store
    ds = load_store(str(path))
    assert store_space(ds) == "darts"
    T, F = targets_table(ds), features_table(ds, encodings="default")
    assert len(T) == len(F) == len(idx)
    # the op counts of the normal cell, recomputed here from the decoded genotypes, are columns of the features
    np.testing.assert_array_equal(F["normal_count_sep_conv_3x3"] + F["normal_count_sep_conv_5x5"], sep)
    assert {"params", "flops"} <= set(F.columns)
    assert np.isfinite(F.to_numpy(dtype=float)).all()


def test_predict_on_a_darts_store(darts_store):
    path, _, _ = darts_store
    for target in ("clean", "pgd@Linf@1/255"):
        r = CliRunner().invoke(cli, ["predict", str(path), "--target", target, "--train-size", "100", "--repeats",
                                     "2", "--model", "ridge", "--json"])
        assert r.exit_code == 0, r.output
        res = json.loads(r.stdout)
        assert res["n_test"] == 60 and res["models"] == ["ridge", "ridge"]  # one model per repeat
        # the target is a noisy linear function of one op count (either sign): held-out ranks are recovered closely
        assert res["spearman_mean"] > 0.8, res


def test_compare_graf_is_refused_on_a_darts_store(darts_store):
    # GRAF's exact features are NB201's: the refusal names the space and its encodings instead of a stack trace
    path, _, _ = darts_store
    r = CliRunner().invoke(cli, ["predict", str(path), "--target", "clean", "--train-size", "20", "--compare", "graf"])
    assert r.exit_code == 2, r.output
    assert "NB201 cells only" in r.output and "'darts'" in r.output and "without --compare" in r.output


def test_analyze_on_a_darts_store(darts_store, tmp_path):
    path, _, _ = darts_store
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["analyze", str(path), "--out", str(out), "--space", "darts", "--n-boot", "20",
                                 "--n-boot-kendall", "5", "--train-sizes", "100", "--repeats", "1", "--models",
                                 "ridge", "--search-budget", "30", "--search-repeats", "2", "--no-progress"])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["search_space"] == "darts"
    pred = {(p["target"], p["train_size"]): p["spearman_mean"] for p in summary["prediction"]}
    assert pred[("clean", 100)] > 0.8  # free features (the op-count encoding among them, as rbnas predict)
    bad = CliRunner().invoke(cli, ["analyze", str(path), "--out", str(out), "--space", "nb201"])
    assert bad.exit_code == 2 and "holds the darts search space" in bad.output
