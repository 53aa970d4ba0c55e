"""APGD (Croce & Hein, ICML 2020), batched over per-row epsilons: APGD-CE, APGD-DLR and APGD-T (targeted DLR).

Our own implementation of the algorithm of the AutoAttack reference code (``autopgd_base.py``), with every
arithmetic step in the same order so that on the same rows and the same random start it returns the same points;
the tests check this against the ``pyautoattack`` package. What differs, on purpose:

- the radius and the step size are per row, so rows of several epsilons share a batch (the reference takes one
  float eps); every operation of the algorithm is row-wise, so this changes no row's result;
- random numbers come from ``generator`` (:mod:`robustbench_nas.attacks._draws`), not the reseeded global RNG:
  per-row CPU streams in ``evaluate`` (a row's start depends on its image, radius, attack, seed, target class and
  restart only: not on the device, the batch size or the other rows), or a shared ``torch.Generator`` drawn as
  ``torch.rand(x.shape)`` / ``torch.randn(x.shape)`` (the tests seed it as the reference seeds its global RNG, so
  both start from the same points and the iterates are compared bit for bit);
- with ``early_stop`` a row stops being forwarded once it is misclassified. APGD keeps the first misclassified
  iterate anyway and a row's trajectory never depends on other rows, so the robust/non-robust outcome of every
  row is unchanged; only work is saved;
- for rows that stay robust we return the highest-loss point found (the reference returns the clean image), so
  the confidences reported for robust points are those under attack.
"""

from __future__ import annotations

import torch
from torch import nn

from ._common import bshape, ce_loss, dlr_loss, dlr_targeted_loss
from ._common import normalize as _normalize
from ._draws import Draws, child, normal_like, subset, uniform_like
from .params import APGDParams
from .registry import register_attack


def _proj_l2_ref(x: torch.Tensor, x1: torch.Tensor, eb: torch.Tensor) -> torch.Tensor:
    """AutoAttack's L2 step projection: ``x + normalize(x1 - x) * min(eps, ||x1 - x||)``, clipped to [0, 1]."""
    d = x1 - x
    n = (d**2).view(d.shape[0], -1).sum(-1).sqrt().view(-1, *([1] * (d.ndim - 1)))
    return torch.clamp(x + _normalize(d, "L2") * torch.min(eb * torch.ones_like(x), n), 0.0, 1.0)


