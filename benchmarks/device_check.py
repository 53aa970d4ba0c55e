"""The GPU check in one go: GPU-vs-CPU agreement, throughput, and as much of the fidelity study as fits.

Run on a machine with a GPU (``bash benchmarks/device_check.sh``, under 8 minutes on one H100/H200-class GPU); the
records go to ``$OUT`` if set, else ``benchmarks/results``. Sections, in this order (each one timed; a section that
fails is reported in the summary with its error and makes the exit code non-zero; none is skipped silently):

1. ``agreement_model``: :func:`benchmarks.bench_end_to_end.device_agreement_record` on a fixed small network
   (logits, clean accuracy, FGSM and PGD, two corruptions, one training step from identical weights).
2. ``agreement_attacks``: :func:`benchmarks.device_agreement.compare_devices` on a network trained here on real
   CIFAR-10 images: every attack of the CIFAR-10 protocols (``jung2023``: FGSM, PGD, APGD-CE, Square;
   ``robbench2024``: AutoAttack) at every eps of their grids (0.1/255 included), at the pipeline's batch size and
   half of it, under the pipeline's IEEE fp32 precision, budgets shortened on both devices: clean logits, whether
   the device resolves the 0.1/255 perturbation, per-image robust correctness, accuracy and confidence per
   (attack, eps), batch invariance, and whether the network is trained enough for all that to mean anything.
   Random draws come from per-image CPU streams, so both devices attack with the same draws. ``--perturb REL``
   perturbs the device's copy of the weights: the checks must then fail.
3. ``agreement_corruptions``: every corruption x 5 severities from a CPU generator (same draws on both devices):
   the fraction of values within one 8-bit level (>= 99.9 %).
4. ``agreement_proxies``: every registered proxy, same seed and batch: relative difference <= 1e-2 for each (the
   values of both devices are in the record).
4b. ``engine_proxies``: the shared-pass proxy engine vs one proxy at a time on the GPU, all 16 proxies of two
   full-size cells, batch 64 (``bench_proxies.engine_record``, cuDNN deterministic), and the active-image Hessian
   vs the full batch (``hessian_active_record``): the GPU figures of records ``proxies_all_shared_vs_separate`` and
   ``measures_hessian_active_vs_full``.
5. ``throughput_training``: images/s of one training epoch of full-size NB201 (C=16, N=5) cells in the trainer
   configurations the registered training profiles use (today fp32 only: no profile uses bf16 or channels_last;
   ``bench_training.gpu_records`` with a short configuration).
6. ``throughput_attacks``: ``robustbench_nas.attacks.evaluate`` on 1,000 real images, the trained full-size network
   of section 2, at the pipeline's batch size and reference budgets (PGD-40 and APGD-CE-100 on the 7-eps Jung grid,
   Square-5000 on 200 images at 1/255), both modes.
7. ``throughput_corruptions``: all 19 x 5 on 10,000 images on the GPU (``bench_corruptions._time_ours``).
8. ``fidelity``: the fidelity study (``bench_end_to_end.fidelity_records``) with as many cells as the remaining
   time allows (stated in the record; at least 3 cells, else the section reports that it did not fit).

A section that would start with less than 15 s of the budget left is reported as ``not_run``; when the shell
script's time limit interrupts a section, it is reported as ``interrupted`` and the summary is still written.

``--dry-run`` runs every section with tiny sizes, and ``--device cpu`` compares the CPU with itself: together they
check on a machine without a GPU that the whole script runs (the numbers then mean nothing). Without ``--dry-run``
a device other than CUDA is refused, and so is a missing CUDA device. The real CIFAR-10 images
(``../shared/data/cifar10_test.npz``) are required, also for a dry run: without them nothing runs (exit 2, the
message names the file); noise images would make every comparison meaningless.
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
    attack_images: int = 128
    #: the trained network of the attack sections: full NB201 size, trained on the device on real images
    net_train_images: int = 8000
    net_epochs: int = 5
    net_batch: int = 128
    net_C: int = 16
    net_N: int = 5
    min_clean_accuracy: float = 0.3
    agree_steps: int = 10
    agree_queries: int = 100
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
        return cls(agree_images=40, agree_train_steps=2, attack_images=40, net_train_images=2000, net_epochs=1,
                   net_batch=32, net_C=8, net_N=1, min_clean_accuracy=0.15, agree_steps=3, agree_queries=20,
                   corruption_images=8, proxy_images=8, train_images=128, throughput_images=16, square_images=8,
                   square_queries=20, pgd_steps=3, apgd_steps=3, corruption_throughput_images=32, full_C=4, full_N=1,
                   fidelity_epochs=1, fidelity_eval_images=20)


class DataMissing(SystemExit):
    """The real CIFAR-10 images are not there (the check never falls back to noise)."""


def require_real_data() -> Path:
    """The shared CIFAR-10 test file, or :class:`DataMissing` with a message naming it."""
    path = SHARED_DATA / "cifar10_test.npz"
    if not path.is_file():
        raise DataMissing(f"device_check: the real CIFAR-10 test images are required at {path} (the project's "
                          "shared data, ../shared/data/cifar10_test.npz); nothing was run. Noise images would make "
                          "every comparison meaningless (near-chance networks, attacks at 0 % accuracy)")
    return path


def _images(n: int, offset: int = 0):
    """``n`` real images (``n // 10`` per class from position ``offset`` of each class) and labels."""
    got = shared_cifar10(n, offset=offset)
    if got is None:
        require_real_data()
    return got


_TRAINED: dict[tuple, Any] = {}


def trained_network(dev: str, sz: Sizes) -> Any:
    """The network the attack sections use: :data:`LIGHT_CELL` at ``net_C`` / ``net_N``, trained on the device on
    the first ``net_train_images`` real images (per class), cached for the run (held-out images start after them)."""
    from benchmarks.device_agreement import train_network

    key = (dev, sz.net_train_images, sz.net_epochs, sz.net_batch, sz.net_C, sz.net_N)
    if key not in _TRAINED:
        x, y = _images(sz.net_train_images)
        _TRAINED[key] = train_network(LIGHT_CELL, x, y, dev, C=sz.net_C, N=sz.net_N, epochs=sz.net_epochs,
                                      batch_size=sz.net_batch)
    return _TRAINED[key]


def _held_out_offset(sz: Sizes) -> int:
    return -(-sz.net_train_images // 10)  # first image per class not used for training


# ------------------------------------------------------------------------------------------------------ sections
def agreement_model(dev: str, sz: Sizes) -> list[dict]:
    from benchmarks.bench_end_to_end import device_agreement_record

    return [device_agreement_record("cpu", dev, n=sz.agree_images, train_steps=sz.agree_train_steps)]


#: The CIFAR-10 protocols whose attack grids the check covers (every eps of each).
GRID_PROTOCOLS = ("jung2023", "robbench2024")


def pipeline_grid() -> tuple[dict[str, list[float]], int]:
    """The union of the attack grids of :data:`GRID_PROTOCOLS` (``{attack: eps ascending}``) and their batch size."""
    from robustbench_nas.pipelines import get_protocol

    grid: dict[str, set[float]] = {}
    sizes = set()
    for name in GRID_PROTOCOLS:
        p = get_protocol(name)
        sizes.add(p.batch_size)
        for attack, eps in p.attacks.items():
            grid.setdefault(attack, set()).update(float(e) for e in eps)
    if len(sizes) != 1:  # one batch size to check; two would need two runs of the section
        raise RuntimeError(f"protocols {GRID_PROTOCOLS} use different batch sizes {sorted(sizes)}")
    return {k: sorted(v) for k, v in grid.items()}, sizes.pop()


def _short_params(name: str, sz: Sizes) -> dict[str, Any]:
    """Shortened budgets (the same on both devices): the CPU side must finish in minutes."""
    if name.startswith("fgsm"):
        return {}
    if name.startswith("aa_square"):
        return {"n_queries": sz.agree_queries}
    if name.startswith("autoattack"):
        return {"apgd_steps": sz.agree_steps, "n_target_classes": 3, "fab_steps": sz.agree_steps,
                "square_queries": sz.agree_queries}
    return {"steps": sz.agree_steps}


def agreement_attacks(dev: str, sz: Sizes, perturb: float = 0.0) -> list[dict]:
    from benchmarks.device_agreement import Tolerances, compare_devices

    grid, batch_size = pipeline_grid()
    model = trained_network(dev, sz)
    x, y = _images(sz.attack_images, offset=_held_out_offset(sz))
    rec = compare_devices(model, x, y, dev, grid=grid, params={k: _short_params(k, sz) for k in grid},
                          batch_size=batch_size, seed=0, tol=Tolerances(min_clean_accuracy=sz.min_clean_accuracy),
                          perturb=perturb)
    secs = rec.pop("seconds")
    return [make_result(f"device_agreement_attacks_{dev.replace(':', '')}", secs["device"], secs["cpu"], rec["ok"],
                        same_work=True, devices=["cpu", dev], grid_protocols=list(GRID_PROTOCOLS),
                        eps_255={k: [round(e * 255, 4) for e in v] for k, v in grid.items()},
                        params={k: _short_params(k, sz) for k in grid},
                        model={"arch": LIGHT_CELL, "C": sz.net_C, "N": sz.net_N, "trained_on": dev,
                               "train_images": sz.net_train_images, "epochs": sz.net_epochs},
                        note="same per-image CPU random streams on both devices; budgets shortened on both",
                        **rec)]


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


def profile_variants() -> tuple[str, ...]:
    """The trainer configurations (keys of ``bench_training.VARIANTS``) that registered training profiles use:
    the check measures what the pipeline runs (no bf16 where no profile uses it)."""
    from benchmarks import bench_training as bt
    from robustbench_nas.training.profiles import get_profile, list_profiles

    used = []
    for name in list_profiles():
        p = get_profile(name)
        want = {"channels_last": bool(getattr(p, "channels_last", False)), "amp": getattr(p, "amp", None),
                "compile": bool(getattr(p, "compile", False))}
        for variant, opts in bt.VARIANTS.items():
            full = {"channels_last": bool(opts.get("channels_last", False)), "amp": opts.get("amp"),
                    "compile": bool(opts.get("compile", False))}
            if full == want and variant not in used:
                used.append(variant)
    if not used:
        raise RuntimeError("no trainer variant of bench_training matches a registered training profile")
    return tuple(used)


def throughput_training(dev: str, sz: Sizes) -> list[dict]:
    from benchmarks import bench_training as bt

    cfg = bt.GpuBenchConfig(device=dev, n_train=sz.train_images, n_test=min(1000, sz.train_images // 4), epochs=1,
                            variants=profile_variants(), processes=(), acc_epochs=0,
                            overrides=() if sz.full_C == 16 else (("C", sz.full_C), ("N", sz.full_N)),
                            loader_workers=0 if sz.train_images < 1000 else 4)
    return bt.gpu_records(cfg, bt.unique_cell_flops(bt.op_flop_table()))


def throughput_attacks(dev: str, sz: Sizes) -> list[dict]:
    from robustbench_nas import attacks
    from robustbench_nas.utils.precision import ieee_fp32

    x, y = _images(sz.throughput_images, offset=_held_out_offset(sz))
    x, y = x.to(dev), y.to(dev)
    model = trained_network(dev, sz).to(dev)
    grid = attacks.get_attack_grid("jung2023")
    _, batch_size = pipeline_grid()
    recs = []
    jobs = [("pgd@Linf", grid["pgd@Linf"], {"steps": sz.pgd_steps}, len(y)),
            ("aa_apgd-ce@Linf", grid["aa_apgd-ce@Linf"], {"steps": sz.apgd_steps}, len(y)),
            ("aa_square@Linf", [1 / 255], {"n_queries": sz.square_queries}, sz.square_images)]
    for name, eps, params, n in jobs:
        for mode in ("independent", "early_exit"):
            with Timer() as t:
                with ieee_fp32():  # the pipeline's evaluation precision
                    res = attacks.evaluate(model, x[:n], y[:n], name, list(eps), params=params, seed=0, mode=mode,
                                           batch_size=batch_size)
            recs.append(make_result(
                f"device_throughput_{name.split('@')[0]}_{mode}_{dev.replace(':', '')}", t.seconds, None, None,
                same_work=None, clock="wall", device=dev, attack=name, mode=mode, params=params, n_images=n,
                eps_255=[round(e * 255, 3) for e in eps], accuracy=[r.stats.accuracy for r in res],
                model={"arch": LIGHT_CELL, "C": sz.net_C, "N": sz.net_N, "trained": True}, batch_size=batch_size,
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
    # the profile's own trainer settings (no profile uses bf16 / channels_last); the dry run shrinks the network
    ov = () if dev.startswith("cuda") else (
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


def run(device: str, dry_run: bool, out: Path, budget_s: float, only: list[str] | None = None,
        perturb: float = 0.0) -> int:
    """Run the sections; write each record and a summary to ``out``; return the exit code (0: all ran and agreed).

    ``perturb``: relative weight noise on the device's copy of the network in ``agreement_attacks`` (a check of
    the check: it must then report disagreement).

    Raises:
        DataMissing: the real CIFAR-10 images are not there (before anything runs).
    """
    import torch

    if not dry_run:
        if not device.startswith("cuda"):
            raise SystemExit(f"device_check: --device {device} compares a device with the CPU; use a CUDA device "
                             "(or --dry-run to check the script itself)")
        if not torch.cuda.is_available():
            raise SystemExit("device_check: no CUDA device is available (torch.cuda.is_available() is False); "
                             "nothing was run. Use --dry-run --device cpu to check the script on a CPU")
    require_real_data()
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
            if name == "fidelity":
                recs = SECTIONS[name](device, sz, left)
            elif name == "agreement_attacks":
                recs = SECTIONS[name](device, sz, perturb)
            else:
                recs = SECTIONS[name](device, sz)
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
                      dry_run=dry_run, sections=summary, budget_s=budget_s, same_work=None, perturb=perturb,
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
    ap.add_argument("--perturb", type=float, default=0.0,
                    help="relative weight noise on the device's copy in agreement_attacks: the check must then fail")
    a = ap.parse_args(argv)
    import os

    import torch

    torch.set_num_threads(a.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    out = Path(a.out or os.environ.get("OUT") or RESULTS_DIR)
    only = a.sections.split(",") if a.sections else None
    if only and set(only) - set(SECTIONS):
        ap.error(f"unknown sections {sorted(set(only) - set(SECTIONS))}; known: {', '.join(SECTIONS)}")
    try:
        return run(a.device, a.dry_run, out, a.budget_s, only, a.perturb)
    except DataMissing as e:
        print(e.code, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
