"""Common-corruption throughput: ``corruptions`` (batched torch) vs the CIFAR-10-C generator's per-image NumPy path.

Work measured: all 19 corruptions x 5 severities on the CIFAR-10 test images of ``../shared/data/cifar10_test.npz``
(10,000 by default; ``--quick``: 500).

* **ours**: ``robustbench_nas.corruptions.get(name)(x, severity, generator)`` on batches of ``--batch-size`` images (default 500:
  CPU caches make 250-1000 image batches 2-3x faster per image than 10,000 at once), one torch thread on the CPU
  (this process's CPU seconds: the machine is shared), and on the GPU when one is available (wall seconds, CUDA
  synchronised).
* **baseline (same work)**: ``benchmarks/cifar_c_reference.py``, the statements of Hendrycks' ``make_cifar_c.py``
  with the CIFAR-10-C constants, one uint8 HWC image per call with ``np.random`` draws, i.e. the code path the
  CIFAR-10-C files were made with (the reference of the pixel tests). It computes the same images, so every record
  carries ``same_work: true``. Where the generator calls ImageMagick (motion_blur, snow) the reference runs the
  ``imagecorruptions`` NumPy port of that motion blur, which may be slower than ImageMagick's C code: those two
  records say so (``baseline_note``). The per-image cost is measured on the first ``--baseline-n`` images of each
  cell (default 200; ``--quick``: 20) and scaled to the full count (each image is processed alone).
* **imagecorruptions** (``imagecorruptions_s``, informational, ``imagecorruptions_same_work: false``): the PyPI
  package 1.1.2 that many users reach for. It carries the ImageNet-C constants (larger kernels, more noise, two
  more glass-blur passes), so it computes other images; its seconds are reported, never used for a ratio. It
  needs three compatibility shims on current libraries, applied to its module only: ``pkg_resources`` (gone in
  setuptools >= 81), ``skimage.filters.gaussian(multichannel=...)`` (now ``channel_axis``) and ``np.float_``.

``results_agree``: deterministic corruptions: ours and the reference within one 8-bit level on >= 99.9 % of the
values of the timed images; random corruptions (different random streams here): the mean |corrupted - clean| of
ours within 10 % (or 0.5/255) of the reference's (25 % with fewer than 100 timed images, as in ``--quick``). Pixel-level agreement given the same draws is checked in
tests/test_corruptions_reference.py.

Run: ``python -m benchmarks.bench_corruptions [--quick] [--n 10000] [--baseline-n 200] [--batch-size 500]``.

``--validate`` runs an end-to-end check against the published data instead of the timing: one small NB201 network
(C=8, N=1, 8 epochs) trained here on the 8,000 training images of the shared file (the project's trainer),
evaluated with ``robustbench_nas.corruptions.evaluate`` on the 2,000 held-out images for the 15 corruptions x 5 severities, and
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
    from robustbench_nas import corruptions

    g = corruptions.make_generator(seed, device)
    outs = [f(x[i : i + batch_size], severity, generator=g) for i in range(0, x.shape[0], batch_size)]
    return torch.cat(outs)


def _time_ours(names, x, batch_size, device) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds per corruption (sum over severities): (wall, process CPU)."""
    from robustbench_nas import corruptions

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


def _time_imagecorruptions(ic, names, imgs: np.ndarray) -> dict[str, float]:
    """CPU seconds per image per corruption (sum over the 5 severities) of ``imagecorruptions`` (other constants)."""
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


def _time_reference(names, imgs: np.ndarray) -> tuple[dict[str, float], dict[str, list[np.ndarray]]]:
    """CPU seconds per image per corruption (5 severities) of the generator's per-image path, and its outputs."""
    from benchmarks import cifar_c_reference as ref

    per_image: dict[str, float] = {}
    outputs: dict[str, list[np.ndarray]] = {}
    for name in names:
        draws = np.random.RandomState(0)
        ref.corrupt(name, imgs[0], 1, draws)  # warm-up (imports, frost textures)
        total = 0.0
        outputs[name] = []
        for s in range(1, 6):
            with Timer() as t:
                out = [ref.corrupt(name, im, s, draws) for im in imgs]
            total += t.cpu_seconds / len(imgs)
            outputs[name].append(np.stack(out))
        per_image[name] = total
        log.info("reference %s: %.3f ms / image (5 severities)", name, total * 1e3)
    return per_image, outputs


def _agreement(name: str, x: torch.Tensor, ref_out: list[np.ndarray]) -> dict[str, Any]:
    """Ours vs the reference on the timed images (module docstring: pixels, or strength for random ones)."""
    from robustbench_nas import corruptions

    n = ref_out[0].shape[0]
    clean = torch.round(x[:n] * 255).to(torch.int64).permute(0, 2, 3, 1).numpy()
    random = corruptions.info(name).random
    rel_tol = 0.1 if n >= 100 else 0.25  # frost's texture choice (1 of 5 per image) is noisy on 20 images
    per_sev = []
    for s in range(1, 6):
        ours = corruptions.get(name)(x[:n], s, generator=corruptions.make_generator(s))
        ours = torch.round(ours * 255).to(torch.int64).permute(0, 2, 3, 1).numpy()
        r = ref_out[s - 1].astype(np.int64)
        if random:
            mo, mr = float(np.abs(ours - clean).mean()), float(np.abs(r - clean).mean())
            per_sev.append({"ours_mean_abs_change": mo, "reference_mean_abs_change": mr,
                            "ok": abs(mo - mr) <= max(rel_tol * mr, 0.5)})
        else:
            frac = float((np.abs(ours - r) <= 1).mean())
            per_sev.append({"fraction_within_1_level": frac, "ok": frac >= 0.999})
    return {"kind": "strength" if random else "pixels", "severities": per_sev, "images": n,
            "strength_rel_tol": rel_tol if random else None,
            "agree": all(p["ok"] for p in per_sev)}


