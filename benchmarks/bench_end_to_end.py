"""End to end: cells per hour of the ``tiny`` protocol on this machine, and the cost of the full ``jung2023`` and
``pgd-at`` protocols per cell on a GPU (a **projection**, clearly labelled, unless measured on a GPU).

Measured (record ``end_to_end_tiny``): :func:`robustbench_nas.pipelines.run_pipeline` with the ``tiny`` protocol (8 cells of the
embedded ``digits`` data; quick mode: 1 cell) on a local Dask cluster into a fresh store, timed wall-clock from
store creation to the last stage, with the per-stage mean seconds read back from the store's ``stage_seconds``.
There is no baseline tool that runs this whole protocol, so ``baseline_s`` is ``None``; ``results_agree`` says
whether every stage of every cell finished with finite clean accuracies.

Projected (records ``end_to_end_jung2023_projection`` and ``end_to_end_pgd_at_projection``): the per-cell cost of
every stage in FLOPs, from the exact FLOP count of the mean unique NB201 cell and the protocol budgets (200 epochs
x 50,000 images; FGSM 11 eps, PGD-40, APGD-CE-100, Square-5000 at 7 eps on 10,000 images; 15 x 5 corruptions;
measures), then GPU time at stated fractions of the H100 bf16 peak. The number of images each attack must still
attack in ``early_exit`` mode (a point broken at a smaller eps stays broken) is taken from the published
Jung et al. 2023 accuracies (mean over all 6466 cells, ``../shared/data/jung2023``), so the saving of that option is
a projection grounded in real robust accuracies. Square's queries depend on when each point breaks, which the
release does not record: it is bounded between "survivors use all queries" and "every attacked point uses all".

Run: ``python -m benchmarks.bench_end_to_end [--quick]``.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import SHARED_DATA, Timer, bench_main, cuda_available, make_result, mark_quick, save_result

log = logging.getLogger(__name__)

TEST_IMAGES = 10_000
TRAIN_IMAGES = 50_000
NUM_UNIQUE = 6466
H100_BF16_PEAK = 989e12
#: achieved fractions of the peak for the scenarios (narrow NB201 nets reach a small fraction; see bench_training)
FRACTIONS = (0.02, 0.05, 0.10, 0.20)
CENTRAL = 0.05
GOAL_MIN_PER_CELL = 10.0
GOAL_PGD_AT_GPU_HOURS = 2500.0
#: NAS-RobBench-201 (Wu et al. 2024) medians over cells, CIFAR-10: clean, PGD-20 at 8/255, AutoAttack at 8/255
NASROB_MEDIAN = {"clean": 0.7064, "pgd20_8": 0.4275, "aa_8": 0.3870}


# ----------------------------------------------------------------------------------------------------------------
# measured: the tiny protocol
# ----------------------------------------------------------------------------------------------------------------
def run_tiny(n_cells: int | None, n_workers: int, workdir: Path) -> dict[str, Any]:
    """Run the ``tiny`` protocol into a fresh store; returns wall seconds, cells, per-stage seconds, status."""
    from robustbench_nas.pipelines import get_protocol, run_pipeline
    from robustbench_nas.storage import DONE, open_store

    logging.getLogger("distributed").setLevel(logging.ERROR)  # the table, not the cluster's chatter
    protocol = get_protocol("tiny", **({"archs": n_cells} if n_cells else {}))
    store_path = workdir / "tiny.zarr"
    with Timer() as t:
        report = run_pipeline(store_path, protocol, n_workers=n_workers, threads=1, device="cpu", progress=False)
    st = open_store(store_path)
    secs = st.stage_seconds()  # (arch, seed, stage)
    stage_mean = {s: float(np.nanmean(secs[:, :, k])) for k, s in enumerate(st.spec.stages)}
    clean = np.asarray(st.to_xarray()["clean_accuracy"].values)
    all_done = bool((st.status() == DONE).all()) and bool(np.isfinite(clean).all()) and not report.failures
    return {"seconds": t.seconds, "cells": len(st.spec.archs), "stage_mean_s": stage_mean, "all_done": all_done,
            "failures": len(report.failures), "clean_accuracy_mean": float(np.nanmean(clean)),
            "protocol_fingerprint": report.fingerprint}


# ----------------------------------------------------------------------------------------------------------------
# projection
# ----------------------------------------------------------------------------------------------------------------
def published_robust_fractions(root: Path | None = None) -> dict[str, Any] | None:
    """Mean over cells of the published CIFAR-10 accuracies: ``{"clean": a, attack: [acc per eps ascending]}``."""
    root = root or SHARED_DATA / "jung2023"
    d = root / "cifar10"
    if not d.is_dir():
        return None
    out: dict[str, Any] = {}
    for key in ("clean", "fgsm@Linf", "pgd@Linf", "aa_apgd-ce@Linf", "aa_square@Linf"):
        with open(d / f"{key}_accuracy.json", encoding="utf-8") as fh:
            vals = json.load(fh)["cifar10"][key]["accuracy"]
        arr = np.array(list(vals.values()), dtype=float)
        arr = arr / 100.0 if np.nanmax(arr) > 1.5 else arr  # percent or fraction
        out[key] = float(np.nanmean(arr)) if arr.ndim == 1 else np.nanmean(arr, axis=0).tolist()
    return out


def _budgets() -> dict[str, int]:
    """PGD steps, APGD steps, Square queries of ``jung2023`` (the attack package's defaults for the protocol)."""
    try:
        from robustbench_nas.attacks.params import APGDParams, PGDParams, SquareParams

        return {"pgd": PGDParams().steps, "apgd": APGDParams().steps, "square": SquareParams().n_queries}
    except Exception:  # the attacks package's reported budgets (protocols.md)
        return {"pgd": 40, "apgd": 100, "square": 5000}


def attacked_fractions(clean: float, robust: list[float], early_exit: bool,
                       clean_correct_only: bool = False) -> list[float]:
    """Fraction of the test images attacked at each eps (ascending).

    ``independent``: every image at every eps (FGSM / PGD, as torchattacks), or every clean-correct image
    (``clean_correct_only``: APGD / Square, as AutoAttack). ``early_exit``: only those still correctly classified
    after the previous eps (the clean-correct ones at the first eps).
    """
    if not early_exit:
        return [clean if clean_correct_only else 1.0] * len(robust)
    return [clean, *robust[:-1]]


def jung2023_cell_flops(f_fwd: float, fr: dict[str, Any] | None, early_exit: bool) -> dict[str, Any]:
    """FLOPs per cell of every stage of ``jung2023`` for a network of ``f_fwd`` forward FLOPs per image.

    A gradient step (forward + backward) is counted as 3 forwards. Returns ``{stage: flops}`` and, for Square, a
    ``(low, high)`` bound in ``square_bounds``.
    """
    b = _budgets()
    n = TEST_IMAGES
    g = 3.0 * f_fwd  # one forward + backward
    n_eps = {"fgsm@Linf": 11, "pgd@Linf": 7, "aa_apgd-ce@Linf": 7, "aa_square@Linf": 7}
    frac: dict[str, list[float]] = {}
    for key, k in n_eps.items():
        if fr is not None:
            frac[key] = attacked_fractions(fr["clean"], fr[key], early_exit, clean_correct_only=key.startswith("aa_"))
        else:
            frac[key] = [1.0] * k
    out: dict[str, Any] = {
        "train": 200 * TRAIN_IMAGES * g,
        "clean": n * f_fwd,
        "fgsm@Linf": sum(frac["fgsm@Linf"]) * n * (g + f_fwd),
        "pgd@Linf": sum(frac["pgd@Linf"]) * n * (b["pgd"] * g + f_fwd),
        "aa_apgd-ce@Linf": sum(frac["aa_apgd-ce@Linf"]) * n * (b["apgd"] * g + f_fwd),
        "corruptions": 15 * 5 * n * f_fwd,
        "measures": 256 * (10 * g + 2 * 20 * 2 * g),  # Jacobian rows per class + ~20 Hessian-vector power steps
        "proxies": 64 * 14 * 3 * g,
    }
    # Square stops per image once fooled: survivors of an eps use all queries (low), every attacked image (high)
    attacked = frac["aa_square@Linf"]
    survivors = fr["aa_square@Linf"] if fr is not None else [0.0] * len(attacked)
    low = sum(survivors) * n * b["square"] * f_fwd
    high = sum(attacked) * n * b["square"] * f_fwd
    out["aa_square@Linf"] = 0.5 * (low + high)
    out["square_bounds"] = (low, high)
    out["budgets"] = b
    out["attacked_fractions"] = frac
    return out


def pgd_at_cell_flops(f_fwd: float) -> dict[str, float]:
    """FLOPs per cell of NAS-RobBench-201's protocol: PGD-7 adversarial training, 50 epochs; FGSM and PGD-20 at 3/255
    and 8/255, AutoAttack (standard: APGD-CE, APGD-T 9 targets, FAB-T 9 targets, Square 5000) at 8/255, with every
    AutoAttack component attacking only the points still robust (its own rule), using the published medians."""
    n = TEST_IMAGES
    g = 3.0 * f_fwd
    c, p8, aa = NASROB_MEDIAN["clean"], NASROB_MEDIAN["pgd20_8"], NASROB_MEDIAN["aa_8"]
    survive = 0.5 * (p8 + aa)  # robust fraction after APGD-CE (between PGD-20 and the full AutoAttack)
    return {
        "train": 50 * TRAIN_IMAGES * (7 + 1) * g,
        "fgsm+pgd20": 2 * n * (g + f_fwd) + 2 * n * (20 * g + f_fwd),
        "autoattack": n * (c * 100 * g + survive * 9 * 100 * g + aa * 9 * 100 * 2 * g + aa * 5000 * f_fwd),
        "clean": n * f_fwd,
    }


def gpu_minutes(flops: float, fraction: float) -> float:
    """Minutes of an H100 at ``fraction`` of its bf16 dense peak."""
    return flops / (fraction * H100_BF16_PEAK) / 60.0


def mean_cell_forward_flops() -> float:
    """Mean forward FLOPs per 32x32 image over the 6466 unique cells (2 x plain multiply-adds, exact per-op costs)."""
    from benchmarks.bench_training import op_flop_table, unique_cell_flops

    return float(2.0 * unique_cell_flops(op_flop_table()).mean())


def projection_records() -> list[dict[str, Any]]:
    """The ``jung2023`` and ``pgd-at`` projections (no GPU number in them is measured)."""
    f = mean_cell_forward_flops()
    fr = published_robust_fractions()
    recs = []
    per_mode = {}
    for early in (False, True):
        per_mode[early] = jung2023_cell_flops(f, fr, early)
    stages = [k for k, v in per_mode[False].items() if isinstance(v, float)]
    total = {e: sum(per_mode[e][k] for k in stages) for e in per_mode}
    scen = {f"{int(fr_ * 100)}pct_peak": {"min_per_cell": gpu_minutes(total[True], fr_),
                                          "gpu_hours_all": gpu_minutes(total[True], fr_) * NUM_UNIQUE / 60}
            for fr_ in FRACTIONS}
    central = gpu_minutes(total[True], CENTRAL)
    ours_s = central * 60
    base_s = gpu_minutes(total[False], CENTRAL) * 60
    recs.append(make_result(
        "end_to_end_jung2023_projection", ours_s, base_s, None,
        kind="projection (FLOP model; no GPU measured)" if not cuda_available() else "projection (FLOP model)",
        unit="projected H100 GPU-s per cell at 5% of bf16 peak; ours = early_exit attacks, baseline = independent",
        mean_cell_forward_flops=f, flops_per_stage_early_exit={k: per_mode[True][k] for k in stages},
        flops_per_stage_independent={k: per_mode[False][k] for k in stages},
        square_bounds_flops={"early_exit": per_mode[True]["square_bounds"],
                             "independent": per_mode[False]["square_bounds"]},
        attack_budgets=per_mode[True]["budgets"], attacked_fractions_early_exit=per_mode[True]["attacked_fractions"],
        published_mean_accuracies=fr, early_exit_saving=1 - total[True] / total[False],
        share_per_stage={k: per_mode[True][k] / total[True] for k in stages},
        scenarios=scen, goal_min_per_cell=GOAL_MIN_PER_CELL, goal_gpu_hours=1100,
        meets_goal_at_central=central <= GOAL_MIN_PER_CELL,
        assumptions="FLOP = 2 x plain multiply-adds of the mean unique cell; gradient step = 3 forwards; GPU time = "
                    "FLOP / (fraction x 989 TFLOP/s); Square cost midway between its bounds; corruption generation "
                    "and data movement not counted. Attacked fractions from the published Jung 2023 mean accuracies.",
        note=f"{central:.1f} GPU-min/cell, {central * NUM_UNIQUE / 60:.0f} GPU-h all (5% peak, projection)",
    ))
    at = pgd_at_cell_flops(f)
    at_total = sum(at.values())
    at_scen = {f"{int(fr_ * 100)}pct_peak": gpu_minutes(at_total, fr_) * NUM_UNIQUE / 60 for fr_ in FRACTIONS}
    at_min = gpu_minutes(at_total, CENTRAL)
    recs.append(make_result(
        "end_to_end_pgd_at_projection", at_min * 60, None, None, kind="projection (FLOP model; no GPU measured)",
        unit="projected H100 GPU-s per cell at 5% of bf16 peak", flops_per_stage=at,
        gpu_hours_all_cells=at_scen, goal_gpu_hours=GOAL_PGD_AT_GPU_HOURS, reported_nas_robbench_gpu_hours=107_000,
        meets_goal_at_central=at_min * NUM_UNIQUE / 60 <= GOAL_PGD_AT_GPU_HOURS, robust_fractions_used=NASROB_MEDIAN,
        note=f"{at_min * NUM_UNIQUE / 60:.0f} GPU-h for 6466 cells (5% peak, projection)",
    ))
    return recs


# ----------------------------------------------------------------------------------------------------------------
# fidelity to the published data (GPU; a tiny configuration runs on a CPU for tests)
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FidelityConfig:
    """A stratified sample of cells trained on the shared CIFAR-10 images and attacked like the reference.

    Arguments:
        n_cells: cells, stratified over the published clean accuracy (sorted, evenly spaced quantiles).
        epochs: training epochs (NB201's 200-epoch schedule compressed: cosine to 0 over ``epochs``).
        eval_images: images of the evaluation part attacked (the clean accuracy uses the whole part).
        pgd_eps: PGD eps (in [0, 1]) compared with the published values (must be on the release's grid).
        device: torch device; overrides: training-profile fields (tests: a small network).
    """

    n_cells: int = 20
    epochs: int = 40
    eval_images: int = 1000
    pgd_eps: tuple[float, ...] = (0.5 / 255, 1 / 255, 2 / 255)
    device: str = "cuda"
    overrides: tuple[tuple[str, Any], ...] = (("channels_last", True), ("amp", "bf16"))
    seed: int = 0


def _published(root: Path, key: str) -> dict[int, Any]:
    with open(root / "cifar10" / f"{key}_accuracy.json", encoding="utf-8") as fh:
        vals = json.load(fh)["cifar10"][key]["accuracy"]
    return {int(k): v for k, v in vals.items()}


def stratified_cells(clean: dict[int, float], n: int) -> list[int]:
    """``n`` uids at evenly spaced quantiles of the published clean accuracy (lowest and highest included)."""
    order = sorted(clean, key=lambda u: (clean[u], u))
    pos = np.unique(np.linspace(0, len(order) - 1, n).round().astype(int))
    return [order[p] for p in pos]


def fidelity_records(cfg: FidelityConfig, root: Path | None = None) -> list[dict[str, Any]]:
    """Train the sample on the shared CIFAR-10 file (seeded 80/20 split of the test set: ``npz`` dataset), evaluate
    clean and PGD (``robustbench_nas.attacks.evaluate``, the protocol's PGD-40), and rank-correlate with the published values."""
    from scipy.stats import kendalltau, spearmanr

    from robustbench_nas import attacks
    from robustbench_nas.data import get_dataset
    from robustbench_nas.evaluation import evaluate_clean
    from robustbench_nas.training import get_profile, train_model

    root = root or SHARED_DATA / "jung2023"
    npz = SHARED_DATA / "cifar10_test.npz"
    if not (root / "meta.json").is_file() or not npz.is_file():
        log.info("fidelity study skipped: %s or %s missing", root, npz)
        return []
    meta = json.loads((root / "meta.json").read_text())
    eps_grid = [e / 255 for e in meta["epsilons"]["pgd@Linf"]]
    clean_pub = {u: float(v) for u, v in _published(root, "clean").items()}
    pgd_pub = _published(root, "pgd@Linf")
    cols = [min(range(len(eps_grid)), key=lambda i: abs(eps_grid[i] - e)) for e in cfg.pgd_eps]
    if any(abs(eps_grid[c] - e) > 1e-9 for c, e in zip(cols, cfg.pgd_eps)):
        raise ValueError(f"pgd_eps {cfg.pgd_eps} must be on the published grid {eps_grid}")
    uids = stratified_cells(clean_pub, cfg.n_cells)
    ds = get_dataset("npz", root=str(npz))
    test = ds.split("test")
    dev = torch_device(cfg.device)
    x_all, y_all = test.images(dev), test.labels(dev)
    sub = test.subset(min(cfg.eval_images, len(test)), seed=cfg.seed)
    x_att, y_att = sub.images(dev), sub.labels(dev)
    profile = get_profile("nb201-200e", epochs=cfg.epochs, eval_every=10**6, **dict(cfg.overrides))
    ours_clean, ours_pgd, rows = [], [], []
    with Timer() as t:
        for uid in uids:
            arch = meta["ids"][str(uid)]["nb201-string"]
            model = train_model(arch, ds, profile, seed=cfg.seed, device=dev, progress=False).model.eval()
            c = evaluate_clean(model, x_all, y_all).accuracy
            res = attacks.evaluate(model, x_att, y_att, "pgd@Linf", list(cfg.pgd_eps), seed=cfg.seed)
            p = [r.stats.accuracy for r in res]
            ours_clean.append(c)
            ours_pgd.append(p)
            rows.append({"uid": uid, "arch": arch, "clean": c, "pgd": p, "published_clean": clean_pub[uid],
                         "published_pgd": [float(pgd_pub[uid][k]) for k in cols]})
            log.info("fidelity %s: clean %.3f (published %.3f)", uid, c, clean_pub[uid])
    pub_clean = [r["published_clean"] for r in rows]
    corr = {"clean": {"spearman": float(spearmanr(ours_clean, pub_clean)[0]),
                      "kendall": float(kendalltau(ours_clean, pub_clean)[0])}}
    for k, e in enumerate(cfg.pgd_eps):
        ours_k = [p[k] for p in ours_pgd]
        pub_k = [r["published_pgd"][k] for r in rows]
        corr[f"pgd_{round(e * 255, 3):g}/255"] = {"spearman": float(spearmanr(ours_k, pub_k)[0]),
                                                   "kendall": float(kendalltau(ours_k, pub_k)[0])}
    return [make_result(
        "end_to_end_fidelity", t.seconds, None, None, kind="measured", device=cfg.device,
        unit=f"s to train and attack {len(uids)} cells", cells=len(uids), epochs=cfg.epochs,
        train_images=len(ds.split("train")), eval_images=len(test), attacked_images=len(y_att),
        rank_correlation=corr, per_cell=rows, profile=profile.to_dict(),
        note="Spearman with published: clean {:.2f}, ".format(corr["clean"]["spearman"]) + ", ".join(
            f"{k} {v['spearman']:.2f}" for k, v in corr.items() if k != "clean"),
    )]


# ----------------------------------------------------------------------------------------------------------------
# correctness across devices: the same numbers on the GPU as on the CPU (fixed model, fixed images)
# ----------------------------------------------------------------------------------------------------------------
def device_agreement_record(device_a: str = "cpu", device_b: str = "cuda", n: int = 500,
                            train_steps: int = 20, perturb_b: float = 0.0) -> dict[str, Any]:
    """Train a fixed small model briefly on ``device_a``, then evaluate it on both devices: logits, clean accuracy,
    FGSM and PGD at 1/255 and 4/255 (``robustbench_nas.attacks.evaluate``, seed 0), two corruptions (``robustbench_nas.corruptions.evaluate``),
    and one training step from identical weights. Agreement within tolerances that allow TF32 / cuDNN
    differences: logits |diff| <= 1e-2 x max |logit|; accuracies within 1 % (5 images of 500); the updated weights
    within 1e-3 relative (to each tensor's largest value, at least 1e-2). ``ours_s`` is the time on ``device_b``, ``baseline_s`` on ``device_a``.
    ``perturb_b`` adds that relative Gaussian noise to ``device_b``'s copy of the weights (tests: the check must
    notice a different network, and tolerate differences of float-rounding size).
    """
    import torch

    from robustbench_nas import attacks
    from robustbench_nas import corruptions
    from robustbench_nas.evaluation import evaluate_clean, predict_logits
    from robustbench_nas.models import build_model

    from benchmarks.common import shared_cifar10

    got = shared_cifar10(n)
    if got is None:
        g = torch.Generator().manual_seed(0)
        x, y = torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)
    else:
        x, y = got
    torch.manual_seed(0)
    model = build_model(ALL_CONV3X3_E2E, C=8, N=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for i in range(train_steps):  # a few steps so the model is not at chance: accuracies then mean something
        xb, yb = x[(i * 50) % n:(i * 50) % n + 50], y[(i * 50) % n:(i * 50) % n + 50]
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()
    model.eval()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    eps = [1 / 255, 4 / 255]
    out: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    for side, dev_name in (("a", device_a), ("b", device_b)):
        dev = torch.device(dev_name)
        m = build_model(ALL_CONV3X3_E2E, C=8, N=1)
        m.load_state_dict(state)
        if perturb_b and side == "b":
            g = torch.Generator().manual_seed(1)
            with torch.no_grad():
                for prm in m.parameters():
                    prm.mul_(1 + perturb_b * torch.randn(prm.shape, generator=g))
        m = m.to(dev).eval()
        xd, yd = x.to(dev), y.to(dev)
        with Timer() as t:
            r: dict[str, Any] = {"logits": predict_logits(m, xd).float().cpu(),
                                 "clean": evaluate_clean(m, xd, yd).accuracy}
            for atk in ("fgsm@Linf", "pgd@Linf"):
                res = attacks.evaluate(m, xd, yd, atk, eps, seed=0, params={"steps": 10} if atk == "pgd@Linf" else None)
                r[atk] = [a.stats.accuracy for a in res]
            cres = corruptions.evaluate(m, xd, yd, ["gaussian_noise", "contrast"], (1, 5), seed=0)
            r["corruptions"] = [c.stats.accuracy for c in cres]
            # one training step from identical weights on identical data
            m.train()
            o = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
            o.zero_grad()
            torch.nn.functional.cross_entropy(m(xd[:100]), yd[:100]).backward()
            o.step()
            r["weights"] = {k: v.detach().float().cpu() for k, v in m.state_dict().items() if v.dtype.is_floating_point}
        out[side] = r
        seconds[side] = t.seconds
    a, b = out["a"], out["b"]
    logit_diff = float((a["logits"] - b["logits"]).abs().max() / a["logits"].abs().max().clamp_min(1e-12))
    acc_diff = {k: float(np.max(np.abs(np.subtract(a[k], b[k])))) for k in ("clean", "fgsm@Linf", "pgd@Linf",
                                                                              "corruptions")}
    # relative to each tensor's largest value, but at least 1e-2: near-zero tensors (a BN running mean of ~1e-6) are
    # compared in absolute terms instead of amplifying rounding into a large relative difference
    w_diffs = {k: float((a["weights"][k] - b["weights"][k]).abs().max() / a["weights"][k].abs().max().clamp_min(1e-2))
                 for k in a["weights"]}
    w_diff = max(w_diffs.values())
    agree = logit_diff <= 1e-2 and all(v <= 0.01 for v in acc_diff.values()) and w_diff <= 1e-3
    return make_result(
        f"end_to_end_device_agreement_{device_b.replace(':', '')}", seconds["b"], seconds["a"], agree,
        kind="measured", devices=[device_a, device_b], n_images=n, max_rel_logit_diff=logit_diff,
        max_abs_accuracy_diff=acc_diff, max_rel_weight_diff_after_step=w_diff,
        values={d: {k: v for k, v in out[side].items() if k not in ("logits", "weights")}
                for side, d in (("a", device_a), ("b", device_b + ("+perturbed" if perturb_b else "")))},
        perturb_b=perturb_b, same_work=True, worst_weight=max(w_diffs, key=w_diffs.get),
        tolerances={"logits_rel": 1e-2, "accuracy_abs": 0.01, "weights_rel": 1e-3},
        note=f"{device_b} vs {device_a}: logits {logit_diff:.1e} rel, accuracies within {max(acc_diff.values()):.3f}",
    )


#: the all-3x3 cell (the heaviest, most conv-sensitive network) for the device comparison
ALL_CONV3X3_E2E = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def torch_device(name: str):
    import torch

    return torch.device(name)


# ----------------------------------------------------------------------------------------------------------------
# run
# ----------------------------------------------------------------------------------------------------------------
def run(quick: bool = False, workdir: str | None = None) -> list[dict[str, Any]]:
    """The measured ``tiny`` run, the projections and, with CUDA, the fidelity study."""
    tmp = Path(tempfile.mkdtemp(prefix="rbnas_bench_e2e_", dir=workdir))
    try:
        r = run_tiny(1 if quick else None, 1 if quick else 2, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    per_hour = r["cells"] / (r["seconds"] / 3600.0)
    records = [make_result(
        "end_to_end_tiny", r["seconds"], None, r["all_done"], kind="measured",
        unit=f"wall s for {r['cells']} cells of the tiny protocol (store creation to last stage)",
        cells_per_hour=per_hour, **r, device="cpu", workers=1 if quick else 2,
        note=f"{per_hour:.0f} cells/h on this CPU; slowest stage "
             f"{max(r['stage_mean_s'], key=lambda s: r['stage_mean_s'][s] or 0)}",
    )]
    records += projection_records()
    if cuda_available():
        records.append(device_agreement_record("cpu", "cuda"))
        records += fidelity_records(FidelityConfig(n_cells=6, epochs=10) if quick else FidelityConfig())
    else:
        log.info("no CUDA device: the fidelity study (train + attack a stratified sample of cells) is skipped")
    mark_quick(records, quick)
    for rec in records:
        save_result(rec)
    return records


def main(argv: list[str] | None = None) -> None:
    bench_main(run, __doc__, argv)


if __name__ == "__main__":
    main()
