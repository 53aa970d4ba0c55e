"""``rbnas train``: train one cell and write its checkpoint and metrics."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ...data import DataError, get_dataset
from ...search_spaces import ArchitectureError
from ...training import get_profile, list_profiles, save_checkpoint, train_model
from ...utils import atomic_output, set_torch_threads
from ..common import (
    check_output_files, dataset_options, device_option, echo_json, fail, force_option, parse_overrides,
    resolve_space, space_option, threads_option,
)


@click.command(name="train")
@click.argument("arch")
@space_option()
@dataset_options()
@click.option("--profile", default="tiny", show_default=True, help=f"Training profile: {', '.join(list_profiles())}.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a profile field (repeatable).")
@click.option("--seed", default=0, show_default=True, type=int)
@device_option()
@threads_option()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@force_option("model.safetensors / metrics.json in OUT")
def command(arch, space_name, dataset, data_root, profile, overrides, seed, device, threads, out_dir, as_json,
            force) -> None:
    """Train ARCH (a string or index of --space) and write OUT/model.safetensors and OUT/metrics.json.

    Example: `rbnas train 8:16:24:32:64 --space nats-sss --profile tiny --out runs/one`.
    """
    set_torch_threads(threads)
    space = resolve_space(space_name)
    check_output_files(out_dir, ["model.safetensors", "metrics.json"], force)  # before hours of training
    try:
        index = space.index_of(arch)
        prof = get_profile(profile, **parse_overrides(overrides))
        ds = get_dataset(dataset, data_root)
    except (ArchitectureError, KeyError, ValueError, DataError) as e:
        fail(str(e))
    try:
        result = train_model(index, ds, prof, seed=seed, device=device, progress=True,  # on stderr; --json: stdout
                             space=space.name)
    except ValueError as e:  # a profile the space's networks cannot follow (drop path, auxiliary head on small images)
        fail(str(e))
    out = Path(out_dir)
    ckpt = save_checkpoint(out, result.model, result.meta)
    metrics = {
        "arch_str": result.model.arch_str,
        "space": space.name,
        "index": index,
        "dataset": dataset,
        "profile": prof.name,
        "seed": seed,
        "final_test_acc": result.final_test_acc,
        "history": result.history,
        "checkpoint": str(ckpt),
    }
    with atomic_output(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2))
    if as_json:
        echo_json(metrics)
    else:
        click.echo(f"{result.model.arch_str}  test accuracy {result.final_test_acc:.4f}  -> {ckpt}")
