"""The search-space interface and its registry.

A search space is one object that owns everything that differs between spaces (naszilla / NASLib style): the
enumeration and its index order, the string format, isomorphism (the ``uid`` of a class), the network builder, the
parameter / FLOP counts in the space's published convention, the encodings used by the analysis, mutation and
neighbourhoods for search, and the extra per-architecture coordinates of a store. The rest of the code takes a
space by name (:func:`get_search_space`) and never branches on which space it is.

Adding a space is one module with one registered class (see ``docs/search_spaces.md``)::

    @register_search_space("my-space", aliases=("myspace",))
    class MySpace(SearchSpace):
        ...
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from ..constants import CIFAR_MEAN, CIFAR_STD
from .networks import NetworkBuilder, get_network_builder
from ..utils.registry import Registry

if TYPE_CHECKING:  # torch is only needed by the network / counting methods
    from torch import nn

#: the space classes by name; aliases are stored in their normalised form (:func:`_key`), how they are looked up
SEARCH_SPACES: Registry[Callable[[], "SearchSpace"]] = Registry("search space")
_INSTANCES: dict[str, "SearchSpace"] = {}


Encoder = Callable[[Any], dict[str, float]]


class ArchitectureError(ValueError):
    """Raised for a malformed or unknown architecture (string, index or op)."""


class NotEnumerableError(ValueError):
    """Raised when something needs every architecture of a space too large to enumerate (DARTS)."""


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "").replace(" ", "")


def register_search_space(name: str, aliases: Sequence[str] = ()) -> Callable[[type], type]:
    """Class decorator: register a search space under ``name`` (and ``aliases``), built lazily, once.

    A name or alias that another space already claims (after normalisation: case, ``-``, ``_`` and spaces are
    ignored) raises ``ValueError``.
    """

    def deco(cls: type) -> type:
        # look-up normalises the query, so the normalised forms are the aliases that can ever match
        keys = list(dict.fromkeys(_key(a) for a in (name, *aliases)))
        SEARCH_SPACES.add(name, cls, aliases=[k for k in keys if k != name])
        return cls

    return deco


def canonical_name(name: str) -> str:
    """The registered name of ``name`` or of one of its aliases (KeyError naming the known spaces)."""
    if name in SEARCH_SPACES:
        return SEARCH_SPACES.resolve(name)
    key = _key(str(name))
    if key not in SEARCH_SPACES:
        raise KeyError(f"unknown search space {name!r}; known: {list_search_spaces()}")
    return SEARCH_SPACES.resolve(key)


def get_search_space(name: str = "nb201") -> "SearchSpace":
    """Return the (cached) search space registered under ``name`` (or an alias).

    Example:
        >>> space = get_search_space("nb201")
        >>> space.num_cells, space.num_unique
        (15625, 6466)
        >>> get_search_space("nats-sss").arch_str(1)
        '8:8:8:8:16'
    """
    key = canonical_name(name)
    if key not in _INSTANCES:
        _INSTANCES[key] = SEARCH_SPACES.get(key)()
    return _INSTANCES[key]


def list_search_spaces(pattern: str | None = None) -> list[str]:
    """Names of all registered search spaces (sorted), filtered by a shell-style ``pattern`` (``"nats*"``)."""
    return SEARCH_SPACES.list(pattern, sort=True)


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one forward pass of a single image (multiply-adds).

    Attributes:
        plain: multiply-adds of the convolutions and the linear layers.
        published: the space's published convention (its benchmark's ``flops`` column); see the space's
            :attr:`SearchSpace.flops_convention`.
    """

    plain: int
    published: int

    @property
    def nb201(self) -> int:
        """Deprecated name of :attr:`published` (kept for code written when NB201 was the only space)."""
        return self.published

    @property
    def plain_m(self) -> float:
        return self.plain / 1e6

    @property
    def published_m(self) -> float:
        return self.published / 1e6

    nb201_m = published_m


