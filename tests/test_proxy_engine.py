"""The shared-pass proxy engine gives the reference path's values bit for bit, and the 500-cell sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from robustbench_nas.proxies import compute_model_proxies, compute_proxies, init_model, list_proxies
from robustbench_nas.proxies.engine import pass_groups

CELLS = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|avg_pool_3x3~0|+|none~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
    "|nor_conv_1x1~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|skip_connect~2|",
)
JUNG = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "jung2023"


def _batch(n: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def _equal(a: dict[str, float], b: dict[str, float]) -> list[str]:
    return [k for k in a if not (a[k] == b[k] or (np.isnan(a[k]) and np.isnan(b[k])))]


@pytest.mark.slow
@pytest.mark.parametrize("arch", CELLS)
def test_shared_equals_separate_full_size(arch: str) -> None:
    # full-size network (C=16, N=5), every registered proxy; CRoZe's default batch of 8 images
    x, y = _batch(8)
    sep = compute_proxies(arch, x, y, seed=3, engine="separate")
    shared = compute_proxies(arch, x, y, seed=3, engine="shared")
    assert list(shared) == list(sep) == list_proxies()
    assert _equal(sep, shared) == []


@pytest.mark.parametrize("names", [["grasp", "jacob_cov"], ["fisher"], ["nwot"], ["epe_nas", "snip", "plain"],
                                   ["hessian_eig"], ["croze", "params"], ["zen", "grad_norm", "jacobian_fro"]])
def test_subsets_equal_reference(names: list[str]) -> None:
    # any subset of a pass group takes the passes it needs and still matches the reference
    x, y = _batch(6, seed=1)
    sep = compute_proxies(CELLS[1], x, y, names, seed=0, C=8, N=2, engine="separate")
    shared = compute_proxies(CELLS[1], x, y, names, seed=0, C=8, N=2, engine="shared")
    assert list(shared) == names and _equal(sep, shared) == []


def test_engine_leaves_model_alone_and_checks_input() -> None:
    x, y = _batch(4)
    model = init_model(CELLS[0], 0, C=8, N=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    compute_model_proxies(model, x, y, seed=0)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="engine"):
        compute_model_proxies(model, x, y, ["params"], engine="fastest")
    with pytest.raises(KeyError, match="unknown proxy"):
        compute_model_proxies(model, x, y, ["params", "nope"])


def test_every_grouped_proxy_is_registered() -> None:
    grouped = [p for g in pass_groups().values() for p in g.proxies]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) <= set(list_proxies())


def test_listed_cells_run_in_listed_order() -> None:
    from robustbench_nas.pipelines import get_protocol
    from robustbench_nas.pipelines.runner import _run_order

    p = get_protocol("tiny", archs=[300, 5, 17])
    uids = [c[0] for c in p.resolve_archs()]
    order = _run_order(p, sorted(uids))
    assert sorted(uids, key=order.__getitem__) == [c[0] for c in sorted(p.resolve_archs(), key=lambda c: [300, 5, 17].index(c[1]))]
    q = get_protocol("tiny")  # an int sample: uid order
    u = [c[0] for c in q.resolve_archs()]
    assert _run_order(q, u) == {uid: k for k, uid in enumerate(u)}


def test_sample_prefixes_are_stratified() -> None:
    from robustbench_nas.proxies.sample import shipped_sample, stratified_sample

    rng = np.random.default_rng(0)
    clean = {u: float(a) for u, a in zip(range(0, 2000, 2), rng.random(1000))}
    s = stratified_sample(clean, 100, bins=10, seed=0)
    assert len(s) == len(set(s)) == 100 and set(s) <= set(clean)
    ranks = np.argsort(np.argsort([clean[u] for u in sorted(clean)]))
    stratum = {u: int(r * 10 // 1000) for u, r in zip(sorted(clean), ranks)}
    for k in range(1, 11):  # every prefix of 10 k cells holds k cells of every stratum
        assert np.bincount([stratum[u] for u in s[: 10 * k]], minlength=10).tolist() == [k] * 10
    assert len(shipped_sample()) == 500
    with pytest.raises(ValueError):
        stratified_sample(clean, 55, bins=10)


@pytest.mark.skipif(not JUNG.is_dir(), reason="../shared/data/jung2023 (the published release) not present")
def test_shipped_sample_regenerates_from_release() -> None:
    from robustbench_nas.proxies.sample import published_clean, shipped_sample, stratified_sample

    assert stratified_sample(published_clean(JUNG), 500, bins=10, seed=0) == shipped_sample()
