"""Train one cell of a search space on a dataset with a profile, reproducibly."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..data import Dataset, DeviceLoader
from ..evaluation import evaluate_clean
from ..search_spaces import get_search_space
from ..utils import resolve_device
from ..utils.seeding import make_generator
from .cutout import cutout
from .mixup import mixup, mixup_cross_entropy
from .profiles import TrainProfile

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """A trained network and its per-epoch history.

    Attributes:
        model: the trained network (eval mode).
        history: one dict per epoch: ``epoch``, ``lr`` (at the epoch's end), ``train_loss``, ``train_acc``,
            ``test_acc`` (NaN on epochs without evaluation), ``seconds``.
        meta: what defines the run (arch, dataset, profile, seed, device) for the checkpoint.
    """

    model: nn.Module
    history: list[dict[str, float]]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def final_test_acc(self) -> float:
        return float(self.history[-1]["test_acc"])


def lr_at(profile: TrainProfile, step: int, total_steps: int) -> float:
    """Learning rate the trainer sets itself at optimiser step ``step`` (0-based) of ``total_steps``.

    ``"cosine"``: from ``lr`` to ``lr_min`` (0 for NB201), per step or, with ``lr_step="epoch"``, held for each
    epoch at the value of its first step (torch's ``CosineAnnealingLR(T_max=epochs, eta_min=lr_min)`` stepped per
    epoch); ``"constant"``: ``lr``. ``"onecycle"`` has no closed form here: the trainer runs the library's
    ``OneCycleLR`` (:func:`make_scheduler`), so asking raises ``ValueError``.
    """
    if profile.schedule == "onecycle":
        raise ValueError(f"profile {profile.name!r}: the onecycle schedule is torch's OneCycleLR (make_scheduler), "
                         "not a rate the trainer sets")
    if profile.schedule == "cosine":
        if profile.lr_step == "epoch":
            per_epoch = max(1, total_steps // profile.epochs)
            t = (step // per_epoch) / profile.epochs
        else:
            t = step / max(1, total_steps)
        if profile.lr_min == 0.0:  # NB201's form, kept so that its rates stay the same floats
            return 0.5 * profile.lr * (1.0 + math.cos(math.pi * t))
        return profile.lr_min + 0.5 * (profile.lr - profile.lr_min) * (1.0 + math.cos(math.pi * t))
    return profile.lr


def make_scheduler(
    profile: TrainProfile, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The library scheduler of a profile, stepped once per batch; ``None`` where the trainer sets the rate itself.

    ``"onecycle"``: ``OneCycleLR(optimizer, profile.lr, epochs=profile.epochs, steps_per_epoch=steps_per_epoch,
    pct_start=profile.warmup_fraction)`` with every other argument at PyTorch's default (cosine annealing,
    div_factor 25, final_div_factor 1e4, cycle_momentum between 0.85 and 0.95), as NAS-RobBench-201's ``main.py``.
    """
    if profile.schedule != "onecycle":
        return None
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, profile.lr, epochs=profile.epochs, steps_per_epoch=steps_per_epoch, pct_start=profile.warmup_fraction
    )


def _loss(logits: torch.Tensor, y: torch.Tensor, y_mix: torch.Tensor, lam: float,
          profile: TrainProfile) -> torch.Tensor:  # fmt: skip
    """The training loss of one head: cross-entropy (float32 logits), mixed as mixup mixed the batch when it did
    (``lam < 1`` only under mixup; without it exactly the plain cross-entropy)."""
    if profile.mixup_alpha <= 0:
        return F.cross_entropy(logits.float(), y, label_smoothing=profile.label_smoothing)
    return mixup_cross_entropy(logits.float(), y, y_mix, lam, profile.label_smoothing)


