"""The report's "Predicting robustness" equals ``rbnas predict``: one function, one protocol, the same defaults.

Both run on one store; every number the report shows is compared with what ``rbnas predict`` prints as JSON for the
command the report names beside it (exact equality: the same splits, fits and scores).
"""

from __future__ import annotations

import json
import shlex

import click
import pytest
import torch
from click.testing import CliRunner

from robustbench_nas.analysis.predict_protocol import DEFAULT_ENCODINGS, PredictProtocol
from robustbench_nas.analysis.ranking import RankingConfig
from robustbench_nas.analysis.report import AnalysisConfig, run_analysis
from robustbench_nas.analysis.targets import load_store
from robustbench_nas.cli.main import cli

from test_analysis_report import _store  # noqa: E402  (tests/ is on sys.path under pytest)

torch.set_num_threads(1)


def _defaults(name: str) -> dict[str, object]:
    cmd = cli.commands[name]
    assert isinstance(cmd, click.Command)
    return {p.name: p.default for p in cmd.params if isinstance(p, click.Option)}


def test_analyze_and_predict_share_the_protocols_defaults():
    p, a, want = _defaults("predict"), _defaults("analyze"), PredictProtocol()
    for key, value in (("model", want.model), ("repeats", want.repeats), ("seed", want.seed),
                       ("train_select", want.train_select), ("selection", want.selection),
                       ("encodings", DEFAULT_ENCODINGS)):  # fmt: skip
        assert p[key] == value and a[key] == value, key
    assert p["progress"] is True and a["progress"] is True  # progress on stderr in both
    assert AnalysisConfig().prediction.model == want.model and AnalysisConfig().prediction.repeats == want.repeats
    assert AnalysisConfig().encodings == [DEFAULT_ENCODINGS]
    assert a["train_sizes"] == p["train_sizes"] == "100" and AnalysisConfig().prediction == want  # sizes too
    assert a["rank_encodings"] == "default" and AnalysisConfig().rank_encodings == ["default"]  # the ranking's own


def test_auto_skips_the_inner_cv_below_five_cells_per_fold(monkeypatch):
    """With fewer than ``folds * MIN_CV_FOLD_CELLS`` (25) training cells ``auto`` takes the widest rank average
    without inner CV (the same scores as that candidate alone); from 25 cells on it chooses by inner CV."""
    import numpy as np
    import pandas as pd

    from robustbench_nas.analysis import prediction as P

    calls: list[int] = []
    real = P.select_model
    monkeypatch.setattr(P, "select_model", lambda X, y, *a, **k: (calls.append(len(y)), real(X, y, *a, **k))[1])
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(60, 3)), columns=["params", "flops", "x"])
    y = pd.Series(2 * X["x"] + 0.1 * rng.normal(size=60), name="pgd")
    assert P.MIN_CV_FOLD_CELLS == 5
    widest = P.auto_without_cv(P.AUTO_CANDIDATES)
    assert widest == "et+et:signal+gp:signal"  # the one candidate of three models
    small = P.predict_heldout(X, y, train_size=24, repeats=2, model="auto")
    assert calls == [] and small["models"] == [widest, widest]
    alone = P.predict_heldout(X, y, train_size=24, repeats=2, model="auto",
                              candidates={widest: P.AUTO_CANDIDATES[widest]})  # fmt: skip
    assert small["spearman_mean"] == alone["spearman_mean"] and small["per_repeat"] == alone["per_repeat"]
    P.predict_heldout(X, y, train_size=25, repeats=1, model="auto")
    assert calls == [25]  # one inner CV on the 25 training cells


@pytest.mark.parametrize("model", ["ridge", "auto"])
def test_report_prediction_equals_rbnas_predict(tmp_path, model):
    path = _store(tmp_path / "s.zarr", 60)
    protocol = PredictProtocol(model=model, train_sizes=(20, 30) if model == "ridge" else (25,),
                               repeats=2 if model == "ridge" else 1, seed=3)  # fmt: skip
    cfg = AnalysisConfig(ranking=RankingConfig(n_boot=20, n_boot_kendall=0), prediction=protocol,
                         encodings=["opcount", "pathstats"], predict_targets=["pgd@Linf@1/255", "clean"],
                         sections=("prediction",), importance_train_size=20)  # fmt: skip
    summary = run_analysis(load_store(str(path)), tmp_path / "rep", cfg)
    rows = summary["prediction"]
    assert len(rows) == 2 * len(protocol.train_sizes)
    html = (tmp_path / "rep" / "report.html").read_text()
    for row in rows:
        assert row["command"] in html.replace("&#39;", "'")  # the report names the command
        args = shlex.split(row["command"])[1:]
        assert args[0] == "predict" and args[1] == "STORE"
        r = CliRunner().invoke(cli, ["predict", str(path), *args[2:], "--json", "--no-progress"])
        assert r.exit_code == 0, r.output
        got = json.loads(r.stdout)
        assert got["train_size"] == row["train_size"] and got["target"] == row["target"]
        for key in ("spearman_mean", "spearman_std", "kendall_mean", "n_test", "repeats", "features"):
            assert got[key] == row[key], (key, got[key], row[key])
        assert row["spearman_mean"] == pytest.approx(sum(s["spearman"] for s in got["per_repeat"]) / len(got["per_repeat"]))
