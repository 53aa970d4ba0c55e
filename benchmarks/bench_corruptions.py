"""Common-corruption throughput: ``corruptions`` (batched torch) vs the ``imagecorruptions`` package (numpy, per image).

Work measured: all 19 corruptions x 5 severities on the CIFAR-10 test images of ``../shared/data/cifar10_test.npz``
(10,000 by default; ``--quick``: 500).

* **ours**: ``corruptions.get(name)(x, severity, generator)`` on batches of ``--batch-size`` images (default 500:
  CPU caches make 250-1000 image batches 2-3x faster per image than 10,000 at once), one torch thread on the CPU
  (this process's CPU seconds: the machine is shared), and on the GPU when one is available (wall seconds, CUDA
  synchronised).
* **baseline**: ``imagecorruptions.corrupt(image, severity, name)`` 1.1.2, one uint8 HWC image per call, as its
  README shows; the per-image cost is measured on the first ``--baseline-n`` images of each cell (default 200;
  ``--quick``: 20) and scaled to the full count (it is a fixed per-image cost: every image is processed alone).
  It needs three compatibility shims on current libraries, applied to its module only: ``pkg_resources`` (gone in
  setuptools >= 81), ``skimage.filters.gaussian(multichannel=...)`` (now ``channel_axis``, used by glass_blur and
  gaussian_blur) and ``np.float_`` (gone in NumPy 2, used by fog).

The two do not compute the same images: ``imagecorruptions`` carries the ImageNet-C constants (larger kernels, more
noise), ours the CIFAR-10-C constants (what the CIFAR-10-C files and Jung et al. 2023 use). Where a CIFAR severity
uses exactly the same constants as an ImageNet-C severity of the package (contrast 0.4 and 0.3; brightness 0.1, 0.2
and 0.3; saturate (0.3, 0) and (0.1, 0); gaussian_blur sigma 1), both are run on the same images and must agree
within one 8-bit level on 99 % of the pixels: that is ``results_agree`` (``None`` for corruptions without such a
pair). Pixel-level agreement with the CIFAR generator itself is checked in tests/test_corruptions_reference.py.

Run: ``python -m benchmarks.bench_corruptions [--quick] [--n 10000] [--baseline-n 200] [--batch-size 500]``.

``--validate`` runs an end-to-end check against the published data instead of the timing: one small NB201 network
(C=8, N=1, 8 epochs) trained here on the 8,000 training images of the shared file (the project's trainer),
evaluated with ``corruptions.evaluate`` on the 2,000 held-out images for the 15 corruptions x 5 severities, and
compared with the mean accuracy per (corruption, severity) of the 6,466 networks of Jung et al. 2023 (evaluated on
the official CIFAR-10-C files): how often the accuracy change from one severity to the next has the same sign
(60 steps; several corruptions are not monotone in the release, e.g. glass_blur and motion_blur), plus Spearman
and Kendall rank correlation over the 75 cells. Record ``corruptions_jung2023_pattern`` (no baseline;
``results_agree``: at least 54 of the 60 steps agree; the correlation across corruptions also reflects how robust
the one small network is, so it is reported, not thresholded).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
import time
import types
from typing import Any

import numpy as np
import torch

from benchmarks.common import (
    SHARED_DATA,
    Timer,
    cuda_available,
    make_result,
    save_result,
    shared_cifar10,
    torch_threads,
)

log = logging.getLogger(__name__)

# (ours: CIFAR severity) -> (imagecorruptions: ImageNet-C severity) with identical constants
SAME_CONSTANTS: dict[str, list[tuple[int, int]]] = {
    "contrast": [(3, 1), (4, 2)],
    "brightness": [(2, 1), (4, 2), (5, 3)],
    "saturate": [(1, 1), (2, 2)],
    "gaussian_blur": [(5, 1)],
}


def install_pkg_resources_shim() -> None:
    """``imagecorruptions`` 1.1.2 imports ``pkg_resources`` (gone from setuptools >= 81): register a minimal
    stand-in providing ``resource_filename`` when the real one is missing."""
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        shim = types.ModuleType("pkg_resources")

        def resource_filename(package: str, rel: str) -> str:
            spec = importlib.util.find_spec(package)
            return os.path.join(os.path.dirname(spec.origin), rel)

        shim.resource_filename = resource_filename  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim


def load_imagecorruptions() -> Any:
    """Import ``imagecorruptions`` with the shims described in the module docstring; ``None`` if not installed."""
    if importlib.util.find_spec("imagecorruptions") is None:
        return None
    install_pkg_resources_shim()
    import imagecorruptions
    import imagecorruptions.corruptions as icc
    from skimage.filters import gaussian as sk_gaussian

    def gaussian(image, sigma=1, multichannel=None, **kw):  # noqa: ANN001
        if multichannel is not None:
            kw["channel_axis"] = -1 if multichannel else None
        return sk_gaussian(image, sigma=sigma, **kw)

    class _NumpyWithFloat:
        float_ = np.float64

        def __getattr__(self, name: str) -> Any:
            return getattr(np, name)

    icc.gaussian = gaussian
    icc.np = _NumpyWithFloat()
    return imagecorruptions


def _ours_cell(f, x: torch.Tensor, severity: int, batch_size: int, device: torch.device, seed: int) -> torch.Tensor:
    import corruptions

    g = corruptions.make_generator(seed, device)
    outs = [f(x[i : i + batch_size], severity, generator=g) for i in range(0, x.shape[0], batch_size)]
    return torch.cat(outs)


def _time_ours(names, x, batch_size, device) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds per corruption (sum over severities): (wall, process CPU)."""
    import corruptions

    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    xd = x.to(device)
    for name in names:
        f = corruptions.get(name)
        f(xd[:8], 1)  # warm-up (caches, kernels)
        wall[name] = cpu[name] = 0.0
        for s in range(1, 6):
            with Timer() as t:
                _ours_cell(f, xd, s, batch_size, device, s)
            wall[name] += t.seconds
            cpu[name] += t.cpu_seconds
        log.info("ours %s: %.3f s wall, %.3f s cpu", name, wall[name], cpu[name])
    return wall, cpu


