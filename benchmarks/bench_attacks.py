"""Adversarial evaluation speed: ``robustbench_nas.attacks.evaluate`` vs torchattacks called once per epsilon, same model and data.

Work measured: the ``jung2023`` protocol (FGSM at 11 epsilons; PGD, APGD-CE and Square at 7) on real CIFAR-10
test images (``../shared/data/cifar10_test.npz``, 1,000 by default) against one NB201 network trained here with
the project's trainer on the other images of the same file (its seeded 80/20 split; the attacked images are
from the held-out 20 %).

* **baseline**: torchattacks 3.5 (``FGSM``, ``PGD``, ``APGD``, ``Square``), one call per epsilon on all images, in
  batches of ``batch_size`` images, with the same budgets as ours;
* **ours, independent**: ``robustbench_nas.attacks.evaluate(..., mode="independent")``: the reference protocol, every epsilon
  attacked from scratch, all epsilons of the grid in one pass (rows = image x epsilon);
* **ours, early_exit**: ``mode="early_exit"``: an image broken at a smaller epsilon (or misclassified clean) is not
  attacked again, and rows leave an attack when they are misclassified.

What each mode measures (both are stored by ``rbnas run``; ``independent`` is the reference protocols' default):
``independent`` is the accuracy under each epsilon separately, exactly the quantity torchattacks computes, so its
records carry ``same_work: true``; ``early_exit`` is the accuracy under the worst case over all eps' <= eps (an
image counts as broken at eps when any smaller radius already broke it), a different, stronger quantity computed
with less work, so its records carry ``same_work: false`` and their ratio is not a like-for-like speed-up (FGSM at
255/255 gives 0.004 with early exit against 0.095 independent on the 1,000-image run).

``results_agree``: independent mode: every epsilon's accuracy within ``tolerance`` of torchattacks' (FGSM is
deterministic and must agree to one image; the others use other random streams); early exit: never more than
``tolerance`` above torchattacks' accuracy (it is at least as strong by construction).

Budgets: PGD 40 steps (step 2.5 eps / steps), APGD-CE 100 steps, Square 5000 queries (the reference budgets) by
default. On a shared 2-core CPU the reference budgets are out of reach for 1,000 images, so CPU runs pass smaller
ones (``--pgd-steps``, ``--apgd-steps``, ``--square-queries``); every record states its budget and whether it is
the reference one (``reference_budget``). ``--quick`` shrinks everything (200 images, small budgets).

Reference-budget records (``attacks_*_reference``): ``--reference`` runs PGD-40, APGD-CE-100 and Square-5000 (and
FGSM) on 300 real images against a small cell (C=4, N=1, 3 epochs) so that the whole comparison fits a bounded
CPU time (about 20 minutes of one core); on a GPU the default sizes apply.

Run: ``python -m benchmarks.bench_attacks [--quick | --reference] [--n 1000] [--square-queries Q] [--C 8 --N 1]
[--attacks fgsm@Linf,...]``.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any, Callable

import numpy as np
import torch

from benchmarks.common import SHARED_DATA, Timer, cuda_available, make_result, save_result

log = logging.getLogger(__name__)

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
MODE_MEANING = {
    "independent": "accuracy under each eps attacked from scratch (the reference protocols' default; the quantity "
                   "torchattacks computes)",
    "early_exit": "accuracy under the worst case over all eps' <= eps (images broken at a smaller eps or "
                  "misclassified clean are not attacked again): a stronger quantity with less work",
}
TOL = {"fgsm@Linf": 0.002, "pgd@Linf": 0.02, "aa_apgd-ce@Linf": 0.02, "aa_square@Linf": 0.03}


def _train_model(quick: bool, device: torch.device, epochs: int | None = None, C: int | None = None,
                 N: int | None = None) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    from robustbench_nas.data import get_dataset
    from robustbench_nas.training import get_profile, train_model

    ds = get_dataset("npz", str(SHARED_DATA / "cifar10_test.npz"))
    on_gpu = device.type == "cuda"
    prof = get_profile(
        "tiny",
        epochs=epochs or (2 if quick else (30 if on_gpu else 8)),
        batch_size=128,
        lr=0.05,
        C=C or (16 if on_gpu else 8),
        N=N or (5 if on_gpu else 1),
        max_train_images=2000 if quick else None,
    )
    t = time.perf_counter()
    res = train_model(ARCH, ds, prof, seed=0, device=device, progress=False)
    info = {"train_s": time.perf_counter() - t, "C": prof.C, "N": prof.N, "epochs": prof.epochs,
            "test_acc_2000": res.final_test_acc}
    log.info("trained %s C=%d N=%d: test accuracy %.4f", ARCH, prof.C, prof.N, res.final_test_acc)
    return res.model.eval(), ds, info


def _baseline(name: str, model: torch.nn.Module, eps: float, p: dict[str, Any]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    import torchattacks

    if name == "fgsm@Linf":
        atk = torchattacks.FGSM(model, eps=eps)
    elif name == "pgd@Linf":
        atk = torchattacks.PGD(model, eps=eps, alpha=p["step_size"], steps=p["steps"], random_start=True)
    elif name == "aa_apgd-ce@Linf":
        atk = torchattacks.APGD(model, norm="Linf", eps=eps, steps=p["steps"], n_restarts=1, seed=0, loss="ce", rho=0.75)
    elif name == "aa_square@Linf":
        atk = torchattacks.Square(model, norm="Linf", eps=eps, n_queries=p["n_queries"], n_restarts=1, p_init=0.8,
                                  loss="margin", resc_schedule=False, seed=0)
    else:  # pragma: no cover
        raise KeyError(name)
    return atk


def _run_baseline(name: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, grid: list[float],
                  params: list[dict[str, Any]], bs: int) -> list[float]:
    accs = []
    torch.manual_seed(0)
    for e, p in zip(grid, params):
        atk = _baseline(name, model, e, p)
        correct = 0
        for s in range(0, x.shape[0], bs):
            adv = atk(x[s : s + bs], y[s : s + bs])
            with torch.no_grad():
                correct += int((model(adv).argmax(1) == y[s : s + bs]).sum())
        accs.append(correct / x.shape[0])
    return accs


def run(quick: bool = False, n: int | None = None, square_queries: int | None = None,
        attack_names: list[str] | None = None, batch_size: int | None = None, pgd_steps: int | None = None,
        apgd_steps: int | None = None, epochs: int | None = None, C: int | None = None, N: int | None = None,
        reference: bool = False) -> list[dict]:
    """Run the comparison; returns (and writes) one record per (attack, mode) and a total per mode."""
    from robustbench_nas import attacks

    if not (SHARED_DATA / "cifar10_test.npz").is_file():
        log.warning("skipping: %s/cifar10_test.npz not found", SHARED_DATA)
        return []
    device = torch.device("cuda" if cuda_available() else "cpu")
    on_gpu = device.type == "cuda"
    if reference:  # the reference budgets, sized to fit a bounded CPU time (module docstring)
        pgd_steps, apgd_steps, square_queries = 40, 100, 5000
        if not on_gpu:
            n, C, N, epochs = n or 300, C or 4, N or 1, epochs or 3
    n = n or (200 if quick else 1000)
    bs = batch_size or (1024 if on_gpu else 256)
    if square_queries is None:
        square_queries = 5000 if on_gpu else (100 if quick else 500)
    pgd_steps = pgd_steps or (10 if quick else 40)
    apgd_steps = apgd_steps or (20 if quick else 100)
    overrides = {
        "fgsm@Linf": {},
        "pgd@Linf": {"steps": pgd_steps},
        "aa_apgd-ce@Linf": {"steps": apgd_steps},
        "aa_square@Linf": {"n_queries": square_queries},
    }
    reference_budget = {"fgsm@Linf": True, "pgd@Linf": pgd_steps == 40, "aa_apgd-ce@Linf": apgd_steps == 100,
                        "aa_square@Linf": square_queries == 5000}
    model, ds, info = _train_model(quick, device, epochs, C, N)
    suffix = "_quick" if quick else ("_reference" if reference else "")
    split = ds.split("test").subset(n, seed=0)
    x, y = split.images(device), split.labels(device)
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    grid_all = attacks.get_attack_grid("jung2023")
    names = attack_names or list(grid_all)
    records: list[dict] = []
    totals = {"independent": [0.0, 0.0, True], "early_exit": [0.0, 0.0, True]}
    for name in names:
        grid = grid_all[name]
        spec = attacks.get_attack(name)
        prm = attacks.params.make_params(type(spec.defaults), spec.defaults, overrides[name])
        resolved = [prm.resolved(e) for e in grid]
        with Timer() as tb:
            base = _run_baseline(name, model, x, y, grid, resolved, bs)
        log.info("%s torchattacks: %.1f s %s", name, tb.seconds, [round(a, 4) for a in base])
        for mode in ("independent", "early_exit"):
            with Timer() as to:
                res = attacks.evaluate(model, x, y, name, grid, params=overrides[name] or None, batch_size=bs,
                                       seed=0, mode=mode)
            ours = [r.stats.accuracy for r in res]
            diff = [o - b for o, b in zip(ours, base)]
            tol = TOL[name]
            agree = all(abs(d) <= tol + 1e-9 for d in diff) if mode == "independent" else all(d <= tol + 1e-9 for d in diff)
            log.info("%s ours (%s): %.1f s %s", name, mode, to.seconds, [round(a, 4) for a in ours])
            # single-threaded CPU work on a shared machine: process CPU seconds (others' load inflates wall time)
            o_s, b_s = (to.seconds, tb.seconds) if on_gpu else (to.cpu_seconds, tb.cpu_seconds)
            rec = make_result(
                f"attacks_{name.split('@')[0]}_{mode}{suffix}",
                o_s,
                b_s,
                agree,
                clock="wall" if on_gpu else "process_cpu",
                ours_wall_s=to.seconds,
                baseline_wall_s=tb.seconds,
                attack=name,
                mode=mode,
                eps_255=[round(e * 255, 4) for e in grid],
                ours_accuracy=ours,
                baseline_accuracy=base,
                max_abs_diff=max(abs(d) for d in diff),
                tolerance=tol,
                params=resolved[-1],
                n_images=int(x.shape[0]),
                clean_accuracy=clean,
                batch_size=bs,
                device=str(device),
                model={"arch": ARCH, **info},
                baseline="torchattacks 3.5, one call per eps",
                same_work=mode == "independent",
                measures=MODE_MEANING[mode],
                quick=quick,
                reference_budget=reference_budget[name],
            )
            save_result(rec)
            records.append(rec)
            t = totals[mode]
            t[0] += o_s
            t[1] += b_s
            t[2] = t[2] and agree
            print(f"{name:16s} {mode:11s} ours {o_s:8.1f} s  torchattacks {b_s:8.1f} s  "
                  f"ratio {b_s / o_s:5.2f}  agree {agree}\n"
                  f"    ours {np.round(ours, 3).tolist()}\n    base {np.round(base, 3).tolist()}")
    if set(names) == set(grid_all):
        for mode, (o, b, ok) in totals.items():
            rec = make_result(f"attacks_jung2023_{mode}{suffix}", o, b, ok, mode=mode,
                              same_work=mode == "independent", measures=MODE_MEANING[mode],
                              budgets={"pgd_steps": pgd_steps, "apgd_steps": apgd_steps,
                                       "square_queries": square_queries},
                              reference_budget=all(reference_budget.values()),
                              clock="wall" if on_gpu else "process_cpu",
                              n_images=int(x.shape[0]), clean_accuracy=clean, square_queries=square_queries,
                              device=str(device), model={"arch": ARCH, **info}, quick=quick)
            save_result(rec)
            records.append(rec)
            print(f"jung2023 total {mode:11s} ours {o:8.1f} s  torchattacks {b:8.1f} s  ratio {b / o:5.2f}  agree {ok}")
    return records


def markdown(suffix: str = "_reference", results_dir: Any = None) -> str:
    """Table of the saved ``attacks_<attack>_<mode><suffix>`` records (README figures are regenerated from it)."""
    from benchmarks.common import load_results

    recs = {r["name"]: r for r in load_results(results_dir)}
    lines = ["| attack | budget | images (clean acc) | mode | same_work | ours s | torchattacks s | ratio | agree | "
             "ours acc (eps /255: acc) | torchattacks acc |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in ("fgsm", "pgd", "aa_apgd-ce", "aa_square"):
        for mode in ("independent", "early_exit"):
            r = recs.get(f"attacks_{name}_{mode}{suffix}")
            if r is None:
                continue
            p = r.get("params", {})
            budget = (f"{p['steps']} steps" if "steps" in p else f"{p['n_queries']} queries" if "n_queries" in p
                      else "1 step")
            acc = ", ".join(f"{e:g}: {a:.3f}" for e, a in zip(r["eps_255"], r["ours_accuracy"]))
            base = ", ".join(f"{a:.3f}" for a in r["baseline_accuracy"])
            lines.append(f"| {r['attack']} | {budget} | {r['n_images']} ({r['clean_accuracy']:.3f}) | {mode} | {str(r.get('same_work')).lower()} | {r['ours_s']:.1f} "
                         f"| {r['baseline_s']:.1f} | {r['ratio']:.2f}x | {'yes' if r['results_agree'] else 'NO'} | "
                         f"{acc} | {base} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--markdown", default=None, const="_reference", nargs="?",
                    help="print the table of the saved records with this name suffix (default _reference; no run)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--square-queries", type=int, default=None)
    ap.add_argument("--attacks", default=None, help="comma-separated subset of the jung2023 attacks")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--pgd-steps", type=int, default=None, help="default 40 (the reference budget); quick 10")
    ap.add_argument("--apgd-steps", type=int, default=None, help="default 100 (the reference budget); quick 20")
    ap.add_argument("--epochs", type=int, default=None, help="training epochs of the attacked network")
    ap.add_argument("--C", type=int, default=None, help="channels of the attacked network (CPU default 8)")
    ap.add_argument("--N", type=int, default=None, help="cells per stage of the attacked network (CPU default 1)")
    ap.add_argument("--reference", action="store_true",
                    help="reference budgets (PGD-40, APGD-CE-100, Square-5000) on 300 images, a C=4 N=1 cell on CPU")
    a = ap.parse_args()
    if a.markdown is not None:
        print(markdown(a.markdown if a.markdown != "none" else ""))
        return
    if not cuda_available():
        torch.set_num_threads(1)  # 2 shared cores: one thread, timed in process CPU seconds
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    run(quick=a.quick, n=a.n, square_queries=a.square_queries,
        attack_names=a.attacks.split(",") if a.attacks else None, batch_size=a.batch_size,
        pgd_steps=a.pgd_steps, apgd_steps=a.apgd_steps, epochs=a.epochs, C=a.C, N=a.N, reference=a.reference)


if __name__ == "__main__":
    main()
