"""Checkpoints in a safe format: safetensors weights + JSON metadata in the same file (no pickle)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from torch import nn

from ..search_spaces import get_search_space
from ..utils.atomic import atomic_output

CHECKPOINT_NAME = "model.safetensors"
_META_KEY = "rbnas"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or not one of ours."""


def _resolve(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p / CHECKPOINT_NAME if p.is_dir() or p.suffix == "" else p


def save_checkpoint(path: str | os.PathLike, model: nn.Module, meta: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s weights and ``meta`` (plus the model's build config) atomically.

    ``path`` is a file (``*.safetensors``) or a folder (``model.safetensors`` inside). Returns the file written.
    """
    target = _resolve(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    full_meta = {"format_version": FORMAT_VERSION, "model": dict(model.config), **(meta or {})}
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_output(target) as tmp:  # a reader never sees a half-written checkpoint, and it survives a crash
        save_file(state, str(tmp), metadata={_META_KEY: json.dumps(full_meta)})
    return target


def read_checkpoint_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a checkpoint, without loading the weights."""
    target = _resolve(path)
    if not target.is_file():
        raise CheckpointError(f"checkpoint {target} not found")
    try:
        with safe_open(str(target), framework="pt") as f:
            raw = (f.metadata() or {}).get(_META_KEY)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {target} is corrupt or not a safetensors file: {e}") from e
    if raw is None:
        raise CheckpointError(f"{target} is a safetensors file without robustbench-nas metadata")
    return json.loads(raw)


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network from the checkpoint's metadata and load its weights (strict), in eval mode."""
    target = _resolve(path)
    meta = read_checkpoint_meta(target)
    try:
        state = load_file(str(target), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {target} is corrupt: {e}") from e
    config = dict(meta["model"])
    space = config.pop("space", "nb201")  # checkpoints of NB201 networks carry no space name
    try:
        model = get_search_space(space).build_network(**config)
    except KeyError as e:
        raise CheckpointError(f"checkpoint {target}: {e.args[0]}") from e
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {target} does not match its own model description: {e}") from e
    return model.to(device).eval(), meta
