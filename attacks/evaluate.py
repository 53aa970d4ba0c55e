"""``robustbench_nas.attacks.evaluate``: one attack over a grid of epsilons, with the shared classification statistics per epsilon.

Two modes:

- ``"independent"`` (default; the reference protocol): every epsilon is attacked from scratch on every image.
  Rows of all epsilons of the grid share each batch (one pass over the data for the whole grid), which changes no
  row's result because the model runs in eval mode and every attack treats rows independently (Square shares its
  random squares across the rows of a batch, as the reference does across images), up to float rounding: FGSM and
  PGD weight each row's loss by 1/(rows of its eps in the batch), torchattacks' mean, and that scale can move a
  gradient component that is within rounding of zero.
- ``"early_exit"``: epsilons in ascending order; an image already misclassified (on the clean image or by the
  attack at a smaller epsilon) is not attacked again, because its adversarial example lies in every larger ball;
  within an attack a row stops as soon as it is misclassified. Accuracy is exact in the sense that every image
  counted as broken has a verified adversarial example inside its ball; it is non-increasing in eps by
  construction and can only be lower (stronger) than the independent mode's, e.g. for PGD, whose reference rule
  counts only the last iterate.

Every adversarial batch is checked to lie inside its ball and [0, 1] before its statistics are used.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from robustbench_nas.evaluation import ClassificationStats, classification_stats, predict_logits

from robustbench_nas.utils.streams import RowStreams, derive_key, image_keys

from ._common import check_data, check_eps, check_eval_mode, model_device, perturbation_norm
from ._draws import Draws
from .params import AttackParams, make_params
from .registry import AttackSpec, get_attack

log = logging.getLogger(__name__)

Mode = Literal["independent", "early_exit"]
MODES: tuple[str, ...] = ("independent", "early_exit")

#: slack of the ball check (float32 rounding of x + eps)
_BALL_TOL = 1e-6


@dataclass
class AttackResult:
    """Result of one attack at one epsilon.

    Attributes:
        attack: registry name, e.g. ``"pgd@Linf"``.
        eps: radius in [0, 1] pixel units.
        stats: :class:`~robustbench_nas.evaluation.ClassificationStats` on the adversarial images (accuracy,
            mean confidence of the predicted and of the true class, confusion matrix, per-image ``correct``).
        params: the attack parameters actually used at ``eps`` (step sizes resolved), plus ``norm``.
        mode: ``"independent"`` or ``"early_exit"``.
        seed: the seed of the call.
        time_s: wall time of the whole :func:`evaluate` call that produced this result (all epsilons together).
    """

    attack: str
    eps: float
    stats: ClassificationStats
    params: dict[str, Any] = field(default_factory=dict)
    mode: str = "independent"
    seed: int = 0
    time_s: float = 0.0

    def to_dict(self, *, correct_bits: bool = False) -> dict[str, Any]:
        """A JSON-able summary; with ``correct_bits`` the packed per-image bitmap as a hex string."""
        d: dict[str, Any] = {
            "attack": self.attack,
            "eps": self.eps,
            "eps_255": round(self.eps * 255, 6),
            "n": self.stats.n,
            "accuracy": self.stats.accuracy,
            "confidence_pred": self.stats.confidence_pred,
            "confidence_true": self.stats.confidence_true,
            "confusion": self.stats.confusion.tolist(),
            "params": self.params,
            "mode": self.mode,
            "seed": self.seed,
            "time_s": self.time_s,
        }
        if correct_bits:
            d["correct_bits"] = self.stats.correct_bits().tobytes().hex()
        return d


def _check_ball(x_adv: torch.Tensor, x: torch.Tensor, eps: torch.Tensor, norm: str, attack: str) -> None:
    size = perturbation_norm(x_adv, x, norm)
    bad = size > eps + _BALL_TOL
    if bool(bad.any()) or float(x_adv.min()) < 0.0 or float(x_adv.max()) > 1.0:
        i = int(bad.nonzero()[0]) if bool(bad.any()) else -1
        raise RuntimeError(
            f"internal error: {attack} returned points outside the eps ball or [0, 1] "
            f"(row {i}: |delta| = {float(size[i]) if i >= 0 else float('nan'):.6g}); no result was recorded"
        )


def _attack_rows(
    spec: AttackSpec,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: torch.Tensor,
    params: AttackParams,
    generator: Draws,
    early_stop: bool,
) -> torch.Tensor:
    """Run the kernel on rows (on the model's device), check the result, return the adversarial logits."""
    x_in = x.clone()
    x_adv = spec.kernel(model, x_in, y, eps, params, norm=spec.norm, generator=generator, early_stop=early_stop)
    if not torch.equal(x_in, x):  # pragma: no cover - guards our own kernels
        raise RuntimeError(f"internal error: {spec.name} modified its input images")
    _check_ball(x_adv, x, eps, spec.norm, spec.name)
    with torch.no_grad():
        return model(x_adv).float()


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: str,
    eps: float | Sequence[float],
    *,
    params: dict[str, Any] | AttackParams | None = None,
    batch_size: int = 256,
    seed: int = 0,
    mode: Mode = "independent",
    progress: bool = False,
    image_ids: Sequence[int] | np.ndarray | torch.Tensor | None = None,
) -> list[AttackResult]:
    """Attack ``model`` on ``(x, y)`` at every epsilon of ``eps``; one :class:`AttackResult` per epsilon, in order.

    Arguments:
        model: classifier in **eval mode** taking images in [0, 1] (normalisation inside); never modified.
        x: images ``(N, C, H, W)`` float in [0, 1], any device (moved batch by batch); never modified.
        y: labels ``(N,)`` int.
        attack: registry name (:func:`robustbench_nas.attacks.list_attacks`), e.g. ``"pgd@Linf"``.
        eps: one radius or a grid, in [0, 1] pixel units (``8/255``, not ``8``).
        params: overrides of the attack's parameters (dict of field values, or a params instance).
        batch_size: rows per batch; a row is one (image, epsilon) pair in ``"independent"`` mode. A performance
            setting only: the results do not depend on it (module docstring).
        seed: seed of all randomness (same seed, same grid: same numbers, on any device and at any batch size).
        mode: ``"independent"`` (reference protocol) or ``"early_exit"`` (see the module docstring).
        progress: show a progress bar.
        image_ids: ``(N,)`` distinct non-negative ids of the images (e.g. dataset indices) that key their random
            streams; default ``0 .. N-1`` (position in ``x``). Pass them to get the same per-image results with the
            images in another order.

    Shape:
        - x: :math:`(N, C, H, W)`, y: :math:`(N)`; each result's ``stats.correct``: :math:`(N)`.

    Example:
        >>> res = evaluate(model.eval(), x, y, "pgd@Linf", [1 / 255, 8 / 255], mode="early_exit")
        >>> [r.stats.accuracy for r in res]  # non-increasing in eps
    """
    spec = get_attack(attack)
    p = make_params(type(spec.defaults), spec.defaults, params)
    eps_list = check_eps(eps, norm="L2" if spec.name.endswith("@L2") else "Linf")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    check_eval_mode(model)
    check_data(x, y)
    ids = _check_ids(image_ids, x.shape[0])
    device = model_device(model)
    t0 = time.perf_counter()

    clean_logits = predict_logits(model, x, batch_size).float()
    n, k = clean_logits.shape
    y_dev = y.to(device).long()
    if int(y.min()) < 0 or int(y.max()) >= k:
        raise ValueError(f"labels must be in [0, {k - 1}] for a model with {k} outputs, got [{int(y.min())}, {int(y.max())}]")

    logits_at = torch.empty((len(eps_list), n, k), dtype=torch.float32, device=device)
    if mode == "independent":
        _run_independent(spec, model, x, y_dev, eps_list, p, batch_size, seed, progress, logits_at, device, ids)
    else:
        _run_early_exit(spec, model, x, y_dev, eps_list, p, batch_size, seed, progress, logits_at, clean_logits, device,
                        ids)

    elapsed = time.perf_counter() - t0
    results = []
    for i, e in enumerate(eps_list):
        st = classification_stats(logits_at[i], y_dev, num_classes=k)
        prm = p.resolved(e)
        prm["norm"] = spec.norm
        results.append(AttackResult(spec.name, e, st, prm, mode, seed, elapsed))
        log.debug("%s eps=%.4g/255 (%s): accuracy %.4f", spec.name, e * 255, mode, st.accuracy)
    return results


