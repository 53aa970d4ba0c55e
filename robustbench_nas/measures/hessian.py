"""Input-Hessian of the cross-entropy loss: largest eigenvalue by power iteration, trace by Hutchinson.

``H(x_i) = d^2 CE(f(x_i), y_i) / dx_i^2`` of shape ``(D, D)``, ``D = C*H*W``, ``x`` in [0, 1] pixels. Only
Hessian-vector products are formed (double backward), batched over images: in eval mode the images are
independent, so one HVP of the summed loss gives every image's own ``H(x_i) v_i``. For ReLU networks the
second derivative of the network vanishes almost everywhere, so ``H = J^T (diag p - p p^T) J`` is positive
semi-definite and its largest-magnitude eigenvalue (what power iteration finds) is the largest eigenvalue.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..utils.seeding import make_generator
from ._checks import check_batch, check_eval_mode


@dataclass(frozen=True)
class HessianEig:
    """Per-image largest eigenvalue estimates.

    Attributes:
        eig: ``(N,)`` Rayleigh quotient at the last iterate.
        iters: ``(N,)`` power iterations used per image.
        converged: ``(N,)`` bool, relative change of the eigenvalue below ``tol``.
        tol: the relative tolerance used.
        max_iter: the iteration cap used.
    """

    eig: torch.Tensor
    iters: torch.Tensor
    converged: torch.Tensor
    tol: float
    max_iter: int

    @property
    def mean(self) -> float:
        return float(self.eig.mean())

    @property
    def se(self) -> float:
        """Standard error of :attr:`mean` over images."""
        n = self.eig.numel()
        return float(self.eig.std(unbiased=True) / n**0.5) if n > 1 else float("nan")


@dataclass(frozen=True)
class HessianTrace:
    """Hutchinson estimates ``v^T H v`` with Rademacher ``v``.

    Attributes:
        samples: ``(N, S)`` one unbiased trace estimate per image and probe.
    """

    samples: torch.Tensor

    @property
    def mean(self) -> float:
        return float(self.samples.mean())

    @property
    def se(self) -> float:
        """Standard error of :attr:`mean` over the probes (images fixed); NaN for one probe."""
        n, s = self.samples.shape
        if s < 2:
            return float("nan")
        return float(self.samples.var(dim=1, unbiased=True).sum().div(s).sqrt() / n)


def _chunks(n: int, batch_size: int) -> list[slice]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def _loss_grad(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    loss = F.cross_entropy(model(xb), yb, reduction="sum")  # sum: each image's own loss, no 1/N factor
    (g,) = torch.autograd.grad(loss, xb, create_graph=True)
    return g


#: Rebuild the double-backward graph on the unconverged images once they are at most this fraction of the images
#: the current graph holds (0 = never: every HVP runs on the whole chunk).
ACTIVE_SHRINK = 0.5
#: Never rebuild on fewer images than this: oneDNN picks other kernels for batches of 1-3 images (measured: their
#: HVPs differ from the full batch's by ~1e-8), while from 4 images on they are the same bits.
ACTIVE_MIN_IMAGES = 8


class _ActiveHVP:
    """Per-image Hessian-vector products of a chunk, computed only for the images still iterating.

    In eval mode every image's loss gradient, and so its HVP, depends on that image alone, and the kernels give the
    same bits for an image whatever the other images of the batch are (checked on full-size cells in
    ``tests/test_measures.py``). So once enough images have converged the graph is rebuilt on the active ones: the
    HVPs of the active images are unchanged bit for bit, the converged ones get zeros (their state is frozen by the
    callers' ``active`` masks), and the cost follows the number of active images rather than the slowest one.
    """

    def __init__(self, model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, shrink: float = ACTIVE_SHRINK) -> None:
        self.model, self.x, self.y, self.shrink = model, xb.detach(), yb, float(shrink)
        self.rows = torch.arange(xb.shape[0], device=xb.device)
        self._build(self.rows)

    def _build(self, rows: torch.Tensor) -> None:
        self.rows = rows
        self.xg = self.x[rows].clone().requires_grad_(True)
        self.g = _loss_grad(self.model, self.xg, self.y[rows])

    def __call__(self, v: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """``H v`` for the rows of ``active`` (bool ``(n,)``), zeros elsewhere; ``v`` has the chunk's shape."""
        n_active = int(active.sum())
        if ACTIVE_MIN_IMAGES <= n_active <= self.shrink * self.rows.numel():
            self._build(torch.nonzero(active).flatten())
        (hv,) = torch.autograd.grad(self.g, self.xg, grad_outputs=v[self.rows], retain_graph=True)
        if self.rows.numel() == self.x.shape[0]:
            return hv.detach()
        out = torch.zeros_like(v)
        out[self.rows] = hv.detach()
        return out


def _per_image_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).flatten(1).sum(1)


