"""Benchmarks: the record contract, the runner, and the pieces of the benchmarks that compute numbers
(FLOP model, early-exit fractions, synthetic store data, training agreement, the GPU path on a CPU).

Timings are never asserted here (performance is measured in ``benchmarks/``, not in unit tests).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

# ``benchmarks`` is a top-level folder of the repository, not part of the installed package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import __main__ as runner  # noqa: E402
from benchmarks import common  # noqa: E402


# ---------------------------------------------------------------------------------------------------- common
def test_make_result_computes_ratio_and_machine() -> None:
    r = common.make_result("x_ok", 2.0, 5.0, True, unit="s", n=3)
    assert r["ratio"] == pytest.approx(2.5)
    assert r["results_agree"] is True and r["n"] == 3
    assert "cores" in r["machine"]
    r2 = common.make_result("x_none", 1.0, None, None)
    assert r2["ratio"] is None and r2["baseline_s"] is None


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"name": "a b", "ours_s": 1.0, "baseline_s": 1.0, "ratio": 1.0, "results_agree": True, "machine": "m"}, "name"),
        ({"name": "a", "ours_s": 0.0, "baseline_s": 1.0, "ratio": 1.0, "results_agree": True, "machine": "m"}, "ours_s"),
        ({"name": "a", "ours_s": 1.0, "baseline_s": 2.0, "ratio": 1.0, "results_agree": True, "machine": "m"}, "ratio"),
        ({"name": "a", "ours_s": 1.0, "baseline_s": None, "ratio": 1.0, "results_agree": None, "machine": "m"}, "ratio"),
        ({"name": "a", "ours_s": float("nan"), "baseline_s": None, "ratio": None, "results_agree": None,
          "machine": "m"}, "ours_s"),
        ({"name": "a", "ours_s": 1.0, "baseline_s": 1.0, "ratio": 1.0, "results_agree": "yes", "machine": "m"},
         "results_agree"),
        ({"name": "a", "ours_s": 1.0, "baseline_s": 1.0, "ratio": 1.0, "results_agree": True}, "machine"),
    ],
)
def test_validate_result_rejects_bad_records(bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        common.validate_result(bad)


def test_save_result_round_trips_and_never_leaves_a_broken_file(tmp_path: Path) -> None:
    r = common.make_result("rt", 1.5, 3.0, False, arr=np.arange(3), val=np.float32(0.5))
    p = common.save_result(r, tmp_path)
    assert p == tmp_path / "rt.json"
    back = json.loads(p.read_text())
    assert back["arr"] == [0, 1, 2] and back["val"] == 0.5 and back["ratio"] == 2.0
    # an invalid record raises before anything is written: the previous figures stay
    with pytest.raises(ValueError):
        common.save_result({**r, "ratio": 7.0}, tmp_path)
    assert json.loads(p.read_text())["ratio"] == 2.0
    assert not list(tmp_path.glob("*.tmp"))
    assert [x["name"] for x in common.load_results(tmp_path)] == ["rt"]


def test_time_call_counts_calls_and_returns_last_value() -> None:
    calls = []
    t = common.time_call(lambda: calls.append(1) or len(calls), repeat=3, warmup=2)
    assert len(calls) == 5 and t.value == 5 and len(t.times) == 3 and len(t.cpu_times) == 3
    assert t.best <= t.median and all(x >= 0 for x in t.times)
    with pytest.raises(ValueError):
        common.time_call(lambda: None, repeat=0)


def test_shared_cifar10_is_class_balanced(cifar10_npz: Path) -> None:
    x, y = common.shared_cifar10(30)
    assert x.shape == (30, 3, 32, 32) and x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1
    assert np.bincount(y.numpy(), minlength=10).tolist() == [3] * 10


# ---------------------------------------------------------------------------------------------------- runner
def test_runner_discovers_runs_and_reports_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    names = runner.discover()
    assert {"training", "store", "end_to_end"} <= set(names)
    pkg = tmp_path / "fakebench"
    import types
    import sys

    good = types.ModuleType("benchmarks.bench_fake_ok")
    good.run = lambda quick=False: [common.make_result("fake_ok", 1.0, 4.0, True, note="q" if quick else "")]
    bad = types.ModuleType("benchmarks.bench_fake_bad")

    def boom(quick: bool = False) -> list:
        raise RuntimeError("broken on purpose")

    bad.run = boom
    monkeypatch.setitem(sys.modules, "benchmarks.bench_fake_ok", good)
    monkeypatch.setitem(sys.modules, "benchmarks.bench_fake_bad", bad)
    monkeypatch.setattr(common, "RESULTS_DIR", pkg)
    monkeypatch.setattr(runner, "discover", lambda: ["fake_ok", "fake_bad"])
    code = runner.main(["--quick"])
    out = capsys.readouterr().out
    assert code == 1  # one benchmark failed: CI must notice
    assert "fake_ok" in out and "4.00x" in out and "FAILED" in out and "broken on purpose" in out
    assert json.loads((pkg / "fake_ok_quick.json").read_text())["note"] == "q"  # quick runs write *_quick only
    with pytest.raises(SystemExit):
        runner.main(["no_such_bench"])


def test_format_table_aligns_columns() -> None:
    rows = [{"benchmark": "b", "name": "n1", "ours_s": 1.0, "baseline_s": 2.0, "ratio": 2.0, "results_agree": True},
            {"benchmark": "b", "name": "longer_name", "ours_s": 3.0, "baseline_s": None, "ratio": None,
             "results_agree": None}]
    lines = runner.format_table(rows).splitlines()
    assert lines[0].split()[:3] == ["benchmark", "record", "ours_s"]
    assert "2.00x" in lines[2] and lines[3].split()[1] == "longer_name"


# ---------------------------------------------------------------------------------------------------- training
def test_flop_table_is_exact_for_any_cell() -> None:
    """Per-op costs from one-op cells predict count_flops of mixed cells exactly (NB201 edges share one shape)."""
    from collections import Counter

    from benchmarks.bench_training import op_flop_table
    from robustbench_nas.models import build_model, count_flops
    from robustbench_nas.search_spaces import get_search_space

    table = op_flop_table(C=4, N=1)
    space = get_search_space("nb201")
    for idx in (0, 1234, 9999, 15624):
        arch = space.arch_str(idx)
        ops = Counter(space.parse(arch).ops)
        predicted = table["base"] + sum(table[o] * k for o, k in ops.items())
        assert predicted == count_flops(build_model(arch, C=4, N=1)).plain


def test_unique_cell_flops_match_published_extremes() -> None:
    """Full-size table: the all-3x3 cell is 220.12 M plain multiply-adds (protocols.md); 6466 unique cells."""
    from benchmarks.bench_training import op_flop_table, unique_cell_flops

    cf = unique_cell_flops(op_flop_table())
    assert cf.shape == (6466,)
    assert cf.max() == pytest.approx(220.12e6, rel=1e-4)
    assert cf.min() < cf.mean() < cf.max()


def test_fit_time_per_image_never_projects_negative_time() -> None:
    from benchmarks.bench_training import fit_time_per_image, project_training_hours

    # the heavier cell measured faster (a loaded machine): the free fit's slope is negative
    a, b = fit_time_per_image([(1e6, 0.02), (5e6, 0.01)])
    assert a == pytest.approx(0.015) and b == 0.0  # the constant fits these two points better than a line through 0
    # a steep line whose free intercept is negative: the line through the origin
    a, b = fit_time_per_image([(1e6, 0.001), (2e6, 0.004)])
    assert a == 0.0 and b == pytest.approx((1e6 * 0.001 + 2e6 * 0.004) / (1e12 + 4e12))
    assert project_training_hours(np.array([1e6, 3e6]), a, b, 1e6) > 0


def test_fit_time_per_image_recovers_a_line() -> None:
    from benchmarks.bench_training import fit_time_per_image, project_training_hours

    a, b = fit_time_per_image([(1e6, 0.01 + 2e-9 * 1e6), (5e6, 0.01 + 2e-9 * 5e6)])
    assert a == pytest.approx(0.01) and b == pytest.approx(2e-9)
    assert project_training_hours(np.array([1e6, 1e6]), a, b, 3600) == pytest.approx(2 * (0.01 + 2e-3))


def test_training_agreement_check_detects_a_different_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Our trainer equals the textbook loop without augmentation; a changed baseline (no nesterov) is caught."""
    import benchmarks.bench_training as bt

    res = bt.check_agreement(bt.LIGHT, n=64, batch_size=32, epochs=1)
    assert res["agree"] and res["max_abs_weight_diff"] <= 1e-5 and res["max_weight_change_in_training"] > 1e-3
    real = bt.baseline_train

    def no_nesterov(arch, x, y, xt, yt, profile, *a, **k):
        return real(arch, x, y, xt, yt, profile.replace(nesterov=False), *a, **k)

    monkeypatch.setattr(bt, "baseline_train", no_nesterov)
    assert not bt.check_agreement(bt.LIGHT, n=64, batch_size=32, epochs=1)["agree"]


