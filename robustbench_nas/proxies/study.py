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
) -> dict[str, dict[int, float]]:
    """Compute ``proxies`` for a seeded sample of ``n_cells`` unique NB201 cells (full-size, C=16, N=5).

    Appends ``{"uid", "arch", "proxy", "value", "seconds"}`` lines to ``out`` and skips pairs already there.
    Returns ``{proxy: {uid: value}}`` over everything in ``out`` for the sampled cells.
    """
    space = get_search_space("nb201")
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
                v = compute_proxies(uid, x, y, [p], seed=seed)[p]
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
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    names = [p for p in a.proxies.split(",") if p]
    vals = run_study(a.npz, a.n, names, out=a.out, seed=a.seed, batch_size=a.batch_size, sample_seed=a.sample_seed)
    clean = load_jung_accuracy(a.jung, "clean")
    print(format_table(rank_correlations(vals, clean)))


if __name__ == "__main__":
    main()
