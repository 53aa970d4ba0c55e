"""Robustness measures on trained models: input-Jacobian norms and input-Hessian spectra (Jung et al. 2023).

``list_measures()``, ``compute_measures(model, x, y, names, *, seed=0) -> dict[str, float]`` and the pure
functions behind them (``jacobian_norms``, ``jacobian_projection``, ``hessian_max_eig``, ``hessian_trace``).
"""

from .hessian import HessianEig, HessianTrace, hessian_max_eig, hessian_trace
from .jacobian import JacobianNorms, JacobianProjection, jacobian_norms, jacobian_projection
from .registry import (
    MeasureConfig,
    MeasureSpec,
    compute_measures,
    get_measure,
    list_measures,
    measure_outputs,
    register_measure,
)

__all__ = [
    "HessianEig",
    "HessianTrace",
    "JacobianNorms",
    "JacobianProjection",
    "MeasureConfig",
    "MeasureSpec",
    "compute_measures",
    "get_measure",
    "hessian_max_eig",
    "hessian_trace",
    "jacobian_norms",
    "jacobian_projection",
    "list_measures",
    "measure_outputs",
    "register_measure",
]
