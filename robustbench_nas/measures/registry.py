"""Registry of robustness measures on a trained model (``@register_measure``) and ``compute_measures``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from ..utils.modes import eval_mode
from ..utils.registry import Registry
from ..utils.seeding import derive_seed, make_generator
from ._checks import check_batch
from .hessian import hessian_max_eig, hessian_trace
from .jacobian import jacobian_norms, jacobian_projection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MeasureConfig:
    """Settings of the measures (all recorded next to the values by the ``*_n_proj``/``*_tol`` outputs).

    Attributes:
        n_proj: random projections per image for ``jacobian_fro_proj``.
        power_iters: cap on Hessian-vector products per image for ``hessian_eig``.
        power_tol: relative tolerance on the eigenvalue for ``hessian_eig``.
        hessian_method: ``"lanczos"`` (default, fewer HVPs) or ``"power"`` iteration for ``hessian_eig``.
        hutchinson_samples: Rademacher probes per image for ``hessian_trace``.
        batch_size: images per forward pass.
    """

    n_proj: int = 8
    power_iters: int = 50
    power_tol: float = 1e-3
    hessian_method: str = "lanczos"
    hutchinson_samples: int = 16
    batch_size: int = 32


MeasureFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, MeasureConfig, torch.Generator], dict[str, float]]


@dataclass(frozen=True)
class MeasureSpec:
    """A registered measure.

    Attributes:
        name: registry key; the main output has this name.
        fn: ``fn(model_in_eval_mode, x, y, config, generator) -> dict`` with exactly the keys in ``outputs``.
        outputs: every key the measure writes (main value first), so stores can pre-allocate columns.
        summary: one-line definition.
    """

    name: str
    fn: MeasureFn
    outputs: tuple[str, ...]
    summary: str


#: the measures by name, in registration order (the order of :func:`measure_outputs`)
MEASURES: Registry[MeasureSpec] = Registry("measure")


def register_measure(name: str, *, outputs: Sequence[str], summary: str) -> Callable[[MeasureFn], MeasureFn]:
    """Decorator registering a measure under ``name`` (``outputs[0]`` must be ``name``; a taken name: ``ValueError``)."""

    def deco(fn: MeasureFn) -> MeasureFn:
        if not outputs or outputs[0] != name:
            raise ValueError(f"measure {name!r}: outputs must start with the measure's own name")
        MEASURES.add(name, MeasureSpec(name, fn, tuple(outputs), summary))
        return fn

    return deco


@register_measure(
    "jacobian_fro",
    outputs=("jacobian_fro", "jacobian_fro_sq"),
    summary="mean over images of ||d logits/dx||_F (exact, one backward per class); also the mean squared norm",
)
def _jacobian_fro(model, x, y, cfg, gen):  # type: ignore[no-untyped-def]
    r = jacobian_norms(model, x, batch_size=cfg.batch_size)
    return {"jacobian_fro": r.mean_fro, "jacobian_fro_sq": r.mean_sq}


@register_measure(
    "jacobian_fro_proj",
    outputs=(
        "jacobian_fro_proj",
        "jacobian_fro_proj_se",
        "jacobian_fro_sq_proj",
        "jacobian_fro_sq_proj_se",
        "jacobian_fro_proj_n_proj",
    ),
    summary="random-projection estimate (Hoffman et al. 2019) of the same, with standard errors over projections",
)
def _jacobian_fro_proj(model, x, y, cfg, gen):  # type: ignore[no-untyped-def]
    r = jacobian_projection(model, x, n_proj=cfg.n_proj, generator=gen, batch_size=cfg.batch_size)
    return {
        "jacobian_fro_proj": r.mean_fro,
        "jacobian_fro_proj_se": r.mean_fro_se,
        "jacobian_fro_sq_proj": r.mean_sq,
        "jacobian_fro_sq_proj_se": r.mean_sq_se,
        "jacobian_fro_proj_n_proj": float(r.n_proj),
    }


@register_measure(
    "hessian_eig",
    outputs=("hessian_eig", "hessian_eig_se", "hessian_eig_iters", "hessian_eig_converged", "hessian_eig_tol"),
    summary="mean over images of the largest eigenvalue of the input Hessian of CE (Lanczos or power iteration on HVPs)",
)
def _hessian_eig(model, x, y, cfg, gen):  # type: ignore[no-untyped-def]
    r = hessian_max_eig(model, x, y, max_iter=cfg.power_iters, tol=cfg.power_tol, generator=gen,
                        batch_size=cfg.batch_size, method=cfg.hessian_method)
    if not bool(r.converged.all()):
        log.warning(
            "hessian_eig: %d of %d images did not converge in %d iterations (tol %g)",
            int((~r.converged).sum()), r.converged.numel(), r.max_iter, r.tol,
        )
    return {
        "hessian_eig": r.mean,
        "hessian_eig_se": r.se,
        "hessian_eig_iters": float(r.iters.max()),
        "hessian_eig_converged": float(r.converged.float().mean()),
        "hessian_eig_tol": r.tol,
    }


@register_measure(
    "hessian_trace",
    outputs=("hessian_trace", "hessian_trace_se", "hessian_trace_n_samples"),
    summary="mean over images of the trace of the input Hessian of CE (Hutchinson, Rademacher probes)",
)
def _hessian_trace(model, x, y, cfg, gen):  # type: ignore[no-untyped-def]
    r = hessian_trace(model, x, y, n_samples=cfg.hutchinson_samples, generator=gen, batch_size=cfg.batch_size)
    return {"hessian_trace": r.mean, "hessian_trace_se": r.se, "hessian_trace_n_samples": float(r.samples.shape[1])}


def list_measures(pattern: str | None = None) -> list[str]:
    """Names of the registered measures in registration order, filtered by a shell-style ``pattern``."""
    return MEASURES.list(pattern)


def get_measure(name: str) -> MeasureSpec:
    """The :class:`MeasureSpec` of ``name``; ``KeyError`` naming the known measures otherwise."""
    return MEASURES.get(name)  # unknown: KeyError naming the known measures


def measure_outputs(names: Sequence[str] | None = None) -> list[str]:
    """Every output key :func:`compute_measures` writes for ``names`` (default: all), in order."""
    return [k for n in (names or list_measures()) for k in get_measure(n).outputs]


def _generator_for(name: str, seed: int) -> torch.Generator:
    # a fixed, name-dependent stream: the same seed gives the same numbers whatever other measures run
    return make_generator(derive_seed(int(seed), name, form="crc32"))


def compute_measures(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    names: Sequence[str] | None = None,
    *,
    seed: int = 0,
    config: MeasureConfig | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Jacobian / Hessian robustness measures of a trained ``model`` on the batch ``(x, y)``.

    The model is evaluated in eval mode (restored afterwards); its parameters and buffers are not changed
    and no parameter gradients are accumulated. Runs on the device of ``x`` (the model must be there too).

    Arguments:
        model: network taking [0, 1] images.
        x: images in [0, 1]; y: integer labels.
        names: measures to compute (default: all of :func:`list_measures`).
        seed: seeds the random projections / start vectors / probes (each measure its own stream).
        config: :class:`MeasureConfig` (projections, iterations, tolerance, batch size).
        progress: show a progress bar over the measures (stderr).

    Shape:
        x ``(N, C, H, W)``, y ``(N,)``.

    Returns:
        ``{key: float}`` for every key in :func:`measure_outputs` of ``names``.

    Example:
        >>> compute_measures(net, x, y, ["jacobian_fro", "hessian_eig"], seed=0)
    """
    check_batch(x, y)
    names = list(names) if names is not None else list_measures()
    specs = [get_measure(n) for n in names]  # fail on an unknown name before any work
    cfg = config or MeasureConfig()
    out: dict[str, float] = {}
    from tqdm import tqdm

    with eval_mode(model):  # each module's own mode back afterwards (a caller's frozen BN stays frozen)
        for spec in tqdm(specs, desc="measures", disable=not progress, leave=False):
            vals = spec.fn(model, x, y, cfg, _generator_for(spec.name, seed))
            out.update({k: float(vals[k]) for k in spec.outputs})
    return out
