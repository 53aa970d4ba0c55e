"""Pipeline stages: one registered function per named stage, called once per (cell, seed).

A stage function takes a :class:`StageContext` and returns ``{store array name: value}`` for that cell (values
shaped as in ``docs/storage.md``); the runner writes them and marks the stage done. Stages plug in by name::

    @register_stage("my_stage", needs=("train",), gpu=True)
    def my_stage(ctx: StageContext) -> dict[str, Any]:
        model = ctx.trained_model()
        ...

Each stage calls its part of the project through the APIs of ``docs/architecture.md``; the part is imported
lazily inside the stage, so a missing part only fails the stages that need it.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from robustbench_nas.storage.schema import STAGES
from robustbench_nas.utils.registry import Registry
from robustbench_nas.utils.seeding import derive_seed

from .protocol import ProtocolConfig

StageFn = Callable[["StageContext"], dict[str, Any]]


@dataclass(frozen=True)
class StageDef:
    """A registered stage.

    Attributes:
        name: stage name (one of the store's ``stage`` coordinate values).
        fn: ``fn(ctx) -> {array: value}``.
        needs: stages that must be done for the same (cell, seed) first.
        gpu: runs on an accelerator when there is one (declares the Dask resource ``GPU``).
        per_seed: False for results that do not depend on the seed (written once per cell).
    """

    name: str
    fn: StageFn
    needs: tuple[str, ...] = ()
    gpu: bool = False
    per_seed: bool = True


#: the registered stage implementations by stage name
STAGE_DEFS: Registry[StageDef] = Registry("stage")


def register_stage(name: str, *, needs: tuple[str, ...] = (), gpu: bool = False,
                   per_seed: bool = True) -> Callable[[StageFn], StageFn]:
    """Decorator registering a stage function under ``name`` (must be a store stage, see ``STAGES``).

    A stage that already has an implementation raises ``ValueError``.
    """

    def deco(fn: StageFn) -> StageFn:
        if name not in STAGES:
            raise ValueError(f"stage {name!r} has no arrays in the store schema; known stages: {list(STAGES)}")
        STAGE_DEFS.add(name, StageDef(name, fn, tuple(needs), gpu, per_seed))
        return fn

    return deco


def get_stage(name: str) -> StageDef:
    """The :class:`StageDef` of ``name``."""
    if name not in STAGE_DEFS:
        raise KeyError(f"unknown stage {name!r}; known: {STAGE_DEFS.list()}")
    return STAGE_DEFS.get(name)


def list_stages(pattern: str | None = None) -> list[str]:
    """Registered stage names in pipeline order, filtered by a shell-style ``pattern``."""
    names = set(STAGE_DEFS.list(pattern))
    return [s for s in STAGES if s in names]


def with_dependencies(stages: list[str], available: list[str]) -> list[str]:
    """``stages`` plus everything they need (transitively) among ``available``, in pipeline order."""
    want: set[str] = set()

    def add(s: str) -> None:
        if s in want:
            return
        want.add(s)
        for d in get_stage(s).needs:
            if d in available:
                add(d)

    for s in stages:
        add(s)
    return [s for s in STAGES if s in want]


def dependent_stages(stages: list[str], available: list[str]) -> list[str]:
    """The stages among ``available`` that need any of ``stages`` (transitively), in pipeline order, ``stages``
    themselves left out: what a new result of ``stages`` makes stale (``train`` -> clean, adversarial, ...)."""
    changed = set(stages)
    out: set[str] = set()
    grew = True
    while grew:  # a handful of stages: a fixed point is simpler than building the reverse graph
        grew = False
        for s in available:
            if s not in out and s not in changed and any(d in changed or d in out for d in get_stage(s).needs):
                out.add(s)
                grew = True
    return [s for s in STAGES if s in out]


def derived_seed(*parts: Any) -> int:
    """A stable 31-bit seed from ``parts`` (same inputs, same seed, in every process): :func:`derive_seed`'s
    default ``"sha256"`` form."""
    return derive_seed(*parts)


@functools.lru_cache(maxsize=4)
def _dataset(name: str, root: str | None) -> Any:
    from robustbench_nas.data import get_dataset

    return get_dataset(name, root=root)


@functools.lru_cache(maxsize=16)
def _subset(name: str, root: str | None, split: str, n: int | None, subset_seed: int,
            indices: tuple[int, ...] | None) -> tuple[Any, Any]:
    """``(DataSplit of the chosen images, ImageSubset)``: :func:`robustbench_nas.data.subsets.choose_images`."""
    from robustbench_nas.data.subsets import choose_images, take

    s = _dataset(name, root).split(split)
    chosen = choose_images(s, n, subset_seed, indices)
    return take(s, chosen.indices), chosen


def protocol_images(protocol: ProtocolConfig, purpose: str) -> Any:
    """The :class:`~robustbench_nas.data.subsets.ImageSubset` a protocol evaluates for ``purpose`` (``proxies``,
    ``clean``, ``attacks``, ``corruptions``, ``measures``): the same for every cell, every process and every
    protocol with the same dataset, split, size, ``subset_seed`` and explicit indices."""
    split, n, subset_seed, indices = protocol.image_request(purpose)
    chosen = _subset(protocol.dataset, protocol.data_root, split, n, subset_seed, indices)[1]
    return dataclasses.replace(chosen, purpose=purpose)


@dataclass
class StageContext:
    """What a stage function gets: the cell, the seed, the protocol, where things are, and cached helpers.

    Attributes:
        protocol: the run's :class:`ProtocolConfig`.
        uid: the cell (its uid); ``arch_str`` its string.
        seed: the training / initialisation seed.
        store_path: the store folder (checkpoints live next to it).
        device: torch device of this worker.
        checkpoint_rel: the cell's checkpoint path (relative to the store's parent) recorded by ``train``.
        weights_sha256: the weights hash recorded with it (``""``: none recorded); :meth:`trained_model` refuses a
            file whose weights hash otherwise, and sets it to the hash of the weights it loaded.
    """

    protocol: ProtocolConfig
    uid: int
    arch_str: str
    seed: int
    store_path: Path
    device: torch.device
    checkpoint_rel: str = ""
    weights_sha256: str = ""
    _model: Any = field(default=None, repr=False)

    @property
    def dataset(self) -> Any:
        """The protocol's dataset (cached per worker process)."""
        return _dataset(self.protocol.dataset, self.protocol.data_root)

    def images(self, purpose: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x float [0, 1], y)`` on the device: the protocol's images for ``purpose`` (see :func:`protocol_images`;
        ``proxies`` and ``measures`` from the training split, the others from ``eval_split``)."""
        split, n, subset_seed, indices = self.protocol.image_request(purpose)
        s = _subset(self.protocol.dataset, self.protocol.data_root, split, n, subset_seed, indices)[0]
        return s.images(self.device), s.labels(self.device)

    def checkpoint_folder(self) -> Path:
        """Where ``train`` writes checkpoints: ``<store>.checkpoints/`` beside the store, each named
        ``<uid>_s<seed>_<weights sha256>.safetensors`` (content-addressed: a retrained cell gets a new file and the
        old one, which another store may point to, stays)."""
        return self.store_path.parent / f"{self.store_path.name}.checkpoints"

    def trained_model(self) -> torch.nn.Module:
        """The trained network from the checkpoint recorded by ``train`` (eval mode, on the device)."""
        if self._model is None:
            from robustbench_nas.training import load_checkpoint

            if not self.checkpoint_rel:
                raise RuntimeError(f"cell {self.uid} seed {self.seed}: no checkpoint recorded (is 'train' done?)")
            path = self.store_path.parent / self.checkpoint_rel
            model, meta = load_checkpoint(path, device=self.device, expect_sha256=self.weights_sha256 or None)
            self.weights_sha256 = meta["weights_sha256"]
            self._model = model.eval()
        return self._model

    @property
    def space(self) -> Any:
        """The protocol's search space."""
        return self.protocol.space()

    def network_kwargs(self) -> dict[str, Any]:
        """``num_classes, mean, std`` and the space's options (NB201: ``C, N``) of the protocol's network (as the
        trainer builds it)."""
        info = self.dataset.info
        return {"num_classes": info.num_classes, "mean": info.mean, "std": info.std,
                **self.space.network_options(self.protocol.profile())}


