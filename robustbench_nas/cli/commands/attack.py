"""``rbnas attack``: adversarial evaluation of one checkpoint over an epsilon grid."""

from __future__ import annotations

import dataclasses
import json
import logging

import click

from ...utils import atomic_output
from ..common import (
    check_output_file, dataset_options, device_option, echo_json, fail, force_option,
    parse_overrides,
)
from ..images import choose_cli_images, image_options, show_images

log = logging.getLogger(__name__)


def format_eps(attack: str, eps: float) -> str:
    """An eps as people read it: an Linf radius in 1/255 steps (``"8/255"``), an L2 radius plainly (``"0.5"``).

    An L2 radius is a Euclidean length in [0, 1] pixel units over the whole image, not a number of 1/255 steps of
    one pixel, so ``0.5`` printed as ``127.5/255`` would misread it.
    """
    from robustbench_nas import attacks

    if attacks.get_attack(attack).norm == "L2":
        return f"{eps:.4g}"
    return f"{eps * 255:.4g}/255"


@click.command(name="attack")
@click.argument("checkpoint", required=False, type=click.Path())
@click.option("--attack", "attack_names", multiple=True, default=("pgd@Linf",), show_default=True,
              help="Attack name (repeatable); see --list.")
@click.option("--eps", "eps_text", default=None,
              help="Comma-separated epsilons: '1/255,8/255' or '0.03' ([0, 1] pixel units). Default: the protocol's.")
@click.option("--protocol", default=None, help="Named protocol (jung2023, tiny, robbench2024): its attacks and grids.")
@dataset_options(default=None)  # type: ignore[arg-type]  (None: the checkpoint's dataset)
@click.option("--split", default="test", show_default=True,
              help="Data split to attack (the pipeline attacks its protocol's eval_split, test by default).")
@click.option("--n", "--images", "n_images", default=1000, show_default=True, type=int,
              help="Images (the pipeline's attack_images: a class-balanced subset seeded by --subset-seed; the "
                   "default takes the whole split when it is smaller, a typed --n larger than the split is an error); "
                   "0 = the whole split.")
@image_options("attacks")
@click.option("--mode", type=click.Choice(["independent", "early_exit"]), default="independent", show_default=True)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Attack parameter override (repeatable).")
@click.option("--batch-size", default=256, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int,
              help="Attack seed (random starts, Square's queries); the images: --subset-seed / --indices.")
