"""Robust accuracy beside the clean accuracy of the same images in the report (issue 24).

Attacks and corruptions run on subsets of the evaluation split, so their clean baseline is the store's
``adv_clean_accuracy`` / ``corruption_clean_accuracy``, not the whole split's ``clean``. The store below gets
distinct known values for the three, and the report's best-cell table and eps curves must show each beside its own
targets.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from robustbench_nas.analysis.architecture import eps_curves
from robustbench_nas.analysis.predict_protocol import PredictProtocol
from robustbench_nas.analysis.report import AnalysisConfig, run_analysis
from robustbench_nas.analysis.target_names import target_kind
from robustbench_nas.analysis.targets import clean_on_same_images, load_store
from robustbench_nas.storage import open_store

from test_analysis_report import _store  # noqa: E402  (tests/ is on sys.path under pytest)

torch.set_num_threads(1)
N = 30


def _with_subset_clean(tmp_path):
    path = _store(tmp_path / "s.zarr", N)
    rng = np.random.default_rng(5)
    adv_clean = 0.9 + 0.05 * rng.random(N)  # the attack images' clean accuracy (not the whole split's)
    cor_clean = 0.8 + 0.05 * rng.random(N)
    store = open_store(path, mode="r+")
    store.write_array("adv_clean_accuracy", adv_clean[:, None])
    store.write_array("corruption_clean_accuracy", cor_clean[:, None])
    return path, adv_clean, cor_clean


def test_target_kind():
    assert target_kind("pgd@Linf@1/255") == "adversarial" and target_kind("adv_mean") == "adversarial"
    assert target_kind("corruption:fog") == "corruption" and target_kind("corruption_mean") == "corruption"
    assert target_kind("clean") is None


def test_best_cells_and_eps_curves_use_the_same_images_clean(tmp_path):
    path, adv_clean, cor_clean = _with_subset_clean(tmp_path)
    ds = load_store(str(path))
    same = clean_on_same_images(ds)
    assert np.allclose(same["adversarial"], adv_clean) and np.allclose(same["corruption"], cor_clean)
    curves = eps_curves(ds)
    zero = curves[curves["eps"] == 0.0].iloc[0]
    assert zero["mean"] == pytest.approx(adv_clean.mean()) and zero["n"] == N
    cfg = AnalysisConfig(sections=("architecture",), prediction=PredictProtocol(model="ridge", train_sizes=(10,)))
    run_analysis(ds, tmp_path / "rep", cfg)
    best = pd.read_csv(tmp_path / "rep" / "best_cells.csv")
    by_arch = dict(zip(same.index, zip(adv_clean, cor_clean)))
    for _, r in best.iterrows():
        kind = target_kind(r["target"])
        if kind is None:
            assert np.isnan(r["clean_same_images"])
        else:
            want = by_arch[r["arch"]][0 if kind == "adversarial" else 1]
            assert r["clean_same_images"] == pytest.approx(want), r["target"]
    assert best["target"].map(target_kind).notna().any()
    assert "clean_same_images: the images the target was measured on" in (tmp_path / "rep" / "report.html").read_text()


def test_store_without_subset_clean_keeps_the_whole_split(tmp_path):
    path = _store(tmp_path / "s.zarr", N)
    ds = load_store(str(path))
    assert not clean_on_same_images(ds).notna().any().any()  # arrays exist (NaN) or not at all
    zero = eps_curves(ds).query("eps == 0").iloc[0]
    T = ds["clean_accuracy"].mean("seed").values
    assert zero["mean"] == pytest.approx(float(np.mean(T)))
