"""``rbnas status STORE``: progress of a store, read from the store alone."""

from __future__ import annotations

import click

from ..common import echo_json, fail


@click.command(name="status")
@click.argument("store_path", type=click.Path())
@click.option("--failures", "n_failures", default=10, show_default=True, type=int, help="Failures to list.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--check", is_flag=True,
              help="Also audit the weights (hash every checkpoint file; every result must carry its cell's current "
                   "weights hash). Exit 4 when any result or checkpoint does not match, else 1 when any unit "
                   "failed, 3 when none failed but some are pending, 0 when all are done.")
def command(store_path: str, n_failures: int, as_json: bool, check: bool) -> None:
    """Per stage: cells done / failed / pending, mean seconds, headline results and the failures.

    The exit status is 0 without --check (a report); with --check it tells whether the store is complete and
    every result belongs to the weights its cell points to now (each mismatch listed, in the JSON under "weights").
    """
    from robustbench_nas.pipelines.runner import headline, summary_rows, unit_mix, unit_mix_line
    from robustbench_nas.storage import StoreError, open_store

    from .run import print_summary

    try:
        store = open_store(store_path)
    except StoreError as e:
        fail(str(e))
    protocol = store.attrs.get("protocol", {})
    failures = store.failures()
    problems = _audit(store) if check else []
    if as_json:
        out = {"store": str(store.path), "protocol": protocol.get("name"),
               "fingerprint": store.attrs.get("protocol_fingerprint"), "cells": len(store.spec.archs),
               "seeds": store.spec.seeds, "stages": summary_rows(store), "headline": headline(store),
               "failures": failures, "ran_on": unit_mix(store)}
        if check:
            out["weights"] = {"audited": bool(store.spec.weights_hashes), "problems": [p.to_dict() for p in problems]}
        echo_json(out)
        _check_exit(check, store, failures, problems)
        return
    click.echo(f"{store.path}: protocol {protocol.get('name', '?')} ({store.attrs.get('protocol_fingerprint', '-')}), "
               f"{len(store.spec.archs)} cells x {len(store.spec.seeds)} seeds")
    print_summary(store)
    click.echo(unit_mix_line(store))  # device / threads / precision mix: same command, same bits?
    for f in failures[:n_failures]:
        click.echo(f"FAILED cell {f['arch']} seed {f['seed']} stage {f['stage']} "
                   f"({f['attempts']} attempts): {f['error'].splitlines()[0] if f['error'] else ''}")
    if len(failures) > n_failures:
        click.echo(f"... {len(failures) - n_failures} more failures")
    for p in problems:  # every one: each is a number that no longer belongs to its weights
        click.echo(f"WEIGHTS {p.text()}")
    _check_exit(check, store, failures, problems)


def _audit(store) -> list:
    """The store's :class:`~robustbench_nas.pipelines.weights_audit.WeightsProblem` list."""
    from robustbench_nas.pipelines.weights_audit import audit_weights

    return audit_weights(store)


def _check_exit(check: bool, store, failures: list, problems: list) -> None:
    import sys

    from robustbench_nas.pipelines.runner import summary_rows

    if not check:
        return
    if problems:  # stale numbers are worse than missing ones: they look finished
        click.echo(f"check: {len(problems)} result(s) or checkpoint(s) do not match the cells' current weights",
                   err=True)
        sys.exit(4)
    if failures:
        click.echo(f"check: {len(failures)} unit(s) failed", err=True)
        sys.exit(1)
    pending = sum(int(r["pending"]) for r in summary_rows(store))
    if pending:
        click.echo(f"check: no failures, {pending} unit(s) pending", err=True)
        sys.exit(3)
