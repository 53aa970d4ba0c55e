"""``rbnas export STORE``: the store as one tidy table (parquet / csv), or a compacted Zarr copy for publishing."""

from __future__ import annotations

from pathlib import Path

import click

from ..common import fail


@click.command(name="export")
@click.argument("store_path", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv", "zarr"]), default="parquet", show_default=True,
              help="parquet / csv: one tidy table; zarr: a compacted copy of the store (larger chunks).")
@click.option("--out", "out_path", default=None, type=click.Path(), help="Output file (default: STORE.<kind>.<fmt>).")
@click.option("--kind", type=click.Choice(["long", "wide"]), default="long", show_default=True,
              help="long: one row per value; wide: one row per (cell, seed).")
@click.option("--all-values", is_flag=True, help="Include values of stages not marked done.")
@click.option("--arch-chunk", default=256, show_default=True, type=int, help="zarr: cells per chunk.")
@click.option("--shard-archs", default=None, type=int, help="zarr: cells per shard file (multiple of --arch-chunk).")
def command(store_path: str, fmt: str, out_path: str | None, kind: str, all_values: bool, arch_chunk: int,
            shard_archs: int | None) -> None:
    """Write STORE's results as one tidy pandas table (confusion matrices stay in the store), or compact it."""
    from robustbench_nas.storage import StoreError, open_store

    try:
        store = open_store(store_path)
        if fmt == "zarr":
            from robustbench_nas.storage.compact import compact_store

            out_z = Path(out_path) if out_path else store.path.with_name(f"{store.path.stem}.compact.zarr")
            compact_store(store.path, out_z, arch_chunk=arch_chunk, shard_archs=shard_archs)
            click.echo(f"wrote a compacted copy ({arch_chunk} cells per chunk) to {out_z}")
            return
    except (StoreError, ValueError) as e:
        fail(str(e))
    df = store.to_dataframe(kind=kind, done_only=not all_values)
    out = Path(out_path) if out_path else store.path.with_name(f"{store.path.name}.{kind}.{fmt}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if fmt == "parquet":
        df.to_parquet(tmp, index=False)
    else:
        df.to_csv(tmp, index=False)
    tmp.replace(out)  # a reader never sees a half-written table
    click.echo(f"wrote {len(df)} rows x {len(df.columns)} columns to {out}")
