"""Named, typed training profiles (NB201's settings, a tiny CPU profile, PGD adversarial training)."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Callable

from ..utils.registry import Registry

#: profile factories by name (a second profile under a taken name is an error, never a silent replacement)
PROFILES: Registry[Callable[[], "TrainProfile"]] = Registry("training profile")


@dataclass(frozen=True)
class TrainProfile:
    """Everything that defines how a cell is trained.

    Attributes:
        name: profile name.
        epochs: training epochs.
        batch_size: images per step.
        lr: peak learning rate.
        momentum, nesterov, weight_decay: SGD settings (weight decay on all parameters, as NB201).
        schedule: ``"cosine"`` (per step, to 0, NB201), ``"onecycle"`` (``torch.optim.lr_scheduler.OneCycleLR`` with
            max_lr ``lr`` and PyTorch's defaults, stepped per batch: cosine from lr/25 up to lr over the first
            ``warmup_fraction`` of the steps, then down to lr/25/1e4, momentum cycled 0.95 -> 0.85 -> 0.95, which
            overrides ``momentum``; NAS-RobBench-201's ``main.py``) or ``"constant"``.
        warmup_fraction: OneCycleLR's ``pct_start`` (fraction of steps of the ramp-up; PyTorch's default 0.3).
        C, N: network width (channels of the first stage) and cells per stage, for spaces whose networks take them
            (NB201; see ``SearchSpace.network_options``). NATS-Bench SSS architectures fix their own widths.
        augment: random crop (dataset padding) + horizontal flip (if the dataset allows).
        label_smoothing: cross-entropy label smoothing.
        max_train_images: train on a class-balanced seeded subset of this size (``None``: all).
        channels_last, amp, compile: GPU speed options (``amp``: ``"bf16"`` autocast or ``None``).
        adv_eps, adv_steps, adv_step_size, adv_random_start: PGD adversarial training (Madry et al.) when
            ``adv_eps`` is set; eps and step size in [0, 1] pixel units.
        eval_every: evaluate test accuracy every this many epochs (and always after the last).
        auxiliary_weight: weight of the auxiliary head's loss (DARTS networks; 0: no auxiliary head).
        drop_path_prob: final drop-path probability, raised linearly from 0 over the epochs as DARTS does
            (``p * epoch / epochs``, epoch counted from 0); 0: off. Only for networks with drop path (DARTS).
        cutout: side of the cutout square in pixels (0: off), filled with the dataset mean.
        grad_clip: clip the gradient norm to this value before each step (``None``: no clipping).
        lr_min: the cosine schedule's floor (torch's ``eta_min``; NB301: 1e-8).
        lr_step: ``"batch"``: the cosine moves every step (NB201); ``"epoch"``: once per epoch, the rate of epoch
            ``e`` (from 0) being ``lr_min + (lr - lr_min) (1 + cos(pi e / epochs)) / 2``, torch's
            ``CosineAnnealingLR(T_max=epochs)`` stepped after each epoch (DARTS, NB301).
        mixup_alpha: mixup with ``lam ~ Beta(alpha, alpha)`` per batch (:func:`.mixup.mixup`; 0: off; NB301: 0.2).
    """

    name: str
    epochs: int
    batch_size: int = 256
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_fraction: float = 0.0
    C: int = 16
    N: int = 5
    augment: bool = True
    label_smoothing: float = 0.0
    max_train_images: int | None = None
    channels_last: bool = False
    amp: str | None = None
    compile: bool = False
    adv_eps: float | None = None
    adv_steps: int = 7
    adv_step_size: float = 2 / 255
    adv_random_start: bool = True
    eval_every: int = 1
    auxiliary_weight: float = 0.0
    drop_path_prob: float = 0.0
    cutout: int = 0
    grad_clip: float | None = None
    lr_min: float = 0.0
    lr_step: str = "batch"
    mixup_alpha: float = 0.0

    def __post_init__(self) -> None:
        self._check_types()
        for f in ("epochs", "batch_size", "eval_every"):
            if getattr(self, f) < 1:
                raise ValueError(f"profile {self.name!r}: {f} must be a positive integer, got {getattr(self, f)!r}")
        if self.schedule not in ("cosine", "onecycle", "constant"):
            raise ValueError(f"profile {self.name!r}: unknown schedule {self.schedule!r} (cosine, onecycle, constant)")
        if self.amp not in (None, "bf16"):
            raise ValueError(f"profile {self.name!r}: amp must be None or 'bf16', got {self.amp!r}")
        if self.auxiliary_weight < 0 or not 0 <= self.drop_path_prob < 1 or self.cutout < 0:
            raise ValueError(f"profile {self.name!r}: auxiliary_weight >= 0, 0 <= drop_path_prob < 1 and cutout >= 0 "
                             f"needed, got {self.auxiliary_weight}, {self.drop_path_prob}, {self.cutout}")
        if self.lr_step not in ("batch", "epoch"):
            raise ValueError(f"profile {self.name!r}: lr_step must be 'batch' or 'epoch', got {self.lr_step!r}")
        if not 0 <= self.lr_min <= self.lr or self.mixup_alpha < 0:
            raise ValueError(f"profile {self.name!r}: 0 <= lr_min <= lr and mixup_alpha >= 0 needed, got lr_min "
                             f"{self.lr_min}, lr {self.lr}, mixup_alpha {self.mixup_alpha}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"profile {self.name!r}: grad_clip must be positive or None, got {self.grad_clip}")
        if self.adv_eps is not None and not 0 <= self.adv_eps <= 1:
            raise ValueError(
                f"profile {self.name!r}: adv_eps={self.adv_eps} is outside [0, 1]; eps is in pixel units "
                "(8/255 = 0.0314), not /255"
            )

    def _check_types(self) -> None:
        """Every field holds a value of its declared type (``--set epochs=abc`` names the field, not a TypeError)."""
        words = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
        for name, hint in typing.get_type_hints(type(self)).items():
            value = getattr(self, name)
            allowed = tuple(t for t in typing.get_args(hint) or (hint,) if t is not type(None))
            if value is None and type(None) in (typing.get_args(hint) or ()):
                continue
            ok = any(
                (isinstance(value, t) and not (t in (int, float) and isinstance(value, bool)))
                or (t is float and isinstance(value, int) and not isinstance(value, bool))
                for t in allowed
            )
            if not ok:
                want = " or ".join(words.get(t, t.__name__) for t in allowed)
                none = " (or none)" if type(None) in (typing.get_args(hint) or ()) else ""
                raise ValueError(f"profile {self.name!r}: {name} must be {want}{none}, got {value!r}")

    def replace(self, **overrides: Any) -> "TrainProfile":
        """A copy with some fields changed (unknown fields are an error)."""
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown training profile fields {sorted(unknown)}")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def register_profile(name: str) -> Callable[[Callable[[], TrainProfile]], Callable[[], TrainProfile]]:
    """Decorator registering a profile factory under ``name``; a name already taken raises ``ValueError``."""
    return PROFILES.register(name)


def list_profiles(pattern: str | None = None) -> list[str]:
    """Registered profile names (sorted), filtered by a shell-style ``pattern`` (``"nb201-*"``)."""
    return PROFILES.list(pattern, sort=True)


def get_profile(name: str, **overrides: Any) -> TrainProfile:
    """The profile ``name`` with ``overrides`` applied (e.g. ``get_profile("tiny", epochs=2)``)."""
    if name not in PROFILES:
        raise KeyError(f"unknown training profile {name!r}; known: {list_profiles()}")
    profile = PROFILES.get(name)()
    return profile.replace(**overrides) if overrides else profile


@register_profile("nb201-200e")
def _nb201_200e() -> TrainProfile:
    """NAS-Bench-201's main setting (hp=200): SGD nesterov 0.9, lr 0.1 cosine to 0, wd 5e-4, batch 256."""
    return TrainProfile(name="nb201-200e", epochs=200)


