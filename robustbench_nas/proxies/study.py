"""Rank correlation of proxies with published accuracies on a seeded sample of NB201 cells.

Used by the slow test and for the table in the docs:
``python -m robustbench_nas.proxies.study --npz ../shared/data/cifar10_test.npz --jung ../shared/data/jung2023
--n 200 --out proxies_study.jsonl``. Results are appended per (cell, proxy) to a JSON-lines file, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..search_spaces import get_search_space
from .api import compute_proxies, list_proxies

log = logging.getLogger(__name__)

#: Proxies cheap enough for hundreds of full-size cells on a CPU.
CHEAP_PROXIES = (
    "params", "flops", "synflow", "nwot", "jacob_cov", "snip", "grad_norm", "fisher", "plain", "l2_norm", "zen",
    "epe_nas",
)


def load_jung_accuracy(root: str | Path, key: str = "clean", dataset: str = "cifar10", eps_index: int | None = None) -> dict[int, float]:
    """``{uid: accuracy}`` from the Jung et al. 2023 release (``<root>/<dataset>/<key>_accuracy.json``).

    For attack keys the value is a list over eps; ``eps_index`` picks one (error if missing).
    """
    path = Path(root) / dataset / f"{key}_accuracy.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (expected the Jung et al. 2023 release layout)")
    acc = json.loads(path.read_text())[dataset][key]["accuracy"]
    out: dict[int, float] = {}
    for uid, v in acc.items():
        if isinstance(v, list):
            if eps_index is None:
                raise ValueError(f"{key} holds one value per eps; pass eps_index")
            v = v[eps_index]
        out[int(uid)] = float(v)
    return out


def load_batch(npz: str | Path, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random batch of ``n`` images ``(n, 3, 32, 32)`` in [0, 1] and labels from an ``x``/``y`` npz (NHWC)."""
    d = np.load(npz)
    idx = np.sort(np.random.default_rng(seed).choice(len(d["y"]), size=n, replace=False))
    x = torch.from_numpy(d["x"][idx]).permute(0, 3, 1, 2).float().div(255.0)
    y = torch.from_numpy(d["y"][idx].astype(np.int64))
    return x.contiguous(), y


#: Corruption groups of Hendrycks & Dietterich (2019), as used by CRoZe's evaluation.
CORRUPTION_GROUPS: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}


def load_target(root: str | Path, spec: str, dataset: str = "cifar10") -> dict[int, float]:
    """A per-cell target from the Jung et al. 2023 release, by a short spec.

    Specs: ``clean``; ``<attack key>:<eps in 1/255>`` (e.g. ``fgsm@Linf:4``); ``hrs:<attack key>:<eps>`` (harmonic
    robustness score ``2 C R / (C + R)``, C clean and R robust accuracy, as in CRoZe); ``corr:<group>`` (mean over
    the group's corruptions and severities 1-5, groups in :data:`CORRUPTION_GROUPS`, or ``all``).
    """
    if spec == "clean":
        return load_jung_accuracy(root, "clean", dataset)
    if spec.startswith("corr:"):
        group = spec.split(":", 1)[1]
        names = [c for g in CORRUPTION_GROUPS.values() for c in g] if group == "all" else CORRUPTION_GROUPS.get(group)
        if names is None:
            raise ValueError(f"unknown corruption group {group!r}; known: all, {', '.join(CORRUPTION_GROUPS)}")
        per = []
        for c in names:
            path = Path(root) / dataset / f"{c}_accuracy.json"
            acc = json.loads(path.read_text())[dataset][c]["accuracy"]
            per.append({int(u): float(np.mean(v)) for u, v in acc.items()})
        return {u: float(np.mean([p[u] for p in per])) for u in per[0]}
    if spec.startswith("hrs:"):
        robust = load_target(root, spec[4:], dataset)
        clean = load_jung_accuracy(root, "clean", dataset)
        return {u: (2 * clean[u] * r / (clean[u] + r) if clean[u] + r > 0 else 0.0) for u, r in robust.items()}
    key, _, eps = spec.rpartition(":")
    if not key:
        raise ValueError(f"target spec {spec!r}: expected clean, KEY:EPS, hrs:KEY:EPS or corr:GROUP")
    meta = json.loads((Path(root) / "meta.json").read_text())
    grid = [float(e) for e in meta["epsilons"][key]]
    if float(eps) not in grid:
        raise ValueError(f"eps {eps}/255 not in the {key} grid {grid}")
    return load_jung_accuracy(root, key, dataset, eps_index=grid.index(float(eps)))


