"""``rbnas proxies``: zero-cost proxies of cells at initialisation, one row per cell."""

from __future__ import annotations

import csv
import sys

import click

from ..common import dataset_options, device_option, echo_json, fail, resolve_space, space_option, threads_option
from ..images import choose_cli_images, image_options, show_images


def _parse_names(text: str | None, known: list[str]) -> list[str]:
    if not text:
        return known
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in known]
    if bad:
        fail(f"unknown proxy {', '.join(bad)}; known: {', '.join(known)}")
    return names


@click.command(name="proxies")
@click.argument("archs", nargs=-1)
@space_option()
@dataset_options()
@click.option("--split", default="train", show_default=True,
              help="Split the batch is drawn from (the pipeline's proxies use the training split).")
@click.option("--batch-size", "--images", "batch_size", default=64, show_default=True, type=int,
              help="Images in the batch (the pipeline's proxy_images): a class-balanced subset seeded by --subset-seed.")
@image_options("proxies")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Initialisation and proxy seed (the images are chosen by --subset-seed or --indices).")
@click.option("--proxies", "names", default=None, help="Comma-separated proxies (default: all; see --list).")
@click.option("--C", "channels", default=None, type=int, help="NB201: channels of the first stage (default 16).")
@click.option("--N", "cells", default=None, type=int, help="NB201: cells per stage (default 5).")
@click.option("--layers", default=None, type=int, help="DARTS: number of cells (default 20).")
@device_option()
@threads_option()
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--engine", type=click.Choice(["fast", "shared", "separate"]), default="fast", show_default=True,
              help="fast: shared passes, CRoZe in float32, hessian_eig exactly from the input Jacobian (each proxy "
                   "within its stated tolerance of the reference, see the proxies README); shared: proxies needing "
                   "the same passes get them once, the reference's values bit for bit; separate: one proxy at a "
                   "time (the reference).")
@click.option("--list", "list_only", is_flag=True, help="List the proxies with their one-line definitions and exit.")
def command(archs, space_name, dataset, data_root, split, batch_size, subset_seed, indices_text, show_images_only,
            seed, names, channels, cells, layers, device, threads, fmt, as_json, engine, list_only) -> None:  # fmt: skip
    """Proxies of each ARCH (a string or index of --space) at initialisation: csv with arch_str first, one column
    per proxy.

    The batch is the pipeline's: the same --split, --batch-size and --subset-seed as a protocol's split, proxy_images
    and subset_seed give the images its proxies stage uses; --indices gives them explicitly (e.g. the shipped
    table's, robustbench_nas/analysis/data/nb201_cifar10_proxy_images.txt)."""
    from ...data import DataError, get_dataset
    from ...proxies import compute_proxies, describe_proxies, list_proxies
    from ...utils.precision import ieee_fp32
    from ...search_spaces import ArchitectureError
    from ...utils import resolve_device, set_torch_threads

    fmt = "json" if as_json else fmt
    if list_only:
        rows = describe_proxies()
        if fmt == "json":
            echo_json(rows)
        else:
            for r in rows:
                click.echo(f"{r['name']:<13} {'robust ' if r['robust'] else ''}{r['summary']}  [{r['reference']}]")
        return
    if not archs and not show_images_only:
        fail("give at least one ARCH (a string or index of --space), or --list")
    set_torch_threads(threads)
    selected = _parse_names(names, list_proxies())
    space = resolve_space(space_name)
    try:
        indices = [space.index_of(int(a) if a.isdigit() else a) for a in archs]
        dev = resolve_device(device)
        ds = get_dataset(dataset, data_root)
        part = ds.split(split)
        if batch_size < 2:
            raise ValueError(f"--batch-size must be >= 2, got {batch_size}")
    except (ArchitectureError, KeyError, ValueError, DataError, RuntimeError) as e:
        fail(str(e))
    chosen = choose_cli_images(part, batch_size, subset_seed, indices_text, purpose="proxies",
                               where=f"split {split!r} of {dataset}", count_param="batch_size", count_flag="--batch-size")
    if chosen.n < 2:
        fail(f"the proxies need a batch of at least 2 images, --indices gives {chosen.n}")
    if show_images_only:
        show_images(chosen, dataset=dataset)
        return
    from ...data.subsets import take

    sub = take(part, chosen.indices)
    x, y = sub.images(dev), sub.labels(dev)
    info = ds.info
    from tqdm import tqdm

    rows = []
    for index in tqdm(indices, desc="proxies", unit="cell", disable=fmt == "json" or len(indices) < 2, file=sys.stderr):
        try:
            with ieee_fp32():  # as the pipeline's proxies stage: the same values on a GPU as in a store
                vals = compute_proxies(index, x, y, selected, seed=seed, num_classes=info.num_classes, C=channels,
                                       N=cells, mean=info.mean, std=info.std, space=space.name, engine=engine,
                                       layers=layers)
        except (TypeError, ValueError) as e:  # e.g. --C for a space whose architectures fix their widths
            fail(str(e))
        rows.append({"arch_str": space.arch_str(index), **vals})
    if fmt == "json":
        echo_json(rows)
        return
    w = csv.DictWriter(sys.stdout, fieldnames=["arch_str", *selected], lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})