def hessian_max_eig(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    max_iter: int = 50,
    tol: float = 1e-3,
    generator: torch.Generator | None = None,
    seed: int = 0,
    batch_size: int = 32,
    method: str = "power",
    shrink: float = ACTIVE_SHRINK,
) -> HessianEig:
    """Largest eigenvalue of each image's input Hessian of the cross-entropy, from Hessian-vector products.

    ``method="power"``: iterates ``v <- H v / ||H v||`` per image from a seeded Gaussian start (the estimate is the
    Rayleigh quotient). ``method="lanczos"``: Lanczos with full reorthogonalisation from the same start, the
    estimate is the largest Ritz value (usually needs far fewer HVPs). Either way an image stops when
    ``|lam_t - lam_{t-1}| <= tol * |lam_t|``; the batch stops when all have, or after ``max_iter`` HVPs.

    Arguments:
        model: network in eval mode; not modified.
        x: images in [0, 1]; y: their labels.
        max_iter: cap on HVPs per image; tol: relative tolerance on the eigenvalue.
        method: ``"power"`` or ``"lanczos"``.
        generator: CPU generator for the start vectors (default: seeded with ``seed``).
        batch_size: images per forward pass (each iteration is one double backward for the chunk's unconverged
            images).
        shrink: rebuild the graph on the unconverged images when they are at most this fraction of the graph's
            images (0: never); the estimates do not depend on it, bit for bit, only the cost does.

    Shape:
        x ``(N, C, H, W)``, y ``(N,)``; result fields ``(N,)``.

    Example:
        >>> hessian_max_eig(net.eval(), x, y, max_iter=100, tol=1e-4).mean
    """
    check_batch(x, y)
    check_eval_mode(model)
    if max_iter < 1 or tol <= 0:
        raise ValueError(f"need max_iter >= 1 and tol > 0, got max_iter={max_iter} tol={tol}")
    if method not in ("power", "lanczos"):
        raise ValueError(f"method must be 'power' or 'lanczos', got {method!r}")
    if generator is None:
        generator = make_generator(seed)
    eigs, iters, conv = [], [], []
    for sl in _chunks(x.shape[0], batch_size):
        xb = x[sl].detach()
        hvp = _ActiveHVP(model, xb, y[sl], shrink)
        n = xb.shape[0]
        v = torch.randn(xb.shape, generator=generator, dtype=torch.float64).to(xb.dtype).to(xb.device)
        v = v / v.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        if method == "lanczos":
            lam, used, done = _lanczos(hvp, xb, v, max_iter, tol)
            eigs.append(lam)
            iters.append(used)
            conv.append(done)
            continue
        lam = torch.zeros(n, dtype=xb.dtype, device=xb.device)
        done = torch.zeros(n, dtype=torch.bool, device=xb.device)
        used = torch.zeros(n, dtype=torch.int64, device=xb.device)
        for t in range(max_iter):
            active = ~done
            hv = hvp(v, active)
            new = _per_image_dot(v, hv)
            used[active] += 1
            if t > 0:
                newly = active & ((new - lam).abs() <= tol * new.abs())
            else:
                newly = torch.zeros_like(done)
            lam = torch.where(active, new, lam)
            norm = hv.flatten(1).norm(dim=1)
            zero = norm == 0  # zero Hessian (e.g. saturated softmax): eigenvalue 0, nothing to iterate
            newly = newly | (active & zero)
            step = hv / norm.clamp_min(torch.finfo(hv.dtype).tiny).view(-1, 1, 1, 1)
            v = torch.where(active.view(-1, 1, 1, 1) & ~zero.view(-1, 1, 1, 1), step, v)
            done = done | newly
            if bool(done.all()):
                break
        eigs.append(lam)
        iters.append(used)
        conv.append(done)
    return HessianEig(torch.cat(eigs), torch.cat(iters), torch.cat(conv), float(tol), int(max_iter))


