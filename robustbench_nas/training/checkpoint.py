"""Checkpoints in a safe format: safetensors weights + JSON metadata in the same file (no pickle).

A checkpoint is identified by its weights hash (:func:`weights_sha256`): the sha256 of a canonical serialisation
of the network's build config and every tensor of its state dict, independent of the file's other metadata (the
training history holds wall seconds, so two trainings to the same weights write different bytes) and of the
safetensors layout. The pipeline stores checkpoints under content-addressed names
(:func:`save_checkpoint_by_content`: ``<stem>_<sha256>.safetensors``), so a file is never replaced by other weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
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
#: first bytes hashed by :func:`weights_sha256` (a new canonical form gets a new tag, so hashes never collide)
WEIGHTS_HASH_TAG = b"rbnas-weights-sha256-v1\0"

log = logging.getLogger(__name__)


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


def weights_sha256(state: dict[str, torch.Tensor], config: dict[str, Any]) -> str:
    """The weights hash of a network: sha256 (64 hex digits) of its canonical serialisation.

    The bytes hashed are :data:`WEIGHTS_HASH_TAG`, the build config as compact JSON with sorted keys (what
    :func:`load_checkpoint` rebuilds the network from: two networks with equal tensors but other operations must not
    share a hash), then for every tensor in name order ``name NUL dtype NUL shape NUL`` (shape as comma-separated
    sizes, e.g. ``16,3,3,3``), its byte length as 8 bytes little-endian, and its values as C-contiguous bytes in the
    machine's byte order (little-endian on every platform torch supports). Metadata (history, device, seed) is left
    out on purpose.

    Arguments:
        state: ``model.state_dict()`` (any device).
        config: the network's build config (``model.config``; in a checkpoint, its ``meta["model"]``).

    Example:
        >>> weights_sha256({"w": torch.zeros(2)}, {"C": 1})[:12]
        '75d7bf34ab49'
    """
    h = hashlib.sha256(WEIGHTS_HASH_TAG)
    # JSON round trip first: tuples and lists of the live config read back the same as from the file's metadata
    h.update(json.dumps(json.loads(json.dumps(config)), sort_keys=True, separators=(",", ":")).encode("utf-8"))
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes()
        h.update(f"{name}\0{str(t.dtype).removeprefix('torch.')}\0{','.join(map(str, t.shape))}\0".encode("utf-8"))
        h.update(len(raw).to_bytes(8, "little"))
        h.update(raw)
    return h.hexdigest()


def model_sha256(model: nn.Module) -> str:
    """:func:`weights_sha256` of a live network (its ``state_dict()`` and ``config``)."""
    return weights_sha256(model.state_dict(), dict(model.config))


def _read_state(path: str | os.PathLike) -> tuple[Path, dict[str, Any], dict[str, torch.Tensor]]:
    """``(resolved path, metadata, state dict on the CPU)`` of a checkpoint; :class:`CheckpointError` when the file
    is missing, corrupt or not one of ours."""
    target = _resolve(path)
    meta = read_checkpoint_meta(target)
    try:
        state = load_file(str(target), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {target} is corrupt: {e}") from e
    return target, meta, state


def checkpoint_sha256(path: str | os.PathLike) -> str:
    """:func:`weights_sha256` of the weights stored in a checkpoint file (reads the whole file).

    Raises :class:`CheckpointError` when the file is missing, corrupt or not one of ours.
    """
    target, meta, state = _read_state(path)
    return weights_sha256(state, meta.get("model", {}))


def content_name(stem: str, sha256: str) -> str:
    """File name of a content-addressed checkpoint: ``<stem>_<sha256>.safetensors``."""
    return f"{stem}_{sha256}.safetensors"


def save_checkpoint_by_content(folder: str | os.PathLike, stem: str, model: nn.Module,
                               meta: dict[str, Any] | None = None) -> tuple[Path, str]:
    """Save ``model`` as ``folder/<stem>_<sha256>.safetensors`` (:func:`content_name`); return ``(path, sha256)``.

    A file of that name already holding these weights is kept as it is (same weights, nothing to write); other
    weights always get another name, so a file that a store (or a store reusing it) points to is never replaced by
    other weights. A file of that name whose weights do not hash to its name (damaged) is replaced atomically.

    Example:
        >>> path, sha = save_checkpoint_by_content("runs/a.zarr.checkpoints", "12_s0", model)  # doctest: +SKIP
    """
    sha = model_sha256(model)
    target = Path(folder) / content_name(stem, sha)
    if target.is_file():
        try:
            if checkpoint_sha256(target) == sha:
                return target, sha
        except CheckpointError:
            pass
        log.warning("checkpoint %s does not hold the weights its name says; rewriting it", target)
    return save_checkpoint(target, model, meta), sha


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


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu", *,
                    expect_sha256: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network from the checkpoint's metadata and load its weights (strict), in eval mode.

    With ``expect_sha256`` the weights must hash to it (:func:`weights_sha256`), else :class:`CheckpointError`
    (a replaced or damaged file is never evaluated as if it were the recorded network). The hash the weights have is
    returned in ``meta["weights_sha256"]``.
    """
    target, meta, state = _read_state(path)
    sha = weights_sha256(state, meta["model"])
    if expect_sha256 is not None and sha != expect_sha256:
        raise CheckpointError(f"checkpoint {target}: its weights hash to {sha}, not the recorded {expect_sha256} "
                              "(the file was replaced or damaged)")
    meta = {**meta, "weights_sha256": sha}
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
