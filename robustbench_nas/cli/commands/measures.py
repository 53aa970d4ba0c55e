"""``rbnas measures``: input-Jacobian / Hessian robustness measures of a trained checkpoint."""

from __future__ import annotations

import click

from ..common import dataset_options, device_option, echo_json, fail, threads_option
from ..images import choose_cli_images, image_options, show_images


@click.command(name="measures")
@click.argument("ckpt", type=click.Path(exists=True))
@dataset_options()
@click.option("--split", default="train", show_default=True,
              help="Split the images are drawn from (Jung'23 and the pipeline's measures: train).")
@click.option("--n", "--images", "n_images", default=256, show_default=True, type=int,
              help="Images (the pipeline's measure_images: a class-balanced subset seeded by --subset-seed).")
@image_options("measures")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Random projections / probes (the images: --subset-seed / --indices).")
@click.option("--measures", "names", default=None, help="Comma-separated measures (default: all).")
@click.option("--n-proj", default=8, show_default=True, type=int, help="Random projections per image (Jacobian).")
@click.option("--power-iters", default=50, show_default=True, type=int, help="Cap on HVPs per image (Hessian).")
@click.option("--hessian-method", type=click.Choice(["lanczos", "power"]), default="lanczos", show_default=True)
@click.option("--tol", default=1e-3, show_default=True, type=float, help="Relative tolerance on the eigenvalue.")
@click.option("--hutchinson", default=16, show_default=True, type=int, help="Rademacher probes per image (trace).")
@click.option("--batch-size", default=32, show_default=True, type=int, help="Images per forward pass.")
@device_option()
@threads_option()
@click.option("--json", "as_json", is_flag=True, help="Print JSON (default: one 'key value' line per output).")
def command(ckpt, dataset, data_root, split, n_images, subset_seed, indices_text, show_images_only, seed, names,
            n_proj, power_iters, hessian_method, tol, hutchinson, batch_size, device, threads, as_json) -> None:
    """Jacobian / Hessian measures of the trained network in CKPT on N images of the dataset."""
    from ...data import DataError, get_dataset
    from ...measures import MeasureConfig, compute_measures, list_measures
    from ...training.checkpoint import CheckpointError, load_checkpoint
    from ...utils import resolve_device, set_torch_threads

    set_torch_threads(threads)
    selected = [n.strip() for n in names.split(",") if n.strip()] if names else list_measures()
    bad = [n for n in selected if n not in list_measures()]
    if bad:
        fail(f"unknown measure {', '.join(bad)}; known: {', '.join(list_measures())}")
    try:
        dev = resolve_device(device)
        model, meta = load_checkpoint(ckpt, dev)
        ds = get_dataset(dataset, data_root)
        if model.config["num_classes"] != ds.info.num_classes:
            raise ValueError(f"checkpoint has {model.config['num_classes']} classes, dataset {dataset!r} has {ds.info.num_classes}")
        part = ds.split(split)
        cfg = MeasureConfig(n_proj=n_proj, power_iters=power_iters, power_tol=tol, hessian_method=hessian_method,
                            hutchinson_samples=hutchinson, batch_size=batch_size)
    except (CheckpointError, KeyError, ValueError, DataError, RuntimeError) as e:
        fail(str(e))
    chosen = choose_cli_images(part, n_images, subset_seed, indices_text, purpose="measures",
                               where=f"split {split!r} of {dataset}")  # no silent cap
    if show_images_only:
        show_images(chosen, dataset=dataset)
        return
    from ...data.subsets import take

    sub = take(part, chosen.indices)
    from ...utils.precision import ieee_fp32

    with ieee_fp32():  # as the pipeline's measures stage (no TF32 on a GPU)
        values = compute_measures(model, sub.images(dev), sub.labels(dev), selected, seed=seed, config=cfg,
                                  progress=True)  # on stderr; --json output is stdout
    result = {"arch_str": model.arch_str, "checkpoint": str(ckpt), "dataset": dataset, "split": split,
              "n_images": len(sub), "images": chosen.record(), "seed": seed, "config": cfg.__dict__, "measures": values}
    if as_json:
        echo_json(result)
    else:
        click.echo(f"{model.arch_str}  ({len(sub)} {split} images of {dataset})")
        for k, v in values.items():
            click.echo(f"{k:<26} {v:.6g}")
