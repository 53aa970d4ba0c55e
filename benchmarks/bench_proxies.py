"""Per-cell cost of every zero-cost proxy and robustness measure (full-size NB201 cells), plus two speed checks.

Records:

* ``proxies_<name>_<device>``: seconds per cell of one proxy at initialisation (C=16, N=5, batch of 64 real
  CIFAR-10 test images; random images when the shared data is absent). No baseline (a pure cost figure).
* ``proxies_all_shared_vs_separate`` (``_cuda`` on GPU): all registered proxies of full-size cells through the
  shared-pass engine (``engine="shared"``) vs the same proxies one at a time, each on its own copy
  (``engine="separate"``, the reference path), run side by side on the same cells, batch and seed;
  ``results_agree`` means every value equal bit for bit (NaN = NaN); ``same_work: true``. Cells: ``ENGINE_ARCHS``.
* ``proxies_all_fast_vs_separate`` (``_cuda`` on GPU): the same, through the fast engine (``engine="fast"``, the
  default: CRoZe in float32, hessian_eig exactly from the input Jacobian); ``results_agree`` means every proxy
  within its stated relative tolerance (``robustbench_nas.proxies.engine.FAST_TOLERANCE``, 0 = bit for bit),
  ``rel_diff`` the largest relative difference per proxy; ``same_work: true`` (same proxies, cells, batch, seed).
* ``measures_hessian_active_vs_full_<device>``: the ``hessian_eig`` proxy's Lanczos with Hessian-vector products
  only on the images still iterating (the default) vs on the whole chunk every time (``shrink=0``), same cells and
  start vectors; ``results_agree`` = every eigenvalue and iteration count equal bit for bit; ``same_work: true``.
* ``measures_<name>_<device>``: seconds per cell of one measure on 32 images (eval mode).
* ``measures_jacobian_exact_vs_jacrev_<device>``: our batched exact Jacobian norm (one backward per class for the
  whole batch) vs the per-image ``torch.func.jacrev`` a user would write; agreement to 1e-4 relative.
* ``measures_hessian_batched_vs_loop_<device>``: our batched power iteration (one HVP per iteration for all images)
  vs the same power iteration run image by image; agreement of the eigenvalues to 1e-2 relative (tol 1e-4).
* ``measures_hessian_lanczos_vs_power_<device>``: batched Lanczos vs batched power iteration (same tolerance).

On CPU the figures are process CPU seconds on one torch thread (``clock="process_cpu"``): on a shared machine
wall time mostly measures the other jobs. On GPU they are wall seconds (CUDA synchronised).
``python -m benchmarks.bench_proxies [--quick]``; the fast-engine record alone:
``python -c "from benchmarks.bench_proxies import run_fast_engine; run_fast_engine()"``.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import torch

from benchmarks.common import Timer, bench_main, make_result, save_result, shared_cifar10, torch_threads

log = logging.getLogger(__name__)

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
#: Cells of the shared-vs-separate record: a conv-heavy cell and a mixed one (pool, 1x1, none, skip).
ENGINE_ARCHS = (ARCH, "|avg_pool_3x3~0|+|none~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|")


def _batch(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, str]:
    data = shared_cifar10(n, stratified=False)
    if data is None:
        g = torch.Generator().manual_seed(0)
        return torch.rand(n, 3, 32, 32, generator=g).to(device), torch.randint(0, 10, (n,), generator=g).to(device), "random"
    x, y = data
    return x.to(device), y.to(device), "cifar10_test"


def _seconds(fn: Callable[[], Any], device: torch.device) -> tuple[float, float, Any]:
    """(reported seconds, wall seconds, value): process CPU time on CPU, wall time on GPU."""
    with Timer() as t:
        value = fn()
    return (t.cpu_seconds if device.type == "cpu" else t.seconds), t.seconds, value


def _per_image_jacrev(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = []
    for i in range(x.shape[0]):
        J = torch.func.jacrev(lambda xi: model(xi.unsqueeze(0))[0])(x[i])
        out.append(J.pow(2).sum())
    return torch.stack(out)


def _per_image_power(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, iters: int, tol: float) -> torch.Tensor:
    from robustbench_nas.measures import hessian_max_eig

    return torch.cat([hessian_max_eig(model, x[i : i + 1], y[i : i + 1], max_iter=iters, tol=tol, seed=i).eig
                      for i in range(x.shape[0])])


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]) for k in a)


def _rel_diff(a: float, b: float) -> float:
    """``|a - b| / |b|`` (0 when equal, NaN = NaN; inf when only one is NaN or ``b`` is 0 and ``a`` is not)."""
    if a == b or (a != a and b != b):
        return 0.0
    if a != a or b != b or b == 0:
        return float("inf")
    return abs(a - b) / abs(b)


def fast_engine_record(device: torch.device, quick: bool) -> dict[str, Any]:
    """``proxies_all_fast_vs_separate``: every proxy, fast engine vs one proxy at a time, same cells side by side."""
    from robustbench_nas.proxies import compute_proxies, list_proxies
    from robustbench_nas.proxies.engine import FAST_TOLERANCE

    C, N = (8, 1) if quick else (16, 5)
    n = 16 if quick else 64
    x, y, source = _batch(n, device)
    names = list_proxies()
    ours = base = wall_ours = wall_base = 0.0
    worst = {p: 0.0 for p in names}
    per_cell = []
    for arch in ENGINE_ARCHS:
        s_b, w_b, v_b = _seconds(lambda: compute_proxies(arch, x, y, seed=0, C=C, N=N, engine="separate"), device)
        s_o, w_o, v_o = _seconds(lambda: compute_proxies(arch, x, y, seed=0, C=C, N=N, engine="fast"), device)
        ours, base, wall_ours, wall_base = ours + s_o, base + s_b, wall_ours + w_o, wall_base + w_b
        diff = {p: _rel_diff(v_o[p], v_b[p]) for p in names}
        worst = {p: max(worst[p], diff[p]) for p in names}
        per_cell.append({"arch": arch, "fast_s": s_o, "separate_s": s_b, "ratio": s_b / s_o,
                         "rel_diff": {p: d for p, d in diff.items() if d}})
        log.info("engine %s: fast %.2f s, separate %.2f s", arch, s_o, s_b)
    agree = all(worst[p] <= FAST_TOLERANCE.get(p, 0.0) for p in names)
    suffix = "" if device.type == "cpu" else f"_{device.type}"
    k = len(ENGINE_ARCHS)
    return make_result(f"proxies_all_fast_vs_separate{suffix}", ours / k, base / k, agree, same_work=True,
                       unit="s/cell", baseline="the same proxies one at a time (engine='separate')",
                       tolerance={p: FAST_TOLERANCE.get(p, 0.0) for p in names}, rel_diff=worst,
                       tolerance_note="relative, per proxy and cell; 0 = bit for bit", proxies=names, n_images=n,
                       per_cell=per_cell, wall_ours_s=wall_ours / k, wall_baseline_s=wall_base / k,
                       device=str(device), C=C, N=N, data=source,
                       clock="process_cpu" if device.type == "cpu" else "wall")


def engine_record(device: torch.device, quick: bool) -> dict[str, Any]:
    """``proxies_all_shared_vs_separate``: every proxy, shared-pass engine vs one proxy at a time."""
    from robustbench_nas.proxies import compute_proxies, list_proxies

    C, N = (8, 1) if quick else (16, 5)
    n = 16 if quick else 64
    x, y, source = _batch(n, device)
    ours = base = wall_ours = wall_base = 0.0
    agree = True
    per_cell = []
    for arch in ENGINE_ARCHS:
        s_b, w_b, v_b = _seconds(lambda: compute_proxies(arch, x, y, seed=0, C=C, N=N, engine="separate"), device)
        s_o, w_o, v_o = _seconds(lambda: compute_proxies(arch, x, y, seed=0, C=C, N=N, engine="shared"), device)
        ours, base, wall_ours, wall_base = ours + s_o, base + s_b, wall_ours + w_o, wall_base + w_b
        agree = agree and _same(v_o, v_b)
        per_cell.append({"arch": arch, "shared_s": s_o, "separate_s": s_b, "ratio": s_b / s_o})
        log.info("engine %s: shared %.2f s, separate %.2f s, equal %s", arch, s_o, s_b, _same(v_o, v_b))
    suffix = "" if device.type == "cpu" else f"_{device.type}"
    return make_result(f"proxies_all_shared_vs_separate{suffix}", ours / len(ENGINE_ARCHS), base / len(ENGINE_ARCHS),
                       agree, same_work=True, unit="s/cell", baseline="the same proxies one at a time (engine='separate')",
                       tolerance="bitwise", proxies=list_proxies(), n_images=n, per_cell=per_cell,
                       wall_ours_s=wall_ours / len(ENGINE_ARCHS), wall_baseline_s=wall_base / len(ENGINE_ARCHS),
                       device=str(device), C=C, N=N, data=source,
                       clock="process_cpu" if device.type == "cpu" else "wall")


def hessian_active_record(device: torch.device, quick: bool) -> dict[str, Any]:
    """``measures_hessian_active_vs_full_<device>``: the ``hessian_eig`` proxy's Lanczos (full-size cells, BN
    calibrated on the batch, 64 images in chunks of 32, <= 20 HVPs, tol 1e-3) with HVPs on the unconverged images
    only (the default) vs every HVP on the whole chunk (``shrink=0``, the former code); bitwise agreement."""
    from robustbench_nas.measures import hessian_max_eig
    from robustbench_nas.proxies import init_model
    from robustbench_nas.proxies._utils import calibrate_batchnorm
    from robustbench_nas.proxies.input_derivatives import HESSIAN_MAX_ITER, HESSIAN_TOL

    C, N = (8, 1) if quick else (16, 5)
    n = 16 if quick else 64
    x, y, source = _batch(n, device)
    ours = base = wall_o = wall_b = 0.0
    agree, per_cell = True, []
    for arch in ENGINE_ARCHS:
        net = calibrate_batchnorm(init_model(arch, 0, C=C, N=N).to(device), x)
        kw = dict(max_iter=HESSIAN_MAX_ITER, tol=HESSIAN_TOL, seed=0, method="lanczos")
        hessian_max_eig(net, x[:8], y[:8], **{**kw, "max_iter": 2})  # warm-up: neither side pays first-call costs
        s_o, w_o, r_o = _seconds(lambda: hessian_max_eig(net, x, y, **kw), device)
        s_b, w_b, r_b = _seconds(lambda: hessian_max_eig(net, x, y, shrink=0.0, **kw), device)
        agree &= bool(torch.equal(r_o.eig, r_b.eig) and torch.equal(r_o.iters, r_b.iters))
        ours, base, wall_o, wall_b = ours + s_o, base + s_b, wall_o + w_o, wall_b + w_b
        per_cell.append({"arch": arch, "active_s": s_o, "full_s": s_b, "hvps_mean": float(r_o.iters.double().mean()),
                         "hvps_max": int(r_o.iters.max())})
    k = len(ENGINE_ARCHS)
    return make_result(f"measures_hessian_active_vs_full_{device.type}", ours / k, base / k, agree,
                       baseline="the same batched Lanczos, every HVP on the whole chunk (shrink=0)",
                       tolerance="bitwise", same_work=True, unit="s/cell", n_images=n, per_cell=per_cell,
                       wall_ours_s=wall_o, wall_baseline_s=wall_b, device=str(device), C=C, N=N, data=source,
                       clock="process_cpu" if device.type == "cpu" else "wall")


def run_device(device: torch.device, quick: bool) -> list[dict[str, Any]]:
    from robustbench_nas.measures import MeasureConfig, compute_measures, hessian_max_eig, jacobian_norms, list_measures
    from robustbench_nas.proxies import compute_proxies, init_model, list_proxies

    C, N = (8, 1) if quick else (16, 5)
    n_proxy = 16 if quick else 64
    n_meas = 8 if quick else 32
    clock = "process_cpu" if device.type == "cpu" else "wall"
    x, y, source = _batch(max(n_proxy, n_meas), device)
    common = dict(device=str(device), C=C, N=N, arch=ARCH, data=source, clock=clock)
    records = []
    for name in list_proxies():
        s, wall, v = _seconds(lambda: compute_proxies(ARCH, x[:n_proxy], y[:n_proxy], [name], seed=0, C=C, N=N), device)
        records.append(make_result(f"proxies_{name}_{device.type}", s, None, None, unit="s/cell", wall_s=wall,
                                   n_images=n_proxy, value=v[name], **common))
        log.info("proxy %-12s %.3f s/cell", name, s)
    model = init_model(ARCH, 0, C=C, N=N).to(device).eval()
    cfg = MeasureConfig()
    for name in list_measures():
        s, wall, v = _seconds(lambda: compute_measures(model, x[:n_meas], y[:n_meas], [name], seed=0, config=cfg), device)
        records.append(make_result(f"measures_{name}_{device.type}", s, None, None, unit="s/cell", wall_s=wall,
                                   n_images=n_meas, value=v[name], config=cfg.__dict__, **common))
        log.info("measure %-18s %.3f s/cell", name, s)
    # exact Jacobian: batched class-by-class backward vs per-image jacrev
    n_j = 4 if quick else 16
    s_ours, w_ours, ours = _seconds(lambda: jacobian_norms(model, x[:n_j]).sq, device)
    s_base, w_base, base = _seconds(lambda: _per_image_jacrev(model, x[:n_j]), device)
    agree = bool(torch.allclose(ours, base.to(ours.dtype), rtol=1e-4, atol=0))
    records.append(make_result(f"measures_jacobian_exact_vs_jacrev_{device.type}", s_ours, s_base, agree,
                               baseline="torch.func.jacrev per image", tolerance="rtol 1e-4", n_images=n_j,
                               wall_ours_s=w_ours, wall_baseline_s=w_base, **common))
    # Hessian eigenvalue: batched power iteration vs the same iteration one image at a time
    n_h = 2 if quick else 8
    iters, tol = 100, 1e-4
    s_ours, w_ours, ours = _seconds(lambda: hessian_max_eig(model, x[:n_h], y[:n_h], max_iter=iters, tol=tol).eig, device)
    s_base, w_base, base = _seconds(lambda: _per_image_power(model, x[:n_h], y[:n_h], iters, tol), device)
    agree = bool(torch.allclose(ours, base, rtol=1e-2, atol=0))
    records.append(make_result(f"measures_hessian_batched_vs_loop_{device.type}", s_ours, s_base, agree,
                               baseline="same power iteration, one image at a time", tolerance="rtol 1e-2 (tol 1e-4)",
                               n_images=n_h, max_iter=iters, wall_ours_s=w_ours, wall_baseline_s=w_base, **common))
    # Lanczos vs power iteration, same tolerance, same start vectors
    s_ours, w_ours, lz = _seconds(lambda: hessian_max_eig(model, x[:n_h], y[:n_h], max_iter=iters, tol=tol, method="lanczos"), device)
    s_base, w_base, pw = _seconds(lambda: hessian_max_eig(model, x[:n_h], y[:n_h], max_iter=iters, tol=tol, method="power"), device)
    agree = bool(torch.allclose(lz.eig, pw.eig, rtol=1e-2, atol=0))
    records.append(make_result(f"measures_hessian_lanczos_vs_power_{device.type}", s_ours, s_base, agree,
                               baseline="power iteration (same tol, same start)", tolerance="rtol 1e-2 (tol 1e-4)",
                               n_images=n_h, hvps_lanczos=int(lz.iters.max()), hvps_power=int(pw.iters.max()),
                               wall_ours_s=w_ours, wall_baseline_s=w_base, **common))
    return records


def run(quick: bool = False) -> list[dict[str, Any]]:
    """CPU records on one torch thread; the same on GPU when CUDA is available."""
    records = []
    with torch_threads(1):
        records.append(fast_engine_record(torch.device("cpu"), quick))
        records.append(engine_record(torch.device("cpu"), quick))
        records.append(hessian_active_record(torch.device("cpu"), quick))
        records += run_device(torch.device("cpu"), quick)
    if torch.cuda.is_available():
        records.append(fast_engine_record(torch.device("cuda"), quick))
        records.append(engine_record(torch.device("cuda"), quick))
        records.append(hessian_active_record(torch.device("cuda"), quick))
        records += run_device(torch.device("cuda"), quick)
    for r in records:
        save_result(r)
    return records


def run_fast_engine(quick: bool = False) -> dict[str, Any]:
    """Only ``proxies_all_fast_vs_separate`` on the CPU (one torch thread), saved."""
    with torch_threads(1):
        record = fast_engine_record(torch.device("cpu"), quick)
    save_result(record)
    return record


def main(argv: list[str] | None = None) -> None:
    bench_main(run, __doc__, argv)


if __name__ == "__main__":
    main()