def _lanczos(hvp: _ActiveHVP, xb: torch.Tensor, v: torch.Tensor, max_iter: int, tol: float
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batched Lanczos (full reorthogonalisation) on the per-image HVP operator; returns (lam, iters, converged)."""
    n = xb.shape[0]
    flat = v.flatten(1)
    basis = [flat]
    alphas: list[torch.Tensor] = []
    betas: list[torch.Tensor] = []
    lam = torch.zeros(n, dtype=xb.dtype, device=xb.device)
    done = torch.zeros(n, dtype=torch.bool, device=xb.device)
    used = torch.zeros(n, dtype=torch.int64, device=xb.device)
    tiny = torch.finfo(xb.dtype).eps
    for t in range(max_iter):
        w = hvp(basis[-1].view_as(xb), ~done).flatten(1)
        alphas.append((w * basis[-1]).sum(1))
        V = torch.stack(basis, 1)  # (n, t+1, D)
        for _ in range(2):  # full reorthogonalisation, twice ("twice is enough")
            w = w - torch.einsum("nk,nkd->nd", torch.einsum("nkd,nd->nk", V, w), V)
        beta = w.norm(dim=1)
        # Ritz values: eigenvalues of the (t+1) x (t+1) tridiagonal matrix of each image
        k = len(alphas)
        T = torch.diag_embed(torch.stack(alphas, 1))
        if betas:
            off = torch.stack(betas, 1)
            T = T + torch.diag_embed(off, offset=1) + torch.diag_embed(off, offset=-1)
        new = torch.linalg.eigvalsh(T)[:, -1]
        active = ~done
        used[active] += 1
        newly = active & ((new - lam).abs() <= tol * new.abs()) if t > 0 else torch.zeros_like(done)
        # an exhausted Krylov space (beta ~ 0) makes the Ritz value exact
        scale = torch.stack(alphas, 1).abs().amax(1).clamp_min(tiny)
        newly = newly | (active & (beta <= tiny * scale * k))
        lam = torch.where(active, new, lam)
        done = done | newly
        if bool(done.all()):
            break
        betas.append(beta)
        basis.append(torch.where(beta.view(-1, 1) > 0, w / beta.clamp_min(tiny).view(-1, 1), torch.zeros_like(w)))
    return lam, used, done


def hessian_trace(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    n_samples: int = 16,
    generator: torch.Generator | None = None,
    seed: int = 0,
    batch_size: int = 32,
) -> HessianTrace:
    """Hutchinson trace estimate of each image's input Hessian of the cross-entropy (Rademacher probes).

    Shape:
        x ``(N, C, H, W)``, y ``(N,)``; result ``.samples`` ``(N, n_samples)``.
    """
    check_batch(x, y)
    check_eval_mode(model)
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    if generator is None:
        generator = make_generator(seed)
    out = []
    for sl in _chunks(x.shape[0], batch_size):
        xb = x[sl].detach().clone().requires_grad_(True)
        g = _loss_grad(model, xb, y[sl])
        samples = torch.empty((xb.shape[0], n_samples), dtype=xb.dtype, device=xb.device)
        for s in range(n_samples):
            v = torch.randint(0, 2, xb.shape, generator=generator).to(xb.dtype).mul_(2).sub_(1).to(xb.device)
            (hv,) = torch.autograd.grad(g, xb, grad_outputs=v, retain_graph=s < n_samples - 1)
            samples[:, s] = _per_image_dot(v, hv.detach())
        out.append(samples)
    return HessianTrace(torch.cat(out))
