"""The seeded, clean-accuracy-stratified sample of NB201 cells on which the shipped proxy table is computed.

Strata: ``bins`` quantile bins of the published CIFAR-10 clean accuracy (Jung et al. 2023 release, 6466 unique
cells); ``n // bins`` cells drawn from each without replacement (seeded). The list is *interleaved*: position k
holds the k-th draw of every stratum in turn (strata in a seeded order), so every prefix of the list is itself
stratified. The pipeline runs listed cells in the listed order (``rbnas run`` on a protocol whose ``archs`` is a
list), so a computation stopped part-way leaves a stratified subset, not the cells with the smallest uids.

Shipped as ``robustbench_nas/proxies/data/nb201_cifar10_proxy_sample.txt`` (one uid per line); the package never
needs the release at run time: :func:`stratified_sample` regenerates the file from it (a test checks equality).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np

SAMPLE_FILE = "nb201_cifar10_proxy_sample.txt"
#: Every unique cell in the complete table's run order: the shipped sample first, then the rest (see complete_order).
ORDER_FILE = "nb201_cifar10_proxy_order.txt"


def published_clean(root: str | Path, dataset: str = "cifar10") -> dict[int, float]:
    """``{uid: clean accuracy}`` from a Jung et al. release root (``<root>/<dataset>/clean_accuracy.json``)."""
    path = Path(root) / dataset / "clean_accuracy.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: expected the Jung et al. 2023 release layout (see its README)")
    acc = json.loads(path.read_text())[dataset]["clean"]["accuracy"]
    return {int(k): float(v) for k, v in acc.items()}


def stratified_sample(clean: dict[int, float], n: int = 500, *, bins: int = 10, seed: int = 0) -> list[int]:
    """``n`` uids stratified over ``clean`` (``bins`` quantile bins, ``n // bins`` each), interleaved (see module)."""
    if n < bins or n % bins:
        raise ValueError(f"n={n} must be a positive multiple of bins={bins}")
    uids = np.array(sorted(clean))
    acc = np.array([clean[u] for u in uids])
    rng = np.random.default_rng(seed)
    # rank-based bins: ties (341 collapsed cells at 10 %) spread over the lowest bins instead of one huge bin
    ranks = np.argsort(np.argsort(acc, kind="stable"), kind="stable")
    strata = ranks * bins // len(uids)
    per = n // bins
    draws = [rng.permutation(uids[strata == b])[:per] for b in range(bins)]
    if any(len(d) < per for d in draws):
        raise ValueError(f"a stratum has fewer than {per} cells")
    order = rng.permutation(bins)
    return [int(draws[b][k]) for k in range(per) for b in order]


def complete_order(clean: dict[int, float], first: list[int], *, bins: int = 10, seed: int = 0) -> list[int]:
    """Every uid of ``clean`` once: ``first`` (in its order), then the remaining cells stratified and interleaved.

    The remaining cells are cut into ``bins`` rank bins of their clean accuracy, each permuted (seeded), and taken one
    per bin in turn (bins in a seeded order; an exhausted bin is skipped), so that a computation stopped part-way
    still holds a stratified subset of the whole space, whatever prefix it reached.
    """
    if len(set(first)) != len(first) or not set(first) <= set(clean):
        raise ValueError("first must list distinct uids of clean")
    taken = set(first)
    rest = np.array(sorted(u for u in clean if u not in taken))
    acc = np.array([clean[u] for u in rest])
    rng = np.random.default_rng(seed)
    ranks = np.argsort(np.argsort(acc, kind="stable"), kind="stable")
    strata = ranks * bins // max(len(rest), 1)
    draws = [list(rng.permutation(rest[strata == b])) for b in range(bins)]
    order = rng.permutation(bins)
    out = list(first)
    for k in range(max((len(d) for d in draws), default=0)):
        out += [int(draws[b][k]) for b in order if k < len(draws[b])]
    return out


def _read_uids(name: str) -> list[int]:
    text = resources.files("robustbench_nas.proxies").joinpath("data", name).read_text()
    return [int(s) for s in text.split() if s.strip() and not s.startswith("#")]


def shipped_order() -> list[int]:
    """All 6466 unique NB201 cells in the complete table's run order (starts with :func:`shipped_sample`)."""
    return _read_uids(ORDER_FILE)


def shipped_sample() -> list[int]:
    """The shipped 500-cell sample (uids in run order)."""
    return _read_uids(SAMPLE_FILE)


def write_sample(path: str | Path, uids: list[int]) -> None:
    Path(path).write_text("\n".join(str(u) for u in uids) + "\n")


__all__ = ["ORDER_FILE", "SAMPLE_FILE", "complete_order", "published_clean", "shipped_order", "shipped_sample",
           "stratified_sample", "write_sample"]
