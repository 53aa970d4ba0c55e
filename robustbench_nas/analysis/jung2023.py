"""Reading the published NAS-Bench-201 robustness dataset of Jung, Lukasik & Keuper (ICLR 2023).

The release layout (``robustness.vision``)::

    ROOT/meta.json                       {"ids": {"<nb201 index>": {"nb201-string": s, "isomorph": "<uid>"}},
                                          "epsilons": {attack_key: [eps in units of 1/255, ...]}}
    ROOT/<dataset>/<key>_<measure>.json  {"<dataset>": {key: {measure: {"<uid>": value}}}}

with ``dataset`` in ``cifar10 | cifar100 | ImageNet16-120``, ``measure`` in ``accuracy | confidence | cm`` and
``key`` ``clean``, an attack (``fgsm@Linf``, ``pgd@Linf``, ``aa_apgd-ce@Linf``, ``aa_square@Linf``: one value per
eps of ``meta["epsilons"][key]``) or a corruption (one value per severity 1..5). A ``cm`` value is a confusion
matrix ``(K, K)`` (rows = true class), per eps / severity for attacks / corruptions.

:func:`read_release` turns the files into one tidy :class:`xarray.Dataset` with named dimensions (``arch``,
``attack``, ``eps`` in [0, 1], ``corruption``, ``severity``, ``true_class``, ``pred_class``) and the variables of
the project's store (see ``docs/storage.md``). A partial download is normal: missing files and missing uids are
reported (logged warnings and the returned :class:`ReleaseReport`) and left as NaN, never invented.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from ..search_spaces import get_search_space

log = logging.getLogger(__name__)

#: Datasets of the release (folder names as published).
RELEASE_DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "ImageNet16-120")
#: Attack keys of the release, in the order used for the ``attack`` dimension.
RELEASE_ATTACKS: tuple[str, ...] = ("fgsm@Linf", "pgd@Linf", "aa_apgd-ce@Linf", "aa_square@Linf")
#: The 15 CIFAR-C corruptions of the release (not present for ImageNet16-120).
RELEASE_CORRUPTIONS: tuple[str, ...] = (
    "brightness", "contrast", "defocus_blur", "elastic_transform", "fog", "frost", "gaussian_noise",
    "glass_blur", "impulse_noise", "jpeg_compression", "motion_blur", "pixelate", "shot_noise", "snow",
    "zoom_blur",
)  # fmt: skip
RELEASE_MEASURES: tuple[str, ...] = ("accuracy", "confidence", "cm")
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "ImageNet16-120": 120}


class ReleaseFormatError(ValueError):
    """A release file exists but does not have the published layout (the message names the file and key)."""


@dataclass
class ReleaseMeta:
    """Contents of ``meta.json``.

    Attributes:
        arch_str: NB201 string of every index, shape ``(15625,)``.
        isomorph: uid (smallest index of the isomorphism class) of every index, shape ``(15625,)``.
        epsilons: attack key -> eps grid in **units of 1/255** as published.
    """

    arch_str: np.ndarray
    isomorph: np.ndarray
    epsilons: dict[str, list[float]]

    @property
    def uids(self) -> np.ndarray:
        """Sorted unique uids (6466 for the full release)."""
        return np.unique(self.isomorph)


@dataclass
class ReleaseReport:
    """What an import read and what it could not find.

    Attributes:
        files_read: release files that were read (relative to the root).
        files_missing: expected files that were absent (skipped).
        missing_uids: file -> number of uids absent from that file (left NaN).
        mismatches: disagreements between ``meta.json`` and our NB201 search space (must stay empty).
    """

    files_read: list[str] = field(default_factory=list)
    files_missing: list[str] = field(default_factory=list)
    missing_uids: dict[str, int] = field(default_factory=dict)
    mismatches: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        return {
            "files_read": len(self.files_read),
            "files_missing": list(self.files_missing),
            "missing_uids": dict(self.missing_uids),
            "mismatches": list(self.mismatches),
        }


def read_meta(root: str | Path, *, check: bool = True) -> tuple[ReleaseMeta, list[str]]:
    """Read ``ROOT/meta.json``; with ``check``, compare every index with our NB201 search space.

    Returns:
        ``(meta, mismatches)``: mismatches are human-readable lines (an empty list on the real release).

    Raises:
        FileNotFoundError: ``meta.json`` is absent (nothing can be linked without it).
        ReleaseFormatError: the file lacks ``ids`` / ``epsilons`` or has malformed entries.
    """
    path = Path(root) / "meta.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the Jung 2023 release root must contain meta.json")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ReleaseFormatError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(meta, dict) or "ids" not in meta or "epsilons" not in meta:
        raise ReleaseFormatError(f"{path}: expected keys 'ids' and 'epsilons'")
    space = get_search_space("nb201")
    n = space.num_cells
    arch_str = np.empty(n, dtype=object)
    isomorph = np.full(n, -1, dtype=np.int64)
    for k, entry in meta["ids"].items():
        try:
            idx = int(k)
            arch_str[idx] = entry["nb201-string"]
            isomorph[idx] = int(entry["isomorph"])
        except (ValueError, KeyError, TypeError, IndexError) as e:
            raise ReleaseFormatError(f"{path}: malformed ids entry {k!r}: {e!r}") from e
    if (isomorph < 0).any():
        missing = np.flatnonzero(isomorph < 0)
        raise ReleaseFormatError(f"{path}: {missing.size} NB201 indices missing from 'ids' (e.g. {missing[:5].tolist()})")
    eps = {str(a): [float(e) for e in v] for a, v in meta["epsilons"].items()}
    mismatches: list[str] = []
    if check:
        ours = space.uid_table()
        for idx in range(n):
            if space.arch_str(idx) != arch_str[idx]:
                mismatches.append(f"index {idx}: meta string {arch_str[idx]!r} != NB201 {space.arch_str(idx)!r}")
            if ours[idx] != isomorph[idx]:
                mismatches.append(f"index {idx}: meta isomorph {isomorph[idx]} != our uid {ours[idx]}")
        for m in mismatches[:10]:
            log.warning("meta.json disagrees with the NB201 search space: %s", m)
    return ReleaseMeta(arch_str=arch_str, isomorph=isomorph, epsilons=eps), mismatches


def _load_key(path: Path, dataset: str, key: str, measure: str) -> dict[str, object]:
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ReleaseFormatError(f"{path} is not valid JSON: {e}") from e
    try:
        return doc[dataset][key][measure]
    except (KeyError, TypeError) as e:
        raise ReleaseFormatError(f"{path}: expected {{{dataset!r}: {{{key!r}: {{{measure!r}: {{uid: value}}}}}}}}") from e


def _fill(
    out: np.ndarray, uids: np.ndarray, values: dict[str, object], shape: tuple[int, ...], path: Path
) -> int:
    """Write ``values[str(uid)]`` (reshaped to ``shape``) into ``out[i]``; return the number of missing uids."""
    missing = 0
    for i, u in enumerate(uids):
        v = values.get(str(int(u)))
        if v is None:
            missing += 1
            continue
        arr = np.asarray(v, dtype=np.float64)
        if arr.size != math.prod(shape):
            raise ReleaseFormatError(
                f"{path}: uid {int(u)} has {arr.size} values, expected shape {shape} "
                "(does the eps grid in meta.json match the file?)"
            )
        if out.dtype.kind == "i":
            if not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)) and np.all(arr >= 0)):
                raise ReleaseFormatError(f"{path}: uid {int(u)}: a confusion matrix must hold counts (integers >= 0)")
        out[i] = arr.reshape(shape)
    return missing


def _check_cm_memory(
    root: Path, dataset: str, jobs: list[tuple[str, str]], attacks: list[str], n: int, K: int, n_adv: int,
    n_cor: int, limit: int,
) -> None:  # fmt: skip
    """Raise before reading when the confusion matrices present would need more than ``limit`` bytes."""
    present = {k for k, m in jobs if m == "cm" and (root / dataset / f"{k}_cm.json").is_file()}
    if not present:
        return
    per = n * K * K * 4  # int32 per cell and grid point
    need = per * (("clean" in present) + n_adv * any(k in attacks for k in present)
                  + n_cor * any(k != "clean" and k not in attacks for k in present))  # fmt: skip
    if need > limit:
        raise MemoryError(
            f"the {dataset} confusion matrices present need {need / 2**30:.1f} GiB in memory (limit "
            f"{limit / 2**30:.1f} GiB); import without them (measures accuracy,confidence) or raise max_cm_bytes"
        )


def read_release(
    root: str | Path,
    dataset: str = "cifar10",
    *,
    measures: Sequence[str] = RELEASE_MEASURES,
    attacks: Iterable[str] | None = None,
    corruptions: Iterable[str] | None = None,
    progress: bool = False,
    max_cm_bytes: int = 4 << 30,
) -> tuple[xr.Dataset, ReleaseReport]:
    """Read one dataset of the release into a tidy :class:`xarray.Dataset`.

    Arguments:
        root: release root (contains ``meta.json`` and ``<dataset>/``).
        dataset: ``cifar10``, ``cifar100`` or ``ImageNet16-120``.
        measures: which of ``accuracy``, ``confidence``, ``cm`` to read (absent files are reported, not errors).
        attacks: attack keys (default: every key in ``meta["epsilons"]``).
        corruptions: corruption names (default: the 15 CIFAR-C ones; none for ImageNet16-120).
        progress: show a progress bar over files.
        max_cm_bytes: refuse (before reading anything) to hold confusion matrices larger than this in memory
            (CIFAR-100 / ImageNet16-120 matrices of every attack and eps take ~11 GB; import them without ``cm``).

    Returns:
        ``(ds, report)``. ``ds`` has dimension ``arch`` (the unique cells; coordinate = uid, with ``arch_str`` and
        ``nb201_index`` coordinates), ``attack``, ``eps`` (the union of the attacks' grids, **in [0, 1]**, with
        ``eps_255`` = the published value), ``corruption``, ``severity``, ``true_class``, ``pred_class``, and the
        variables ``clean_<m>`` ``(arch,)``, ``adv_<m>`` ``(arch, attack, eps)``, ``corruption_<m>``
        ``(arch, corruption, severity)`` for ``m`` in accuracy/confidence; confusion matrices add
        ``(true_class, pred_class)``. ``isomorph`` ``(nb201_index,)`` links all 15625 cells to their uid.
        Values absent from the release are NaN (accuracies as fractions in [0, 1], as published).

    Example:
        >>> ds, rep = read_release("../shared/data/jung2023", measures=["accuracy"])  # doctest: +SKIP
        >>> float(ds.adv_accuracy.sel(attack="pgd@Linf", eps=1 / 255, method="nearest").mean())  # doctest: +SKIP
        0.33...
    """
    if dataset not in RELEASE_DATASETS:
        raise ValueError(f"unknown release dataset {dataset!r}; the release has {list(RELEASE_DATASETS)}")
    bad = [m for m in measures if m not in RELEASE_MEASURES]
    if bad:
        raise ValueError(f"unknown release measure(s) {bad}; the release has {list(RELEASE_MEASURES)}")
    root = Path(root)
    meta, mismatches = read_meta(root)
    report = ReleaseReport(mismatches=mismatches)
    uids = meta.uids
    attacks = list(meta.epsilons) if attacks is None else list(attacks)
    unknown = [a for a in attacks if a not in meta.epsilons]
    if unknown:
        raise ValueError(f"attack(s) {unknown} have no eps grid in meta.json (known: {list(meta.epsilons)})")
    attacks = [a for a in RELEASE_ATTACKS if a in attacks] + [a for a in attacks if a not in RELEASE_ATTACKS]
    if corruptions is None:
        corruptions = () if dataset == "ImageNet16-120" else RELEASE_CORRUPTIONS
    corruptions = list(corruptions)
    eps255 = sorted({e for a in attacks for e in meta.epsilons[a]})
    eps_pos = {e: i for i, e in enumerate(eps255)}
    K = NUM_CLASSES[dataset]
    n, A, E, Cn, S = len(uids), len(attacks), len(eps255), len(corruptions), len(SEVERITIES)

    data: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
    jobs: list[tuple[str, str]] = [("clean", m) for m in measures]
    jobs += [(a, m) for a in attacks for m in measures]
    jobs += [(c, m) for c in corruptions for m in measures]
    _check_cm_memory(root, dataset, jobs, attacks, n, K, A * E, Cn * S, max_cm_bytes)

    def alloc(name: str, dims: tuple[str, ...], shape: tuple[int, ...], cm: bool) -> np.ndarray:
        # confusion matrices are counts: int32 with -1 = absent (the store's convention), not float64
        if name not in data:
            data[name] = (dims, np.full(shape, -1, dtype=np.int32) if cm else np.full(shape, np.nan))
        return data[name][1]

    for key, m in tqdm(jobs, desc=f"jung2023 {dataset}", disable=not progress, unit="file"):
        rel = f"{dataset}/{key}_{m}.json"
        path = root / rel
        if not path.is_file():
            report.files_missing.append(rel)
            log.debug("release file %s is missing: skipped (its values stay NaN)", rel)
            continue
        values = _load_key(path, dataset, key, m)
        cm = m == "cm"
        tail: tuple[int, ...] = (K, K) if cm else ()
        tail_dims = ("true_class", "pred_class") if cm else ()
        if key == "clean":
            arr = alloc(f"clean_{m}", ("arch",) + tail_dims, (n, *tail), cm)
            missing = _fill(arr, uids, values, tail, path)
        elif key in attacks:
            arr = alloc(f"adv_{m}", ("arch", "attack", "eps") + tail_dims, (n, A, E, *tail), cm)
            grid = meta.epsilons[key]
            tmp = np.full((n, len(grid), *tail), -1 if cm else np.nan, dtype=arr.dtype)
            missing = _fill(tmp, uids, values, (len(grid), *tail), path)
            cols = [eps_pos[e] for e in grid]
            arr[:, attacks.index(key)][:, cols] = tmp
        else:
            arr = alloc(f"corruption_{m}", ("arch", "corruption", "severity") + tail_dims, (n, Cn, S, *tail), cm)
            tmp = np.full((n, S, *tail), -1 if cm else np.nan, dtype=arr.dtype)
            missing = _fill(tmp, uids, values, (S, *tail), path)
            arr[:, corruptions.index(key)] = tmp
        report.files_read.append(rel)
        if missing:
            report.missing_uids[rel] = missing
            log.warning("%s lacks %d of %d uids: left NaN", rel, missing, n)

    for m in measures:  # one warning per measure, not one per file (a partial download is normal)
        gone = [f for f in report.files_missing if f.endswith(f"_{m}.json")]
        if gone:
            log.warning(
                "%d of %d release files for measure %r are missing (skipped, values left NaN), e.g. %s",
                len(gone), sum(1 for _k, mm in jobs if mm == m), m, ", ".join(gone[:3]),
            )
    coords = {
        "arch": ("arch", uids.astype(np.int64)),
        "arch_str": ("arch", np.asarray([meta.arch_str[u] for u in uids], dtype=str)),
        "nb201_index": ("nb201_index", np.arange(meta.isomorph.size, dtype=np.int64)),
        "attack": ("attack", np.asarray(attacks, dtype=str)),
        "eps": ("eps", np.asarray(eps255, dtype=np.float64) / 255.0, {"units": "[0, 1] pixel scale"}),
        "eps_255": ("eps", np.asarray(eps255, dtype=np.float64), {"units": "1/255"}),
        "corruption": ("corruption", np.asarray(corruptions, dtype=str)),
        "severity": ("severity", np.asarray(SEVERITIES, dtype=np.int64)),
    }
    ds = xr.Dataset({k: xr.Variable(d, v) for k, (d, v) in data.items()}, coords=coords)
    ds["isomorph"] = xr.Variable(("nb201_index",), meta.isomorph)
    if any(m == "cm" for m in measures):
        ds = ds.assign_coords(true_class=np.arange(K), pred_class=np.arange(K))
    ds.attrs.update(
        source="Jung, Lukasik & Keuper, Neural Architecture Design and Robustness: A Dataset, ICLR 2023",
        dataset=dataset,
        search_space="nb201",
        release_root=str(root),
        eps_grids_255=json.dumps({a: meta.epsilons[a] for a in attacks}),
    )
    return ds, report
