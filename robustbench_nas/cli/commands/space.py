"""``rbnas space``: count, show and list the cells of a search space."""

from __future__ import annotations

import csv
import sys
from functools import lru_cache

import click

from ...search_spaces import ArchitectureError, NotEnumerableError, get_search_space
from ..common import echo_json, fail, resolve_space, space_option


@lru_cache(maxsize=None)
def cell_row(space_name: str, index: int, options: tuple[tuple[str, int], ...] = ()) -> dict:
    """index, arch_str, uid, params (M) and FLOPs (M, the space's published convention, CIFAR-10 head) of one cell.

    The counts are the space's exact :meth:`cost` (closed form or per-op tables: no network is built per row);
    ``options`` are network options of the space (NB201: ``C``, ``N``; DARTS: ``C``, ``layers``).
    """
    space = get_search_space(space_name)
    cost = space.cost(index, **dict(options))
    return {
        "index": index,
        "arch_str": space.arch_str(index),
        "uid": space.uid(index),
        "params": cost.params / 1e6,
        "flops": cost.flops.published / 1e6,
        "flops_plain": cost.flops.plain / 1e6,
    }


def _space_option_here(f):  # `rbnas space --space X list` and `rbnas space list --space X` both work
    return click.option("--space", "sub_space", default=None, help="Search space (overrides the group's --space).")(f)


@click.group(name="space")
@space_option()
@click.pass_context
def command(ctx: click.Context, space_name: str) -> None:
    """Inspect a search space: architectures, isomorphism classes, parameter and FLOP counts.

    params are in millions; flops are millions of FLOPs in the space's published convention (CIFAR-10 head,
    32x32: NAS-Bench-201's for nb201, NATS-Bench's get_model_infos for nats-sss, conv + linear multiply-adds of
    the inference network for darts), flops_plain the plain multiply-adds of convolutions and the linear layer.
    """
    ctx.obj = resolve_space(space_name)


def _space(ctx_space, sub_space: str | None):
    return resolve_space(sub_space) if sub_space else ctx_space


@command.command("count")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_space_option_here
@click.pass_obj
def count_cmd(space, as_json: bool, sub_space: str | None) -> None:
    """Number of cells, of unique (non-isomorphic) cells and of distinct functions (functional twins merged)."""
    space = _space(space, sub_space)
    functions = space.num_functions  # enumerates an enumerable space; DARTS knows its counts in closed form
    out = {"cells": space.num_cells, "unique": space.num_unique, "functions": functions}
    if as_json:
        echo_json(out)
    else:
        click.echo(f"{space.name}: {out['cells']} cells, {out['unique']} unique up to isomorphism, {functions} "
                   "distinct functions")  # fmt: skip


@command.command("show")
@click.argument("arch")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--C", "channels", type=int, default=None, help="Network width (NB201, DARTS; default: the space's).")
@click.option("--N", "cells", type=int, default=None, help="NB201: cells per stage (default 5).")
@click.option("--layers", type=int, default=None, help="DARTS: number of cells (default 20).")
@_space_option_here
@click.pass_obj
def show_cmd(space, arch: str, as_json: bool, channels: int | None, cells: int | None, layers: int | None,
             sub_space: str | None) -> None:
    """One architecture, given as its string or index: index, arch_str, uid, params, flops.

    DARTS: `rbnas space show DARTS_V2 --space darts --C 36 --layers 20` (a Genotype(...) string, NASLib's compact
    form or a published name).
    """
    space = _space(space, sub_space)
    options = tuple((k, v) for k, v in (("C", channels), ("N", cells), ("layers", layers)) if v is not None)
    try:
        row = cell_row(space.name, space.index_of(arch), options)
    except (ArchitectureError, TypeError, ValueError) as e:
        # a TypeError naming one of the given options is bad input (an option the space does not take); any other
        # TypeError is a bug and goes on to the CLI's internal-error handler
        if isinstance(e, TypeError) and not any(k in str(e) for k, _ in options):
            raise
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
@_space_option_here
@click.pass_obj
def list_cmd(space, unique: bool, fmt: str, limit: int | None, progress: bool, sub_space: str | None) -> None:
    """One row per architecture: index, arch_str, uid, params (M), flops (M), flops_plain (M)."""
    from tqdm.auto import tqdm

    space = _space(space, sub_space)
    try:
        space.require_enumerable("rbnas space list")
    except NotEnumerableError as e:
        fail(f"{e} (rbnas space show ARCH for one)")
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