def _time_baseline(ic, names, imgs: np.ndarray) -> dict[str, float]:
    """CPU seconds per image per corruption (sum over the 5 severities)."""
    import warnings

    warnings.filterwarnings("ignore", category=RuntimeWarning, module="imagecorruptions")
    per_image: dict[str, float] = {}
    np.random.seed(0)
    for name in names:
        ic.corrupt(imgs[0], 1, name)  # warm-up (frost reads its file on every call anyway)
        total = 0.0
        for s in range(1, 6):
            with Timer() as t:
                for im in imgs:
                    ic.corrupt(im, s, name)
            total += t.cpu_seconds / len(imgs)
        per_image[name] = total
        log.info("imagecorruptions %s: %.3f ms / image (5 severities)", name, total * 1e3)
    return per_image


def _agreement(ic, name: str, x: torch.Tensor) -> dict[str, Any] | None:
    import corruptions

    pairs = SAME_CONSTANTS.get(name)
    if not pairs or ic is None:
        return None
    imgs = torch.round(x[:64] * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    fracs = []
    for ours_sev, ic_sev in pairs:
        ours = corruptions.get(name)(x[:64], ours_sev)
        ours = torch.round(ours * 255).to(torch.int64).permute(0, 2, 3, 1).numpy()
        ref = np.stack([np.uint8(ic.corrupt(im, ic_sev, name)) for im in imgs]).astype(np.int64)
        fracs.append(float((np.abs(ours - ref) <= 1).mean()))
    return {"pairs": pairs, "fraction_within_1_level": fracs, "agree": min(fracs) >= 0.99}


def run(quick: bool = False, n: int | None = None, baseline_n: int | None = None,
        batch_size: int | None = None, names: list[str] | None = None) -> list[dict]:
    """Time all corruptions x 5 severities, ours vs ``imagecorruptions``; one record per corruption plus totals."""
    import corruptions

    n = n or (500 if quick else 10_000)
    baseline_n = baseline_n or (20 if quick else 200)
    batch_size = batch_size or min(n, 500)
    names = names or corruptions.list_corruptions()
    data = shared_cifar10(n)
    if data is None:
        log.warning("../shared/data/cifar10_test.npz not found: using %d random images", n)
        g = torch.Generator().manual_seed(0)
        x = torch.round(torch.rand(n, 3, 32, 32, generator=g) * 255) / 255
    else:
        x = data[0]
    ic = load_imagecorruptions()
    suffix = "_quick" if quick else ""
    with torch_threads(1):
        wall, cpu = _time_ours(names, x, batch_size, torch.device("cpu"))
        per_image = _time_baseline(ic, names, torch.round(x[:baseline_n] * 255).to(torch.uint8)
                                   .permute(0, 2, 3, 1).numpy()) if ic is not None else {}
        agreements = {name: _agreement(ic, name, x) for name in names}
    gpu_wall: dict[str, float] = {}
    if cuda_available():
        gpu_wall, _ = _time_ours(names, x, batch_size, torch.device("cuda"))
    records = []
    common = {"n_images": n, "severities": 5, "batch_size": batch_size, "clock": "process_cpu",
              "baseline": "imagecorruptions 1.1.2 per image (ImageNet-C constants), extrapolated",
              "baseline_images_timed": baseline_n}
    for name in names:
        base = per_image[name] * n if name in per_image else None
        agr = agreements[name]
        rec = make_result(f"corruptions_{name}{suffix}", cpu[name], base, None if agr is None else agr["agree"],
                          ours_wall_s=wall[name], agreement=agr, gpu_wall_s=gpu_wall.get(name), **common)
        records.append(rec)
    tot_ours = sum(cpu.values())
    tot_base = sum(per_image[nm] * n for nm in names) if per_image else None
    checked = [a["agree"] for a in agreements.values() if a is not None]
    records.append(make_result(
        f"corruptions_all{suffix}", tot_ours, tot_base, all(checked) if checked else None,
        ours_wall_s=sum(wall.values()), corruptions=len(names), per_image_ms_ours=1e3 * tot_ours / n,
        per_image_ms_baseline=None if tot_base is None else 1e3 * tot_base / n,
        gpu_wall_s=sum(gpu_wall.values()) if gpu_wall else None, **common,
    ))
    if gpu_wall:
        tot_gpu = sum(gpu_wall.values())
        records.append(make_result(
            f"corruptions_all_gpu{suffix}", tot_gpu, tot_base, all(checked) if checked else None,
            clock="wall", device="cuda", n_images=n, corruptions=len(names), batch_size=batch_size,
            baseline="imagecorruptions 1.1.2 per image on the CPU (ImageNet-C constants), extrapolated",
        ))
    return records


VALIDATION_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def validate(epochs: int = 8) -> dict:
    """End-to-end pattern check against Jung et al. 2023 (see the module docstring)."""
    import json

    from scipy.stats import kendalltau, spearmanr

    import corruptions
    from robustbench_nas.data import get_dataset
    from robustbench_nas.evaluation import evaluate_clean
    from robustbench_nas.training import get_profile, train_model

    root = SHARED_DATA / "jung2023" / "cifar10"
    names = corruptions.list_corruptions("benchmark")
    published = {}
    for name in names:
        with open(root / f"{name}_accuracy.json") as fh:
            acc = json.load(fh)["cifar10"][name]["accuracy"]
        published[name] = np.asarray(list(acc.values()), dtype=float).mean(0)  # (5,) mean over the 6466 cells
    ds = get_dataset("npz", str(SHARED_DATA / "cifar10_test.npz"))
    prof = get_profile("tiny", epochs=epochs, batch_size=128, lr=0.05, C=8, N=1)
    t = time.perf_counter()
    with torch_threads(1):
        model = train_model(VALIDATION_ARCH, ds, prof, seed=0, device="cpu", progress=False).model.eval()
        train_s = time.perf_counter() - t
        test = ds.split("test")
        x, y = test.images("cpu"), test.labels("cpu")
        clean = evaluate_clean(model, x, y).accuracy
        with Timer() as tm:
            res = corruptions.evaluate(model, x, y, names, batch_size=500, seed=0)
    ours = {name: np.array([r.stats.accuracy for r in res if r.corruption == name]) for name in names}
    a = np.concatenate([ours[nm] for nm in names])
    b = np.concatenate([published[nm] for nm in names])
    steps_same = int(sum(np.sum(np.sign(np.diff(ours[nm])) == np.sign(np.diff(published[nm]))) for nm in names))
    rho = float(spearmanr(a, b).statistic)
    tau = float(kendalltau(a, b).statistic)
    log.info("validation: clean %.3f, Spearman %.3f, Kendall %.3f, same-sign steps %d/60", clean, rho, tau,
             steps_same)
    return make_result(
        "corruptions_jung2023_pattern", tm.cpu_seconds, None, steps_same >= 54, clock="process_cpu",
        spearman_75_cells=rho, kendall_75_cells=tau, same_sign_severity_steps=steps_same, severity_steps=60,
        clean_accuracy=clean, train_s=train_s, epochs=epochs, arch=VALIDATION_ARCH, C=8, N=1, n_images=len(y),
        ours={nm: ours[nm].round(4).tolist() for nm in names},
        published_mean={nm: published[nm].round(4).tolist() for nm in names},
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--baseline-n", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--corruptions", default=None, help="comma-separated subset")
    p.add_argument("--validate", action="store_true", help="pattern check against Jung et al. 2023 (trains a net)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    t = time.perf_counter()
    if args.validate:
        rec = validate()
        path = save_result(rec)
        print(f"{rec['name']}: Spearman {rec['spearman_75_cells']:.3f}, Kendall {rec['kendall_75_cells']:.3f}, "
              f"same-sign severity steps {rec['same_sign_severity_steps']}/60, clean {rec['clean_accuracy']:.3f} "
              f"-> {path.name}")
        return
    recs = run(args.quick, args.n, args.baseline_n, args.batch_size,
               args.corruptions.split(",") if args.corruptions else None)
    for r in recs:
        path = save_result(r)
        base = "n/a" if r["baseline_s"] is None else f"{r['baseline_s']:.2f}s"
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.1f}x"
        print(f"{r['name']:36s} ours {r['ours_s']:8.2f}s  baseline {base:>9s}  ratio {ratio:>7s}  "
              f"agree {r['results_agree']}  -> {path.name}")
    print(f"total benchmark time {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