def _check_ids(image_ids: Sequence[int] | np.ndarray | torch.Tensor | None, n: int) -> np.ndarray:
    """``image_ids`` as an int64 array ``(n,)`` (default ``arange(n)``); ``ValueError`` unless distinct, >= 0."""
    if image_ids is None:
        return np.arange(n, dtype=np.int64)
    raw = image_ids.detach().cpu().numpy() if isinstance(image_ids, torch.Tensor) else np.asarray(image_ids)
    if raw.ndim != 1 or raw.shape[0] != n:
        raise ValueError(f"image_ids must have shape ({n},), got {raw.shape}")
    if raw.size and raw.dtype.kind not in "iu":
        raise ValueError(f"image_ids must be integers, got dtype {raw.dtype}")
    ids = raw.astype(np.int64)
    if ids.size and ids.min() < 0:
        raise ValueError("image_ids must be non-negative")
    if np.unique(ids).size != n:
        raise ValueError("image_ids must be distinct (two images with one id would share their random numbers)")
    return ids


def _streams(seed: int, attack: str, mode: str, eps: float, ids: np.ndarray, n_images: int) -> RowStreams:
    """The per-row streams of images ``ids`` attacked at ``eps`` (independent of batch and position)."""
    return RowStreams(image_keys(derive_key("attack", int(seed), attack, mode, float(eps)), ids), mean_over=n_images)


