"""Search-space costs: the exact parameter / FLOP counts of ``rbnas space list``, ours vs counting built networks.

Work measured: parameters and FLOPs (the space's published convention and the plain count, CIFAR-10 head, 32x32) of
``n`` architectures of each space, seeded sample.

* **baseline**: what a user would otherwise do for the same numbers: build each network
  (``space.build_network``) and count it (``count_params`` + forward hooks, ``space.count_flops``), i.e.
  ``space.measure_cost``;
* **ours**: ``space.cost``: NATS-Bench SSS's closed form; NB201's per-op increment tables (measured once).

``results_agree`` requires every count to be equal. ``same_work: true``. The full listings (15625 NB201 / 32768 SSS
rows through ``rbnas space list``) take a few seconds with ``ours``.

Run: ``python -m benchmarks.bench_space [--quick]``.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import Timer, bench_main, make_result, torch_threads


def run(quick: bool = False) -> list[dict[str, Any]]:
    from robustbench_nas.search_spaces import get_search_space

    out = []
    n = 10 if quick else 100
    for name in ("nats-sss", "nb201"):
        space = get_search_space(name)
        idx = space.sample(n, seed=0)
        space.cost(idx[0])  # NB201 builds its per-op tables once; not part of the per-row cost
        with torch_threads(1):
            with Timer() as t_ours:
                ours = [space.cost(i) for i in idx]
            with Timer() as t_base:
                base = [space.measure_cost(i) for i in idx]
        out.append(make_result(
            f"space_costs_{name.replace('-', '_')}", t_ours.cpu_seconds, t_base.cpu_seconds, ours == base,
            same_work=True, architectures=n, space=name, per_row_ours_s=t_ours.cpu_seconds / n,
            per_row_baseline_s=t_base.cpu_seconds / n, projected_full_listing_baseline_s=t_base.cpu_seconds / n
            * space.num_cells, wall_ours_s=t_ours.seconds, wall_baseline_s=t_base.seconds,
            timing="process CPU seconds (the machine is shared; wall times as details)", quick=quick,
        ))
    return out


if __name__ == "__main__":
    bench_main(run, __doc__)
