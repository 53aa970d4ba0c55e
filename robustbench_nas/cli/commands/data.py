"""``rbnas data``: list datasets and describe one."""

from __future__ import annotations

import click

from ...data import DataError, get_dataset, list_datasets
from ..common import dataset_options, echo_json, fail


@click.group(name="data")
def command() -> None:
    """Datasets: the embedded default (digits) and local roots (cifar10, cifar100, imagenet16-120, npz)."""


@command.command("list")
def list_cmd() -> None:
    """Registered dataset names."""
    for name in list_datasets():
        click.echo(name)


@command.command("info")
@dataset_options()
@click.option("--json", "as_json", is_flag=True)
def info_cmd(dataset: str, data_root: str | None, as_json: bool) -> None:
    """Classes, image size, normalisation and split sizes of a dataset."""
    try:
        ds = get_dataset(dataset, data_root)
        sizes = {name: len(ds.split(name)) for name in ds.split_names}
    except (KeyError, DataError) as e:
        fail(str(e))
    out = {**ds.info.__dict__, "splits": sizes, "split_notes": _split_notes(ds)}
    if as_json:
        echo_json(out)
    else:
        for k, v in out.items():
            click.echo(f"{k:14s} {v}")


def _split_notes(ds) -> dict[str, str]:
    """Where each split's images come from, checked on the images themselves: NB201's convention draws ``val``
    from the test set, so a ``val`` score is not a held-out score next to ``test``."""
    import hashlib

    def hashes(name: str) -> set[str]:
        x = ds.split(name).images("cpu").numpy()
        return {hashlib.sha1(img.tobytes()).hexdigest() for img in x}

    notes: dict[str, str] = {}
    if "val" in ds.split_names and "test" in ds.split_names:
        val, test = hashes("val"), hashes("test")
        shared = len(val & test)
        if shared:
            notes["val"] = (f"{shared} of its {len(val)} images are test images (NB201's convention: validation "
                            "drawn from the test set), not held out from test")
        else:
            notes["val"] = "disjoint from test"
    return notes
