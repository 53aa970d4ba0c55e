"""GPU vs CPU on a trained network at every eps of the pipeline's attack grid: checks that can fail.

What the pipeline needs from a device is that it gives the CPU's numbers: the same per-image robust correctness at
every (attack, eps), including 0.1/255, whose perturbation changes activations by about 1e-3 relative, the size of
a TF32 rounding step. The checks (each with its value, tolerance and verdict in the record):

* ``clean_logits``: max |logit difference| / max |logit| of the clean images <= 1e-4. IEEE fp32 kernels of
  different libraries differ by ~1e-6 relative; TF32 (the default of cuDNN convolutions) by ~1e-3.
* ``resolution_0.1/255``: the device must resolve the grid's smallest perturbation: for the FGSM images at the
  smallest eps, the median over images of |device - CPU logits| / |CPU logits(perturbed) - CPU logits(clean)| <=
  0.05 (the device's error is at most 5 % of the effect being measured).
* per (attack, eps) of the grid: the fraction of images whose robust correctness differs between the devices
  <= max(0.02, 2/n) (PGD / APGD / Square follow the sign of gradients and the order of losses, so an image whose
  gradient component is ~0 may take another path: a few such images are rounding, not an error); the accuracies
  differ by at most the same; the mean true-class confidence differs by <= 0.01.
* ``batch_invariance``: on the device, the per-image results at the pipeline's batch size and at half of it (the
  out-of-memory retry) differ on at most the same fraction of images.
* ``informative``: the network is trained (clean accuracy >= ``min_clean_accuracy``) and the smallest eps leaves
  images correct, so the per-(attack, eps) checks can tell devices apart; else the whole check fails: agreement
  at 0 % accuracy on both devices proves nothing.

Both devices run under the pipeline's own precision (:func:`robustbench_nas.utils.precision.ieee_fp32`), at the
protocol's batch size, with the protocol's attack modes and seeds; only the attack budgets are shortened (the
same on both devices), since the CPU side must finish in minutes. ``perturb`` adds relative Gaussian noise to the
device's copy of the weights: the tests use it to show that the checks fail on a different network.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from robustbench_nas.utils.precision import ieee_fp32


@dataclass(frozen=True)
class Tolerances:
    """Bounds of the checks (module docstring); fractions are of the ``n`` images."""

    logit_rel: float = 1e-4
    resolution: float = 0.05
    per_image: float = 0.02
    confidence: float = 0.01
    min_clean_accuracy: float = 0.2

    def images(self, n: int) -> float:
        """Fraction of images allowed to differ: ``per_image``, at least 2 images."""
        return max(self.per_image, 2.0 / max(n, 1))


def perturbed_copy(model: torch.nn.Module, rel: float, seed: int = 1) -> torch.nn.Module:
    """A copy of ``model`` whose every parameter is multiplied by ``1 + rel * N(0, 1)`` (fixed seed)."""
    m = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(1 + rel * torch.randn(p.shape, generator=g).to(p.device, p.dtype))
    return m


def _logits(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    dev = next(model.parameters()).device
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size].to(dev)).float().cpu() for i in range(0, len(x), batch_size)])


def _fgsm_images(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """x + eps * sign(grad of the CE loss), computed once on the CPU model (the same images for both devices)."""
    xr = x.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(model(xr), y).backward()
    return (x + eps * xr.grad.sign()).clamp(0, 1).detach()


def _check(name: str, value: float, tolerance: float, **extra: Any) -> dict[str, Any]:
    ok = bool(np.isfinite(value) and value <= tolerance)
    return {"name": name, "value": float(value), "tolerance": float(tolerance), "ok": ok, **extra}


def _run_attacks(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, grid: Mapping[str, Sequence[float]],
                 params: Mapping[str, Mapping[str, Any]], batch_size: int, seed: int, mode: str) -> dict:
    from robustbench_nas import attacks

    dev = next(model.parameters()).device
    out: dict[tuple[str, float], Any] = {}
    for name, eps in grid.items():
        for r in attacks.evaluate(model, x.to(dev), y.to(dev), name, list(eps), params=dict(params.get(name) or {}),
                                  batch_size=batch_size, seed=seed, mode=mode):  # type: ignore[arg-type]
            out[(name, float(r.eps))] = r.stats
    return out


def compare_devices(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: str, *,
                    grid: Mapping[str, Sequence[float]], params: Mapping[str, Mapping[str, Any]] | None = None,
                    batch_size: int = 256, seed: int = 0, mode: str = "independent",
                    tol: Tolerances = Tolerances(), perturb: float = 0.0) -> dict[str, Any]:
    """Compare ``model`` on the CPU and on ``device`` (module docstring); returns the record's fields.

    Arguments:
        model: a trained classifier (any device; copied, never modified) taking images in [0, 1].
        x, y: real images ``(n, 3, H, W)`` in [0, 1] and labels ``(n,)``.
        device: the device checked against the CPU (``"cpu"`` compares the CPU with itself: a dry run).
        grid: ``{attack: eps list}``, eps in [0, 1] pixel units; params: per-attack parameter overrides.
        batch_size, seed, mode: as the pipeline's adversarial stage uses them.
        perturb: relative weight noise on the device's copy (tests only).

    Returns:
        ``{"checks": [...], "ok", "failed", "n_images", "accuracy": {"cpu": ..., "device": ...}, "seconds", ...}``.
    """
    if x.ndim != 4 or len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x must be (n, C, H, W) with n = len(y) > 0, got {tuple(x.shape)} and {tuple(y.shape)}")
    params = params or {}
    cpu_model = copy.deepcopy(model).cpu().eval()
    dev_model = (perturbed_copy(cpu_model, perturb) if perturb else copy.deepcopy(cpu_model)).to(device).eval()
    x, y = x.cpu(), y.cpu()
    n = len(y)
    checks: list[dict[str, Any]] = []
    seconds: dict[str, float] = {}
    with ieee_fp32() as precision:
        # internal keys "ref" (the CPU) and "dev" (device): they stay apart when device is "cpu" (dry run)
        clean = {"ref": _logits(cpu_model, x, batch_size), "dev": _logits(dev_model, x, batch_size)}
        scale = float(clean["ref"].abs().max())
        checks.append(_check("clean_logits", float((clean["ref"] - clean["dev"]).abs().max()) / scale,
                             tol.logit_rel))
        clean_acc = float((clean["ref"].argmax(1) == y).float().mean())
        eps_min = min(min(e) for e in grid.values())
        xa = _fgsm_images(cpu_model, x, y, eps_min)
        adv_cpu, adv_dev = _logits(cpu_model, xa, batch_size), _logits(dev_model, xa, batch_size)
        effect = (adv_cpu - clean["ref"]).norm(dim=1)
        err = (adv_dev - adv_cpu).norm(dim=1)
        ratio = float(torch.median(err / effect.clamp_min(1e-12)))
        checks.append(_check(f"resolution_{eps_min * 255:g}/255", ratio, tol.resolution,
                             median_effect=float(effect.median())))
        stats = {}
        for side, m in (("ref", cpu_model), ("dev", dev_model)):
            t0 = time.perf_counter()
            stats[side] = _run_attacks(m, x, y, grid, params, batch_size, seed, mode)
            seconds[side] = time.perf_counter() - t0
        half = _run_attacks(dev_model, x, y, grid, params, max(1, batch_size // 2), seed, mode)
    allowed = tol.images(n)
    accuracy: dict[str, dict[str, float]] = {"cpu": {}, "device": {}}
    worst_half = 0.0
    for key, a in stats["ref"].items():
        b = stats["dev"][key]
        label = f"{key[0]}@{key[1] * 255:g}/255"
        ca, cb = np.asarray(a.correct, bool), np.asarray(b.correct, bool)
        accuracy["cpu"][label], accuracy["device"][label] = float(a.accuracy), float(b.accuracy)
        checks.append(_check(f"{label} per-image", float((ca != cb).mean()), allowed))
        checks.append(_check(f"{label} accuracy", abs(float(a.accuracy) - float(b.accuracy)), allowed))
        checks.append(_check(f"{label} confidence", abs(float(a.confidence_true) - float(b.confidence_true)),
                             tol.confidence))
        worst_half = max(worst_half, float((cb != np.asarray(half[key].correct, bool)).mean()))
    checks.append(_check("batch_invariance", worst_half, allowed, batch_sizes=[batch_size, max(1, batch_size // 2)]))
    smallest = [v for k, v in accuracy["cpu"].items() if k.endswith(f"@{eps_min * 255:g}/255")]
    informative = clean_acc >= tol.min_clean_accuracy and min(smallest) > 0
    checks.append({"name": "informative", "value": clean_acc, "tolerance": tol.min_clean_accuracy,
                   "ok": bool(informative), "note": "clean accuracy of the trained network; the smallest eps "
                                                    "must leave images correct"})
    return {"checks": checks, "ok": all(c["ok"] for c in checks), "n_images": n, "clean_accuracy": clean_acc,
            "device": device, "accuracy": accuracy, "seconds": {"cpu": seconds["ref"], "device": seconds["dev"]},
            "precision": precision, "batch_size": batch_size,
            "tolerances": asdict(tol), "perturb": perturb, "failed": [c["name"] for c in checks if not c["ok"]]}


def train_network(arch: str, x: torch.Tensor, y: torch.Tensor, device: str, *, C: int, N: int, epochs: int,
                  batch_size: int = 128, lr: float = 0.05, seed: int = 0) -> torch.nn.Module:
    """A network of ``arch`` trained on ``(x, y)`` (SGD with momentum, fp32 as every training profile, fixed
    seed), returned in eval mode on the CPU."""
    from robustbench_nas.models import build_model

    torch.manual_seed(seed)
    model = build_model(arch, C=C, N=N).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(seed)
    xd, yd = x.to(device), y.to(device)
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=g).to(device)
        for i in range(0, len(y), batch_size):
            idx = order[i:i + batch_size]
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(xd[idx]), yd[idx]).backward()
            opt.step()
    return model.eval().cpu()


__all__ = ["Tolerances", "compare_devices", "perturbed_copy", "train_network"]
