"""The images a store's results are about: recorded at creation, compared on resume and on ``--reuse``.

A pipeline store's root attribute ``images`` holds, for every purpose its protocol evaluates (``proxies``,
``clean``, ``attacks``, ``corruptions``, ``measures``), the split, the number of images, the subset seed, the
positions in the split (``"all"`` for a whole split in order) and the sha256 of the chosen images' pixels and
labels, plus ``data_sha256`` (the data file's sha256 for ``npz``, a content hash of the used splits otherwise) and
the rule that drew them. Two subsets are the same when their content hashes are equal.

Stores written before this record existed drew their subsets with ``derive_seed(protocol name, split, n)``; their
images are reconstructed by that rule (:func:`recorded_images`), so they are compared like any other.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robustbench_nas.storage import RobustnessStore, StoreError

from .protocol import ProtocolConfig
from .stages import _dataset, protocol_images

#: The rule of stores made before subset seeds: a class-balanced sample seeded by the protocol's name.
LEGACY_RULE = "before image records: class-balanced sample seeded by derive_seed(protocol name, split, n)"


def image_record(protocol: ProtocolConfig) -> dict[str, Any]:
    """``{"rule", "data_sha256", "subsets": {purpose: ImageSubset.record()}}`` of the images ``protocol`` evaluates
    (reads the data; ``data_root`` must be set where the dataset needs one)."""
    from robustbench_nas.data.subsets import SUBSET_RULE, data_sha256

    subsets = {p: protocol_images(protocol, p) for p in protocol.image_purposes()}
    ds = _dataset(protocol.dataset, protocol.data_root)
    splits = {s.split: ds.split(s.split) for s in subsets.values()}
    return {"rule": SUBSET_RULE, "data_sha256": data_sha256(protocol.dataset, protocol.data_root, splits),
            "subsets": {p: s.record() for p, s in subsets.items()}}


def _legacy_record(protocol: ProtocolConfig) -> dict[str, Any]:
    """The images a store made before image records used: the old rule (seeded by the protocol's name)."""
    from robustbench_nas.data.subsets import choose_images
    from robustbench_nas.utils.seeding import derive_seed

    from .protocol import _SIZE_FIELDS

    subsets: dict[str, Any] = {}
    ds = _dataset(protocol.dataset, protocol.data_root)
    for purpose in protocol.image_purposes():
        split = "train" if purpose in ("proxies", "measures") else protocol.eval_split
        n = getattr(protocol, _SIZE_FIELDS[purpose])
        s = ds.split(split)
        if n is None or n >= len(s):
            chosen = choose_images(s, None)
        else:
            from robustbench_nas.data import sample_indices

            idx = sample_indices(s.y.numpy(), n, derive_seed(protocol.name, split, n), stratified=True)
            chosen = choose_images(s, None, indices=idx)
        subsets[purpose] = {**chosen.record(), "subset_seed": None}
    return {"rule": LEGACY_RULE, "data_sha256": None, "subsets": subsets}


def recorded_images(store: RobustnessStore, saved: ProtocolConfig) -> dict[str, Any]:
    """The store's ``images`` record, or for a store made before records the old rule's images of its saved
    protocol (``rule`` says which)."""
    rec = store.attrs.get("images")
    if isinstance(rec, dict) and "subsets" in rec:
        return rec
    return _legacy_record(saved)


def describe(rec: dict[str, Any]) -> str:
    """``64 images (sha 1a2b3c4d5e6f)`` of one purpose's record."""
    return f"{rec['n']} images (sha {str(rec['sha256'])[:12]})"


def image_difference(theirs: dict[str, Any], mine: dict[str, Any]) -> list[str]:
    """The purposes both records hold whose images differ (by content hash), in ``mine``'s order."""
    return [p for p, rec in mine["subsets"].items()
            if p in theirs["subsets"] and theirs["subsets"][p]["sha256"] != rec["sha256"]]


def difference_line(purpose: str, theirs: dict[str, Any], mine: dict[str, Any], store: str) -> str:
    """One line naming the difference: ``proxies images differ: store S used 64 images (sha ...), this run 64
    images (sha ...)`` (and how each was drawn when that differs)."""
    a, b = theirs["subsets"][purpose], mine["subsets"][purpose]
    line = f"{purpose} images differ: store {store} used {describe(a)}, this run {describe(b)}"
    if theirs.get("rule") == LEGACY_RULE:
        line += " (the store predates image records: its images were drawn by its protocol's name)"
    elif theirs.get("data_sha256") != mine.get("data_sha256"):
        line += (f" (data sha {str(theirs.get('data_sha256'))[:12]} vs {str(mine.get('data_sha256'))[:12]}: "
                 "another data file)")
    elif a.get("indices") != b.get("indices"):
        line += " (other indices)"
    return line


def check_resume(store: RobustnessStore, saved: ProtocolConfig, protocol: ProtocolConfig) -> dict[str, Any]:
    """Refuse (``StoreError``, one line) to continue ``store`` on images other than those it recorded; returns this
    run's record."""
    mine = image_record(protocol)
    theirs = recorded_images(store, saved)
    for purpose in image_difference(theirs, mine):
        raise StoreError(difference_line(purpose, theirs, mine, str(store.path)) + "; refusing to mix subsets in "
                         "one store: use the store's own data (--data-root) or a new --store")
    return mine


def same_request(a: ProtocolConfig, b: ProtocolConfig, purpose: str) -> bool:
    """The two protocols ask for the same images of ``purpose`` (split, size, subset seed, explicit indices)."""
    return a.image_request(purpose) == b.image_request(purpose)


def indices_of(rec: dict[str, Any], purpose: str, size: int | None = None) -> np.ndarray:
    """The positions of a purpose's record (``"all"`` expanded with ``size``)."""
    idx = rec["subsets"][purpose]["indices"]
    if idx == "all":
        if size is None:
            raise ValueError("a whole-split record needs the split's size")
        return np.arange(size, dtype=np.int64)
    return np.asarray(idx, dtype=np.int64)


__all__ = ["LEGACY_RULE", "check_resume", "difference_line", "image_difference", "image_record", "indices_of",
           "recorded_images", "same_request"]