@register_profile("nb201-12e")
def _nb201_12e() -> TrainProfile:
    """NAS-Bench-201's short setting (hp=12)."""
    return TrainProfile(name="nb201-12e", epochs=12)


@register_profile("nats-sss-90e")
def _nats_sss_90e() -> TrainProfile:
    """NATS-Bench SSS's full schedule (xautodl ``configs/nas-benchmark/hyper-opts/90E.config``): 90 epochs, SGD
    nesterov 0.9, lr 0.1 cosine to 0, no warmup, wd 5e-4, batch 256."""
    return TrainProfile(name="nats-sss-90e", epochs=90)


@register_profile("nats-sss-12e")
def _nats_sss_12e() -> TrainProfile:
    """NATS-Bench SSS's short schedule (``12E.config``): as ``nats-sss-90e`` with 12 epochs."""
    return TrainProfile(name="nats-sss-12e", epochs=12)


@register_profile("tiny")
def _tiny() -> TrainProfile:
    """Small network (C=4, N=1), few epochs: for CPUs, CI and the embedded ``digits`` data."""
    return TrainProfile(name="tiny", epochs=6, batch_size=64, lr=0.05, C=4, N=1)


@register_profile("pgd-at")
def _pgd_at() -> TrainProfile:
    """NAS-RobBench-201's adversarial training (its ``main.py``): PGD-7 at 8/255, step 2/255, random start, examples
    crafted with the model in eval mode; SGD (momentum 0.9, no nesterov, wd 5e-4), 50 epochs,
    ``OneCycleLR(optimizer, 0.1, epochs, steps_per_epoch)`` with PyTorch's defaults (cycled momentum included)."""
    return TrainProfile(
        name="pgd-at",
        epochs=50,
        lr=0.1,
        nesterov=False,
        schedule="onecycle",
        warmup_fraction=0.3,
        adv_eps=8 / 255,
        adv_steps=7,
        adv_step_size=2 / 255,
    )


