"""Protocol configs: everything that defines a robustness dataset run, typed and saved into the store.

A :class:`ProtocolConfig` names the search space, data, training profile, seeds, attack grid, corruption set,
measures and proxies. Its :meth:`~ProtocolConfig.fingerprint` (a hash of every field that changes results) is
written into the store; re-running on a store made with another protocol is refused.

Example:
    >>> p = get_protocol("tiny")
    >>> p.dataset, p.train_profile, len(p.resolve_archs())
    ('digits', 'tiny', 8)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from robustbench_nas.storage.schema import STAGES
from robustbench_nas.utils.registry import Registry

from .tasks import parse_task, task_cells  # re-exported: array tasks used to be defined here

#: pipeline protocol factories by name
PROTOCOLS: Registry[Callable[[], "ProtocolConfig"]] = Registry("protocol")

#: Fields that say *where* things are, not what is computed: left out of the fingerprint.
#: ``batch_size`` is a performance setting: attacks and generated corruptions draw per image, so results do not
#: depend on it (a store may be continued at another batch size, e.g. larger on a GPU).
RUNTIME_FIELDS: frozenset[str] = frozenset({"data_root", "description", "batch_size", "unit_timeout_s"})

#: The 15 CIFAR-10-C corruptions of Hendrycks & Dietterich (2019), as in the Jung et al. 2023 release.
CIFAR10C_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)

#: The protocol field giving the number of images of each purpose (``None``: the whole split).
_SIZE_FIELDS: dict[str, str] = {"proxies": "proxy_images", "clean": "eval_images", "attacks": "attack_images",
                                "corruptions": "corruption_images", "measures": "measure_images"}
#: The stage that evaluates each purpose's images.
PURPOSE_STAGES: dict[str, str] = {"proxies": "proxies", "clean": "clean", "attacks": "adversarial",
                                  "corruptions": "corruptions", "measures": "measures"}


def _attack_grid(name: str) -> tuple[dict[str, tuple[float, ...]], dict[str, dict[str, Any]]]:
    """The attacks part's named grid and its parameter overrides (one source of truth for eps grids)."""
    from robustbench_nas.attacks.protocols import attack_grid_params, get_attack_grid

    return {k: tuple(v) for k, v in get_attack_grid(name).items()}, attack_grid_params(name)


def register_protocol(name: str) -> Callable[[Callable[[], "ProtocolConfig"]], Callable[[], "ProtocolConfig"]]:
    """Decorator registering a protocol factory under ``name``; a name already taken raises ``ValueError``."""
    return PROTOCOLS.register(name)


def list_protocols(pattern: str | None = None) -> list[str]:
    """Names of the registered protocols (sorted), filtered by a shell-style ``pattern`` (``"nb201-*"``)."""
    return PROTOCOLS.list(pattern, sort=True)


def _default_measure_params() -> dict[str, Any]:
    from robustbench_nas.measures import MeasureConfig

    return dataclasses.asdict(MeasureConfig())


def get_protocol(name: str, **overrides: Any) -> "ProtocolConfig":
    """The protocol ``name`` with ``overrides`` applied (unknown fields are an error)."""
    if name not in PROTOCOLS:
        raise KeyError(f"unknown protocol {name!r}; known: {list_protocols()}")
    p = PROTOCOLS.get(name)()
    return p.replace(**overrides) if overrides else p


