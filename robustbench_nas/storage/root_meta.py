"""What a store folder is: its root ``zarr.json``, the checks that it is a robustbench-nas store of this schema.

Every entry point (opening a store, opening it as a Dataset, overwriting or compacting one) checks here first, so
a missing, foreign or other-schema folder fails with one line naming the fix, before anything is written.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path
from typing import Any, Iterator

from .schema import SCHEMA_VERSION


class StoreError(RuntimeError):
    """A store that cannot be used as asked (missing, not ours, incompatible protocol or schema, ...)."""


@contextlib.contextmanager
def quiet_zarr() -> Iterator[None]:
    """Silence zarr-python's consolidated-metadata warning (raised on every open of a format 3 store)."""
    # Consolidated metadata is a zarr-python extension in format 3; it warns on every open. We rely on it only as
    # a cache of metadata that never changes after creation, so the warning carries no information here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        yield


def read_root_meta(path: Path) -> dict[str, Any]:
    """The root ``zarr.json`` of a store (StoreError if missing or not JSON)."""
    meta_path = Path(path) / "zarr.json"
    if not meta_path.is_file():
        raise StoreError(f"no Zarr store at {path} (missing {meta_path})")
    try:
        return json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StoreError(f"{path}: zarr.json is not readable JSON ({type(e).__name__}); not a usable store") from None


def check_schema(path: Path, attrs: dict[str, Any]) -> None:
    """StoreError (one line, naming the fix) unless ``attrs`` say this is a store of the current schema."""
    if "rbnas_schema" not in attrs or "spec" not in attrs:
        raise StoreError(f"{path} is a Zarr group but not a robustbench-nas store (no 'rbnas_schema' attribute)")
    version = attrs["rbnas_schema"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise StoreError(f"{path}: unknown store schema version {version!r} (not a version number; this code reads "
                         f"{SCHEMA_VERSION}); the store was left untouched")
    if version == 1:
        raise StoreError(f"{path} has store schema 1 (written by an older robustbench-nas); convert it with "
                         f"`rbnas migrate {path} NEW.zarr` (the old store is left untouched)")
    if version != SCHEMA_VERSION:
        raise StoreError(f"{path} has store schema {version}; this code reads {SCHEMA_VERSION} "
                         "(a newer robustbench-nas wrote it?); the store was left untouched")
    if not isinstance(attrs["spec"], dict):
        raise StoreError(f"{path}: the 'spec' attribute is not a mapping; not a usable store")


def read_store_meta(path: Path) -> dict[str, Any]:
    """The root ``zarr.json`` of a robustbench-nas store of the current schema (StoreError otherwise; the one check
    every opener makes before reading anything else)."""
    meta = read_root_meta(path)
    if meta.get("zarr_format") != 3 or meta.get("node_type") != "group":
        raise StoreError(f"{path} is not a Zarr v3 group; not a robustbench-nas store")
    check_schema(path, dict(meta.get("attributes") or {}))
    return meta


def ensure_ours(path: Path, action: str) -> None:
    """StoreError unless ``path`` is a robustbench-nas store (any schema version): what may be deleted / replaced."""
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        raise StoreError(f"{path} exists and is not a store folder; refusing to {action} it")
    try:
        meta = read_root_meta(path)
    except StoreError:
        raise StoreError(f"{path} exists and is not a robustbench-nas store; refusing to {action} it") from None
    attrs = meta.get("attributes") or {}
    if not isinstance(attrs, dict) or "rbnas_schema" not in attrs:
        raise StoreError(f"{path} exists and is not a robustbench-nas store; refusing to {action} it")



__all__ = ["StoreError", "check_schema", "ensure_ours", "quiet_zarr", "read_root_meta", "read_store_meta"]