def test_gpu_path_runs_on_cpu_with_tiny_sizes() -> None:
    """The GPU-path code (variants, bf16 check, projection) runs end to end on a CPU with a tiny network."""
    import benchmarks.bench_training as bt

    cfg = bt.GpuBenchConfig(device="cpu", n_train=32, n_test=20, epochs=1, variants=("fp32", "channels_last"),
                            processes=(), acc_epochs=1, overrides=(("C", 4), ("N", 1), ("batch_size", 16)),
                            loader_workers=0)
    recs = bt.gpu_records(cfg, np.array([1e6, 2e6]))
    names = {r["name"] for r in recs}
    assert {"training_gpu_conv3x3_fp32", "training_gpu_light_channels_last", "training_gpu_bf16_vs_fp32",
            "training_gpu_hours_jung2023"} <= names
    for r in recs:
        common.validate_result(r)
    acc = next(r for r in recs if r["name"] == "training_gpu_bf16_vs_fp32")
    assert 0 <= acc["fp32_test_acc"] <= 1 and acc["results_agree"] == (acc["abs_diff"] <= acc["tolerance"])


# ---------------------------------------------------------------------------------------------------- store
def test_synthetic_results_are_consistent() -> None:
    from benchmarks.bench_store import jung2023_spec, synthetic_results

    spec = jung2023_spec(5)
    data = synthetic_results(spec)
    cm = data["clean_confusion"]
    assert cm.shape == (5, 1, 10, 10) and (cm.sum(-1) == 1000).all()
    np.testing.assert_array_equal(data["clean_accuracy"], np.trace(cm, axis1=-2, axis2=-1) / 10000)
    grid = spec.attack_grid()
    adv = data["adv_accuracy"]
    assert np.isnan(adv[:, :, ~grid]).all() and np.isfinite(adv[:, :, grid]).all()
    assert (data["adv_confusion"][:, :, ~grid] == -1).all()
    assert data.keys() == synthetic_results(spec, seed=0).keys()
    np.testing.assert_array_equal(synthetic_results(spec, seed=0)["proxy_value"], data["proxy_value"])


