"""The device check can fail (issue 29): it needs the real data, its CPU dry run passes, and its checks fail on a
deliberately perturbed copy of the network (the device side of a CPU-vs-CPU comparison)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks import device_check
from benchmarks.device_agreement import Tolerances, compare_devices, perturbed_copy

#: a short grid: the smallest eps of the pipeline's grids and 8/255, for the four Jung et al. attacks
SHORT_GRID = {name: [0.1 / 255, 8 / 255] for name in ("fgsm@Linf", "pgd@Linf", "aa_apgd-ce@Linf", "aa_square@Linf")}


@pytest.fixture(scope="module")
def trained(cifar10_npz: Path):
    """The dry run's trained network and its held-out images (trained once for the module, on the CPU)."""
    sz = device_check.Sizes.dry()
    model = device_check.trained_network("cpu", sz)
    x, y = device_check._images(sz.attack_images, offset=device_check._held_out_offset(sz))
    return model, x, y, sz


def test_device_check_requires_the_real_data(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(device_check, "SHARED_DATA", tmp_path / "nowhere")
    out = tmp_path / "out"
    code = device_check.main(["--dry-run", "--device", "cpu", "--out", str(out), "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 2 and f"{tmp_path / 'nowhere' / 'cifar10_test.npz'}" in err and "nothing was run" in err
    assert not out.exists()


def test_the_grid_is_the_pipelines() -> None:
    grid, batch = device_check.pipeline_grid()
    assert batch == 256  # jung2023 and robbench2024 evaluate at batch 256
    assert grid["pgd@Linf"][0] == pytest.approx(0.1 / 255) and grid["pgd@Linf"][-1] == pytest.approx(8 / 255)
    assert [round(e * 255, 3) for e in grid["fgsm@Linf"]] == [0.1, 0.5, 1, 2, 3, 4, 5, 6, 7, 8, 255]
    assert set(grid) == {"fgsm@Linf", "pgd@Linf", "aa_apgd-ce@Linf", "aa_square@Linf", "autoattack@Linf"}
    assert device_check.profile_variants() == ("fp32",)  # no training profile uses bf16 / channels_last


def test_identical_devices_agree(trained) -> None:
    model, x, y, sz = trained
    rec = compare_devices(model, x, y, "cpu", grid=SHORT_GRID, params={k: device_check._short_params(k, sz)
                                                                       for k in SHORT_GRID},
                          batch_size=256, tol=Tolerances(min_clean_accuracy=sz.min_clean_accuracy))
    assert rec["ok"], rec["failed"]
    assert rec["precision"].count("=ieee") >= 2  # run under the pipeline's precision
    assert {c["name"] for c in rec["checks"]} >= {"clean_logits", "resolution_0.1/255", "batch_invariance",
                                                   "informative", "pgd@Linf@0.1/255 per-image"}


def test_checks_fail_on_a_perturbed_model(trained) -> None:
    model, x, y, sz = trained
    params = {k: device_check._short_params(k, sz) for k in SHORT_GRID}
    tol = Tolerances(min_clean_accuracy=sz.min_clean_accuracy)
    # 1e-3 relative weight noise, the size of TF32 rounding: the logits and the 0.1/255 resolution must notice
    small = compare_devices(model, x, y, "cpu", grid=SHORT_GRID, params=params, batch_size=256, tol=tol,
                            perturb=1e-3)
    assert not small["ok"] and {"clean_logits", "resolution_0.1/255"} <= set(small["failed"]), small["failed"]
    # a clearly different network: every attack's per-image check at the smallest eps fails as well
    big = compare_devices(model, x, y, "cpu", grid=SHORT_GRID, params=params, batch_size=256, tol=tol, perturb=0.3)
    for name in SHORT_GRID:
        assert f"{name}@0.1/255 per-image" in big["failed"], big["failed"]


def test_an_untrained_network_is_not_informative(trained) -> None:
    _, x, y, sz = trained
    from robustbench_nas.models import build_model

    torch.manual_seed(0)
    untrained = build_model(device_check.LIGHT_CELL, C=8, N=1).eval()
    rec = compare_devices(untrained, x, y, "cpu", grid={"fgsm@Linf": [0.1 / 255]}, batch_size=256,
                          tol=Tolerances(min_clean_accuracy=0.5))
    assert rec["failed"] == ["informative"]  # agreement of a chance-level network proves nothing


def test_perturbed_copy_changes_only_the_copy() -> None:
    m = torch.nn.Linear(3, 2)
    before = m.weight.detach().clone()
    p = perturbed_copy(m, 0.1)
    assert torch.equal(m.weight, before) and not torch.allclose(p.weight, before)
    assert torch.allclose(p.weight, before, rtol=0.6)


@pytest.mark.slow
def test_dry_run_of_the_attack_section_and_its_perturbed_run(trained, tmp_path: Path, monkeypatch) -> None:
    """``device_check.sh --dry-run --device cpu --sections agreement_attacks`` passes; with ``--perturb 0.3`` the
    same command reports disagreement and exits 1 (the grid is shortened here to keep the test short)."""
    code = device_check.main(["--dry-run", "--device", "cpu", "--sections", "agreement_attacks", "--out",
                              str(tmp_path / "ok"), "--threads", "1"])
    rec = json.loads((tmp_path / "ok" / "device_agreement_attacks_cpu.json").read_text())
    assert code == 0 and rec["results_agree"] is True and rec["failed"] == []
    grid, _ = device_check.pipeline_grid()
    assert {k.rsplit("@", 1)[0] for k in rec["accuracy"]["cpu"]} == set(grid)  # every attack of the grid
    assert len(rec["accuracy"]["cpu"]) == sum(len(v) for v in grid.values())  # at every eps
    monkeypatch.setattr(device_check, "pipeline_grid", lambda: (SHORT_GRID, 256))
    code = device_check.main(["--dry-run", "--device", "cpu", "--sections", "agreement_attacks", "--out",
                              str(tmp_path / "bad"), "--threads", "1", "--perturb", "0.3"])
    summary = json.loads((tmp_path / "bad" / "device_check_summary_dry_run.json").read_text())
    assert code == 1 and summary["sections"]["agreement_attacks"]["results_agree"] is False
