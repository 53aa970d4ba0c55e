"""``rbnas import``: import published robustness datasets into a robustbench-nas store."""

from __future__ import annotations

import click

from ..common import echo_json, fail


@click.group(name="import")
def command() -> None:
    """Import a published robustness dataset into a new Zarr store."""


@command.command(name="jung2023")
@click.argument("root", type=click.Path(file_okay=False))
@click.option("--store", "store_path", required=True, type=click.Path(), help="New store to create (never overwritten).")
@click.option("--dataset", type=click.Choice(["cifar10", "cifar100", "ImageNet16-120"]), default="cifar10",
              show_default=True, help="Dataset folder of the release.")
@click.option("--measures", default="accuracy,confidence,cm", show_default=True,
              help="Comma-separated release measures to import (missing files are reported, not errors).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (default: a few lines of text).")
def jung2023(root: str, store_path: str, dataset: str, measures: str, progress: bool, as_json: bool) -> None:
    """Import the Jung, Lukasik & Keuper (ICLR 2023) NAS-Bench-201 robustness release at ROOT.

    ROOT holds meta.json and <dataset>/<key>_<measure>.json. Eps are converted from /255 to [0, 1]; every cell is
    stored under its uid (isomorphic cells share it); missing files and uids are warned about and left empty.
    Prints what was read and what is missing (``--json``: as JSON).
    """
    from robustbench_nas.analysis.importer import import_jung2023
    from robustbench_nas.analysis.jung2023 import ReleaseFormatError
    from robustbench_nas.storage import StoreError

    ms = tuple(m.strip() for m in measures.split(",") if m.strip())
    try:
        report = import_jung2023(root, store_path, dataset=dataset, measures=ms, progress=progress)
    except (StoreError, FileNotFoundError, ReleaseFormatError, ValueError, MemoryError) as e:
        fail(str(e))
    summary = report.summary()
    missing = summary.pop("files_missing")
    summary["files_missing"] = len(missing)
    summary["files_missing_examples"] = missing[:5]
    summary["store"] = store_path
    if as_json:
        echo_json(summary)
        return
    click.echo(f"imported into {store_path}: " + ", ".join(
        f"{k} {v}" for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)))
    if missing:
        click.echo(f"{len(missing)} release files absent (left empty), e.g. {', '.join(missing[:3])}")