def test_store_and_json_round_trip_the_same_numbers(tmp_path: Path) -> None:
    from benchmarks import bench_store as bs

    spec = bs.jung2023_spec(3)
    data = bs.synthetic_results(spec)
    bs.write_bulk(tmp_path / "s.zarr", spec, data)
    bs.write_json_reference(tmp_path / "j", spec, data)
    back = bs.read_all_zarr(tmp_path / "s.zarr", list(data))
    assert all(bs._equal(back[k], v) for k, v in data.items())
    assert bs._json_matches(bs.read_json_reference(tmp_path / "j"), spec, data)
    pgd = json.loads((tmp_path / "j" / "cifar10" / "pgd@Linf_accuracy.json").read_text())
    assert list(pgd["cifar10"]["pgd@Linf"]["accuracy"]) == [str(a) for a in spec.archs]
    assert len(pgd["cifar10"]["pgd@Linf"]["accuracy"][str(spec.archs[0])]) == 7  # the reference layout: 7 eps
    # a corrupted value is noticed
    data2 = {**data, "clean_accuracy": data["clean_accuracy"] + 1e-4}
    assert not bs._json_matches(bs.read_json_reference(tmp_path / "j"), spec, data2)


# ---------------------------------------------------------------------------------------------------- end to end
def test_attacked_fractions_early_exit() -> None:
    from benchmarks.bench_end_to_end import attacked_fractions

    assert attacked_fractions(0.9, [0.8, 0.5, 0.1], early_exit=False) == [1.0, 1.0, 1.0]
    assert attacked_fractions(0.9, [0.8, 0.5, 0.1], early_exit=False, clean_correct_only=True) == [0.9] * 3
    assert attacked_fractions(0.9, [0.8, 0.5, 0.1], early_exit=True) == [0.9, 0.8, 0.5]


