"""``rbnas space``: count, show and list the cells of a search space."""

from __future__ import annotations

import csv
import sys
from functools import lru_cache

import click

from ...models import nb201_cost
from ...search_spaces import ArchitectureError, get_search_space
from ..common import echo_json, fail


@lru_cache(maxsize=None)
def cell_row(space_name: str, index: int) -> dict:
    """index, arch_str, uid, params (M) and FLOPs (M, NB201 convention, CIFAR-10 head) of one cell."""
    space = get_search_space(space_name)
    cost = nb201_cost(index)
    return {
        "index": index,
        "arch_str": space.arch_str(index),
        "uid": space.uid(index),
        "params": cost.params / 1e6,
        "flops": cost.flops.nb201 / 1e6,
        "flops_plain": cost.flops.plain / 1e6,
    }


@click.group(name="space")
@click.option("--space", "space_name", default="nb201", show_default=True, help="Search space name.")
@click.pass_context
def command(ctx: click.Context, space_name: str) -> None:
    """Inspect a search space: cells, isomorphism classes, parameter and FLOP counts.

    params are in millions; flops are millions of FLOPs in NAS-Bench-201's convention (CIFAR-10 head, 32x32),
    flops_plain the plain multiply-adds of convolutions and the linear layer.
    """
    try:
        ctx.obj = get_search_space(space_name)
    except KeyError as e:
        fail(str(e))


@command.command("count")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def count_cmd(space, as_json: bool) -> None:
    """Number of cells and of unique (non-isomorphic) cells."""
    out = {"cells": space.num_cells, "unique": space.num_unique}
    if as_json:
        echo_json(out)
    else:
        click.echo(f"{space.name}: {out['cells']} cells, {out['unique']} unique up to isomorphism")


@command.command("show")
@click.argument("arch")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def show_cmd(space, arch: str, as_json: bool) -> None:
    """One cell, given as NB201 string or index: index, arch_str, uid, params, flops."""
    try:
        row = cell_row(space.name, space.index_of(arch))
    except ArchitectureError as e:
        fail(str(e))
    if as_json:
        echo_json(row)
    else:
        for k, v in row.items():
            click.echo(f"{k:12s} {v}")


@command.command("list")
@click.option("--unique", is_flag=True, help="Only one cell per isomorphism class (the uid).")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--limit", type=int, default=None, help="At most this many rows.")
@click.option("--progress/--no-progress", default=True, help="Progress bar on stderr.")
@click.pass_obj
def list_cmd(space, unique: bool, fmt: str, limit: int | None, progress: bool) -> None:
    """One row per cell: index, arch_str, uid, params, flops."""
    from tqdm.auto import tqdm

    indices = space.unique_indices() if unique else list(range(space.num_cells))
    if limit is not None:
        indices = indices[:limit]
    rows = (cell_row(space.name, i) for i in tqdm(indices, disable=not progress, desc="cells", file=sys.stderr))
    if fmt == "json":
        echo_json(list(rows))
        return
    w = csv.DictWriter(sys.stdout, fieldnames=["index", "arch_str", "uid", "params", "flops", "flops_plain"])
    w.writeheader()
    for r in rows:
        w.writerow(r)