def _run_independent(
    spec: AttackSpec,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps_list: list[float],
    p: AttackParams,
    batch_size: int,
    seed: int,
    progress: bool,
    out: torch.Tensor,
    device: torch.device,
    ids: np.ndarray,
) -> None:
    n = x.shape[0]
    groups = [list(range(len(eps_list)))] if spec.mixes_eps else [[i] for i in range(len(eps_list))]
    plan = []
    for gi, group in enumerate(groups):
        per = max(1, batch_size // len(group))
        plan += [(gi, group, s, min(n, s + per)) for s in range(0, n, per)]
    for ci, (gi, group, s, e) in enumerate(tqdm(plan, desc=spec.name, disable=not progress, leave=False)):
        xb = x[s:e].to(device)
        nb = e - s
        rows_x = xb.repeat(len(group), 1, 1, 1)
        rows_y = y[s:e].repeat(len(group))
        rows_e = torch.tensor([eps_list[i] for i in group], device=device).repeat_interleave(nb)
        keys = np.concatenate([_streams(seed, spec.name, "independent", eps_list[i], ids[s:e], n).keys for i in group])
        g = RowStreams(keys, mean_over=n)
        logits = _attack_rows(spec, model, rows_x, rows_y, rows_e, p, g, early_stop=False)
        out[group, s:e] = logits.view(len(group), nb, -1)


def _run_early_exit(
    spec: AttackSpec,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps_list: list[float],
    p: AttackParams,
    batch_size: int,
    seed: int,
    progress: bool,
    out: torch.Tensor,
    clean_logits: torch.Tensor,
    device: torch.device,
    ids: np.ndarray,
) -> None:
    cur = clean_logits.to(device).clone()
    robust = cur.argmax(dim=1) == y
    order = np.argsort(np.asarray(eps_list), kind="stable")
    bar = tqdm(total=len(order), desc=f"{spec.name} (early exit)", disable=not progress, leave=False)
    for level, i in enumerate(order.tolist()):
        idx = robust.nonzero().squeeze(1)
        level_streams = _streams(seed, spec.name, "early_exit", eps_list[i], ids, x.shape[0])
        for s in range(0, idx.numel(), batch_size):
            rows = idx[s : s + batch_size]
            xb = x[rows.to(x.device)].to(device)
            rows_e = torch.full((rows.numel(),), eps_list[i], device=device)
            g = level_streams.subset(rows)
            logits = _attack_rows(spec, model, xb, y[rows], rows_e, p, g, early_stop=True)
            cur[rows] = logits
            robust[rows] = logits.argmax(dim=1) == y[rows]
        out[i] = cur
        bar.update(1)
    bar.close()


def evaluate_protocol(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    protocol: str,
    *,
    params: dict[str, dict[str, Any]] | None = None,
    batch_size: int = 256,
    seed: int = 0,
    mode: Mode = "independent",
    progress: bool = False,
) -> list[AttackResult]:
    """Every attack of a named protocol (:func:`robustbench_nas.attacks.get_attack_grid`) at its grid, with the protocol's parameters.

    Arguments:
        params: per-attack overrides on top of the protocol's (``{"pgd@Linf": {"steps": 10}}``).
        (the others as in :func:`evaluate`)

    Returns:
        The results of all attacks, attack by attack in the protocol's order, epsilons ascending.
    """
    from .protocols import attack_grid_params, get_attack_grid

    grid = get_attack_grid(protocol)
    base = attack_grid_params(protocol)
    unknown = sorted(set(params or {}) - set(grid))
    if unknown:
        raise ValueError(f"params for attacks not in protocol {protocol!r}: {unknown}; it has {sorted(grid)}")
    out: list[AttackResult] = []
    for name, eps in grid.items():
        prm = {**base.get(name, {}), **(params or {}).get(name, {})}
        out += evaluate(model, x, y, name, eps, params=prm or None, batch_size=batch_size, seed=seed, mode=mode,
                        progress=progress)
    return out


__all__ = ["MODES", "AttackResult", "Mode", "evaluate", "evaluate_protocol"]