@register_profile("tiny-at")
def _tiny_at() -> TrainProfile:
    """The ``tiny`` profile with PGD-3 adversarial training at 2/255 (CPU/CI check of the adversarial path)."""
    return TrainProfile(
        name="tiny-at", epochs=6, batch_size=64, lr=0.05, C=4, N=1, adv_eps=2 / 255, adv_steps=3, adv_step_size=1 / 255
    )


# ---- DARTS ---------------------------------------------------------------------------------------------------------
# DARTS networks take C and layers = 3 N + 2 (N cells per stage between the two reduction cells; see
# DartsSearchSpace.network_options). DARTS's SGD has no nesterov momentum.
@register_profile("darts-nb301")
def _darts_nb301() -> TrainProfile:
    """NAS-Bench-301's training of DARTS genotypes (Siems et al. 2020), as its data-generation config sets it
    (automl/nasbench301 ``nasbench301/data_generation/configs/config_0.json``): C=32 (``init_channels``), 8 cells
    (N=2), 100 epochs (cosine ``T_max``), batch 96, SGD lr 0.025 (momentum 0.9, no nesterov), weight decay 3e-4,
    auxiliary head on, drop path 0.2, cutout 16 (one hole). Not in that config, DARTS's values (``cnn/train.py``):
    auxiliary weight 0.4, gradient clipping 5. Also as NB301: mixup with alpha 0.2 (its
    ``batch_loss_computation_technique``), cosine to ``eta_min`` 1e-8 stepped per epoch (``T_max`` 100). Deviation
    (docs/search_spaces.md): the whole training split (NB301's ``run_proxy.py`` holds out ``validation_split`` 0.2)."""
    return TrainProfile(name="darts-nb301", epochs=100, batch_size=96, lr=0.025, nesterov=False, weight_decay=3e-4,
                        C=32, N=2, auxiliary_weight=0.4, drop_path_prob=0.2, cutout=16, grad_clip=5.0,
                        lr_min=1e-8, lr_step="epoch", mixup_alpha=0.2)


@register_profile("darts-eval")
def _darts_eval() -> TrainProfile:
    """The DARTS paper's CIFAR-10 evaluation (``cnn/train.py``): C=36, 20 cells (N=6), 600 epochs, batch 96, SGD lr
    0.025 (momentum 0.9, no nesterov), cosine to 0 stepped per epoch (``CosineAnnealingLR(T_max=epochs)``), weight
    decay 3e-4, auxiliary weight 0.4, drop path 0.2, cutout 16, gradient clipping 5; no mixup."""
    return _darts_nb301().replace(name="darts-eval", epochs=600, C=36, N=6, lr_min=0.0, mixup_alpha=0.0)


@register_profile("darts-tiny")
def _darts_tiny() -> TrainProfile:
    """``tiny`` with DARTS's regularisers (drop path 0.2, cutout 4 on 16x16 digits, gradient clipping 5): a CPU / CI
    check of the DARTS training path. No auxiliary head: on 16x16 images its input is 4x4, smaller than its 5x5
    pooling (use 32x32 images for the auxiliary loss)."""
    return TrainProfile(name="darts-tiny", epochs=6, batch_size=64, lr=0.05, C=4, N=1, drop_path_prob=0.2, cutout=4,
                        grad_clip=5.0)