class _APGDRun:
    """One APGD run (one restart) on a set of rows: the reference's ``attack_single_run``."""

    def __init__(self, model: nn.Module, params: APGDParams, norm: str, early_stop: bool) -> None:
        self.model = model
        self.p = params
        self.norm = norm
        self.early_stop = early_stop
        n = params.steps
        self.n_iter_2 = max(int(0.22 * n), 1)
        self.n_iter_min = max(int(0.06 * n), 1)
        self.size_decr = max(int(0.03 * n), 1)

    def _loss(self, logits: torch.Tensor, y: torch.Tensor, y_target: torch.Tensor | None) -> torch.Tensor:
        if self.p.loss == "ce":
            return ce_loss(logits, y)
        if self.p.loss == "dlr":
            return dlr_loss(logits, y)
        assert y_target is not None
        return dlr_targeted_loss(logits, y, y_target)

    def _grad(
        self, x_adv: torch.Tensor, y: torch.Tensor, y_target: torch.Tensor | None, rows: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits, per-row loss and input gradient; with ``rows`` only those rows are forwarded (others zero)."""
        if rows is None:
            xg = x_adv.detach().requires_grad_(True)
            yt = y_target
            yy = y
        else:
            xg = x_adv[rows].detach().requires_grad_(True)
            yy = y[rows]
            yt = None if y_target is None else y_target[rows]
        with torch.enable_grad():
            logits = self.model(xg)
            loss_indiv = self._loss(logits, yy, yt)
            loss = loss_indiv.sum()
        (g,) = torch.autograd.grad(loss, [xg])
        if rows is None:
            return logits.detach(), loss_indiv.detach(), g.detach()
        full_logits = torch.zeros((x_adv.shape[0], logits.shape[1]), dtype=logits.dtype, device=logits.device)
        full_loss = torch.zeros(x_adv.shape[0], dtype=loss_indiv.dtype, device=loss_indiv.device)
        full_g = torch.zeros_like(x_adv)
        full_logits[rows] = logits.detach()
        full_loss[rows] = loss_indiv.detach()
        full_g[rows] = g.detach()
        return full_logits, full_loss, full_g

    def run(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: torch.Tensor,
        generator: Draws,
        y_target: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Attack rows ``x`` (already correctly classified); return ``(x_best, robust, x_best_adv)``.

        ``robust`` ``(B,)`` bool: no iterate was misclassified; ``x_best_adv`` holds the last misclassified iterate
        of broken rows; ``x_best`` the highest-loss point of every row.
        """
        p, norm = self.p, self.norm
        n_iter = p.steps
        eb = bshape(eps, x)
        if norm == "Linf":
            t = 2 * uniform_like(generator, x) - 1
        else:
            t = normal_like(generator, x)
        x_adv = x + eb * torch.ones_like(x) * _normalize(t, norm)
        x_adv = x_adv.clamp(0.0, 1.0)
        x_best = x_adv.clone()
        x_best_adv = x_adv.clone()
        loss_steps = torch.zeros([n_iter, x.shape[0]], device=x.device)

        logits, loss_indiv, grad = self._grad(x_adv, y, y_target, None)
        grad_best = grad.clone()
        acc = logits.max(1)[1] == y
        loss_best = loss_indiv.clone()

        step_size = 2.0 * eb * torch.ones([x.shape[0], *([1] * (x.ndim - 1))], device=x.device)
        x_adv_old = x_adv.clone()
        k = self.n_iter_2
        counter3 = 0
        loss_best_last_check = loss_best.clone()
        reduced_last_check = torch.ones_like(loss_best)

        for i in range(n_iter):
            rows = None
            if self.early_stop:
                rows = acc.nonzero().squeeze(1)
                if rows.numel() == 0:
                    break
                if rows.numel() == x.shape[0]:
                    rows = None
            with torch.no_grad():
                x_adv = x_adv.detach()
                grad2 = x_adv - x_adv_old
                x_adv_old = x_adv.clone()
                a = 0.75 if i > 0 else 1.0
                if norm == "Linf":
                    x_adv_1 = x_adv + step_size * torch.sign(grad)
                    x_adv_1 = torch.clamp(torch.min(torch.max(x_adv_1, x - eb), x + eb), 0.0, 1.0)
                    x_adv_1 = torch.clamp(
                        torch.min(torch.max(x_adv + (x_adv_1 - x_adv) * a + grad2 * (1 - a), x - eb), x + eb),
                        0.0,
                        1.0,
                    )
                else:
                    x_adv_1 = x_adv + step_size * _normalize(grad, "L2")
                    x_adv_1 = _proj_l2_ref(x, x_adv_1, eb)
                    x_adv_1 = x_adv + (x_adv_1 - x_adv) * a + grad2 * (1 - a)
                    x_adv_1 = _proj_l2_ref(x, x_adv_1, eb)
                x_adv = x_adv_1 + 0.0

            logits, loss_indiv, grad = self._grad(x_adv, y, y_target, rows)
            pred = logits.max(1)[1] == y
            if rows is not None:
                # rows not forwarded are already broken: keep them broken, leave their best points alone
                fwd = torch.zeros_like(acc)
                fwd[rows] = True
                pred = pred & fwd
                loss_indiv = torch.where(fwd, loss_indiv, loss_best)
            acc = torch.min(acc, pred)
            newly = ~pred if rows is None else (~pred & fwd)
            # row selections by masks (_take), not boolean indexing: no host synchronisation per iteration
            x_best_adv = _take(newly, x_adv, x_best_adv)

            with torch.no_grad():
                y1 = loss_indiv.clone()
                loss_steps[i] = y1 + 0
                ind = y1 > loss_best
                x_best = _take(ind, x_adv, x_best)
                grad_best = _take(ind, grad, grad_best)
                loss_best = _take(ind, y1, loss_best)
                counter3 += 1
                if counter3 == k:
                    # the reference's oscillation check, including its use of loss_steps[-1] (still zero) at the
                    # first checkpoint
                    tcount = torch.zeros(x.shape[0], device=x.device)
                    for c5 in range(k):
                        tcount += (loss_steps[i - c5] > loss_steps[i - c5 - 1]).float()
                    fl_osc = (tcount <= k * p.rho * torch.ones_like(tcount)).float()
                    fl_reduce_no_impr = (1.0 - reduced_last_check) * (loss_best_last_check >= loss_best).float()
                    fl_osc = torch.max(fl_osc, fl_reduce_no_impr)
                    reduced_last_check = fl_osc.clone()
                    loss_best_last_check = loss_best.clone()
                    # masks instead of ``if fl_osc.sum() > 0`` and boolean indexing: no host synchronisation;
                    # the same values (halving is exact, unselected rows are copied unchanged)
                    ind_osc = (fl_osc > 0).view(-1, *([1] * (x.ndim - 1)))
                    step_size = torch.where(ind_osc, step_size / 2.0, step_size)
                    x_adv = torch.where(ind_osc, x_best, x_adv)
                    grad = torch.where(ind_osc, grad_best, grad)
                    k = max(k - self.size_decr, self.n_iter_min)
                    counter3 = 0
        return x_best, acc, x_best_adv


def _take(mask: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Rows of ``new`` where ``mask`` ``(B,)`` is True, rows of ``old`` elsewhere (a new tensor).

    ``torch.where`` instead of ``old[mask] = new[mask]``: boolean indexing needs the number of selected rows on the
    host, one synchronisation per call (four per iteration), which on a GPU drains the launch queue. The values
    are the same (rows are copied unchanged). ``benchmarks/bench_apgd_sync.py`` swaps in the indexing version to
    show both.
    """
    return torch.where(mask.view(-1, *([1] * (new.ndim - 1))), new, old)


def apgd_perturb(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: torch.Tensor,
    params: APGDParams,
    *,
    norm: str,
    generator: Draws,
    early_stop: bool,
) -> torch.Tensor:
    """APGD with restarts (and, for ``loss="dlr-targeted"``, the loop over the top wrong classes), as ``perturb``.

    Only rows correctly classified on the clean image are attacked (the others are returned unchanged), and each
    restart / target attacks only the rows still robust. Returns adversarial images ``(B, C, H, W)``.
    """
    with torch.no_grad():
        clean_logits = model(x)
    robust = clean_logits.max(1)[1] == y
    out = x.clone()
    runner = _APGDRun(model, params, norm, early_stop)
    n_classes = clean_logits.shape[1]
    if params.loss == "dlr" and n_classes < 3:
        raise ValueError(f"APGD-DLR needs at least 3 classes, the model has {n_classes}")
    if params.loss == "dlr-targeted":
        if n_classes < 4:
            raise ValueError(f"APGD-T needs at least 4 classes, the model has {n_classes}")
        targets = list(range(2, min(params.n_target_classes, n_classes - 1) + 2))
    else:
        targets = [0]
    for target_class in targets:
        for restart in range(params.restarts):
            idx = robust.nonzero().squeeze(1)
            if idx.numel() == 0:
                return out
            xs, ys, es = x[idx], y[idx], eps[idx]
            y_target = None
            if params.loss == "dlr-targeted":
                with torch.no_grad():
                    y_target = model(xs).sort(dim=1)[1][:, -target_class]
            # per-row streams keyed by (target, restart): a row's start never depends on how long earlier runs took
            gen = subset(child(generator, "apgd", target_class, restart), idx)
            x_best, acc, x_best_adv = runner.run(xs, ys, es, gen, y_target)
            broken = ~acc
            robust[idx[broken]] = False
            out[idx[broken]] = x_best_adv[broken]
            out[idx[acc]] = x_best[acc]
    return out


def _register(name: str, norm: str, loss: str, description: str) -> None:
    register_attack(name, norm=norm, defaults=APGDParams(loss=loss), description=description)(apgd_perturb)  # type: ignore[arg-type]


_register("aa_apgd-ce@Linf", "Linf", "ce", "APGD-CE (AutoAttack), Linf, 100 iterations")
_register("aa_apgd-dlr@Linf", "Linf", "dlr", "APGD-DLR (AutoAttack), Linf, 100 iterations")
_register("aa_apgd-t@Linf", "Linf", "dlr-targeted", "APGD-T (AutoAttack), Linf, targeted DLR on the 9 top classes")
_register("aa_apgd-ce@L2", "L2", "ce", "APGD-CE (AutoAttack), L2, 100 iterations")
_register("aa_apgd-dlr@L2", "L2", "dlr", "APGD-DLR (AutoAttack), L2, 100 iterations")
_register("aa_apgd-t@L2", "L2", "dlr-targeted", "APGD-T (AutoAttack), L2, targeted DLR on the 9 top classes")

__all__ = ["apgd_perturb"]