# ---- the stages --------------------------------------------------------------------------------------------------
@register_stage("info", per_seed=False)
def info_stage(ctx: StageContext) -> dict[str, Any]:
    """Parameters and FLOPs of the network, counted on the built network in the space's convention (no data)."""
    from robustbench_nas.models import count_params

    info = ctx.dataset.info
    model = ctx.space.build_network(ctx.arch_str, in_channels=info.channels, **ctx.network_kwargs())
    flops = ctx.space.count_flops(model, (info.channels, info.image_size, info.image_size))
    return {"params": count_params(model), "flops": flops.published_m, "flops_plain": flops.plain_m}


@register_stage("proxies", gpu=True)
def proxies_stage(ctx: StageContext) -> dict[str, Any]:
    """Zero-cost proxies at initialisation (seeded by the cell's seed) on ``proxy_images`` training images."""
    from robustbench_nas.proxies import compute_proxies

    x, y = ctx.images("proxies")
    values = compute_proxies(ctx.arch_str, x, y, list(ctx.protocol.proxies), seed=ctx.seed,
                             space=ctx.protocol.search_space, engine=ctx.protocol.proxy_engine, **ctx.network_kwargs())
    return {"proxy_value": np.array([values[p] for p in ctx.protocol.proxies], dtype=np.float64)}