@dataclass(frozen=True)
class ProtocolConfig:
    """One run's definition (saved as ``attrs["protocol"]`` in the store).

    Attributes:
        name: protocol name.
        search_space: registered search space (``nb201``, ``nats-sss``; aliases are stored by their registered
            name). Every stage builds its networks through it.
        dataset: registered dataset (``digits``, ``cifar10``, ...); ``data_root`` says where it is (runtime).
        train_profile: training profile name; ``profile_overrides`` changes fields of it (e.g. ``{"epochs": 2}``).
        archs: ``"all"`` (every unique cell), an int N (a seeded sample of N unique cells, ``arch_seed``), or a
            list of strings / indices (mapped to their isomorphism-class uid, duplicates dropped).
        seeds: training and initialisation seeds (one trained network per cell and seed).
        attacks: ``{attack key: [eps in [0, 1] units]}``; ``attack_params`` per-attack parameter overrides,
            ``attack_mode`` ``"independent"`` or ``"early_exit"``.
        corruptions, severities: corruption names and severities; ``corruption_source`` ``None`` (generated on
            the device) or a folder of CIFAR-10-C ``.npy`` files.
        proxies: zero-cost proxies at initialisation on ``proxy_images`` training images.
        proxy_engine: how the proxies are computed (:func:`robustbench_nas.proxies.compute_proxies`'s ``engine``):
            ``"fast"`` (default; croze and hessian_eig within their stated tolerances of the reference),
            ``"shared"`` (bit for bit the one-at-a-time reference) or ``"separate"``. Part of the fingerprint and of
            the proxies stage's reuse fields: values of two engines are never mixed in one store.
        measures: Jacobian / Hessian measures of the trained network on ``measure_images`` training images;
            ``measure_params`` every field of :class:`~robustbench_nas.measures.MeasureConfig` (projections, Hessian
            iterations and tolerance, ...), explicit so that they are part of the fingerprint.
        eval_split: split used for clean / adversarial / corruption evaluation; ``eval_images``,
            ``attack_images``, ``corruption_images``: images used (``None``: the whole split; a seeded
            class-balanced subset otherwise, the same for every cell).
        subset_seed: seed of every image subset (:func:`robustbench_nas.data.subsets.subset_indices`: a subset is
            defined by the dataset, split, size and this seed, never by the protocol's name, so two protocols with
            the same settings evaluate the same images).
        image_indices: explicit images per purpose (``proxies``, ``clean``, ``attacks``, ``corruptions``,
            ``measures``): positions in that purpose's split, used as given instead of the seeded rule; the
            purpose's size field, if set, must equal their count (e.g. ``nb201-proxies`` pins its 64 images).
        batch_size: evaluation batch size.
        stages: stages allocated in the store (a run may execute a subset).
        retries: extra attempts of a failing stage before the cell is marked failed.
        unit_timeout_s: wall-clock limit of one unit (one attempt), ``None`` for none; a runtime setting (not in the
            fingerprint). A unit past it ends its Dask worker (see ``execute_unit``).
    """

    name: str
    search_space: str = "nb201"
    dataset: str = "digits"
    data_root: str | None = None
    train_profile: str = "tiny"
    profile_overrides: dict[str, Any] = field(default_factory=dict)
    archs: Any = 8
    arch_seed: int = 0
    seeds: tuple[int, ...] = (0,)
    attacks: dict[str, tuple[float, ...]] = field(default_factory=dict)
    attack_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    attack_mode: str = "independent"
    corruptions: tuple[str, ...] = ()
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    corruption_source: str | None = None
    proxies: tuple[str, ...] = ()
    proxy_images: int = 64
    proxy_engine: str = "fast"
    measures: tuple[str, ...] = ()
    measure_images: int = 64
    measure_params: dict[str, Any] = field(default_factory=lambda: _default_measure_params())
    eval_split: str = "test"
    eval_images: int | None = None
    attack_images: int | None = None
    corruption_images: int | None = None
    subset_seed: int = 0
    image_indices: dict[str, tuple[int, ...]] = field(default_factory=dict)
    batch_size: int = 256
    stages: tuple[str, ...] = STAGES
    retries: int = 2
    description: str = ""
    unit_timeout_s: float | None = None

    def __post_init__(self) -> None:
        # normalise containers so equal protocols compare (and hash) equal whatever the input types were
        set_ = object.__setattr__
        set_(self, "seeds", tuple(int(s) for s in self.seeds))
        set_(self, "attacks", {str(k): tuple(float(e) for e in v) for k, v in dict(self.attacks).items()})
        set_(self, "corruptions", tuple(str(c) for c in self.corruptions))
        set_(self, "severities", tuple(int(s) for s in self.severities))
        set_(self, "proxies", tuple(str(p) for p in self.proxies))
        set_(self, "measures", tuple(str(m) for m in self.measures))
        set_(self, "stages", tuple(str(s) for s in self.stages))
        set_(self, "image_indices", {str(k): tuple(int(i) for i in v) for k, v in dict(self.image_indices).items()})
        if isinstance(self.archs, (list, tuple)):
            set_(self, "archs", tuple(int(a) if isinstance(a, int) else str(a) for a in self.archs))
        from robustbench_nas.search_spaces import canonical_name

        try:
            set_(self, "search_space", canonical_name(str(self.search_space)))
        except KeyError as e:
            raise ValueError(f"protocol {self.name!r}: {e.args[0]}") from None
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        self.measure_config()
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"protocol {self.name!r}: seeds must be non-empty and distinct, got {self.seeds}")
        self.validate_names()
        for attack, eps in self.attacks.items():
            if not eps:
                raise ValueError(f"protocol {self.name!r}: attack {attack!r} has an empty eps grid")
            l2 = attack.endswith("@L2")
            # Linf radii live in [0, 1] (pixel range); an L2 radius is a Euclidean norm over all pixels and may
            # exceed 1 (e.g. 0.5 ... 2 on CIFAR), so only Linf gets the "/255" hint
            bad = [e for e in eps if not (e >= 0 and (l2 or e <= 1)) or e != e or e == float("inf")]
            if bad:
                raise ValueError(
                    f"protocol {self.name!r}: attack {attack!r} has eps {bad} outside [0, 1]; Linf eps is in pixel "
                    "units (8/255 = 0.0314), not /255" if not l2 else
                    f"protocol {self.name!r}: attack {attack!r} has eps {bad}: an L2 radius must be finite and >= 0"
                )
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown:
            raise ValueError(f"protocol {self.name!r}: unknown stages {unknown}; known {list(STAGES)}")
        if self.attack_mode not in ("independent", "early_exit"):
            raise ValueError(f"protocol {self.name!r}: attack_mode must be 'independent' or 'early_exit'")
        if isinstance(self.archs, str) and self.archs != "all":
            raise ValueError(f"protocol {self.name!r}: archs must be 'all', an int or a list, got {self.archs!r}")
        if isinstance(self.archs, int) and self.archs < 1:
            raise ValueError(f"protocol {self.name!r}: archs={self.archs}: need at least one cell")
        if self.unit_timeout_s is not None and not self.unit_timeout_s > 0:
            raise ValueError(f"protocol {self.name!r}: unit_timeout_s must be a positive number of seconds or None")
        from robustbench_nas.proxies.api import ENGINES

        if self.proxy_engine not in ENGINES:
            raise ValueError(f"protocol {self.name!r}: proxy_engine {self.proxy_engine!r} unknown; "
                             f"known: {', '.join(ENGINES)}")
        if self.retries < 0 or self.batch_size < 1:
            raise ValueError(f"protocol {self.name!r}: retries >= 0 and batch_size >= 1 required")
        self.validate_images()

    def validate_images(self) -> None:
        """``subset_seed`` an int; explicit ``image_indices`` for known purposes, non-empty, distinct, >= 0, and as
        many as the purpose's size field asks (when it is set). Whether they fit the split is checked on the data."""
        from robustbench_nas.data.subsets import PURPOSES

        if isinstance(self.subset_seed, bool) or not isinstance(self.subset_seed, int):
            raise ValueError(f"protocol {self.name!r}: subset_seed must be an int, got {self.subset_seed!r}")
        for purpose, idx in self.image_indices.items():
            if purpose not in PURPOSES:
                raise ValueError(f"protocol {self.name!r}: image_indices for unknown purpose {purpose!r}; "
                                 f"known: {list(PURPOSES)}")
            if not idx or min(idx) < 0 or len(set(idx)) != len(idx):
                raise ValueError(f"protocol {self.name!r}: image_indices[{purpose!r}] must be distinct "
                                 "non-negative positions, at least one")
            size_field = _SIZE_FIELDS[purpose]
            n = getattr(self, size_field)
            if n is not None and n != len(idx):
                raise ValueError(f"protocol {self.name!r}: image_indices[{purpose!r}] has {len(idx)} images but "
                                 f"{size_field} is {n}")

    def validate_names(self) -> None:
        """Every name a stage will look up exists: attacks (and their parameters), corruptions, proxies, measures,
        the dataset, the training profile and its overrides. Checked when the protocol is built, so a typo fails
        before a store is created or a job is submitted, not hours later in a stage."""
        from robustbench_nas import attacks as attacks_pkg
        from robustbench_nas.data import list_datasets
        from robustbench_nas.measures import list_measures
        from robustbench_nas.proxies import list_proxies

        def check(kind: str, names: Sequence[str], known: Sequence[str]) -> None:
            bad = [n for n in names if n not in known]
            if bad:
                raise ValueError(f"protocol {self.name!r}: unknown {kind} {bad}; known: {sorted(known)}")

        known_attacks = list(attacks_pkg.list_attacks()) + list(attacks_pkg.list_aliases())
        check("attack(s)", list(self.attacks), known_attacks)
        check("attack(s) in attack_params", list(self.attack_params), list(self.attacks))
        for a, params in self.attack_params.items():
            fields = {f.name for f in dataclasses.fields(attacks_pkg.get_attack(a).defaults)}
            check(f"parameter(s) of {a}", list(params), sorted(fields))
        if self.corruptions:
            from robustbench_nas.corruptions import list_corruptions

            check("corruption(s)", self.corruptions, list(list_corruptions()))
        bad_sev = [s for s in self.severities if not 1 <= s <= 5]
        if bad_sev:
            raise ValueError(f"protocol {self.name!r}: severities {bad_sev} outside 1..5")
        check("proxy(ies)", self.proxies, list(list_proxies()))
        check("measure(s)", self.measures, list(list_measures()))
        check("dataset", [self.dataset], list(list_datasets()))
        try:
            self.profile()
        except (KeyError, TypeError, ValueError) as e:
            msg = str(e.args[0]) if e.args else str(e)
            raise ValueError(f"protocol {self.name!r}: training profile {self.train_profile!r}: {msg}") from None

    def replace(self, **overrides: Any) -> "ProtocolConfig":
        """A copy with some fields changed (unknown fields are an error naming them).

        A training-profile field that is not a protocol field (``epochs=3``, ``lr=0.05``, or explicitly
        ``profile.epochs=3``) goes into ``profile_overrides``; a name that is both (``batch_size``: the evaluation
        batch here) stays a protocol field, and ``profile.batch_size`` reaches the profile's.
        """
        from robustbench_nas.training import TrainProfile

        known = {f.name for f in dataclasses.fields(self)}
        prof_fields = {f.name for f in dataclasses.fields(TrainProfile)} - {"name"}
        overrides = dict(overrides)
        prof = dict(overrides.pop("profile_overrides", self.profile_overrides) or {})
        for k in list(overrides):
            key = k[len("profile."):] if k.startswith("profile.") else k
            if (k.startswith("profile.") or k not in known) and key in prof_fields:
                prof[key] = overrides.pop(k)
        if "attacks" in overrides and "attack_params" not in overrides:  # parameters of attacks no longer run go
            overrides["attack_params"] = {a: p for a, p in self.attack_params.items() if a in overrides["attacks"]}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown protocol fields {sorted(unknown)}; known: {sorted(known)} and the training "
                             f"profile's {sorted(prof_fields)}")  # fmt: skip
        return dataclasses.replace(self, **overrides, profile_overrides=prof)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (inverse: :meth:`from_dict`)."""
        d = dataclasses.asdict(self)
        d["seeds"] = list(self.seeds)
        d["attacks"] = {k: list(v) for k, v in self.attacks.items()}
        for k in ("corruptions", "severities", "proxies", "measures", "stages"):
            d[k] = list(d[k])
        d["image_indices"] = {k: list(v) for k, v in self.image_indices.items()}
        if isinstance(self.archs, tuple):
            d["archs"] = list(self.archs)
        return json.loads(json.dumps(d))

    def to_json(self) -> str:
        """:meth:`to_dict` as one JSON string (inverse: :meth:`from_json`).

        This is how the runner hands the protocol to every task: Dask walks each element of a dict or list
        argument on every ``submit`` and keeps its own copy per task (measured: 300 KB and 7 ms per task for a
        6466-cell protocol, 3.9 GB for the complete NB201 proxy table's 13,000 tasks); a string it passes as is.
        """
        return json.dumps(self.to_dict())

    @classmethod
    def from_saved(cls, saved: "dict[str, Any] | str") -> "ProtocolConfig":
        """A protocol saved with :meth:`to_dict` (a dict) or :meth:`to_json` (a string)."""
        return cls.from_json(saved) if isinstance(saved, str) else cls.from_dict(saved)

    @classmethod
    def from_json(cls, text: str) -> "ProtocolConfig":
        """Rebuild a protocol saved with :meth:`to_json`."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"saved protocol is not valid JSON: {e}") from None
        if not isinstance(d, dict):
            raise ValueError(f"saved protocol must be a JSON object, got {type(d).__name__}")
        return cls.from_dict(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ProtocolConfig":
        """Rebuild a protocol saved with :meth:`to_dict` (unknown keys are an error).

        A protocol saved before ``proxy_engine`` existed computed its proxies with the shared engine (then the
        only one, bit for bit the reference): it reads back as ``"shared"``, not as today's default.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"saved protocol has unknown fields {sorted(unknown)} (written by a newer version?)")
        if "proxy_engine" not in d:
            d = {**d, "proxy_engine": "shared"}
        return cls(**d)

    def fingerprint(self) -> str:
        """sha256 (16 hex digits) of every field that changes results (``data_root`` and ``description`` excluded)."""
        d = {k: v for k, v in self.to_dict().items() if k not in RUNTIME_FIELDS}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def diff(self, other: "ProtocolConfig") -> dict[str, tuple[Any, Any]]:
        """Fields (outside the runtime ones) whose values differ: ``{field: (self's, other's)}``."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a if k not in RUNTIME_FIELDS and a[k] != b[k]}

    # ---- resolution ----------------------------------------------------------------------------------------------
    def image_purposes(self) -> list[str]:
        """The purposes (of :data:`~robustbench_nas.data.subsets.PURPOSES`) whose images this protocol's stages use."""
        used = {"proxies": bool(self.proxies), "clean": True, "attacks": bool(self.attacks),
                "corruptions": bool(self.corruptions), "measures": bool(self.measures)}
        return [p for p, stage in PURPOSE_STAGES.items() if stage in self.stages and used[p]]

    def image_request(self, purpose: str) -> tuple[str, int | None, int, tuple[int, ...] | None]:
        """``(split, n, subset_seed, explicit indices or None)`` of a purpose: the settings that define its images.

        Proxies and measures use the training split (as Jung et al.), the other purposes ``eval_split``.
        """
        if purpose not in PURPOSE_STAGES:
            raise KeyError(f"unknown image purpose {purpose!r}; known: {list(PURPOSE_STAGES)}")
        split = "train" if purpose in ("proxies", "measures") else self.eval_split
        n = getattr(self, _SIZE_FIELDS[purpose])
        return split, n, self.subset_seed, self.image_indices.get(purpose)

    def measure_config(self) -> Any:
        """The :class:`~robustbench_nas.measures.MeasureConfig` of ``measure_params``."""
        from robustbench_nas.measures import MeasureConfig

        known = {f.name for f in dataclasses.fields(MeasureConfig)}
        unknown = set(self.measure_params) - known
        if unknown:
            raise ValueError(f"protocol {self.name!r}: unknown measure_params {sorted(unknown)}; known {sorted(known)}")
        return MeasureConfig(**self.measure_params)

    def profile(self) -> Any:
        """The :class:`~robustbench_nas.training.TrainProfile` (with ``profile_overrides``)."""
        from robustbench_nas.training import get_profile

        return get_profile(self.train_profile, **self.profile_overrides)

    def space(self) -> Any:
        """The run's :class:`~robustbench_nas.search_spaces.SearchSpace`."""
        from robustbench_nas.search_spaces import get_search_space

        return get_search_space(self.search_space)

    def resolve_archs(self) -> list[tuple[int, int, str]]:
        """The cells of the run: ``[(uid, requested index, arch string)]``, sorted by uid, unique."""
        space = self.space()
        if self.archs == "all":
            idx = space.unique_indices()
        elif isinstance(self.archs, int):
            idx = space.sample(self.archs, seed=self.arch_seed, unique=True)
        else:
            idx = space.resolve(list(self.archs))
        seen: dict[int, int] = {}
        for i in idx:
            seen.setdefault(space.uid(i), i)
        return [(u, seen[u], space.arch_str(seen[u])) for u in sorted(seen)]

    def measure_outputs(self) -> list[str]:
        """The ``measure`` coordinate: every value :func:`compute_measures` returns for ``measures``."""
        if not self.measures:
            return []
        from robustbench_nas.measures import measure_outputs

        return list(measure_outputs(list(self.measures)))

    def store_spec(self) -> Any:
        """The :class:`~robustbench_nas.storage.StoreSpec` of a store for this protocol."""
        from robustbench_nas.data import get_dataset
        from robustbench_nas.storage import StoreSpec

        cells = self.resolve_archs()
        info = get_dataset(self.dataset, root=self.data_root).info
        profile = self.profile()
        return StoreSpec(
            archs=[c[0] for c in cells],
            arch_coords=self.space().arch_coords([c[1] for c in cells]),
            arch_str=[c[2] for c in cells],
            seeds=list(self.seeds),
            attacks={k: list(v) for k, v in self.attacks.items()},
            corruptions=list(self.corruptions),
            severities=list(self.severities),
            proxies=list(self.proxies),
            measures=self.measure_outputs(),
            num_classes=info.num_classes,
            class_names=list(info.class_names) if info.class_names else None,
            epochs=profile.epochs,
            stages=list(self.stages),
            search_space=self.search_space,
            weights_hashes=True,  # every result computed from a checkpoint records the weights it used
        )


def parse_archs(text: str) -> Any:
    """Read ``--archs``: ``all``, an int N, a comma list of indices / strings / published genotype names, one DARTS
    ``Genotype(...)`` or compact string, or ``@file`` (one per line)."""
    from pathlib import Path

    text = text.strip()
    if text == "all":
        return "all"
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise ValueError(f"--archs file {path} not found")
        items = [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        return [int(s) if s.isdigit() else s for s in items]
    if text.isdigit():
        return int(text)
    if text.startswith(("Genotype(", "(", "[")):  # one DARTS genotype (its own commas): several go in @FILE
        return [text]
    items = [s.strip() for s in text.split(",") if s.strip()]
    if items and all(s.replace("_", "").replace("-", "").isalnum() and not s.isdigit() for s in items):
        return items  # published genotype names (DARTS_V2, PC_DARTS, ...), resolved by the space
    if any(c in text for c in "|:~"):  # architecture strings (NB201 '|op~0|+...', SSS 'C1:...:C5'): no commas
        return [s.strip() for s in text.split(",") if s.strip()]
    try:
        return [int(s) for s in text.split(",") if s]
    except ValueError:
        raise ValueError(f"--archs {text!r}: expected 'all', N, a comma list of indices or strings, or @FILE") from None


# ---- the registered protocols ------------------------------------------------------------------------------------
@register_protocol("tiny")
def _tiny() -> ProtocolConfig:
    """The README's main job: 8 sampled cells, embedded ``digits`` data, tiny training and grids (minutes on a CPU)."""
    grid, params = _attack_grid("tiny")
    return ProtocolConfig(
        name="tiny",
        dataset="digits",
        train_profile="tiny",
        archs=8,
        arch_seed=0,
        seeds=(0,),
        attacks=grid,  # FGSM, PGD, APGD-CE, Square at 1/255 and 8/255, short budgets
        attack_params=params,
        corruptions=("gaussian_noise", "contrast", "brightness"),
        severities=(1, 3, 5),
        proxies=("params", "flops", "synflow", "snip", "grad_norm", "jacob_cov", "nwot"),
        proxy_images=32,
        measures=("jacobian_fro",),
        measure_images=32,
        attack_images=64,
        corruption_images=100,
        batch_size=128,
        description="8 cells, digits, tiny training, small grids: a few minutes on a laptop CPU",
    )


@register_protocol("jung2023")
def _jung2023() -> ProtocolConfig:
    """Jung, Lukasik & Keuper (ICLR 2023): all 6466 cells, CIFAR-10, the published attack / eps grid, CIFAR-10-C."""
    grid, params = _attack_grid("jung2023")
    return ProtocolConfig(
        name="jung2023",
        dataset="cifar10",
        train_profile="nb201-200e",
        archs="all",
        seeds=(777,),
        attacks=grid,  # FGSM {0.1..8, 255}/255, PGD / APGD-CE / Square {0.1, 0.5, 1, 2, 3, 4, 8}/255
        attack_params=params,
        corruptions=CIFAR10C_CORRUPTIONS,
        severities=(1, 2, 3, 4, 5),
        proxies=("epe_nas", "fisher", "flops", "grad_norm", "grasp", "jacob_cov", "l2_norm", "nwot", "params",
                 "plain", "snip", "synflow", "zen", "croze"),
        proxy_images=64,
        measures=("jacobian_fro", "hessian_eig"),
        measure_images=256,
        batch_size=256,
        description="Jung et al. 2023 (all 6466 NB201 cells, CIFAR-10, FGSM/PGD/APGD-CE/Square grid, CIFAR-10-C)",
    )


@register_protocol("nats-sss-jung2023")
def _nats_sss_jung2023() -> ProtocolConfig:
    """Jung et al.'s attack grid, corruption set, proxies and measures on all 32768 NATS-Bench SSS networks, each
    trained with NATS-Bench SSS's 90-epoch schedule (``nats-sss-90e``) on CIFAR-10."""
    return _jung2023().replace(
        name="nats-sss-jung2023",
        search_space="nats-sss",
        train_profile="nats-sss-90e",
        description="Jung et al. 2023's grid (FGSM/PGD/APGD-CE/Square, CIFAR-10-C) on all 32768 NATS-Bench SSS "
                    "networks trained 90 epochs (nats-sss-90e), CIFAR-10",
    )


@register_protocol("robbench2024")
def _robbench2024() -> ProtocolConfig:
    """NAS-RobBench-201 (Wu et al., ICLR 2024): all 6466 cells adversarially trained (``pgd-at``: PGD eps 8/255,
    7 steps, 50 epochs, OneCycle), evaluated with FGSM and PGD-20 at 3/255 and 8/255 and AutoAttack at 8/255."""
    grid, params = _attack_grid("robbench2024")
    return ProtocolConfig(
        name="robbench2024",
        dataset="cifar10",
        train_profile="pgd-at",
        archs="all",
        seeds=(0,),
        attacks=grid,
        attack_params=params,
        batch_size=256,
        description="NAS-RobBench-201 (Wu et al. 2024): PGD adversarial training, FGSM / PGD-20 / AutoAttack",
    )


#: The 16 registered zero-cost proxies, in the shipped table's column order (the registry's order).
def _all_proxies() -> tuple[str, ...]:
    from robustbench_nas.proxies import list_proxies

    return tuple(list_proxies())


#: The shipped table's proxy images (package data of ``robustbench_nas.analysis``).
PROXY_IMAGES_FILE = "nb201_cifar10_proxy_images.txt"


def shipped_proxy_images() -> tuple[int, ...]:
    """The 64 proxy images of the shipped NB201 proxy table: positions in the ``npz`` train split of
    ``cifar10_test.npz`` (``analysis/data/nb201_cifar10_proxy_images.txt``; the draw of the rule used before subset
    seeds existed, kept so that the table keeps its images)."""
    from importlib import resources

    from robustbench_nas.data.subsets import read_indices

    text = resources.files("robustbench_nas.analysis").joinpath("data", PROXY_IMAGES_FILE).read_text()
    return tuple(read_indices("\n".join(line.split("#", 1)[0] for line in text.splitlines())))


@register_protocol("nb201-proxies")
def _nb201_proxies() -> ProtocolConfig:
    """The shipped proxy table: all proxies, full-size NB201 (C=16, N=5) at initialisation, seed 0, batch 64.

    Cells: the 500-cell clean-accuracy-stratified sample of the Jung et al. release
    (:mod:`robustbench_nas.proxies.sample`), run in the listed (interleaved) order; images: 64 of the
    ``npz`` dataset's train split (pass ``--data-root ../shared/data/cifar10_test.npz``: CIFAR-10 test images),
    pinned explicitly (:func:`shipped_proxy_images`).
    """
    from robustbench_nas.proxies.sample import shipped_sample

    return ProtocolConfig(
        name="nb201-proxies",
        dataset="npz",
        train_profile="nb201-200e",  # only its network size (C=16, N=5) is used: nothing is trained
        archs=tuple(shipped_sample()),
        seeds=(0,),
        proxies=_all_proxies(),
        proxy_images=64,
        proxy_engine="shared",  # the shipped table's values: bit for bit the reference path (issue 27's fast
        # engine differs within stated tolerances; the complete table will switch to it)
        image_indices={"proxies": shipped_proxy_images()},
        stages=("info", "proxies"),
        description="zero-cost proxies of 500 stratified NB201 cells (C=16, N=5, batch 64, seed 0), no training",
    )


@register_protocol("nb201-proxies-seeds")
def _nb201_proxies_seeds() -> ProtocolConfig:
    """Seed noise of the proxies: the first 30 cells of the sample (3 per clean-accuracy stratum) at initialisation
    seeds 1 and 2, on the main table's 64 images (the same pinned ``image_indices``)."""
    from robustbench_nas.proxies.sample import shipped_sample

    return _nb201_proxies().replace(
        name="nb201-proxies-seeds", archs=tuple(shipped_sample()[:30]), seeds=(1, 2),
        description="seed noise: 30 cells of the nb201-proxies sample at seeds 1 and 2",
    )


@register_protocol("nb201-proxies-all")
def _nb201_proxies_all() -> ProtocolConfig:
    """The complete proxy table (computed across sittings; replaces the 500-cell ``nb201-proxies`` table when it
    covers that sample): all proxies for all 6466 unique NB201 cells (C=16, N=5) at initialisation, seed 0,
    batch 64, the fast engine (each proxy within its stated tolerance of the reference path: proxies/README.md).

    Cells: every unique cell in the shipped run order (:func:`robustbench_nas.proxies.sample.shipped_order`: the
    500-cell clean-accuracy-stratified sample first, then the rest stratified and interleaved), so a run stopped
    part-way leaves a stratified subset; images: 64 of the ``npz`` dataset's train split (pass
    ``--data-root ../shared/data/cifar10_test.npz``: CIFAR-10 test images), pinned explicitly
    (:func:`shipped_proxy_images`).
    """
    from robustbench_nas.proxies.sample import shipped_order

    return _nb201_proxies().replace(
        name="nb201-proxies-all",
        archs=tuple(shipped_order()),
        proxy_engine="fast",
        description="zero-cost proxies of all 6466 unique NB201 cells (C=16, N=5, batch 64, seed 0), no training",
    )


#: Cells of the seed-noise study: the first 100 of the run order (10 per clean-accuracy stratum).
SEED_NOISE_CELLS = 100


@register_protocol("nb201-proxies-all-seeds")
def _nb201_proxies_all_seeds() -> ProtocolConfig:
    """Seed noise of the proxies: the first 100 cells of the run order (10 per clean-accuracy stratum) at
    initialisation seeds 1 and 2, on the main table's 64 images (the same pinned ``image_indices``) and engine."""
    from robustbench_nas.proxies.sample import shipped_order

    return _nb201_proxies_all().replace(
        name="nb201-proxies-all-seeds", archs=tuple(shipped_order()[:SEED_NOISE_CELLS]), seeds=(1, 2),
        description=f"seed noise: {SEED_NOISE_CELLS} cells of the nb201-proxies-all order at seeds 1 and 2",
    )


@register_protocol("darts-jung2023")
def _darts_jung2023() -> ProtocolConfig:
    """Jung et al.'s attack grid, corruption set, proxies and measures on the published DARTS-space genotypes
    (DARTS_V1 / V2, PC-DARTS, P-DARTS) and 96 genotypes sampled as NB301's random sampler does (seed 0), each trained
    with NAS-Bench-301's pipeline (``darts-nb301``: C=32, 8 cells, 100 epochs) on CIFAR-10. ``--archs N`` samples
    instead; ``--archs @FILE`` lists genotypes (one ``Genotype(...)`` / compact string or name per line)."""
    from robustbench_nas.search_spaces import get_search_space
    from robustbench_nas.search_spaces.darts import NAMED_GENOTYPES

    return _jung2023().replace(
        name="darts-jung2023",
        search_space="darts",
        train_profile="darts-nb301",
        archs=(*NAMED_GENOTYPES, *get_search_space("darts").sample(96, seed=0)),
        description="Jung et al. 2023's grid (FGSM/PGD/APGD-CE/Square, CIFAR-10-C) on 4 published + 96 sampled DARTS "
                    "genotypes trained with NAS-Bench-301's pipeline (darts-nb301), CIFAR-10",
    )


__all__ = [
    "CIFAR10C_CORRUPTIONS", "PURPOSE_STAGES", "ProtocolConfig", "get_protocol", "list_protocols", "parse_archs",
    "parse_task", "register_protocol", "shipped_proxy_images", "task_cells",
]
