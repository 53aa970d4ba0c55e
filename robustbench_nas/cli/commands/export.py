"""``rbnas export STORE``: the store as one tidy table (parquet / csv), or a re-sharded Zarr copy."""

from __future__ import annotations

from pathlib import Path

import click

from ...utils.atomic import atomic_output
from ..common import fail


@click.command(name="export")
@click.argument("store_path", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv", "zarr"]), default="parquet", show_default=True,
              help="parquet / csv: one tidy table; zarr: a re-sharded copy of the store (e.g. compressed, to publish).")
@click.option("--out", "out_path", default=None, type=click.Path(), help="Output file (default: STORE.<kind>.<fmt>).")
@click.option("--kind", type=click.Choice(["long", "wide"]), default="long", show_default=True,
              help="long: one row per value; wide: one row per (cell, seed).")
@click.option("--all-values", is_flag=True, help="Include values of stages not marked done.")
@click.option("--shard-cells", default=1024, show_default=True, type=int, help="zarr: cells per shard file.")
@click.option("--chunk-cells", default=None, type=click.IntRange(min=1),
              help="zarr: cells per inner chunk (default: ~4 MiB per chunk, at most the shard).")
@click.option("--compress/--no-compress", default=True, show_default=True,
              help="zarr: zstd-compress the confusion matrices (smaller download, slower reads).")
@click.option("--force", is_flag=True, help="Replace an existing --out (a zarr --out only if it is one of our stores).")
def command(store_path: str, fmt: str, out_path: str | None, kind: str, all_values: bool, shard_cells: int,
            chunk_cells: int | None, compress: bool, force: bool) -> None:
    """Write STORE's results as one tidy pandas table (confusion matrices stay in the store), or compact it."""
    from robustbench_nas.storage import StoreError, open_store

    try:
        store = open_store(store_path)
        if fmt == "zarr":
            from robustbench_nas.storage.compact import compact_store

            out_z = Path(out_path) if out_path else store.path.with_name(f"{store.path.stem}.compact.zarr")
            compact_store(store.path, out_z, shard_cells=shard_cells, chunk_cells=chunk_cells, compress=compress,
                          overwrite=force)
            click.echo(f"wrote a copy ({shard_cells} cells per shard{', compressed' if compress else ''}) to {out_z}")
            return
    except (StoreError, ValueError) as e:
        fail(str(e))
    out = Path(out_path) if out_path else store.path.with_name(f"{store.path.name}.{kind}.{fmt}")
    if out.exists() and not force:
        fail(f"{out} already exists; refusing to replace it (pass --force to replace it)")
    if out.is_dir():
        fail(f"{out} is a folder; refusing to replace it with a table")
    df = store.to_dataframe(kind=kind, done_only=not all_values)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out) as tmp:  # a reader never sees a half-written table
        if fmt == "parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)
    click.echo(f"wrote {len(df)} rows x {len(df.columns)} columns to {out}")
