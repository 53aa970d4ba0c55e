"""Evaluate a model over corruption x severity and summarise (mean corruption accuracy, families, mCE)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from robustbench_nas.evaluation import ClassificationStats, classification_stats
from robustbench_nas.utils.modes import eval_mode

from .registry import FAMILIES, check_images, check_severity, family_of, info, list_corruptions
from .sources import CifarCFiles, CorruptionSource, GeneratedSource

log = logging.getLogger(__name__)


@dataclass
class CorruptionResult:
    """Statistics of one (corruption, severity) cell.

    Attributes:
        corruption: registry name, e.g. ``"fog"``.
        severity: 1..5.
        stats: :class:`robustbench_nas.evaluation.ClassificationStats` on the corrupted images.
        source: ``"generated"`` or ``"files"``.
        seed: the base seed of generated images (``None`` for files).
    """

    corruption: str
    severity: int
    stats: ClassificationStats
    source: str = "generated"
    seed: int | None = None
    time_s: float = 0.0

    @property
    def accuracy(self) -> float:
        return self.stats.accuracy

    def to_dict(self, *, correct_bits: bool = False) -> dict[str, Any]:
        """A JSON-able summary; with ``correct_bits`` the packed per-image bitmap as a hex string."""
        d: dict[str, Any] = {
            "corruption": self.corruption,
            "severity": self.severity,
            "family": _family_or_none(self.corruption),
            "n": self.stats.n,
            "accuracy": self.stats.accuracy,
            "confidence_pred": self.stats.confidence_pred,
            "confidence_true": self.stats.confidence_true,
            "confusion": self.stats.confusion.tolist(),
            "source": self.source,
            "seed": self.seed,
            "time_s": self.time_s,
        }
        if correct_bits:
            d["correct_bits"] = self.stats.correct_bits().tobytes().hex()
        return d


def _resolve_names(names: str | Sequence[str] | None) -> list[str]:
    if names is None:
        return list_corruptions("benchmark")
    if isinstance(names, str):
        names = [names]
    out = []
    for n in names:
        info(n)  # KeyError naming the known corruptions
        out.append(n)
    if len(set(out)) != len(out):
        raise ValueError(f"duplicate corruption names in {out}")
    return out


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor | None,
    y: torch.Tensor | None,
    names: str | Sequence[str] | None = None,
    severities: Iterable[int] = (1, 2, 3, 4, 5),
    *,
    batch_size: int = 256,
    seed: int = 0,
    source: str | Path | CorruptionSource | None = None,
    progress: bool = False,
    image_ids: Sequence[int] | torch.Tensor | None = None,
) -> list[CorruptionResult]:
    """Accuracy, confidences and confusion matrix of ``model`` for every corruption and severity.

    Arguments:
        model: classifier taking float images in [0, 1] (it normalises itself); evaluated in eval mode on its
            own device (its mode is restored afterwards).
        x: clean images, float ``(N, C, H, W)`` in [0, 1]; with a file ``source`` it may be ``None`` (then all
            file images are used) or its length selects the first ``N`` images of each severity.
        y: labels ``(N,)`` int64; with a file source, ``None`` or equal to the files' labels (checked).
        names: corruption names (default: the 15 benchmark corruptions of CIFAR-10-C / Jung et al. 2023).
        severities: subset of 1..5.
        batch_size: images per forward pass (and per corruption call); a performance setting only (generated
            corruptions draw per image, :class:`~robustbench_nas.corruptions.sources.GeneratedSource`).
        image_ids: ids keying each image's random stream (generated corruptions; default its position in ``x``).
        seed: base seed for generated corruptions (each cell gets its own generator, see
            :class:`robustbench_nas.corruptions.sources.GeneratedSource`).
        source: ``None`` to generate the corruptions on the model's device; a folder path to read the
            official ``<name>.npy`` files (:class:`robustbench_nas.corruptions.sources.CifarCFiles`); or any source object, e.g.
            ``CifarCFiles(root, indices=subset)`` to read a subset of the test set (then ``x``, ``y`` are unused).
        progress: show a tqdm bar over the cells.

    Returns:
        One :class:`CorruptionResult` per (corruption, severity), corruption-major.

    Shape:
        x: ``(N, C, H, W)``; y: ``(N,)``.

    Example:
        >>> res = evaluate(model, x, y, ["fog", "contrast"], severities=(1, 5), batch_size=128)
        >>> summarize(res).mean_accuracy
    """
    names = _resolve_names(names)
    sevs = [check_severity(s) for s in severities]
    if not sevs:
        raise ValueError("no severities given")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = next(model.parameters()).device
    kind = "generated"
    if source is None:
        if x is None or y is None:
            raise ValueError("generated corruptions need clean images x and labels y")
        check_images(x)
        src: CorruptionSource = GeneratedSource(x, y, seed=seed, device=device, image_ids=image_ids)
    elif isinstance(source, (str, Path)):
        kind = "files"
        limit = None if x is None else int(x.shape[0])
        files = CifarCFiles(source, device=device, limit=limit)
        if y is not None:
            fy = files.labels()
            if y.shape != fy.shape or not torch.equal(y.cpu().long(), fy):
                raise ValueError(
                    f"labels y do not match {files.root}/labels.npy for the first {files.num_images()} images "
                    "(the files hold the CIFAR test set in its original order)"
                )
        src = files
    else:
        kind = "files" if isinstance(source, CifarCFiles) else "generated"
        src = source
    cells = [(n, s) for n in names for s in sevs]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(cells), desc="corruptions", unit="cell")
    results: list[CorruptionResult] = []
    try:
        with eval_mode(model):  # each module's own mode back afterwards (a caller's frozen BN stays frozen)
            for name, sev in cells:
                t0 = time.perf_counter()
                logits, labels = [], []
                for xb, yb in src.batches(name, sev, batch_size):
                    logits.append(model(xb.to(device)).float())
                    labels.append(yb.to(device))
                lg = torch.cat(logits)
                stats = classification_stats(lg, torch.cat(labels), num_classes=lg.shape[1])
                results.append(CorruptionResult(name, sev, stats, kind, seed if kind == "generated" else None,
                                                time.perf_counter() - t0))
                log.info("corruption %s severity %d: accuracy %.4f", name, sev, stats.accuracy)
                if bar is not None:
                    bar.set_postfix_str(f"{name}@{sev} acc={stats.accuracy:.3f}")
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return results


@dataclass
class CorruptionSummary:
    """Summaries of a set of :class:`CorruptionResult`.

    Attributes:
        mean_accuracy: mean accuracy over all cells (mean corruption accuracy, mCA).
        per_corruption: mean over severities, per corruption.
        per_severity: mean over corruptions, per severity.
        per_family: mean of ``per_corruption`` within each family (noise, blur, weather, digital).
        mce: mean corruption error relative to the reference model (Hendrycks & Dietterich: for each corruption
            ``sum_s E(c, s) / sum_s E_ref(c, s)``, averaged over corruptions), when a reference is given.
        relative_mce: the same on errors minus the clean error, when both clean accuracies are given.
        ce: per-corruption CE behind ``mce``.
    """

    mean_accuracy: float
    per_corruption: dict[str, float]
    per_severity: dict[int, float]
    per_family: dict[str, float]
    mce: float | None = None
    relative_mce: float | None = None
    ce: dict[str, float] = field(default_factory=dict)


def _accuracy_table(
    results: Sequence[CorruptionResult] | Mapping[tuple[str, int], float],
) -> dict[tuple[str, int], float]:
    if isinstance(results, Mapping):
        return {(str(k[0]), int(k[1])): float(v) for k, v in results.items()}
    table: dict[tuple[str, int], float] = {}
    for r in results:
        key = (r.corruption, int(r.severity))
        if key in table:
            raise ValueError(f"duplicate result for {key}")
        table[key] = float(r.stats.accuracy)
    return table


def summarize(
    results: Sequence[CorruptionResult] | Mapping[tuple[str, int], float],
    reference: Sequence[CorruptionResult] | Mapping[tuple[str, int], float] | None = None,
    *,
    clean_accuracy: float | None = None,
    reference_clean_accuracy: float | None = None,
) -> CorruptionSummary:
    """Mean corruption accuracy, per-corruption / severity / family means, and mCE against a reference model.

    Arguments:
        results: the model's results, or a mapping ``(corruption, severity) -> accuracy``.
        reference: the reference model's results on (at least) the same cells; enables ``mce``.
        clean_accuracy, reference_clean_accuracy: clean accuracies; with a reference, enable ``relative_mce``.

    Example:
        >>> s = summarize({("fog", 1): 0.8, ("fog", 2): 0.6})
        >>> round(s.mean_accuracy, 3), s.per_family["weather"]
        (0.7, 0.7)
    """
    table = _accuracy_table(results)
    if not table:
        raise ValueError("no results to summarise")
    names = list(dict.fromkeys(k[0] for k in table))
    per_c = {n: float(np.mean([v for (c, _), v in table.items() if c == n])) for n in names}
    sevs = sorted({k[1] for k in table})
    per_s = {s: float(np.mean([v for (_, t), v in table.items() if t == s])) for s in sevs}
    per_f: dict[str, float] = {}
    for fam in FAMILIES:
        vals = [per_c[n] for n in names if _family_or_none(n) == fam]
        if vals:
            per_f[fam] = float(np.mean(vals))
    summary = CorruptionSummary(float(np.mean(list(table.values()))), per_c, per_s, per_f)
    if reference is not None:
        ref = _accuracy_table(reference)
        missing = [k for k in table if k not in ref]
        if missing:
            raise ValueError(f"reference lacks cells {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        ce, rce = {}, {}
        for n in names:
            keys = [k for k in table if k[0] == n]
            err = sum(1 - table[k] for k in keys)
            ref_err = sum(1 - ref[k] for k in keys)
            ce[n] = err / ref_err if ref_err > 0 else float("inf")
            if clean_accuracy is not None and reference_clean_accuracy is not None:
                num = sum((1 - table[k]) - (1 - clean_accuracy) for k in keys)
                den = sum((1 - ref[k]) - (1 - reference_clean_accuracy) for k in keys)
                rce[n] = num / den if den != 0 else float("inf")
        summary.ce = ce
        summary.mce = float(np.mean(list(ce.values())))
        if rce:
            summary.relative_mce = float(np.mean(list(rce.values())))
    return summary


def _family_or_none(name: str) -> str | None:
    try:
        return family_of(name)
    except KeyError:
        return None


def results_to_records(results: Sequence[CorruptionResult], *, correct_bits: bool = False) -> list[dict]:
    """``[r.to_dict(correct_bits=...) for r in results]``: JSON-able records, one per cell."""
    return [r.to_dict(correct_bits=correct_bits) for r in results]