@register_stage("train", gpu=True)
def train_stage(ctx: StageContext) -> dict[str, Any]:
    """Train the cell with the protocol's profile; keep the checkpoint under its weights hash (path and hash are
    recorded)."""
    from robustbench_nas.storage.schema import DEFAULT_HISTORY
    from robustbench_nas.training import save_checkpoint_by_content, train_model

    profile = ctx.protocol.profile()
    result = train_model(ctx.arch_str, ctx.dataset, profile, seed=ctx.seed, device=ctx.device,
                         eval_split=ctx.protocol.eval_split, progress=False, space=ctx.protocol.search_space)
    path, sha = save_checkpoint_by_content(ctx.checkpoint_folder(), f"{ctx.uid}_s{ctx.seed}", result.model,
                                           result.meta)
    ctx.checkpoint_rel, ctx.weights_sha256 = str(path.relative_to(ctx.store_path.parent)), sha
    out: dict[str, Any] = {"checkpoint": ctx.checkpoint_rel, "weights_sha256": sha}
    for key in DEFAULT_HISTORY:
        out[f"history_{key}"] = np.array([float(row.get(key, np.nan)) for row in result.history], dtype=np.float64)
    ctx._model = result.model.eval()
    return out


def _stats_values(prefix: str, stats: Any) -> dict[str, Any]:
    return {
        f"{prefix}_accuracy": stats.accuracy,
        f"{prefix}_confidence": stats.confidence_pred,
        f"{prefix}_confidence_true": stats.confidence_true,
        f"{prefix}_confusion": np.asarray(stats.confusion),
    }


@register_stage("clean", needs=("train",), gpu=True)
def clean_stage(ctx: StageContext) -> dict[str, Any]:
    """Clean accuracy / confidence / confusion on ``eval_images`` of the evaluation split."""
    from robustbench_nas.evaluation import evaluate_clean

    x, y = ctx.images("clean")
    return _stats_values("clean", evaluate_clean(ctx.trained_model(), x, y, batch_size=ctx.protocol.batch_size))


def _grid_values(prefix: str, shape: tuple[int, int], k: int, results: list[tuple[int, int, Any]]) -> dict[str, Any]:
    acc = np.full(shape, np.nan)
    conf = np.full(shape, np.nan)
    conf_t = np.full(shape, np.nan)
    cm = np.full((*shape, k, k), -1, dtype=np.int64)
    for i, j, st in results:
        acc[i, j], conf[i, j], conf_t[i, j] = st.accuracy, st.confidence_pred, st.confidence_true
        cm[i, j] = st.confusion
    return {f"{prefix}_accuracy": acc, f"{prefix}_confidence": conf, f"{prefix}_confidence_true": conf_t,
            f"{prefix}_confusion": cm}


