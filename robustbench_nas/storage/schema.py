"""The schema of a robustbench-nas Zarr store: dimensions, coordinates and the arrays each stage writes.

A store holds one run (one protocol). Every array is a Zarr v3 array with ``dimension_names``; the coordinate
arrays (``arch``, ``seed``, ``attack``, ``eps``, ...) are written at creation, so ``xarray.open_zarr(path)`` gives a
tidy :class:`xarray.Dataset`.

Per-cell arrays are sharded (Zarr v3 ``sharding_indexed``): one shard file holds ``shard_cells`` cells (256 by
default) x every seed, split along ``arch`` into inner chunks of ``chunk_cells`` cells (every seed, whole along every
other dimension; by default as many cells as fit in :data:`CHUNK_BYTES`, at most the shard). Shards are only ever
written whole, by one writer at a time (see :mod:`.journal`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

#: Schema version written into every store (``attrs["rbnas_schema"]``); bump on incompatible changes.
SCHEMA_VERSION = 2
# Version history: 1 = one chunk file per cell (``nb201_index`` coordinate, ``arch_chunk``); 2 = sharded layout,
# ``arch_coords`` (``rbnas migrate OLD NEW`` converts 1 -> 2).

#: Stage names in pipeline order. ``info`` (params / FLOPs) and ``proxies`` need no training.
STAGES: tuple[str, ...] = ("info", "proxies", "train", "clean", "adversarial", "corruptions", "measures")

#: Stages whose results do not depend on the seed (one result per cell; the status is written at every seed).
PER_ARCH_STAGES: frozenset[str] = frozenset({"info"})

#: Stages computed from the trained checkpoint: each records the weights hash it used
#: (:func:`weights_hash_array`), compared with the cell's current ``weights_sha256`` by ``rbnas status --check``.
WEIGHT_STAGES: tuple[str, ...] = ("clean", "adversarial", "corruptions", "measures")

#: ``status`` codes.
PENDING, DONE, FAILED = 0, 1, 2
STATUS_NAMES = {PENDING: "pending", DONE: "done", FAILED: "failed"}

#: Bookkeeping arrays that stores made before they existed lack (such a store opens and runs; it does not record them).
UNIT_SETTINGS: tuple[str, ...] = ("unit_threads", "unit_device", "unit_precision")

#: Per-attack arrays of the adversarial stage, written by its one-unit-per-attack pipeline units (what each attack's
#: results were computed from, and how long it took). Stores made before the split lack them: they open, read and
#: run as before (the adversarial stage then runs as one unit per cell).
ATTACK_UNIT_ARRAYS: tuple[str, ...] = ("adv_attack_weights_sha256", "adv_attack_seconds")

#: Per-epoch training curves stored by default (keys of ``TrainResult.history``).
#: (``seconds`` is left out on purpose: wall time would make two runs with the same seed differ.)
DEFAULT_HISTORY: tuple[str, ...] = ("train_loss", "train_acc", "test_acc", "lr")


def weights_hash_array(stage: str) -> str:
    """Name of the array holding the weights hash a :data:`WEIGHT_STAGES` result was computed from."""
    if stage not in WEIGHT_STAGES:
        raise KeyError(f"stage {stage!r} is not computed from a checkpoint; those are {list(WEIGHT_STAGES)}")
    return f"{stage}_weights_sha256"


def eps_label(eps: float) -> str:
    """Human label of an eps in [0, 1] units, e.g. ``0.0313725 -> "8/255"``."""
    v = round(float(eps) * 255, 6)
    return f"{v:g}/255"


def _eps_key(eps: float) -> float:
    """Rounding used to merge eps values that differ only by float noise (1e-9 of a 1/255 step)."""
    return round(float(eps) * 255, 6)


@dataclass
class StoreSpec:
    """Coordinates of one store: which cells, seeds, grids and names it holds.

    Arguments:
        archs: the ``arch`` coordinate: the search space's class ids (uids), distinct.
        arch_str: architecture strings, one per arch.
        arch_coords: extra per-arch coordinates beside ``arch`` / ``arch_str``, ``{name: [one value per arch]}``
            (ints, floats or strings), e.g. ``{"nb201_index": [...]}`` (the index each cell was requested as).
        seeds: training / initialisation seeds (the ``seed`` coordinate).
        attacks: ``{attack key: [eps in [0, 1] units]}``; the ``eps`` coordinate is the sorted union, and
            ``attack_grid[attack, eps]`` marks the evaluated pairs (the rest stays NaN).
        corruptions: corruption names.
        severities: corruption severities (1..5 in CIFAR-10-C).
        proxies: zero-cost proxy names.
        measures: Jacobian / Hessian measure names.
        num_classes: number of classes (``true_class`` / ``pred_class`` dims of the confusion matrices).
        class_names: optional class names (attribute of the class dims).
        epochs: length of the ``epoch`` dim of the training curves (0: no curves).
        history: names of the per-epoch curves (arrays ``history_<name>``).
        stages: stages whose arrays the store holds.
        search_space: search-space name.
        shard_cells: cells per shard file.
        chunk_cells: cells per inner chunk of a shard (every seed, the other dims whole); ``None`` (default): as
            many as fit in :data:`CHUNK_BYTES` (4 MiB), at most the shard. Rounded down to a divisor of the
            shard's cells (Zarr requires it). Larger chunks make plain ``xarray.open_zarr`` fast (zarr-python
            pays ~0.2 ms per inner chunk, xarray's dask tasks ~1 ms); smaller ones make a one-cell read through
            zarr-python cheaper (it decodes a whole inner chunk). Stores written with other inner chunks (e.g. one cell, before this
            field existed) read the same: readers take the chunk shape from each array's metadata.
        compress: zstd-compress large per-cell values (confusion matrices); smaller files, slower reads.
        weights_hashes: hold ``weights_sha256`` (train) and one :func:`weights_hash_array` per stage of
            :data:`WEIGHT_STAGES`. ``False`` (the default, so stores written before these arrays existed open as
            they were) for imports and hand-made stores; the pipeline's stores set it.

    Example:
        >>> spec = StoreSpec(archs=[0, 6], arch_str=["a", "b"], seeds=[0], attacks={"fgsm@Linf": [1 / 255]})
        >>> spec.eps_values()
        [0.00392156862745098]
    """

    archs: list[int]
    arch_str: list[str]
    seeds: list[int] = field(default_factory=lambda: [0])
    attacks: dict[str, list[float]] = field(default_factory=dict)
    corruptions: list[str] = field(default_factory=list)
    severities: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    proxies: list[str] = field(default_factory=list)
    measures: list[str] = field(default_factory=list)
    num_classes: int = 10
    class_names: list[str] | None = None
    epochs: int = 0
    history: list[str] = field(default_factory=lambda: list(DEFAULT_HISTORY))
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    arch_coords: dict[str, list[Any]] = field(default_factory=dict)
    search_space: str = "nb201"
    shard_cells: int = 256
    chunk_cells: int | None = None
    compress: bool = False
    weights_hashes: bool = False

    def __post_init__(self) -> None:
        self.archs = [int(a) for a in self.archs]
        self.arch_str = [str(s) for s in self.arch_str]
        self.seeds = [int(s) for s in self.seeds]
        self.attacks = {str(k): [float(e) for e in v] for k, v in self.attacks.items()}
        self.corruptions = [str(c) for c in self.corruptions]
        self.severities = [int(s) for s in self.severities]
        self.proxies = [str(p) for p in self.proxies]
        self.measures = [str(m) for m in self.measures]
        self.history = [str(h) for h in self.history]
        self.stages = [str(s) for s in self.stages]
        self.arch_coords = {str(k): [v.item() if isinstance(v, np.generic) else v for v in vals]
                            for k, vals in (self.arch_coords or {}).items()}
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistency."""
        if not self.archs:
            raise ValueError("StoreSpec.archs is empty: a store needs at least one cell")
        if len(set(self.archs)) != len(self.archs):
            dup = sorted({a for a in self.archs if self.archs.count(a) > 1})[:5]
            raise ValueError(f"StoreSpec.archs has duplicate cells: {dup}")
        if len(self.arch_str) != len(self.archs):
            raise ValueError(f"StoreSpec: {len(self.archs)} archs but {len(self.arch_str)} arch_str entries")
        reserved = {"arch", "arch_str", "attack_grid", *self.dim_sizes()}
        for name, vals in self.arch_coords.items():
            if not name.isidentifier() or name in reserved:
                raise ValueError(f"StoreSpec.arch_coords: {name!r} is not a usable coordinate name")
            if len(vals) != len(self.archs):
                raise ValueError(f"StoreSpec.arch_coords[{name!r}] has {len(vals)} values for {len(self.archs)} archs")
            kinds = {type(v) for v in vals}
            if not kinds <= {int, float, bool} and not kinds <= {str}:
                raise ValueError(f"StoreSpec.arch_coords[{name!r}]: values must be all numbers or all strings")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"StoreSpec.seeds must be non-empty and distinct, got {self.seeds}")
        for name, values in (("corruptions", self.corruptions), ("severities", self.severities),
                             ("proxies", self.proxies), ("measures", self.measures), ("history", self.history)):
            if len(set(values)) != len(values):
                raise ValueError(f"StoreSpec.{name} has duplicates: {values}")
        for attack, eps in self.attacks.items():
            if len({_eps_key(e) for e in eps}) != len(eps):
                raise ValueError(f"StoreSpec.attacks[{attack!r}] has duplicate eps: {eps}")
            bad = [e for e in eps if not (0.0 <= e <= 1.0) or math.isnan(e)]
            if bad:
                raise ValueError(
                    f"StoreSpec.attacks[{attack!r}]: eps must be in [0, 1] pixel units (8/255, not 8), got {bad}"
                )
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown:
            raise ValueError(f"StoreSpec.stages: unknown stage(s) {unknown}; known: {list(STAGES)}")
        if self.num_classes < 1:
            raise ValueError(f"StoreSpec.num_classes must be >= 1, got {self.num_classes}")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(f"StoreSpec.class_names has {len(self.class_names)} names for {self.num_classes} classes")
        if self.epochs < 0 or self.shard_cells < 1:
            raise ValueError(f"StoreSpec: epochs >= 0 and shard_cells >= 1 required, got {self.epochs}, {self.shard_cells}")
        if self.chunk_cells is not None and (isinstance(self.chunk_cells, bool) or not isinstance(self.chunk_cells, int)
                                             or self.chunk_cells < 1):
            raise ValueError(f"StoreSpec.chunk_cells must be None (automatic) or an int >= 1, got {self.chunk_cells!r}")

    # ---- coordinates -------------------------------------------------------------------------------------------
    def eps_values(self) -> list[float]:
        """Sorted union of all attacks' eps (in [0, 1] units): the ``eps`` coordinate."""
        merged: dict[float, float] = {}
        for eps in self.attacks.values():
            for e in eps:
                merged.setdefault(_eps_key(e), e)
        return [merged[k] for k in sorted(merged)]

    def attack_grid(self) -> np.ndarray:
        """``(attack, eps)`` bool: True where the protocol evaluates that pair."""
        eps = [_eps_key(e) for e in self.eps_values()]
        grid = np.zeros((len(self.attacks), len(eps)), dtype=bool)
        for i, values in enumerate(self.attacks.values()):
            for e in values:
                grid[i, eps.index(_eps_key(e))] = True
        return grid

    def eps_index(self, attack: str, eps: float) -> tuple[int, int]:
        """Positions of ``(attack, eps)`` along the ``attack`` and ``eps`` dims (KeyError if not in the grid)."""
        attacks = list(self.attacks)
        if attack not in attacks:
            raise KeyError(f"attack {attack!r} is not in this store; it has {attacks}")
        keys = [_eps_key(e) for e in self.eps_values()]
        k = _eps_key(eps)
        if k not in keys or not self.attack_grid()[attacks.index(attack), keys.index(k)]:
            raise KeyError(f"eps {eps_label(eps)} is not in the grid of {attack!r}: {[eps_label(e) for e in self.attacks[attack]]}")
        return attacks.index(attack), keys.index(k)

    def dim_sizes(self) -> dict[str, int]:
        """Length of every dimension."""
        return {
            "arch": len(self.archs),
            "seed": len(self.seeds),
            "stage": len(self.stages),
            "attack": len(self.attacks),
            "eps": len(self.eps_values()),
            "corruption": len(self.corruptions),
            "severity": len(self.severities),
            "proxy": len(self.proxies),
            "measure": len(self.measures),
            "true_class": self.num_classes,
            "pred_class": self.num_classes,
            "epoch": self.epochs,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (inverse: ``StoreSpec(**d)``)."""
        from dataclasses import asdict

        return asdict(self)


@dataclass(frozen=True)
class ArraySpec:
    """One data array of the schema.

    Arguments:
        name: array name in the store.
        dims: dimension names (the first ones are ``arch`` and, for per-seed results, ``seed``).
        dtype: NumPy dtype string (``"str"`` for variable-length UTF-8).
        fill: fill value (what an unwritten cell reads as).
        stage: the stage that writes it (``None``: bookkeeping written with every stage).
        description: what it holds, with units.
    """

    name: str
    dims: tuple[str, ...]
    dtype: str
    fill: Any
    stage: str | None
    description: str
    units: str = ""

    @property
    def cell_dims(self) -> tuple[str, ...]:
        """Dimensions of one cell's value (``dims`` without ``arch`` and ``seed``)."""
        return tuple(d for d in self.dims if d not in ("arch", "seed"))


_NAN = float("nan")


def _stats_arrays(prefix: str, stage: str, grid: tuple[str, ...], what: str) -> list[ArraySpec]:
    base = ("arch", "seed", *grid)
    return [
        ArraySpec(f"{prefix}_accuracy", base, "float64", _NAN, stage, f"{what} accuracy", "fraction in [0, 1]"),
        ArraySpec(f"{prefix}_confidence", base, "float64", _NAN, stage,
                  f"{what} mean softmax probability of the predicted class", "probability"),
        ArraySpec(f"{prefix}_confidence_true", base, "float64", _NAN, stage,
                  f"{what} mean softmax probability of the true class", "probability"),
        ArraySpec(f"{prefix}_confusion", (*base, "true_class", "pred_class"), "int32", -1, stage,
                  f"{what} confusion matrix (rows: true class, columns: predicted class); -1 = not computed", "images"),
    ]


def array_specs(spec: StoreSpec) -> dict[str, ArraySpec]:
    """All data arrays of a store made from ``spec`` (arrays of stages not in ``spec.stages`` are left out)."""
    out: list[ArraySpec] = [
        ArraySpec("status", ("arch", "seed", "stage"), "int8", PENDING, None,
                  "stage status: 0 pending, 1 done, 2 failed (written last: done means every value is in)"),
        ArraySpec("stage_seconds", ("arch", "seed", "stage"), "float64", _NAN, None,
                  "wall time of the last attempt of the stage", "s"),
        ArraySpec("attempts", ("arch", "seed", "stage"), "int16", 0, None, "attempts made (all runs together)"),
        ArraySpec("error", ("arch", "seed", "stage"), "str", "", None, "error text of the last failed attempt"),
        # what the unit ran with (the same command on other hardware may round differently): written with its result
        ArraySpec("unit_threads", ("arch", "seed", "stage"), "int16", -1, None,
                  "torch intra-op threads of the unit's last attempt (-1: not recorded)", "threads"),
        ArraySpec("unit_device", ("arch", "seed", "stage"), "str", "", None,
                  "device of the unit's last attempt, e.g. 'cpu AVX2' or 'cuda:0 NVIDIA H100 80GB HBM3' ('': not recorded)"),
        ArraySpec("unit_precision", ("arch", "seed", "stage"), "str", "", None,
                  "fp32 precision flags in force during the unit, e.g. 'cuda.matmul=ieee,cudnn.conv=ieee,...' "
                  "(robustbench_nas.utils.precision.describe; '': not recorded)"),
    ]
    stages = set(spec.stages)
    if "info" in stages:
        out += [
            ArraySpec("params", ("arch",), "int64", -1, "info", "trainable parameters of the network", "count"),
            ArraySpec("flops", ("arch",), "float64", _NAN, "info",
                      "FLOPs in the search space's published convention (its benchmark's numbers)",
                      "1e6 multiply-adds"),
            ArraySpec("flops_plain", ("arch",), "float64", _NAN, "info",
                      "conv + linear multiply-adds only", "1e6 multiply-adds"),
        ]
    if "proxies" in stages:
        out.append(ArraySpec("proxy_value", ("arch", "seed", "proxy"), "float64", _NAN, "proxies",
                             "zero-cost proxy score at initialisation (seeded by `seed`)"))
    if "train" in stages:
        out += [ArraySpec(f"history_{h}", ("arch", "seed", "epoch"), "float64", _NAN, "train", f"training curve: {h}")
                for h in spec.history]
        out.append(ArraySpec("checkpoint", ("arch", "seed"), "str", "", "train",
                             "trained checkpoint, relative to the store's parent folder"))
        if spec.weights_hashes:
            out.append(ArraySpec("weights_sha256", ("arch", "seed"), "str", "", "train",
                                 "weights hash of the trained checkpoint (robustbench_nas.training.weights_sha256)",
                                 "sha256, 64 hex digits"))
    if spec.weights_hashes:
        # one per evaluation stage, written with its results: what they were computed from
        out += [ArraySpec(weights_hash_array(s), ("arch", "seed"), "str", "", s,
                          f"weights hash of the checkpoint the {s} results were computed from", "sha256, 64 hex digits")
                for s in WEIGHT_STAGES if s in stages]
    if "clean" in stages:
        out += _stats_arrays("clean", "clean", (), "clean test")
    if "adversarial" in stages:
        out += _stats_arrays("adv", "adversarial", ("attack", "eps"), "adversarial")
        out.append(ArraySpec("adv_clean_accuracy", ("arch", "seed"), "float64", _NAN, "adversarial",
                             "clean accuracy of exactly the images the attacks used (attack_images)",
                             "fraction in [0, 1]"))
        # one row per attack: the pipeline runs each attack as its own unit (a finished attack is kept when the
        # rest of the stage is interrupted); done = its weights hash is the cell's current one
        out.append(ArraySpec("adv_attack_seconds", ("arch", "seed", "attack"), "float64", _NAN, "adversarial",
                             "wall time of the unit that computed this attack's row (NaN: not computed)", "s"))
        if spec.weights_hashes:
            out.append(ArraySpec("adv_attack_weights_sha256", ("arch", "seed", "attack"), "str", "", "adversarial",
                                 "weights hash of the checkpoint this attack's row was computed from ('': none)",
                                 "sha256, 64 hex digits"))
    if "corruptions" in stages:
        out += _stats_arrays("corruption", "corruptions", ("corruption", "severity"), "corrupted-image")
        out.append(ArraySpec("corruption_clean_accuracy", ("arch", "seed"), "float64", _NAN, "corruptions",
                             "clean accuracy of exactly the images the corruptions used (corruption_images)",
                             "fraction in [0, 1]"))
    if "measures" in stages:
        out.append(ArraySpec("measure_value", ("arch", "seed", "measure"), "float64", _NAN, "measures",
                             "Jacobian / Hessian robustness measure of the trained network"))
    return {a.name: a for a in out}


#: target size of an inner chunk when ``StoreSpec.chunk_cells`` is ``None``. Plain ``xarray.open_zarr(STORE).load()``
#: costs ~1 ms of dask + zarr-python overhead per inner chunk, so fewer, larger chunks read faster; a one-cell read
#: through zarr-python decodes one inner chunk per array, so smaller ones read a cell faster. 4 MiB: at 256 cells per
#: shard every jung2023 array but the confusion matrices is one chunk per shard (those: 2), and a compressed
#: 1024-cell export keeps one-cell reads to a few MB decoded per array (measurements: benchmarks/README.md)
CHUNK_BYTES = 4 << 20
#: bytes per value assumed for variable-length strings when sizing chunks
_STR_BYTES = 64


def chunk_cells_of(a: ArraySpec, sizes: dict[str, int], shard_cells: int, chunk_cells: int | None) -> int:
    """Cells per inner chunk of array ``a``: ``chunk_cells`` (``None``: as many as fit in :data:`CHUNK_BYTES`),
    at most the shard, rounded down to a divisor of the shard's cells (at least 1)."""
    rows = max(1, min(shard_cells, sizes["arch"]))
    if chunk_cells is None:
        per_cell = math.prod(max(1, sizes[d]) for d in a.dims[1:])
        per_cell *= _STR_BYTES if a.dtype == "str" else np.dtype(a.dtype).itemsize
        chunk_cells = max(1, CHUNK_BYTES // per_cell)
    want = max(1, min(int(chunk_cells), rows))
    return max(c for c in range(1, want + 1) if rows % c == 0)


def chunk_shape(a: ArraySpec, sizes: dict[str, int], shard_cells: int = 256,
                chunk_cells: int | None = None) -> tuple[int, ...]:
    """Inner chunks: :func:`chunk_cells_of` cells, every seed, everything else whole (at least 1)."""
    c = chunk_cells_of(a, sizes, shard_cells, chunk_cells)
    return tuple(c if d == "arch" else max(1, sizes[d]) for d in a.dims)


def shard_shape(a: ArraySpec, sizes: dict[str, int], shard_cells: int) -> tuple[int, ...]:
    """Shards: ``shard_cells`` cells (at most the whole arch dim), every seed, everything else whole."""
    return tuple(max(1, min(shard_cells, sizes[d])) if d == "arch" else max(1, sizes[d]) for d in a.dims)


def stage_arrays(spec: StoreSpec, stage: str) -> list[ArraySpec]:
    """The data arrays written by ``stage``."""
    return [a for a in array_specs(spec).values() if a.stage == stage]


def as_cell_value(a: ArraySpec, value: Any, sizes: dict[str, int],
                  dims: Sequence[str] | None = None) -> np.ndarray:
    """Check and convert one cell's value for array ``a`` (shape: ``dims``, default its ``cell_dims``).

    Raises ``ValueError`` naming the array and the problem (shape, non-numbers, non-integers, range).
    """
    dims = a.cell_dims if dims is None else tuple(dims)
    shape = tuple(sizes[d] for d in dims)
    if a.dtype == "str":
        arr = np.asarray(value, dtype=object)
        if arr.shape != shape:
            raise ValueError(f"{a.name}: expected shape {shape} {dims}, got {arr.shape}")
        return np.asarray(arr.astype(str), dtype=np.dtypes.StringDType())
    arr = np.asarray(value)
    if arr.shape != shape:
        raise ValueError(f"{a.name}: expected shape {shape} {dims}, got {arr.shape}")
    target = np.dtype(a.dtype)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{a.name}: expected numbers, got dtype {arr.dtype}")
    if target.kind in "iu":
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
                raise ValueError(f"{a.name}: expected integers, got non-integral values")
        info = np.iinfo(target)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise ValueError(f"{a.name}: values out of range for {target}")
    return arr.astype(target)


def resolve_names(values: Sequence[str], known: Sequence[str], what: str) -> list[str]:
    """Check that every name in ``values`` is in ``known`` (KeyError naming the unknown ones)."""
    unknown = [v for v in values if v not in known]
    if unknown:
        raise KeyError(f"unknown {what}: {unknown}; this store has {list(known)}")
    return list(values)


__all__ = [
    "ArraySpec", "DEFAULT_HISTORY", "DONE", "FAILED", "PENDING", "PER_ARCH_STAGES", "SCHEMA_VERSION", "STAGES",
    "STATUS_NAMES", "StoreSpec", "UNIT_SETTINGS", "ATTACK_UNIT_ARRAYS", "array_specs", "as_cell_value", "CHUNK_BYTES", "chunk_cells_of", "chunk_shape", "eps_label", "shard_shape",
    "stage_arrays", "WEIGHT_STAGES", "weights_hash_array",
]