def test_jung2023_flop_model_by_hand() -> None:
    """Stage FLOPs for a unit network (1 FLOP forward) equal the hand-computed budgets."""
    from benchmarks.bench_end_to_end import _budgets, jung2023_cell_flops

    b = _budgets()
    ind = jung2023_cell_flops(1.0, None, early_exit=False)
    assert ind["train"] == 200 * 50_000 * 3
    assert ind["pgd@Linf"] == 7 * 10_000 * (b["pgd"] * 3 + 1)
    assert ind["aa_apgd-ce@Linf"] == 7 * 10_000 * (b["apgd"] * 3 + 1)
    assert ind["fgsm@Linf"] == 11 * 10_000 * 4
    assert ind["corruptions"] == 75 * 10_000
    fr = {"clean": 0.9, "fgsm@Linf": [0.5] * 11, "pgd@Linf": [0.8, 0.4, 0.2, 0.1, 0.0, 0.0, 0.0],
          "aa_apgd-ce@Linf": [0.5] * 7, "aa_square@Linf": [0.6] * 7}
    early = jung2023_cell_flops(1.0, fr, early_exit=True)
    assert early["pgd@Linf"] == pytest.approx((0.9 + 0.8 + 0.4 + 0.2 + 0.1) * 10_000 * (b["pgd"] * 3 + 1))
    low, high = early["square_bounds"]
    assert low == pytest.approx(7 * 0.6 * 10_000 * b["square"]) and high == pytest.approx(
        (0.9 + 6 * 0.6) * 10_000 * b["square"])


def test_projection_records_are_labelled(jung2023_root: Path) -> None:
    from benchmarks.bench_end_to_end import projection_records, published_robust_fractions

    fr = published_robust_fractions(jung2023_root)
    assert fr["clean"] == pytest.approx(0.898, abs=2e-3)  # protocols.md: mean clean accuracy 0.898
    assert fr["pgd@Linf"][-1] == pytest.approx(0.003, abs=3e-3)  # mean PGD at 8/255
    recs = projection_records()
    for r in recs:
        assert "projection" in r["kind"]
        common.validate_result(r)
    jung = recs[0]
    assert 0 < jung["early_exit_saving"] < 1 and math.isclose(sum(jung["share_per_stage"].values()), 1.0)


def test_stratified_cells_span_the_accuracy_range() -> None:
    from benchmarks.bench_end_to_end import stratified_cells

    clean = {u: a for u, a in zip(range(100, 200), np.linspace(0.1, 0.94, 100))}
    picked = stratified_cells(clean, 5)
    assert picked[0] == 100 and picked[-1] == 199 and len(picked) == 5
    assert [clean[u] for u in picked] == sorted(clean[u] for u in picked)


@pytest.mark.slow
def test_fidelity_study_runs_on_cpu_with_tiny_sizes(jung2023_root: Path, cifar10_npz: Path) -> None:
    """The GPU fidelity study's code path (train, attack, correlate) on 3 cells, 1 epoch, a tiny network."""
    from benchmarks.bench_end_to_end import FidelityConfig, fidelity_records

    cfg = FidelityConfig(n_cells=3, epochs=1, eval_images=20, pgd_eps=(1 / 255,), device="cpu",
                         overrides=(("C", 4), ("N", 1), ("batch_size", 128), ("max_train_images", 256)))
    (rec,) = fidelity_records(cfg, jung2023_root)
    common.validate_result(rec)
    assert rec["cells"] == 3 and set(rec["rank_correlation"]) == {"clean", "pgd_1/255"}
    for row in rec["per_cell"]:
        assert 0 <= row["clean"] <= 1 and 0 <= row["pgd"][0] <= 1
        assert 0 <= row["published_clean"] <= 1
    with pytest.raises(ValueError, match="grid"):
        fidelity_records(FidelityConfig(pgd_eps=(5 / 255,), device="cpu"), jung2023_root)