def _adversary(profile: TrainProfile) -> Callable[..., torch.Tensor] | None:
    if profile.adv_eps is None:
        return None
    from robustbench_nas.attacks.training import adversarial_batch  # the attacks package owns PGD

    def perturb(model: nn.Module, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return adversarial_batch(
            model,
            x,
            y,
            eps=profile.adv_eps,
            steps=profile.adv_steps,
            step_size=profile.adv_step_size,
            random_start=profile.adv_random_start,
            generator=g,
        )

    return perturb


def train_model(
    arch: object,
    dataset: Dataset,
    profile: TrainProfile,
    seed: int = 0,
    device: torch.device | str | None = "auto",
    eval_split: str = "test",
    progress: bool = True,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    space: str = "nb201",
) -> TrainResult:
    """Train ``arch`` (a string or index of ``space``) on ``dataset`` with ``profile``.

    Reproducible: the seed fixes initialisation (through a forked global RNG, so the caller's RNG state is left
    alone), data order and augmentation; on the CPU the same seed gives the same weights bit for bit.

    Arguments:
        arch: architecture string, index or architecture object of ``space``.
        dataset: from :func:`robustbench_nas.data.get_dataset`; trains on its ``train`` split.
        profile: :class:`TrainProfile`.
        seed: run seed.
        device: ``"auto"`` (CUDA if present), ``"cpu"``, ``"cuda:0"``...
        eval_split: split whose accuracy is recorded per epoch.
        progress: show a progress bar.
        on_epoch: called with each epoch's history row.
        space: search-space name; the network is ``space.build_network`` with the profile's
            ``space.network_options`` (NB201: ``C``, ``N``).
    """
    dev = resolve_device(device)
    info = dataset.info
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        sp = get_search_space(space)
        model = sp.build_network(arch, num_classes=info.num_classes, mean=info.mean, std=info.std,
                                 in_channels=info.channels, **sp.training_network_options(profile))
    if profile.drop_path_prob > 0 and not hasattr(model, "drop_path_prob"):
        raise ValueError(f"profile {profile.name!r} sets drop_path_prob, but {space} networks have no drop path")
    if profile.auxiliary_weight > 0 and not hasattr(model, "forward_with_auxiliary"):
        raise ValueError(f"profile {profile.name!r} sets auxiliary_weight, but {space} networks have no auxiliary head")
    model = model.to(dev)
    if profile.channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward: nn.Module = torch.compile(model) if profile.compile else model

    train_split = dataset.split("train")
    if profile.max_train_images is not None:
        train_split = train_split.subset(profile.max_train_images, seed=seed)
    eval_data = dataset.split(eval_split)
    g = make_generator(seed + 1)  # the shuffle/augment stream (seed itself picks the train subset)
    g_cutout = make_generator(seed + 2)  # its own stream: the loader's order and crops stay as they were
    rng_mixup = np.random.default_rng(seed + 3) if profile.mixup_alpha > 0 else None  # likewise its own
    loader = DeviceLoader(train_split, profile.batch_size, dev, shuffle=True, augment=profile.augment, generator=g,
                          channels_last=profile.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=profile.lr, momentum=profile.momentum, nesterov=profile.nesterov,
                          weight_decay=profile.weight_decay)
    scheduler = make_scheduler(profile, opt, len(loader))
    perturb = _adversary(profile)
    autocast = (
        torch.autocast(device_type=dev.type, dtype=torch.bfloat16) if profile.amp == "bf16" else contextlib.nullcontext()
    )
    total = profile.epochs * len(loader)
    step = 0
    history: list[dict[str, float]] = []
    bar = tqdm(total=total, desc=f"train {model.arch_str[:40]}", disable=not progress, leave=False, unit="step")
    # drop path (DARTS) draws from the global generator: seeded from the run seed inside a fork, so the same seed
    # trains the same weights in any process and the caller's global RNG is left alone
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed + 4)
        for epoch in range(1, profile.epochs + 1):
            t0 = time.perf_counter()
            model.train()
            if profile.drop_path_prob > 0:  # DARTS: drop_path_prob * epoch / epochs, epoch counted from 0
                model.drop_path_prob = profile.drop_path_prob * (epoch - 1) / profile.epochs
            loss_sum = torch.zeros((), device=dev)
            correct = torch.zeros((), device=dev, dtype=torch.long)
            seen = 0
            for xb, yb in loader:
                if scheduler is None:
                    lr = lr_at(profile, step, total)
                    for group in opt.param_groups:
                        group["lr"] = lr
                if profile.cutout > 0:
                    xb = cutout(xb, profile.cutout, info.mean, g_cutout)
                if perturb is not None:
                    xb = perturb(model, xb, yb, g)
                yb_mix, lam = yb, 1.0
                if rng_mixup is not None:
                    xb, yb_mix, lam = mixup(xb, yb, profile.mixup_alpha, rng_mixup)
                with autocast:
                    if profile.auxiliary_weight > 0:
                        logits, aux = model.forward_with_auxiliary(xb)
                        loss = (_loss(logits, yb, yb_mix, lam, profile)
                                + profile.auxiliary_weight * _loss(aux, yb, yb_mix, lam, profile))
                    else:
                        logits = forward(xb)
                        loss = _loss(logits, yb, yb_mix, lam, profile)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if profile.grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), profile.grad_clip)
                opt.step()
                if scheduler is not None:
                    scheduler.step()
                loss_sum += loss.detach() * yb.shape[0]
                correct += (logits.detach().argmax(1) == yb).sum()
                seen += yb.shape[0]
                step += 1
                bar.update(1)
            test_acc = float("nan")
            if epoch % profile.eval_every == 0 or epoch == profile.epochs:
                test_acc = evaluate_clean(model, eval_data.images(dev), eval_data.labels(dev)).accuracy
            row = {
                "epoch": epoch,
                "lr": float(opt.param_groups[0]["lr"]) if scheduler is not None else lr_at(profile, step, total),
                "train_loss": float(loss_sum) / max(1, seen),
                "train_acc": float(correct) / max(1, seen),
                "test_acc": test_acc,
                "seconds": time.perf_counter() - t0,
            }
            history.append(row)
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", test=f"{test_acc:.3f}")
            log.info("epoch %d/%d loss %.4f train %.3f test %.3f", epoch, profile.epochs, row["train_loss"],
                     row["train_acc"], test_acc)
            if on_epoch is not None:
                on_epoch(row)
    bar.close()
    if hasattr(model, "without_auxiliary"):  # the auxiliary head only trains: evaluate and save the network without it
        model.without_auxiliary()
    if hasattr(model, "drop_path_prob"):
        model.drop_path_prob = 0.0
    model.eval()
    if profile.channels_last:
        model = model.to(memory_format=torch.contiguous_format)
    meta = {
        "arch": model.arch_str,
        "dataset": info.name,
        "profile": profile.to_dict(),
        "seed": int(seed),
        "device": str(dev),
        "eval_split": eval_split,
        "history": history,
    }
    return TrainResult(model=model, history=history, meta=meta)
