"""Input-Jacobian of the logits: exact Frobenius norm and the random-projection estimator (Hoffman et al. 2019).

``J(x) = d logits / d x`` has shape ``(K, C*H*W)`` per image, ``x`` in [0, 1] pixels, so norms are per unit of
[0, 1] pixel intensity (multiply by 1/255 for per-pixel-level units).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..utils.seeding import make_generator
from ._checks import check_batch, check_eval_mode


@dataclass(frozen=True)
class JacobianNorms:
    """Exact per-image squared Frobenius norms.

    Attributes:
        sq: ``(N,)`` ``||J(x_i)||_F^2``.
    """

    sq: torch.Tensor

    @property
    def fro(self) -> torch.Tensor:
        """``(N,)`` ``||J(x_i)||_F``."""
        return self.sq.sqrt()

    @property
    def mean_fro(self) -> float:
        return float(self.fro.mean())

    @property
    def mean_sq(self) -> float:
        return float(self.sq.mean())


@dataclass(frozen=True)
class JacobianProjection:
    """Random-projection estimates ``K * ||J(x_i)^T v||^2`` with ``v`` uniform on the unit sphere of R^K.

    Attributes:
        samples: ``(N, P)`` unbiased estimates of ``||J(x_i)||_F^2``, one per image and projection.
    """

    samples: torch.Tensor

    @property
    def n_proj(self) -> int:
        return int(self.samples.shape[1])

    @property
    def per_image_sq(self) -> torch.Tensor:
        return self.samples.mean(1)

    @property
    def mean_sq(self) -> float:
        """Estimate of the batch mean of ``||J||_F^2``."""
        return float(self.per_image_sq.mean())

    @property
    def mean_sq_se(self) -> float:
        """Standard error of :attr:`mean_sq` over the random projections (the images are fixed).

        ``sqrt(sum_i s_i^2 / P) / N`` with ``s_i^2`` the sample variance over the ``P`` projections of image ``i``;
        NaN for a single projection.
        """
        n, p = self.samples.shape
        if p < 2:
            return float("nan")
        var_i = self.samples.var(dim=1, unbiased=True)
        return float(var_i.sum().div(p).sqrt() / n)

    @property
    def mean_fro(self) -> float:
        """Estimate of the batch mean of ``||J||_F`` (square root per image: slightly biased low for small P)."""
        return float(self.per_image_sq.clamp_min(0).sqrt().mean())

    @property
    def mean_fro_se(self) -> float:
        """Delta-method standard error of :attr:`mean_fro`: ``Var(sqrt(e)) ~ Var(e) / (4 e)`` per image."""
        n, p = self.samples.shape
        if p < 2:
            return float("nan")
        e = self.per_image_sq.clamp_min(1e-300)
        var_e = self.samples.var(dim=1, unbiased=True) / p
        return float((var_e / (4 * e)).sum().sqrt() / n)


def _chunks(n: int, batch_size: int) -> list[slice]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def jacobian_norms(model: nn.Module, x: torch.Tensor, *, batch_size: int = 64) -> JacobianNorms:
    """Exact ``||J(x_i)||_F^2`` for every image, one backward per class.

    Arguments:
        model: network in eval mode taking [0, 1] images; not modified (gradients go to the input only).
        x: images in [0, 1].
        batch_size: images per forward pass.

    Shape:
        x ``(N, C, H, W)``; result ``.sq`` ``(N,)``.

    Example:
        >>> net = build_model(arch, C=8, N=1).eval()
        >>> jacobian_norms(net, torch.rand(4, 3, 32, 32)).mean_fro
    """
    check_batch(x)
    check_eval_mode(model)
    out = []
    for sl in _chunks(x.shape[0], batch_size):
        xb = x[sl].detach().clone().requires_grad_(True)
        logits = model(xb)
        k = logits.shape[1]
        sq = torch.zeros(xb.shape[0], dtype=xb.dtype, device=xb.device)
        for c in range(k):
            # images are independent in eval mode, so the gradient of the summed class-c logit is per image
            (g,) = torch.autograd.grad(logits[:, c].sum(), xb, retain_graph=c < k - 1)
            sq += g.pow(2).flatten(1).sum(1)
        out.append(sq.detach())
    return JacobianNorms(torch.cat(out))


def _unit_vectors(n: int, k: int, generator: torch.Generator, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    v = torch.randn((n, k), generator=generator, dtype=torch.float64)
    v = v / v.norm(dim=1, keepdim=True)
    return v.to(dtype=dtype, device=device)


def jacobian_projection(
    model: nn.Module,
    x: torch.Tensor,
    *,
    n_proj: int = 8,
    generator: torch.Generator | None = None,
    seed: int = 0,
    batch_size: int = 64,
) -> JacobianProjection:
    """Hoffman et al. (2019) estimator of ``||J(x_i)||_F^2``: ``K ||J^T v||^2``, ``v`` uniform on the unit sphere.

    Each projection costs one backward for the whole batch (vs ``K`` for :func:`jacobian_norms`).

    Arguments:
        model: network in eval mode; not modified.
        x: images in [0, 1].
        n_proj: projections per image (>= 2 for a standard error).
        generator: CPU generator for the projections (default: one seeded with ``seed``).
        batch_size: images per forward pass.

    Shape:
        x ``(N, C, H, W)``; result ``.samples`` ``(N, n_proj)``.
    """
    check_batch(x)
    check_eval_mode(model)
    if n_proj < 1:
        raise ValueError(f"n_proj must be >= 1, got {n_proj}")
    if generator is None:
        generator = make_generator(seed)
    out = []
    for sl in _chunks(x.shape[0], batch_size):
        xb = x[sl].detach().clone().requires_grad_(True)
        logits = model(xb)
        n, k = logits.shape
        samples = torch.empty((n, n_proj), dtype=xb.dtype, device=xb.device)
        for p in range(n_proj):
            v = _unit_vectors(n, k, generator, logits.dtype, logits.device)
            (g,) = torch.autograd.grad(logits, xb, grad_outputs=v, retain_graph=p < n_proj - 1)
            samples[:, p] = k * g.pow(2).flatten(1).sum(1)
        out.append(samples.detach())
    return JacobianProjection(torch.cat(out))