@device_option()
@click.option("--correct-bits", is_flag=True, help="Include the packed per-image 'still correct' bitmap (hex).")
@click.option("--out", "out_file", default=None, type=click.Path(dir_okay=False), help="Also write the JSON here.")
@force_option("the --out file")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--list", "list_only", is_flag=True, help="List the attacks and protocols and exit.")
def command(checkpoint, attack_names, eps_text, protocol, dataset, data_root, split, n_images, subset_seed,
            indices_text, show_images_only, mode, overrides, batch_size, seed, device, correct_bits, out_file, force, as_json,
            list_only) -> None:
    """Attack the model in CHECKPOINT at each epsilon; print accuracy and confidences per (attack, eps)."""
    from robustbench_nas import attacks
    from robustbench_nas.attacks._common import check_eps

    if list_only:
        info = {
            "attacks": {a: attacks.get_attack(a).description for a in attacks.list_attacks()},
            "aliases": attacks.list_aliases(),
            "protocols": {p: {a: [round(e * 255, 4) for e in g] for a, g in attacks.get_attack_grid(p).items()}
                          for p in attacks.list_attack_grids()},
        }
        if as_json:
            echo_json(info)
        else:
            for a, d in info["attacks"].items():
                click.echo(f"{a:20s} {d}")
            for p, grid in info["protocols"].items():
                click.echo(f"protocol {p}: " + "; ".join(
                    f"{a} [{', '.join(format_eps(a, e) for e in attacks.get_protocol(p)[a])}]" for a in grid))
        return
    check_output_file(out_file, force)
    if checkpoint is None:
        fail("missing CHECKPOINT (a model.safetensors file or its folder)")

    from ...data import DataError, get_dataset
    from ...evaluation import evaluate_clean
    from ...training.checkpoint import CheckpointError, load_checkpoint
    from ...utils import resolve_device

    # what to run: (attack, eps grid, protocol params)
    try:
        if protocol is not None:
            grid = attacks.get_attack_grid(protocol)
            extra = attacks.attack_grid_params(protocol)
            names = list(grid) if attack_names == ("pgd@Linf",) else list(attack_names)
            plan = []
            for a in names:
                a_key = attacks.get_attack(a).name
                norm = "L2" if a_key.endswith("@L2") else "Linf"
                eps = attacks.parse_eps(eps_text, norm) if eps_text else grid.get(a_key)
                if eps is None:
                    fail(f"protocol {protocol!r} has no grid for {a_key!r}; pass --eps")
                plan.append((a_key, eps, extra.get(a_key, {})))
        else:
            if not eps_text:
                fail("pass --eps (e.g. --eps 1/255,8/255) or --protocol")
            keys = [attacks.get_attack(a).name for a in attack_names]
            plan = [(k, attacks.parse_eps(eps_text, "L2" if k.endswith("@L2") else "Linf"), {}) for k in keys]
        user = parse_overrides(overrides)
        for a_key, eps, _ in plan:
            check_eps(eps, norm="L2" if a_key.endswith("@L2") else "Linf")  # an L2 radius may exceed 1
    except (KeyError, ValueError) as e:
        fail(str(e.args[0]) if e.args else str(e))

    try:
        dev = resolve_device(device)
        model, meta = load_checkpoint(checkpoint, dev)
    except (CheckpointError, RuntimeError) as e:
        fail(str(e))
    ds_name = dataset or meta.get("dataset")
    if not ds_name:
        fail("the checkpoint does not record its dataset: pass --dataset")
    if meta.get("dataset") not in (None, ds_name):
        log.warning("checkpoint was trained on %s, attacking it on %s", meta.get("dataset"), ds_name)
    try:
        data = get_dataset(ds_name, data_root).split(split)
    except (DataError, KeyError, ValueError) as e:
        fail(str(e))
    chosen = choose_cli_images(data, n_images, subset_seed, indices_text, purpose="attacks",
                               where=f"split {split!r} of {ds_name}")  # no silent cap
    if show_images_only:
        show_images(chosen, dataset=ds_name)
        return
    from ...data.subsets import take

    data = take(data, chosen.indices)
    x = data.images("cpu")
    y = data.labels("cpu")
    from ...utils.precision import ieee_fp32

    with ieee_fp32():  # as the pipeline's evaluation stages (no TF32 on a GPU)
        clean = evaluate_clean(model, x.to(dev), y.to(dev), batch_size)

    # --set KEY=VALUE applies to every planned attack that has the field KEY
    fields = {a: {f.name for f in dataclasses.fields(attacks.get_attack(a).defaults)} for a, _, _ in plan}
    unused = sorted(k for k in user if not any(k in f for f in fields.values()))
    if unused:
        fail(f"--set {', '.join(unused)}: no such parameter for {', '.join(a for a, _, _ in plan)}")
    rows = []
    for a_key, eps, extra in plan:
        params = {**extra, **{k: v for k, v in user.items() if k in fields[a_key]}}
        try:
            with ieee_fp32():
                results = attacks.evaluate(model, x, y, a_key, eps, params=params or None, batch_size=batch_size,
                                           seed=seed, mode=mode, progress=True)  # stderr
        except (KeyError, ValueError, TypeError) as e:
            fail(str(e.args[0]) if e.args else str(e))
        rows += [r.to_dict(correct_bits=correct_bits) for r in results]
        if not as_json:
            for r in results:
                click.echo(f"{a_key:18s} eps {format_eps(a_key, r.eps):>10s}  accuracy {r.stats.accuracy:.4f}  "
                           f"conf(pred) {r.stats.confidence_pred:.3f}  conf(true) {r.stats.confidence_true:.3f}")
    out = {
        "checkpoint": str(checkpoint),
        "arch_str": getattr(model, "arch_str", None),
        "dataset": ds_name,
        "split": split,
        "n": int(x.shape[0]),
        "images": chosen.record(),
        "clean_accuracy": clean.accuracy,
        "mode": mode,
        "seed": seed,
        "results": rows,
    }
    if out_file:
        with atomic_output(out_file) as tmp:
            tmp.write_text(json.dumps(out, indent=2))
    if as_json:
        echo_json(out)
    else:
        click.echo(f"clean accuracy {clean.accuracy:.4f} on {x.shape[0]} {ds_name} {split} images")