@pytest.mark.slow
def test_device_agreement_check_can_fail() -> None:
    """The GPU-vs-CPU check on two CPU copies: a relative weight perturbation of rounding size (1e-6) must pass
    with a non-zero logit difference (the tolerance is exercised, not a self-comparison), a 5 % one must fail."""
    from benchmarks.bench_end_to_end import device_agreement_record

    small = device_agreement_record("cpu", "cpu", n=40, train_steps=2, perturb_b=1e-6)
    common.validate_result(small)
    assert small["results_agree"] is True and 0 < small["max_rel_logit_diff"] <= 1e-4
    assert set(small["max_abs_accuracy_diff"]) == {"clean", "fgsm@Linf", "pgd@Linf", "corruptions"}
    assert len(small["values"]["cpu"]["corruptions"]) == 4
    big = device_agreement_record("cpu", "cpu", n=40, train_steps=2, perturb_b=0.05)
    assert big["results_agree"] is False and big["max_rel_logit_diff"] > 1e-2


# ---------------------------------------------------------------------------------------------------- device check
def test_device_check_refuses_to_run_without_cuda(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a silent skip: without a CUDA device (or with a CPU device) the real check stops with a message."""
    from benchmarks import device_check

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="no CUDA device"):
        device_check.main(["--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="use a CUDA device"):
        device_check.main(["--device", "cpu", "--out", str(tmp_path)])
    assert not list(tmp_path.iterdir())


def test_device_check_reports_sections_it_could_not_run(tmp_path: Path, cifar10_npz: Path) -> None:
    """A budget too small for any section: every section is reported as not run and the exit code says so."""
    from benchmarks import device_check

    code = device_check.main(["--dry-run", "--device", "cpu", "--out", str(tmp_path), "--budget-s", "5",
                              "--threads", "1"])
    summary = json.loads((tmp_path / "device_check_summary_dry_run.json").read_text())
    assert code == 1 and summary["results_agree"] is False
    assert {v["status"] for v in summary["sections"].values()} == {"not_run"}
    assert set(summary["sections"]) == set(device_check.SECTIONS)


@pytest.mark.slow
def test_device_check_dry_run_runs_every_section(tmp_path: Path, cifar10_npz: Path) -> None:
    """benchmarks/device_check.sh --dry-run --device cpu: every section runs and writes its records."""
    from benchmarks import device_check

    code = device_check.main(["--dry-run", "--device", "cpu", "--out", str(tmp_path), "--threads", "1"])
    summary = json.loads((tmp_path / "device_check_summary_dry_run.json").read_text())
    assert set(summary["sections"]) == set(device_check.SECTIONS)
    bad = {k: v.get("error") for k, v in summary["sections"].items() if v["status"] != "ok"}
    assert not bad and code == 0, bad
    grid, _ = device_check.pipeline_grid()
    for name in summary["sections"]["agreement_attacks"]["records"]:
        rec = json.loads((tmp_path / f"{name}.json").read_text())
        assert len(rec["accuracy"]["cpu"]) == sum(len(v) for v in grid.values())  # every attack at every eps
    rec = json.loads((tmp_path / "device_agreement_corruptions_cpu.json").read_text())
    from robustbench_nas import corruptions

    assert set(rec["fraction_within_1_level"]) == set(corruptions.list_corruptions())


# ---------------------------------------------------------------------------------------------------- corruptions
def test_corruption_benchmark_agreement_can_fail(cifar10_npz: Path) -> None:
    """bench_corruptions' same-work check: the reference's outputs agree with ours; shifted outputs (deterministic:
    pixels) or a doubled strength (random: mean change) do not."""
    from benchmarks import cifar_c_reference as ref
    from benchmarks.bench_corruptions import _agreement

    x, _ = common.shared_cifar10(10)
    imgs = torch.round(x * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for name in ("contrast", "gaussian_noise"):
        draws = np.random.RandomState(0)
        outs = [np.stack([ref.corrupt(name, im, s, draws) for im in imgs]) for s in range(1, 6)]
        assert _agreement(name, x, outs)["agree"], name
        clean = imgs.astype(np.int64)
        wrong = [np.clip(clean + 2 * (o.astype(np.int64) - clean) + 3, 0, 255).astype(np.uint8) for o in outs]
        assert not _agreement(name, x, wrong)["agree"], name
