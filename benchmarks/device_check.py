"""The GPU check in one go: GPU-vs-CPU agreement, throughput, and as much of the fidelity study as fits.

Run on a machine with a GPU (``bash benchmarks/device_check.sh``, under 8 minutes on one H100/H200-class GPU); the
records go to ``$OUT`` if set, else ``benchmarks/results``. Sections, in this order (each one timed; a section that
fails is reported in the summary with its error and makes the exit code non-zero; none is skipped silently):

1. ``agreement_model``: :func:`benchmarks.bench_end_to_end.device_agreement_record` on a fixed small network
   (logits, clean accuracy, FGSM and PGD, two corruptions, one training step from identical weights).
2. ``agreement_attacks``: every registered attack (``robustbench_nas.attacks.list_attacks()``: FGSM, PGD, APGD-CE/-DLR/-T, Square,
   AutoAttack, Linf and L2) at two radii with short budgets, accuracy on the GPU vs the CPU. The attacks' random
   streams come from generators on the model's device, so random attacks agree statistically (tolerance 0.05 on
   ``n`` images), deterministic FGSM within one image.
3. ``agreement_corruptions``: every corruption x 5 severities from a CPU generator (same draws on both devices):
   the fraction of values within one 8-bit level (>= 99.9 %).
4. ``agreement_proxies``: every registered proxy, same seed and batch: relative difference <= 1e-2 for each (the
   values of both devices are in the record).
4b. ``engine_proxies``: the shared-pass proxy engine vs one proxy at a time on the GPU, all 16 proxies of two
   full-size cells, batch 64 (``bench_proxies.engine_record``, cuDNN deterministic), and the active-image Hessian
   vs the full batch (``hessian_active_record``): the GPU figures of records ``proxies_all_shared_vs_separate`` and
   ``measures_hessian_active_vs_full``.
5. ``throughput_training``: images/s of one training epoch of full-size NB201 (C=16, N=5) cells, fp32 and
   channels_last+bf16 (``bench_training.gpu_records`` with a short configuration).
6. ``throughput_attacks``: ``robustbench_nas.attacks.evaluate`` on 1,000 images of a full-size network at the reference budgets
   (PGD-40 and APGD-CE-100 on the 7-eps Jung grid, Square-5000 on 200 images at 1/255), both modes.
7. ``throughput_corruptions``: all 19 x 5 on 10,000 images on the GPU (``bench_corruptions._time_ours``).
8. ``fidelity``: the fidelity study (``bench_end_to_end.fidelity_records``) with as many cells as the remaining
   time allows (stated in the record; at least 3 cells, else the section reports that it did not fit).

A section that would start with less than 15 s of the budget left is reported as ``not_run``; when the shell
script's time limit interrupts a section, it is reported as ``interrupted`` and the summary is still written.

``--dry-run`` runs every section with tiny sizes, and ``--device cpu`` compares the CPU with itself: together they
check on a machine without a GPU that the whole script runs (the numbers then mean nothing). Without ``--dry-run``
a device other than CUDA is refused, and so is a missing CUDA device.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from benchmarks.common import SHARED_DATA, RESULTS_DIR, Timer, make_result, save_result, shared_cifar10

log = logging.getLogger(__name__)

#: a section starts only with at least this much of the budget left (else it is reported as not run)
MIN_SECTION_S = 15.0
LIGHT_CELL = "|nor_conv_1x1~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_3x3~2|"


@dataclass
class Sizes:
    """Work per section (the real run; :meth:`dry` shrinks everything to seconds on a CPU)."""

    agree_images: int = 500
    agree_train_steps: int = 20
    attack_images: int = 100
    corruption_images: int = 200
    proxy_images: int = 64
    train_images: int = 9000
    throughput_images: int = 1000
    square_images: int = 200
    square_queries: int = 5000
    pgd_steps: int = 40
    apgd_steps: int = 100
    corruption_throughput_images: int = 10_000
    full_C: int = 16
    full_N: int = 5
    fidelity_epochs: int = 10
    fidelity_eval_images: int = 1000

    @classmethod
    def dry(cls) -> "Sizes":
        return cls(agree_images=40, agree_train_steps=2, attack_images=16, corruption_images=8, proxy_images=8,
                   train_images=128, throughput_images=16, square_images=8, square_queries=20, pgd_steps=3,
                   apgd_steps=3, corruption_throughput_images=32, full_C=4, full_N=1, fidelity_epochs=1,
                   fidelity_eval_images=20)


def _images(n: int):
    import torch

    got = shared_cifar10(n)
    if got is None:
        g = torch.Generator().manual_seed(0)
        return torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)
    return got


def _calibrated_model(arch: str, C: int, N: int, x):
    """A network with BN statistics of ``x`` (eval mode): deterministic, input-dependent logits without training."""
    import torch

    from robustbench_nas.models import build_model

    torch.manual_seed(0)
    m = build_model(arch, C=C, N=N)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.momentum = None
    m.train()
    with torch.no_grad():
        m(x)
    return m.eval()


# ------------------------------------------------------------------------------------------------------ sections
def agreement_model(dev: str, sz: Sizes) -> list[dict]:
    from benchmarks.bench_end_to_end import device_agreement_record

    return [device_agreement_record("cpu", dev, n=sz.agree_images, train_steps=sz.agree_train_steps)]


def _attack_eps(name: str) -> list[float]:
    return [0.1, 0.5] if name.endswith("@L2") else [1 / 255, 4 / 255]


def _attack_params(name: str, sz: Sizes) -> dict[str, Any] | None:
    if name.startswith("fgsm"):
        return None
    if name.startswith("pgd"):
        return {"steps": min(10, sz.pgd_steps)}
    if name.startswith("aa_square"):
        return {"n_queries": min(100, sz.square_queries)}
    if name.startswith("autoattack"):  # every component, short budgets
        return {"apgd_steps": min(10, sz.apgd_steps), "n_target_classes": 3, "fab_steps": 10,
                "square_queries": min(100, sz.square_queries)}
    return {"steps": min(10, sz.apgd_steps)}


def agreement_attacks(dev: str, sz: Sizes) -> list[dict]:
    from robustbench_nas import attacks

    x, y = _images(sz.attack_images)
    model = _calibrated_model(LIGHT_CELL, 8, 1, x)
    values: dict[str, dict[str, list[float]]] = {}
    seconds = {"cpu": 0.0, dev: 0.0}
    for name in attacks.list_attacks():
        values[name] = {}
        for d in ("cpu", dev):
            m = model.to(d)
            with Timer() as t:
                res = attacks.evaluate(m, x.to(d), y.to(d), name, _attack_eps(name), params=_attack_params(name, sz),
                                       seed=0, batch_size=256)
            seconds[d] += t.seconds
            values[name][d] = [r.stats.accuracy for r in res]
        model = model.to("cpu")
    diffs = {k: float(np.max(np.abs(np.subtract(v["cpu"], v[dev])))) for k, v in values.items()}
    tol = {k: (1.0 / len(y) + 1e-9 if k.startswith("fgsm") else 0.05) for k in values}
    agree = all(diffs[k] <= tol[k] for k in values)
    return [make_result(f"device_agreement_attacks_{dev.replace(':', '')}", seconds[dev], seconds["cpu"], agree,
                        same_work=True, devices=["cpu", dev], n_images=len(y), accuracy=values,
                        max_abs_accuracy_diff=diffs, tolerance=tol,
                        note="random attacks draw on the model's device: statistical agreement")]


def agreement_corruptions(dev: str, sz: Sizes) -> list[dict]:
    import torch

    from robustbench_nas import corruptions

    x, _ = _images(sz.corruption_images)
    fracs: dict[str, list[float]] = {}
    seconds = {"cpu": 0.0, dev: 0.0}
    for name in corruptions.list_corruptions():
        f = corruptions.get(name)
        fracs[name] = []
        for s in range(1, 6):
            out = {}
            for d in ("cpu", dev):
                with Timer() as t:
                    out[d] = f(x.to(d), s, generator=corruptions.make_generator(s, "cpu")).cpu()
                seconds[d] += t.seconds
            fracs[name].append(float(((out["cpu"] - out[dev]).abs() * 255 <= 1 + 1e-3).float().mean()))
            del out
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    worst = {k: min(v) for k, v in fracs.items()}
    return [make_result(f"device_agreement_corruptions_{dev.replace(':', '')}", seconds[dev], seconds["cpu"],
                        all(v >= 0.999 for v in worst.values()), same_work=True, devices=["cpu", dev],
                        n_images=int(x.shape[0]), fraction_within_1_level=fracs, worst=worst, tolerance=0.999,
                        note="same CPU-generated draws on both devices")]


def agreement_proxies(dev: str, sz: Sizes) -> list[dict]:
    from robustbench_nas.proxies import compute_proxies, list_proxies

    x, y = _images(sz.proxy_images)
    vals: dict[str, dict[str, float]] = {}
    seconds = {}
    for d in ("cpu", dev):
        with Timer() as t:
            v = compute_proxies(LIGHT_CELL, x.to(d), y.to(d), list_proxies(), seed=0, C=8, N=1)
        seconds[d] = t.seconds
        vals[d] = {k: float(val) for k, val in v.items()}
    rel = {k: abs(vals["cpu"][k] - vals[dev][k]) / max(abs(vals["cpu"][k]), 1e-12) for k in vals["cpu"]}
    return [make_result(f"device_agreement_proxies_{dev.replace(':', '')}", seconds[dev], seconds["cpu"],
                        all(r <= 1e-2 for r in rel.values()), same_work=True, devices=["cpu", dev],
                        n_images=len(y), values=vals, rel_diff=rel, tolerance=1e-2)]


def engine_proxies(dev: str, sz: Sizes) -> list[dict]:
    """``proxies_all_shared_vs_separate_cuda`` and ``measures_hessian_active_vs_full_cuda`` on the GPU.

    Full-size cells (dry run: the benchmark's quick sizes). cuDNN is made deterministic for the section, so that
    "bitwise" compares the two paths and not run-to-run kernel choice.
    """
    import torch

    from benchmarks.bench_proxies import engine_record, hessian_active_record

    before = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        quick = sz.full_C != 16
        return [engine_record(torch.device(dev), quick), hessian_active_record(torch.device(dev), quick)]
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before


def throughput_training(dev: str, sz: Sizes) -> list[dict]:
    from benchmarks import bench_training as bt

    cfg = bt.GpuBenchConfig(device=dev, n_train=sz.train_images, n_test=min(1000, sz.train_images // 4), epochs=1,
                            variants=("fp32", "channels_last+bf16"), processes=(), acc_epochs=0,
                            overrides=() if sz.full_C == 16 else (("C", sz.full_C), ("N", sz.full_N)),
                            loader_workers=0 if sz.train_images < 1000 else 4)
    return bt.gpu_records(cfg, bt.unique_cell_flops(bt.op_flop_table()))


def throughput_attacks(dev: str, sz: Sizes) -> list[dict]:
    from robustbench_nas import attacks

    x, y = _images(sz.throughput_images)
    x, y = x.to(dev), y.to(dev)
    model = _calibrated_model(LIGHT_CELL, sz.full_C, sz.full_N, x.cpu()).to(dev)
    grid = attacks.get_attack_grid("jung2023")
    recs = []
    jobs = [("pgd@Linf", grid["pgd@Linf"], {"steps": sz.pgd_steps}, len(y)),
            ("aa_apgd-ce@Linf", grid["aa_apgd-ce@Linf"], {"steps": sz.apgd_steps}, len(y)),
            ("aa_square@Linf", [1 / 255], {"n_queries": sz.square_queries}, sz.square_images)]
    for name, eps, params, n in jobs:
        for mode in ("independent", "early_exit"):
            with Timer() as t:
                res = attacks.evaluate(model, x[:n], y[:n], name, list(eps), params=params, seed=0, mode=mode,
                                       batch_size=4096)
            recs.append(make_result(
                f"device_throughput_{name.split('@')[0]}_{mode}_{dev.replace(':', '')}", t.seconds, None, None,
                same_work=None, clock="wall", device=dev, attack=name, mode=mode, params=params, n_images=n,
                eps_255=[round(e * 255, 3) for e in eps], accuracy=[r.stats.accuracy for r in res],
                model={"arch": LIGHT_CELL, "C": sz.full_C, "N": sz.full_N, "trained": False},
                images_per_s=n * len(eps) / t.seconds))
    return recs


def throughput_corruptions(dev: str, sz: Sizes) -> list[dict]:
    import torch

    from robustbench_nas import corruptions
    from benchmarks.bench_corruptions import _time_ours

    x, _ = _images(sz.corruption_throughput_images)
    names = corruptions.list_corruptions()
    wall, _cpu = _time_ours(names, x, 500, torch.device(dev))
    total = sum(wall.values())
    return [make_result(f"device_throughput_corruptions_{dev.replace(':', '')}", total, None, None, same_work=None,
                        clock="wall", device=dev, n_images=int(x.shape[0]), corruptions=len(names), severities=5,
                        per_corruption_s=wall, images_per_s=x.shape[0] * 5 * len(names) / total)]


def fidelity(dev: str, sz: Sizes, seconds_left: float) -> list[dict]:
    from benchmarks.bench_end_to_end import FidelityConfig, fidelity_records

    if not (SHARED_DATA / "jung2023" / "meta.json").is_file():
        raise FileNotFoundError(f"{SHARED_DATA}/jung2023 (published release) is needed for the fidelity study")
    per_cell = 25.0 if sz.full_C == 16 else 5.0  # measured order of a 10-epoch cell on an H100-class GPU; dry: CPU
    n_cells = int(min(3 if sz.full_C != 16 else 20, seconds_left // per_cell))
    if n_cells < 3:
        raise TimeoutError(f"only {seconds_left:.0f} s left: the fidelity study needs at least 3 cells "
                           f"(~{3 * per_cell:.0f} s); rerun with a larger --budget-s")
    ov = (("channels_last", True), ("amp", "bf16")) if dev.startswith("cuda") else (
        ("C", sz.full_C), ("N", sz.full_N), ("batch_size", 128), ("max_train_images", 256))
    cfg = FidelityConfig(n_cells=n_cells, epochs=sz.fidelity_epochs, eval_images=sz.fidelity_eval_images,
                         pgd_eps=(1 / 255,), device=dev, overrides=ov)
    recs = fidelity_records(cfg)
    for r in recs:
        r["name"] = f"device_fidelity_{dev.replace(':', '')}"
        r["same_work"] = None
    return recs


SECTIONS: dict[str, Callable[..., list[dict]]] = {
    "agreement_model": agreement_model,
    "agreement_attacks": agreement_attacks,
    "agreement_corruptions": agreement_corruptions,
    "agreement_proxies": agreement_proxies,
    "engine_proxies": engine_proxies,
    "throughput_training": throughput_training,
    "throughput_attacks": throughput_attacks,
    "throughput_corruptions": throughput_corruptions,
    "fidelity": fidelity,
}


def run(device: str, dry_run: bool, out: Path, budget_s: float, only: list[str] | None = None) -> int:
    """Run the sections; write each record and a summary to ``out``; return the exit code (0: all ran and agreed)."""
    import torch

    if not dry_run:
        if not device.startswith("cuda"):
            raise SystemExit(f"device_check: --device {device} compares a device with the CPU; use a CUDA device "
                             "(or --dry-run to check the script itself)")
        if not torch.cuda.is_available():
            raise SystemExit("device_check: no CUDA device is available (torch.cuda.is_available() is False); "
                             "nothing was run. Use --dry-run --device cpu to check the script on a CPU")
    sz = Sizes.dry() if dry_run else Sizes()
    t0 = time.perf_counter()
    summary: dict[str, dict[str, Any]] = {}
    names = only or list(SECTIONS)
    interrupted = False
    for name in names:
        left = budget_s - (time.perf_counter() - t0)
        log.info("section %s (%.0f s left)", name, left)
        start = time.perf_counter()
        if interrupted or left < MIN_SECTION_S:
            why = "interrupted before it started" if interrupted else f"not run: {left:.0f} s of the budget left"
            summary[name] = {"status": "not_run", "error": why, "seconds": 0.0}
            continue
        try:
            recs = SECTIONS[name](device, sz, left) if name == "fidelity" else SECTIONS[name](device, sz)
            for r in recs:
                r["dry_run"] = dry_run
                save_result(r, out)
            agree = [r.get("results_agree") for r in recs]
            summary[name] = {"status": "ok", "records": [r["name"] for r in recs],
                             "results_agree": None if all(a is None for a in agree) else all(a is not False for a in agree)}
        except KeyboardInterrupt:  # the shell script's time limit sends SIGINT: keep what ran, write the summary
            log.error("section %s interrupted", name)
            summary[name] = {"status": "interrupted", "error": "interrupted (time limit or Ctrl-C)"}
            interrupted = True
        except Exception as e:  # noqa: BLE001 - reported, never swallowed
            log.error("section %s failed: %s", name, e)
            summary[name] = {"status": "failed", "error": f"{type(e).__name__}: {e}",
                             "traceback": traceback.format_exc(limit=5)}
        summary[name]["seconds"] = time.perf_counter() - start
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    total = time.perf_counter() - t0
    ok = all(s["status"] == "ok" and s.get("results_agree") is not False for s in summary.values())
    rec = make_result(f"device_check_summary{'_dry_run' if dry_run else ''}", total, None, ok, device=device,
                      dry_run=dry_run, sections=summary, budget_s=budget_s, same_work=None,
                      gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    save_result(rec, out)
    for name, s in summary.items():
        flag = s["status"] if s["status"] != "ok" else ("agree" if s.get("results_agree") else
                                                          ("DISAGREE" if s.get("results_agree") is False else "ok"))
        print(f"{name:24s} {flag:9s} {s['seconds']:7.1f} s  {s.get('error', '')}")
    print(f"device_check: {'OK' if ok else 'PROBLEMS'} in {total:.0f} s -> {out}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="device compared with the CPU (default cuda)")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes: check that the script runs (any device)")
    ap.add_argument("--out", default=None, help="records folder (default $OUT or benchmarks/results)")
    ap.add_argument("--budget-s", type=float, default=420.0, help="seconds for all sections (fidelity takes the rest)")
    ap.add_argument("--sections", default=None, help=f"comma-separated subset of {', '.join(SECTIONS)}")
    ap.add_argument("--threads", type=int, default=4, help="torch CPU threads (the CPU side of the comparisons)")
    a = ap.parse_args(argv)
    import os

    import torch

    torch.set_num_threads(a.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    out = Path(a.out or os.environ.get("OUT") or RESULTS_DIR)
    only = a.sections.split(",") if a.sections else None
    if only and set(only) - set(SECTIONS):
        ap.error(f"unknown sections {sorted(set(only) - set(SECTIONS))}; known: {', '.join(SECTIONS)}")
    return run(a.device, a.dry_run, out, a.budget_s, only)


if __name__ == "__main__":
    sys.exit(main())
