"""``rbnas corrupt``: common corruptions (CIFAR-10-C constants): list, look at, evaluate, write CIFAR-C files."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from ...utils import atomic_output
from ..common import (
    check_output_file, check_output_files, dataset_options, device_option, echo_json, fail,
    force_option,
)
from ..images import choose_cli_images, choose_cli_indices, image_options, show_images

log = logging.getLogger(__name__)


def _names(values: tuple[str, ...], default: str) -> list[str]:
    from robustbench_nas import corruptions

    names: list[str] = []
    for v in values or (default,):
        for part in v.split(","):
            part = part.strip()
            if not part:
                continue
            if part in ("all", "benchmark", "extra", *corruptions.FAMILIES):
                names += corruptions.list_corruptions(part)
            else:
                try:
                    corruptions.info(part)
                except KeyError as e:
                    fail(str(e.args[0]))
                names.append(part)
    return list(dict.fromkeys(names))


def _severities(values: tuple[int, ...]) -> list[int]:
    sevs = sorted(set(values)) if values else [1, 2, 3, 4, 5]
    bad = [s for s in sevs if s not in (1, 2, 3, 4, 5)]
    if bad:
        fail(f"severity must be in 1..5, got {bad}")
    return sevs


def _load_split(dataset: str, data_root: str | None, split: str):
    from ...data import DataError, get_dataset

    try:
        return get_dataset(dataset, data_root).split(split)
    except (DataError, KeyError, ValueError) as e:
        fail(str(e.args[0]) if e.args else str(e))


@click.group(name="corrupt")
def command() -> None:
    """Common corruptions of Hendrycks & Dietterich with the CIFAR-10-C constants (15 + 4 extras, severities 1-5)."""


@command.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def list_cmd(as_json: bool) -> None:
    """List the corruptions with their family and whether they are random."""
    from robustbench_nas import corruptions

    rows = [
        {"name": n, "family": corruptions.family_of(n), "random": corruptions.info(n).random,
         "benchmark": n in corruptions.BENCHMARK_CORRUPTIONS}
        for n in corruptions.list_corruptions()
    ]
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        tag = "" if r["benchmark"] else "  (extra)"
        click.echo(f"{r['name']:18s} {r['family']:8s} {'random' if r['random'] else 'deterministic'}{tag}")


@command.command(name="show")
@click.option("--corruption", "corruption_names", multiple=True,
              help="Corruption name, comma list, 'benchmark', 'extra', 'all' or a family (repeatable). Default: all.")
@click.option("--severity", "severities", multiple=True, type=int, help="Severity 1-5 (repeatable). Default: 1-5.")
@dataset_options(default="digits")
@click.option("--split", default="test", show_default=True)
@click.option("--index", default=0, show_default=True, type=int, help="Which image of the split.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@force_option("the PNG file")
def show_cmd(corruption_names, severities, dataset, data_root, split, index, seed, out_file, force) -> None:
    """Write a picture grid of one image under each corruption (rows) and severity (columns)."""
    from robustbench_nas import corruptions

    check_output_file(out_file, force)
    names = _names(corruption_names, "all")
    sevs = _severities(severities)
    data = _load_split(dataset, data_root, split)
    if not 0 <= index < len(data.y):
        fail(f"--index must be in 0..{len(data.y) - 1}, got {index}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    x = data.x[index : index + 1].float() / 255
    cols = 1 + len(sevs)
    fig, axes = plt.subplots(len(names), cols, figsize=(1.3 * cols, 1.3 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        f = corruptions.get(name)
        panels = [x] + [f(x, s, generator=corruptions.make_generator(seed)) for s in sevs]
        for c, img in enumerate(panels):
            ax = axes[r][c]
            im = img[0].permute(1, 2, 0).clamp(0, 1).numpy()
            ax.imshow(im.squeeze(-1) if im.shape[-1] == 1 else im, cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("clean" if c == 0 else f"severity {sevs[c - 1]}", fontsize=7)
        axes[r][0].set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
    fig.tight_layout()
    Path(out_file).parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out_file) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    click.echo(f"wrote {out_file}: {len(names)} corruptions x {len(sevs)} severities of {dataset} {split}[{index}]")


@command.command(name="eval")
@click.argument("checkpoint", type=click.Path())
@click.option("--corruption", "corruption_names", multiple=True,
              help="Corruption name, comma list, 'benchmark', 'extra', 'all' or a family. Default: benchmark (15).")
@click.option("--severity", "severities", multiple=True, type=int, help="Severity 1-5 (repeatable). Default: 1-5.")
@dataset_options(default=None)  # type: ignore[arg-type]  (None: the checkpoint's dataset)
@click.option("--split", default="test", show_default=True,
              help="Split evaluated (the pipeline's protocol eval_split, test by default; the --source files hold the "
                   "test split in order).")
@click.option("--n", "--images", "n_images", default=1000, show_default=True, type=int,
              help="Images (the pipeline's corruption_images: a class-balanced subset seeded by --subset-seed, also "
                   "of the --source files; the default takes all when fewer, a typed --n larger than the data is an "
                   "error); 0 = all.")
@image_options("corruptions")
@click.option("--source", type=click.Path(), default=None,
              help="Folder with the official CIFAR-10-C / CIFAR-100-C .npy files (default: generate on the device).")
@click.option("--batch-size", default=256, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed of the generated corruptions' random draws; the images: --subset-seed / --indices.")
@device_option()
@click.option("--correct-bits", is_flag=True, help="Include the packed per-image 'still correct' bitmap (hex).")
@click.option("--out", "out_file", default=None, type=click.Path(dir_okay=False), help="Also write the JSON here.")
@force_option("the --out file")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def eval_cmd(checkpoint, corruption_names, severities, dataset, data_root, split, n_images, subset_seed, indices_text,
             show_images_only, source, batch_size, seed, device, correct_bits, out_file, force, as_json) -> None:
    """Evaluate the model in CHECKPOINT on every corruption and severity; print accuracy per cell and summaries."""
    import dataclasses

    from robustbench_nas import corruptions

    from ...evaluation import evaluate_clean
    from ...training.checkpoint import CheckpointError, load_checkpoint
    from ...utils import resolve_device

    check_output_file(out_file, force)
    names = _names(corruption_names, "benchmark")
    sevs = _severities(severities)
    try:
        dev = resolve_device(device)
        model, meta = load_checkpoint(checkpoint, dev)
    except (CheckpointError, RuntimeError) as e:
        fail(str(e))
    clean = None
    try:
        if source is not None:
            files = corruptions.CifarCFiles(source, device=dev)
            idx = choose_cli_indices(files.labels().cpu().numpy(), split, n_images, subset_seed, indices_text,
                                     where=f"the corruption files in {source} (per severity)")
            images = {"split": split, "n": int(idx.size), "subset_seed": None if indices_text else subset_seed,
                      "indices": [int(i) for i in idx], "source": str(source)}
            if show_images_only:
                echo_json({"dataset": dataset or meta.get("dataset"), "purpose": "corruptions", **images})
                return
            if idx.size < files.num_images():
                files = corruptions.CifarCFiles(source, device=dev, indices=idx)  # the same images in every severity
            results = corruptions.evaluate(model, None, None, names, sevs, batch_size=batch_size, source=files,
                                           progress=True)  # on stderr; --json output is stdout
            ds_name = dataset or meta.get("dataset")
        else:
            ds_name = dataset or meta.get("dataset")
            if not ds_name:
                fail("the checkpoint does not record its dataset: pass --dataset")
            data = _load_split(ds_name, data_root, split)
            chosen = choose_cli_images(data, n_images, subset_seed, indices_text, purpose="corruptions",
                                       where=f"split {split!r} of {ds_name}")
            if show_images_only:
                show_images(chosen, dataset=ds_name)
                return
            images = chosen.record()
            from ...data.subsets import take

            data = take(data, chosen.indices)
            x, y = data.images("cpu"), data.labels("cpu")
            clean = evaluate_clean(model, x.to(dev), y.to(dev), batch_size)
            results = corruptions.evaluate(model, x, y, names, sevs, batch_size=batch_size, seed=seed,
                                           progress=True)  # on stderr; --json output is stdout
    except (KeyError, ValueError, FileNotFoundError) as e:
        fail(str(e.args[0]) if e.args else str(e))
    summary = corruptions.summarize(results)
    out = {
        "checkpoint": str(checkpoint),
        "dataset": ds_name,
        "source": str(source) if source else "generated",
        "seed": None if source else seed,
        "images": images,
        "clean_accuracy": None if clean is None else clean.accuracy,
        "results": corruptions.results_to_records(results, correct_bits=correct_bits),
        "summary": dataclasses.asdict(summary),
    }
    if out_file:
        with atomic_output(out_file) as tmp:
            tmp.write_text(json.dumps(out, indent=2))
    if as_json:
        echo_json(out)
        return
    for r in results:
        click.echo(f"{r.corruption:18s} severity {r.severity}  accuracy {r.stats.accuracy:.4f}  "
                   f"conf(pred) {r.stats.confidence_pred:.3f}")
    for fam, v in summary.per_family.items():
        click.echo(f"family {fam:8s} mean accuracy {v:.4f}")
    click.echo(f"mean corruption accuracy {summary.mean_accuracy:.4f}"
               + ("" if clean is None else f"  (clean {clean.accuracy:.4f})"))


@command.command(name="make")
@click.option("--corruption", "corruption_names", multiple=True, help="Names (default: benchmark, the 15).")
@dataset_options(default="digits")
@click.option("--split", default="test", show_default=True)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--batch-size", default=1000, show_default=True, type=int)
@device_option()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for <corruption>.npy + labels.npy (the official CIFAR-10-C layout).")
@force_option("existing <corruption>.npy / labels.npy in OUT")
def make_cmd(corruption_names, dataset, data_root, split, seed, batch_size, device, out_dir, force) -> None:
    """Write generated corruptions of a split in the official CIFAR-10-C layout (uint8 NHWC, severity-major)."""
    import numpy as np
    import torch

    from robustbench_nas import corruptions

    from ...utils import resolve_device

    names = _names(corruption_names, "benchmark")
    check_output_files(out_dir, [f"{n}.npy" for n in names] + ["labels.npy"], force)
    data = _load_split(dataset, data_root, split)
    x = data.x.float() / 255
    y = data.y.long()
    dev = resolve_device(device)
    labels = np.tile(y.numpy(), 5)
    from tqdm.auto import tqdm

    for name in tqdm(names, desc="corruptions", unit="corruption"):
        src = corruptions.GeneratedSource(x, y, seed=seed, device=dev)
        blocks = []
        for s in range(1, 6):
            imgs = torch.cat([xb.cpu() for xb, _ in src.batches(name, s, batch_size)])
            blocks.append(torch.round(imgs * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
        corruptions.write_cifar_c(out_dir, name, np.concatenate(blocks), labels)
    click.echo(f"wrote {len(names)} corruptions x 5 severities x {len(y)} images to {out_dir}")
