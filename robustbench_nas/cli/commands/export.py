"""``rbnas export STORE``: the store as one tidy table (parquet / csv)."""

from __future__ import annotations

from pathlib import Path

import click

from ..common import fail


@click.command(name="export")
@click.argument("store_path", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet", show_default=True)
@click.option("--out", "out_path", default=None, type=click.Path(), help="Output file (default: STORE.<kind>.<fmt>).")
@click.option("--kind", type=click.Choice(["long", "wide"]), default="long", show_default=True,
              help="long: one row per value; wide: one row per (cell, seed).")
@click.option("--all-values", is_flag=True, help="Include values of stages not marked done.")
def command(store_path: str, fmt: str, out_path: str | None, kind: str, all_values: bool) -> None:
    """Write STORE's results as one tidy pandas table (confusion matrices stay in the store)."""
    from robustbench_nas.storage import StoreError, open_store

    try:
        store = open_store(store_path)
    except StoreError as e:
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