@dataclass(frozen=True)
class CorrelationRow:
    proxy: str
    n_cells: int
    spearman: float
    kendall: float
    n_nonfinite: int


def rank_correlations(values: dict[str, dict[int, float]], target: dict[int, float]) -> list[CorrelationRow]:
    """Spearman and Kendall tau of each proxy with ``target`` over the cells where both are finite."""
    from scipy.stats import kendalltau, spearmanr

    rows = []
    for name, per_cell in values.items():
        uids = [u for u in per_cell if u in target]
        v = np.array([per_cell[u] for u in uids], dtype=np.float64)
        t = np.array([target[u] for u in uids], dtype=np.float64)
        ok = np.isfinite(v)
        if ok.sum() < 3:
            rows.append(CorrelationRow(name, int(ok.sum()), float("nan"), float("nan"), int((~ok).sum())))
            continue
        rows.append(
            CorrelationRow(
                name, int(ok.sum()), float(spearmanr(v[ok], t[ok])[0]), float(kendalltau(v[ok], t[ok])[0]), int((~ok).sum())
            )
        )
    return rows


def run_study(
    npz: str | Path,
    n_cells: int,
    proxies: Sequence[str],
    *,
    out: str | Path,
    seed: int = 0,
    batch_size: int = 64,
    sample_seed: int = 0,
    progress: bool = True,
    space: str = "nb201",
) -> dict[str, dict[int, float]]:
    """Compute ``proxies`` for a seeded sample of ``n_cells`` unique cells of ``space`` at full size (NB201: C=16,
    N=5; NATS-Bench SSS: the architecture's own widths).

    Appends ``{"uid", "arch", "proxy", "value", "seconds"}`` lines to ``out`` and skips pairs already there.
    Returns ``{proxy: {uid: value}}`` over everything in ``out`` for the sampled cells.
    """
    space = get_search_space(space)
    uids = space.sample(n_cells, seed=sample_seed, unique=True)
    x, y = load_batch(npz, batch_size, seed)
    out = Path(out)
    done: dict[tuple[int, str], float] = {}
    if out.is_file():
        for line in out.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done[(int(r["uid"]), r["proxy"])] = float(r["value"])
    todo = [(u, p) for u in uids for p in proxies if (u, p) not in done]
    from tqdm import tqdm

    with out.open("a") as fh:
        for uid in tqdm([u for u in uids if any((u, p) not in done for p in proxies)], disable=not progress, desc="cells"):
            for p in proxies:
                if (uid, p) in done:
                    continue
                t0 = time.perf_counter()
                v = compute_proxies(uid, x, y, [p], seed=seed, space=space.name)[p]
                dt = time.perf_counter() - t0
                done[(uid, p)] = v
                fh.write(json.dumps({"uid": uid, "arch": space.arch_str(uid), "proxy": p, "value": v, "seconds": dt}) + "\n")
                fh.flush()
    log.info("computed %d (cell, proxy) pairs", len(todo))
    return {p: {u: done[(u, p)] for u in uids if (u, p) in done} for p in proxies}


def format_table(rows: Sequence[CorrelationRow]) -> str:
    """Markdown table of the correlations, best Spearman first."""
    lines = ["| proxy | cells | Spearman | Kendall tau |", "|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: -np.nan_to_num(r.spearman, nan=-9)):
        lines.append(f"| {r.proxy} | {r.n_cells} | {r.spearman:.3f} | {r.kendall:.3f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--npz", required=True)
    ap.add_argument("--jung", required=True, help="root of the Jung et al. 2023 release")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--proxies", default=",".join(CHEAP_PROXIES), help=f"comma list; all: {','.join(list_proxies())}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sample-seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--targets", default="clean", help="comma list of target specs (see load_target)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    names = [p for p in a.proxies.split(",") if p]
    vals = run_study(a.npz, a.n, names, out=a.out, seed=a.seed, batch_size=a.batch_size, sample_seed=a.sample_seed)
    for spec in a.targets.split(","):
        print(f"\ntarget: {spec}")
        print(format_table(rank_correlations(vals, load_target(a.jung, spec))))


if __name__ == "__main__":
    main()
