"""Real data: rank correlation of cheap proxies with the published clean CIFAR-10 accuracy (Jung et al. 2023).

Full-size NB201 networks (C=16, N=5) at initialisation, one seeded batch of real CIFAR-10 test images, a seeded
sample of 30 unique cells. The literature (NASLib, 725 cells) reports Spearman 0.71-0.79 for these proxies on
NB201 CIFAR-10; with 30 cells the sampling error of Spearman is about 0.1, so we require > 0.45. The larger
200-cell table is produced by ``python -m robustbench_nas.proxies.study`` (robustbench_nas/proxies/README.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robustbench_nas.proxies.study import load_batch, load_jung_accuracy, rank_correlations
from robustbench_nas.proxies import compute_proxies
from robustbench_nas.search_spaces import get_search_space

PROXIES = ["params", "flops", "synflow", "nwot", "jacob_cov"]


@pytest.mark.slow
def test_cheap_proxies_rank_cells_like_the_literature(cifar10_npz: Path, jung2023_root: Path) -> None:
    torch.set_num_threads(1)
    clean = load_jung_accuracy(jung2023_root, "clean")
    uids = get_search_space("nb201").sample(30, seed=1, unique=True)
    x, y = load_batch(cifar10_npz, 32, seed=0)
    values: dict[str, dict[int, float]] = {p: {} for p in PROXIES}
    for uid in uids:
        for name, v in compute_proxies(uid, x, y, PROXIES, seed=0).items():
            values[name][uid] = v
    rows = {r.proxy: r for r in rank_correlations(values, clean)}
    for name in PROXIES:
        assert rows[name].n_cells >= 28, rows[name]
        assert rows[name].spearman > 0.45, rows[name]
