"""``rbnas migrate OLD NEW``: convert a store of an older schema into a new store of the current one."""

from __future__ import annotations

import click

from ..common import fail


@click.command(name="migrate")
@click.argument("old", type=click.Path())
@click.argument("new", type=click.Path())
def command(old: str, new: str) -> None:
    """Copy the schema-1 store OLD into a new schema-2 (sharded) store NEW; OLD is only read, never changed."""
    from robustbench_nas.storage import StoreError
    from robustbench_nas.storage.compact import migrate_store

    try:
        store = migrate_store(old, new)
    except (StoreError, ValueError, OSError) as e:
        fail(str(e))
    click.echo(f"migrated {old} (schema 1) to {store.path} (schema 2): {len(store.spec.archs)} cells x "
               f"{len(store.spec.seeds)} seeds, {len(store.files())} files")