def _clean_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    """Clean accuracy of exactly the images an evaluation used (its subset may differ from ``eval_images``), so
    that robust and clean accuracy of one cell can be compared on the same images."""
    from robustbench_nas.evaluation import evaluate_clean

    return float(evaluate_clean(model, x, y, batch_size=batch_size).accuracy)


@register_stage("adversarial", needs=("train",), gpu=True)
def adversarial_stage(ctx: StageContext) -> dict[str, Any]:
    """Every attack of the protocol at every eps of its grid, on ``attack_images`` evaluation images."""
    from robustbench_nas import attacks

    from robustbench_nas.storage import StoreSpec

    p = ctx.protocol
    spec = StoreSpec(archs=[ctx.uid], arch_str=[ctx.arch_str], attacks={k: list(v) for k, v in p.attacks.items()})
    x, y = ctx.images("attacks")
    model = ctx.trained_model()
    found: list[tuple[int, int, Any]] = []
    for attack, eps in p.attacks.items():
        res = attacks.evaluate(model, x, y, attack, list(eps), params=p.attack_params.get(attack),
                               batch_size=p.batch_size, seed=derived_seed(ctx.seed, attack), mode=p.attack_mode)
        if len(res) != len(eps):
            raise RuntimeError(f"robustbench_nas.attacks.evaluate({attack!r}) returned {len(res)} results for {len(eps)} eps")
        for r in res:
            i, j = spec.eps_index(attack, r.eps)
            found.append((i, j, r.stats))
    out = _grid_values("adv", (len(p.attacks), len(spec.eps_values())), ctx.dataset.info.num_classes, found)
    out["adv_clean_accuracy"] = _clean_accuracy(model, x, y, p.batch_size)
    return out


@register_stage("corruptions", needs=("train",), gpu=True)
def corruptions_stage(ctx: StageContext) -> dict[str, Any]:
    """Every corruption at every severity, on ``corruption_images`` evaluation images."""
    from robustbench_nas import corruptions

    p = ctx.protocol
    x, y = ctx.images("corruptions")
    source: Any = p.corruption_source
    if source is not None:  # the CIFAR-10-C files hold the test set in order: read the same chosen images from them
        source = corruptions.CifarCFiles(source, device=ctx.device, indices=protocol_images(p, "corruptions").indices)
    res = corruptions.evaluate(ctx.trained_model(), x, y, list(p.corruptions), tuple(p.severities),
                               batch_size=p.batch_size, seed=derived_seed(ctx.seed, "corruptions"),
                               source=source)
    found = [(p.corruptions.index(r.corruption), p.severities.index(int(r.severity)), r.stats) for r in res]
    if len(found) != len(p.corruptions) * len(p.severities):
        raise RuntimeError(f"robustbench_nas.corruptions.evaluate returned {len(found)} results for "
                           f"{len(p.corruptions)} x {len(p.severities)}")
    out = _grid_values("corruption", (len(p.corruptions), len(p.severities)), ctx.dataset.info.num_classes, found)
    out["corruption_clean_accuracy"] = _clean_accuracy(ctx.trained_model(), x, y, p.batch_size)
    return out


@register_stage("measures", needs=("train",), gpu=True)
def measures_stage(ctx: StageContext) -> dict[str, Any]:
    """Jacobian / Hessian measures of the trained network on ``measure_images`` training images (as Jung'23)."""
    from robustbench_nas.measures import compute_measures

    p = ctx.protocol
    x, y = ctx.images("measures")
    values = compute_measures(ctx.trained_model(), x, y, list(p.measures), seed=derived_seed(ctx.seed, "measures"),
                              config=p.measure_config())
    return {"measure_value": np.array([values[k] for k in p.measure_outputs()], dtype=np.float64)}


__all__ = [
    "StageContext", "StageDef", "dependent_stages", "derived_seed", "get_stage", "list_stages", "protocol_images",
    "register_stage", "with_dependencies",
]