@dataclass(frozen=True)
class CellDAG:
    """A cell as a DAG of op-labelled edges, for graph features (e.g. the WL kernel of ``analysis.wl_kernel``).

    Attributes:
        edges: ``(target, source, op)`` in the space's edge order, edges whose op is the zero op (no connection)
            left out; sources precede targets.
        output: the output node (node 0 is the input).
    """

    edges: tuple[tuple[int, int, str], ...]
    output: int


@dataclass(frozen=True)
class CellCost:
    """Parameters and FLOPs of one architecture's network."""

    params: int
    flops: FlopCount


class SearchSpace(abc.ABC):
    """A finite search space with a fixed index order and an isomorphism partition.

    Architectures are accepted everywhere as an index (``int``), a string of the space, or the space's own
    architecture object (:meth:`decode`); methods return indices.
    """

    #: registered name
    name: str
    #: one line for people
    description: str = ""
    #: how :attr:`FlopCount.published` is counted (for docs and store attributes)
    flops_convention: str = ""
    #: encodings the analysis uses when asked for the ``default`` ones
    default_encodings: tuple[str, ...] = ()
    #: encodings with one sparse indicator column per choice, left out of the predictors' ``compact`` view
    sparse_encodings: tuple[str, ...] = ()
    #: encodings of the predictors' ``signal`` view (features of how signal and perturbation travel the cell)
    signal_encodings: tuple[str, ...] = ()
    #: the module that registers this space's network builder (:mod:`.networks`), imported by name on first use:
    #: the networks sit in the layer above, so a space never imports them itself
    network_module: str = ""

    #: whether every architecture can be listed (``uid_table``, ``unique_indices``, ``space list``,
    #: ``--archs all``); a sampled space (DARTS) is used through ``sample``, strings and indices only
    enumerable: bool = True

    def require_enumerable(self, what: str) -> None:
        """Raise :class:`NotEnumerableError` (one line saying what to do instead) unless the space is enumerable."""
        if not self.enumerable:
            raise NotEnumerableError(
                f"{what} needs every architecture of {self.name}, which has {self.num_cells:,} and cannot be "
                "enumerated; use --archs N (a seeded sample) or --archs @FILE (a list of architectures)")

    # ---- enumeration, strings, isomorphism ----------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def num_cells(self) -> int:
        """Number of architectures (all, isomorphic ones included)."""

    @property
    def num_unique(self) -> int:
        """Number of isomorphism classes."""
        return len(self.unique_indices())

    @abc.abstractmethod
    def decode(self, arch: object) -> Any:
        """The space's architecture object of an index, string or architecture object."""

    @abc.abstractmethod
    def parse(self, s: str) -> Any:
        """Parse an architecture string (:class:`ArchitectureError` naming what is wrong)."""

    @abc.abstractmethod
    def format(self, arch: Any) -> str:
        """The string of an architecture object."""

    def arch_str(self, index: int) -> str:
        """The architecture string of the architecture at ``index``."""
        return self.format(self.decode(index))

    @abc.abstractmethod
    def index_of(self, arch: object) -> int:
        """Index of an architecture given as string, architecture object or index."""

    def _check_index(self, arch: object) -> int | None:
        """``int(arch)`` if ``arch`` is an in-range index (or a string of digits), else ``None``."""
        if isinstance(arch, str) and arch.strip().lstrip("-").isdigit():
            arch = int(arch.strip())
        if isinstance(arch, (int, np.integer)) and not isinstance(arch, bool):
            if not 0 <= int(arch) < self.num_cells:
                raise ArchitectureError(f"{self.name} index {arch} out of range 0..{self.num_cells - 1}")
            return int(arch)
        return None

    @abc.abstractmethod
    def uid(self, arch: object) -> int:
        """Smallest index of the isomorphism class of ``arch``."""

    def functional_key(self, arch: object) -> str:
        """A key equal for architectures that compute the same function although :meth:`uid` keeps them apart
        ("functional twins": separately trained, hence repeated measurements of one architecture). Default: the uid
        (no twins); a space whose isomorphism rule is looser than its functions overrides it (NB201)."""
        return str(self.uid(arch))

    @property
    def num_functions(self) -> int:
        """Number of distinct functions (:meth:`functional_key` classes); enumerates the space by default."""
        self.require_enumerable("counting functions")
        return len({self.functional_key(i) for i in range(self.num_cells)})

    def uid_table(self) -> np.ndarray:
        """``uid`` of every index, shape ``(num_cells,)``."""
        self.require_enumerable("uid_table")
        return np.array([self.uid(i) for i in range(self.num_cells)], dtype=np.int64)

    @abc.abstractmethod
    def unique_indices(self) -> list[int]:
        """Sorted uids (one representative per isomorphism class)."""

    def arch_coords(self, indices: Sequence[int]) -> dict[str, list]:
        """Extra per-architecture coordinates a store keeps beside ``arch`` / ``arch_str`` (``{}``: none).

        ``indices`` are the indices the architectures were requested as.
        """
        return {}

    def arch_coord_descriptions(self) -> dict[str, str]:
        """A description of each :meth:`arch_coords` name (stored as the coordinate's attribute)."""
        return {}

    # ---- search -------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def mutate(self, arch: object, rng: np.random.Generator) -> int:
        """Index of a random neighbour."""

    @abc.abstractmethod
    def neighbours(self, arch: object) -> list[int]:
        """Indices of all architectures one mutation away."""

    def sample(self, n: int, seed: int = 0, unique: bool = True) -> list[int]:
        """``n`` distinct indices drawn without replacement (uids only if ``unique``), seeded, sorted."""
        pool = np.asarray(self.unique_indices() if unique else range(self.num_cells))
        if n > len(pool):
            raise ValueError(f"cannot sample {n} architectures from the {len(pool)} of {self.name}")
        rng = np.random.default_rng(seed)
        return sorted(int(i) for i in rng.choice(pool, size=n, replace=False))

    def resolve(self, archs: Sequence[object]) -> list[int]:
        """Indices for a list of strings / indices / architecture objects (errors name the bad entry)."""
        return [self.index_of(a) for a in archs]

    # ---- networks and costs -------------------------------------------------------------------------------------
    @abc.abstractmethod
    def build_network(self, arch: object, num_classes: int = 10, *, mean: Sequence[float] = CIFAR_MEAN,
                      std: Sequence[float] = CIFAR_STD, in_channels: int = 3, **options: Any) -> "nn.Module":
        """The network of ``arch``: an ``nn.Module`` taking [0, 1] images (it normalises first), returning logits.

        The module has ``arch_str`` and ``config`` (the keyword arguments that rebuild it, ``space`` included
        unless it is ``nb201``), ``features(x)`` (pre-pooling map) and ``classifier``.
        ``options`` are the space's own settings (NB201: ``C``, ``N``); unknown ones are an error.
        """

    def network_options(self, profile: Any) -> dict[str, Any]:
        """The :meth:`build_network` options a training profile sets for this space (``{}``: none)."""
        return {}

    def network_builder(self) -> NetworkBuilder:
        """This space's network builder (registered by :attr:`network_module`; it takes a decoded architecture)."""
        return get_network_builder(self.name, self.network_module)

    def training_network_options(self, profile: Any) -> dict[str, Any]:
        """The options of the network being trained (default: :meth:`network_options`); DARTS adds its auxiliary
        head when the profile weighs its loss. The trained network is saved without training-only parts."""
        return self.network_options(profile)

    @abc.abstractmethod
    def published_flops(self, tally: "Mapping[str, int]") -> int:
        """The published FLOP convention from a hook tally (:func:`robustbench_nas.utils.counting.tally_flops`)."""

    def count_flops(self, model: "nn.Module", input_shape: Sequence[int] = (3, 32, 32)) -> FlopCount:
        """FLOPs of a built network of this space, measured with forward hooks."""
        from ..utils.counting import tally_flops  # torch only when counting (``rbnas space`` lists without it)

        t = tally_flops(model, input_shape)
        return FlopCount(plain=t["conv_macs"] + t["linear_macs"], published=self.published_flops(t))

    def measure_cost(self, arch: object, num_classes: int = 10, input_shape: Sequence[int] = (3, 32, 32),
                     **options: Any) -> CellCost:
        """Parameters and FLOPs counted on the built network (slow, the reference for :meth:`cost`)."""
        from ..utils.counting import count_params  # torch only when counting

        net = self.build_network(arch, num_classes, in_channels=int(input_shape[0]), **options)
        return CellCost(count_params(net), self.count_flops(net, input_shape))

    def cost(self, arch: object, num_classes: int = 10, input_shape: Sequence[int] = (3, 32, 32),
             **options: Any) -> CellCost:
        """Parameters and FLOPs without building the network where the space can (default: builds it)."""
        return self.measure_cost(arch, num_classes, input_shape, **options)

    # ---- encodings for the analysis -----------------------------------------------------------------------------
    #: ``{name: f(arch object) -> {feature: value}}``, filled per space by :func:`register_encoding`
    encoders: Registry[Encoder]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.encoders = Registry(f"{cls.__name__} encoding")

    def list_encodings(self, pattern: str | None = None) -> list[str]:
        """Names of this space's encodings (registration order), filtered by a shell-style ``pattern``."""
        return self.encoders.list(pattern)

    def resolve_encodings(self, kind: str | Sequence[str]) -> list[str]:
        """Encoding names of ``kind`` (a name, a list, ``all`` or ``default``); unknown names are an error."""
        kinds = [kind] if isinstance(kind, str) else list(kind)
        out: list[str] = []
        for k in kinds:
            names = list(self.encoders) if k == "all" else list(self.default_encodings) if k == "default" else [k]
            out += [n for n in names if n not in out]
        unknown = [k for k in out if k not in self.encoders]
        if unknown:
            raise ValueError(f"unknown encoding(s) {unknown} for search space {self.name}; "
                             f"known: {self.list_encodings() + ['all', 'default']}")
        return out

    def encode_one(self, arch: object, kinds: Sequence[str]) -> dict[str, float]:
        """The features of one architecture for the (resolved) encodings ``kinds``."""
        a = self.decode(arch)
        row: dict[str, float] = {}
        for k in kinds:
            row.update(self.encoders.get(k)(a))
        return row

    def encoding_columns(self, kinds: str | Sequence[str]) -> list[str]:
        """The column names of the encodings ``kinds`` (fixed per encoding: read off the architecture at index 0)."""
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        return list(self.encode_one(0, self.resolve_encodings(kinds))) if kinds else []

    def cell_dag(self, arch: object) -> CellDAG:
        """The cell of ``arch`` as a DAG of op-labelled edges (a space without a cell graph raises ``ValueError``)."""
        raise ValueError(f"search space {self.name!r} has no cell graph (its architectures are not op DAGs)")

    def layer_labels(self) -> list[str]:
        """Names of the positions an architecture chooses (NB201: edges, SSS: layers), for figures."""
        return []

    def layer_choices(self, indices: Sequence[int]) -> np.ndarray:
        """The choice at each position for each index: shape ``(len(indices), len(layer_labels()))``."""
        raise ValueError(f"search space {self.name!r} has no per-position choices (layer_labels() is empty)")


def register_encoding(name: str, space: str | type = "nb201") -> Callable[[Encoder], Encoder]:
    """Register ``f(arch object) -> {feature: value}`` as encoding ``name`` of search space ``space``.

    A name the space already has raises ``ValueError``.
    """

    def deco(f: Encoder) -> Encoder:
        cls = space if isinstance(space, type) else type(get_search_space(space))
        return cls.encoders.add(name, f)

    return deco