def run(quick: bool = False, n: int | None = None, baseline_n: int | None = None,
        batch_size: int | None = None, names: list[str] | None = None) -> list[dict]:
    """Time all corruptions x 5 severities, ours vs ``imagecorruptions``; one record per corruption plus totals."""
    from robustbench_nas import corruptions

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
    timed = torch.round(x[:baseline_n] * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    with torch_threads(1):
        wall, cpu = _time_ours(names, x, batch_size, torch.device("cpu"))
        per_image, ref_out = _time_reference(names, timed)
        ic_per_image = _time_imagecorruptions(ic, names, timed) if ic is not None else {}
        agreements = {name: _agreement(name, x, ref_out[name]) for name in names}
    gpu_wall: dict[str, float] = {}
    if cuda_available():
        gpu_wall, _ = _time_ours(names, x, batch_size, torch.device("cuda"))
    records = []
    common = {"n_images": n, "severities": 5, "batch_size": batch_size, "clock": "process_cpu",
              "baseline": "the CIFAR-10-C generator's statements per image (benchmarks/cifar_c_reference.py, "
                          "CIFAR constants), extrapolated",
              "same_work": True, "baseline_images_timed": baseline_n}
    for name in names:
        agr = agreements[name]
        note = ({"baseline_note": "the generator's ImageMagick motion blur runs as imagecorruptions' NumPy port"}
                if name in ("motion_blur", "snow") else {})
        rec = make_result(f"corruptions_{name}{suffix}", cpu[name], per_image[name] * n, agr["agree"],
                          ours_wall_s=wall[name], agreement=agr, gpu_wall_s=gpu_wall.get(name),
                          imagecorruptions_s=ic_per_image[name] * n if name in ic_per_image else None,
                          imagecorruptions_same_work=False, **note, **common)
        records.append(rec)
    tot_ours = sum(cpu.values())
    tot_base = sum(per_image[nm] * n for nm in names)
    records.append(make_result(
        f"corruptions_all{suffix}", tot_ours, tot_base, all(a["agree"] for a in agreements.values()),
        ours_wall_s=sum(wall.values()), corruptions=len(names), per_image_ms_ours=1e3 * tot_ours / n,
        per_image_ms_baseline=1e3 * tot_base / n,
        imagecorruptions_s=sum(ic_per_image[nm] * n for nm in names) if ic_per_image else None,
        imagecorruptions_same_work=False,
        gpu_wall_s=sum(gpu_wall.values()) if gpu_wall else None, **common,
    ))
    if gpu_wall:
        tot_gpu = sum(gpu_wall.values())
        records.append(make_result(
            f"corruptions_all_gpu{suffix}", tot_gpu, tot_base, all(a["agree"] for a in agreements.values()),
            clock="wall", device="cuda", n_images=n, corruptions=len(names), batch_size=batch_size, same_work=True,
            baseline="the CIFAR-10-C generator's statements per image on the CPU (CIFAR constants), extrapolated",
        ))
    return records


VALIDATION_ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def validate(epochs: int = 8) -> dict:
    """End-to-end pattern check against Jung et al. 2023 (see the module docstring)."""
    import json

    from scipy.stats import kendalltau, spearmanr

    from robustbench_nas import corruptions
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


def markdown(results_dir: Any = None) -> str:
    """The per-corruption table of the saved full-size records (README figures are regenerated from this)."""
    from benchmarks.common import load_results

    recs = {r["name"]: r for r in load_results(results_dir) if r["name"].startswith("corruptions_")
            and not r["name"].endswith("_quick") and "pattern" not in r["name"]}
    lines = ["| corruption | ours s | generator path s | ratio | same_work | agree | imagecorruptions s (other images) |",
             "|---|---|---|---|---|---|---|"]
    for name in sorted(recs, key=lambda k: (k == "corruptions_all", k)):
        r = recs[name]
        if "same_work" not in r:
            continue
        ic = r.get("imagecorruptions_s")
        lines.append(f"| {name.removeprefix('corruptions_')} | {r['ours_s']:.2f} | {r['baseline_s']:.2f} | "
                     f"{r['ratio']:.1f}x | {str(r['same_work']).lower()} | {'yes' if r['results_agree'] else 'NO'} | "
                     f"{'-' if ic is None else f'{ic:.1f}'} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--markdown", action="store_true", help="print the table of the saved records (no run)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--baseline-n", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--corruptions", default=None, help="comma-separated subset")
    p.add_argument("--validate", action="store_true", help="pattern check against Jung et al. 2023 (trains a net)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.markdown:
        print(markdown())
        return
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
