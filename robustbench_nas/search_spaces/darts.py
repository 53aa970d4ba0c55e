"""The DARTS search space (Liu et al., ICLR 2019; the space NAS-Bench-301 tabulates): too large to enumerate.

- Genotypes, strings and errors: :mod:`.darts_genotype` (DARTS ``Genotype(...)`` strings and NASLib's compact form).
- Size: a node ``j`` (DARTS 2..5) picks an unordered pair of distinct inputs among the ``j`` earlier nodes and one of
  7 ops for each of the two: ``C(j, 2) * 49`` choices. A cell has ``(1 * 3 * 6 * 10) * 49**4 = 1,037,664,180``
  choices, a genotype (normal, reduce) their square, ``1,076,746,950,455,072,400`` (< 2**63: an int64 index).
- Index: mixed radix. The digit of node ``k`` (0-based) is ``pair rank * 49 + op(lower input) * 7 + op(higher
  input)``, pairs ranked lexicographically ``(0, 1), (0, 2), (1, 2), (0, 3), ...``, ops by :data:`DARTS_OPS`;
  node 0 is the most significant digit of a cell; ``index = normal * 1,037,664,180 + reduce``. The order of the two
  edges of a node does not change the sum the node computes, so it is not part of the index: strings that differ
  only in that order have the same index (tested: equal network outputs with the weights carried over).
- ``uid == index`` (no further symmetry is claimed: swapping intermediate nodes permutes the concatenated channels,
  which the next cell's 1x1 convolution sees), ``functional_key`` the uid.
- Sampling as NB301's random sampler: each node picks 2 distinct inputs uniformly among the earlier nodes and an op
  uniformly per edge, i.e. uniformly over the index; ``mutate`` changes one op or one input of one edge; ``neighbours`` lists every such change.
- Named genotypes (:data:`NAMED_GENOTYPES`) are accepted wherever a genotype is: ``DARTS_V2``, ``PC_DARTS``, ...
"""

from __future__ import annotations

from itertools import combinations
from math import comb, prod
from typing import Any, Mapping, Sequence

import numpy as np

from .base import (
    CIFAR_MEAN,
    CIFAR_STD,
    ArchitectureError,
    CellCost,
    SearchSpace,
    register_search_space,
)
from .darts_costs import darts_cost
from .darts_genotype import (
    CELL_TYPES,
    DARTS_OPS,
    NUM_NODES,
    DartsCell,
    DartsGenotype,
    make_cell,
    parse_genotype,
)

_N_OPS = len(DARTS_OPS)
#: Input pairs of node k (0-based): lexicographic pairs of distinct earlier nodes.
_PAIRS: tuple[tuple[tuple[int, int], ...], ...] = tuple(tuple(combinations(range(k + 2), 2)) for k in range(NUM_NODES))
#: Radix of node k's digit.
_RADIX: tuple[int, ...] = tuple(comb(k + 2, 2) * _N_OPS**2 for k in range(NUM_NODES))
#: Choices per cell: 1,037,664,180.
CELL_CHOICES: int = prod(_RADIX)
#: Genotypes in the space: 1,076,746,950,455,072,400.
NUM_GENOTYPES: int = CELL_CHOICES**2

#: Published genotypes of the DARTS space (DARTS repository ``cnn/genotypes.py``, PC-DARTS and P-DARTS releases).
NAMED_GENOTYPES: dict[str, str] = {
    "DARTS_V1": "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1), "
                "('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], "
                "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
                "('max_pool_3x3', 0), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
                "('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])",
    "DARTS_V2": "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
                "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
                "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
                "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
                "('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])",
    "PC_DARTS": "Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 0), ('dil_conv_3x3', 1), "
                "('sep_conv_5x5', 0), ('sep_conv_3x3', 1), ('avg_pool_3x3', 0), ('dil_conv_3x3', 1)], "
                "normal_concat=range(2, 6), reduce=[('sep_conv_5x5', 1), ('max_pool_3x3', 0), ('sep_conv_5x5', 1), "
                "('sep_conv_5x5', 2), ('sep_conv_3x3', 0), ('sep_conv_3x3', 3), ('sep_conv_3x3', 1), "
                "('sep_conv_3x3', 2)], reduce_concat=range(2, 6))",
    "PDARTS": "Genotype(normal=[('skip_connect', 0), ('dil_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), "
              "('sep_conv_3x3', 1), ('sep_conv_3x3', 3), ('sep_conv_3x3', 0), ('dil_conv_5x5', 4)], "
              "normal_concat=range(2, 6), reduce=[('avg_pool_3x3', 0), ('sep_conv_5x5', 1), ('sep_conv_3x3', 0), "
              "('dil_conv_5x5', 2), ('max_pool_3x3', 0), ('dil_conv_3x3', 1), ('dil_conv_3x3', 1), "
              "('dil_conv_5x5', 3)], reduce_concat=range(2, 6))",
}


def _name_key(name: str) -> str:
    return name.strip().upper().replace("-", "_")


_NAME_ALIASES = {_name_key(k): k for k in NAMED_GENOTYPES} | {"PC_DARTS_CIFAR": "PC_DARTS", "P_DARTS": "PDARTS",
                                                               "DARTS": "DARTS_V2"}


def named_genotype(name: str) -> str | None:
    """The genotype string of a published genotype name (case-insensitive, ``-`` or ``_``), else ``None``."""
    key = _NAME_ALIASES.get(_name_key(name))
    return None if key is None else NAMED_GENOTYPES[key]


def cell_index(cell: DartsCell) -> int:
    """Mixed-radix index of a cell, ``0 .. CELL_CHOICES - 1`` (independent of the order of a node's two edges)."""
    idx = 0
    for k in range(NUM_NODES):
        (op_a, a), (op_b, b) = sorted(cell.node_edges(k), key=lambda e: e[1])
        digit = _PAIRS[k].index((a, b)) * _N_OPS**2 + DARTS_OPS.index(op_a) * _N_OPS + DARTS_OPS.index(op_b)
        idx = idx * _RADIX[k] + digit
    return idx


def cell_at(index: int) -> DartsCell:
    """The (canonical: each node's edges sorted by input) cell of a cell index."""
    digits = []
    for k in reversed(range(NUM_NODES)):
        index, d = divmod(index, _RADIX[k])
        digits.append(d)
    edges: list[tuple[str, int]] = []
    for k, d in enumerate(reversed(digits)):
        pair, ops = divmod(d, _N_OPS**2)
        a, b = _PAIRS[k][pair]
        edges += [(DARTS_OPS[ops // _N_OPS], a), (DARTS_OPS[ops % _N_OPS], b)]
    return DartsCell(tuple(edges))


@register_search_space("darts", aliases=("darts-cnn", "darts-cifar", "nb301", "nasbench301", "nas-bench-301"))
class DartsSearchSpace(SearchSpace):
    """The DARTS CNN space: 1,076,746,950,455,072,400 genotypes, used through samples, strings and named genotypes."""

    name = "darts"
    description = ("DARTS CNN space (NAS-Bench-301's): normal + reduction cell, 4 nodes x 2 inputs x 7 ops, "
                   "1.08e18 genotypes, sampled (not enumerable)")
    flops_convention = ("multiply-adds of the convolutions and the linear classifier of the inference network "
                        "(auxiliary head, BN, ReLU, pooling, additions and biases not counted)")
    default_encodings = ("opcount", "graf")
    enumerable = False
    network_module = "robustbench_nas.models.darts"
    #: DARTS's evaluation network (C=36, 20 layers) unless a profile or option says otherwise
    default_C = 36
    default_layers = 20

    @property
    def num_cells(self) -> int:
        return NUM_GENOTYPES

    @property
    def num_unique(self) -> int:
        return NUM_GENOTYPES

    @property
    def num_functions(self) -> int:
        return NUM_GENOTYPES

    # ---- strings and indices ------------------------------------------------------------------------------------
    def parse(self, s: str) -> DartsGenotype:
        """A ``Genotype(...)`` string, NASLib's compact form or a published name (``DARTS_V2``, ``PC_DARTS``...)."""
        if isinstance(s, str):
            named = named_genotype(s)
            if named is not None:
                return parse_genotype(named)
            if s.strip().replace("_", "").replace("-", "").isalnum():  # a word: a name we do not know
                raise ArchitectureError(f"malformed DARTS genotype {s!r}: not a Genotype(...) string, a compact "
                                        f"tuple or a published name ({', '.join(NAMED_GENOTYPES)})")
        return parse_genotype(s)

    def format(self, arch: DartsGenotype) -> str:
        if not isinstance(arch, DartsGenotype):
            raise ArchitectureError(f"expected a DartsGenotype, got {type(arch).__name__}")
        return str(arch)

    def decode(self, arch: object) -> DartsGenotype:
        i = self._check_index(arch)
        if i is not None:
            normal, reduce = divmod(i, CELL_CHOICES)
            return DartsGenotype(cell_at(normal), cell_at(reduce))
        if isinstance(arch, DartsGenotype):
            return arch
        if isinstance(arch, str):
            return self.parse(arch)
        if isinstance(arch, (tuple, list)) and len(arch) == 2:  # the compact form as a Python object
            return parse_genotype(repr(tuple(tuple(tuple(p) for p in c) for c in arch)))
        if hasattr(arch, "normal") and hasattr(arch, "reduce"):  # DARTS's own namedtuple
            return self.parse(f"Genotype(normal={list(arch.normal)!r}, normal_concat={list(arch.normal_concat)!r}, "
                              f"reduce={list(arch.reduce)!r}, reduce_concat={list(arch.reduce_concat)!r})")
        raise ArchitectureError(f"cannot read a DARTS genotype from {arch!r}")

    def index_of(self, arch: object) -> int:
        i = self._check_index(arch)
        if i is not None:
            return i
        g = self.decode(arch)
        return cell_index(g.normal) * CELL_CHOICES + cell_index(g.reduce)

    def uid(self, arch: object) -> int:
        return self.index_of(arch)

    def unique_indices(self) -> list[int]:
        self.require_enumerable("unique_indices")
        return []  # not reached

    def compact(self, arch: object) -> str:
        """NASLib's compact form of ``arch`` (canonical edge order) as a string."""
        return self.decode(self.index_of(arch)).compact_str()

    def arch_coords(self, indices: Sequence[int]) -> dict[str, list]:
        """``compact``: NASLib's compact form of each genotype (``arch_str`` is the DARTS ``Genotype(...)``)."""
        return {"compact": [self.compact(int(i)) for i in indices]}

    def arch_coord_descriptions(self) -> dict[str, str]:
        return {"compact": "NASLib compact form: (normal, reduce), 8 (input, op index) pairs each, "
                           f"op index into {list(DARTS_OPS)}"}

    # ---- search -------------------------------------------------------------------------------------------------
    @staticmethod
    def _random_cell(rng: np.random.Generator) -> DartsCell:
        edges: list[tuple[str, int]] = []
        for k in range(NUM_NODES):
            inputs = rng.choice(k + 2, size=2, replace=False)
            edges += [(DARTS_OPS[int(rng.integers(_N_OPS))], int(i)) for i in inputs]
        return DartsCell(tuple(edges))

    def sample(self, n: int, seed: int = 0, unique: bool = True) -> list[int]:
        """``n`` distinct genotypes drawn as NB301's random sampler does (seeded), as sorted indices."""
        if n < 0:
            raise ValueError(f"cannot sample {n} architectures")
        rng = np.random.default_rng(seed)
        out: set[int] = set()
        while len(out) < n:  # a repeat has probability ~ n / 1e18: the loop runs n times
            g = DartsGenotype(self._random_cell(rng), self._random_cell(rng))
            out.add(self.index_of(g))
        return sorted(out)

    def _changes(self, g: DartsGenotype) -> list[DartsGenotype]:
        out = []
        for kind in CELL_TYPES:
            edges = list(g.cell(kind).canonical().edges)
            for e, (op, inp) in enumerate(edges):
                other = edges[e ^ 1][1]
                node = e // 2 + 2
                alternatives = [(o, inp) for o in DARTS_OPS if o != op]
                alternatives += [(op, j) for j in range(node) if j not in (inp, other)]
                for alt in alternatives:
                    new = edges.copy()
                    new[e] = alt
                    cell = make_cell(new, kind)
                    out.append(DartsGenotype(cell, g.reduce) if kind == "normal" else DartsGenotype(g.normal, cell))
        return out

    def neighbours(self, arch: object) -> list[int]:
        """Indices of the genotypes with one edge's op or one edge's input changed (inputs stay distinct)."""
        seen: dict[int, None] = {}
        for g in self._changes(self.decode(self.index_of(arch))):
            seen.setdefault(self.index_of(g), None)
        return list(seen)

    def mutate(self, arch: object, rng: np.random.Generator) -> int:
        """One random change: a cell, an edge, then a new op or a new input with equal probability, the input drawn
        among the earlier nodes other than the node's two inputs (a new op when there is none)."""
        g = self.decode(self.index_of(arch))
        kind = CELL_TYPES[int(rng.integers(2))]
        edges = list(g.cell(kind).canonical().edges)
        e = int(rng.integers(len(edges)))
        op, inp = edges[e]
        node = e // 2 + 2
        inputs = [j for j in range(node) if j not in (inp, edges[e ^ 1][1])]
        if inputs and rng.random() < 0.5:
            edges[e] = (op, inputs[int(rng.integers(len(inputs)))])
        else:
            ops = [o for o in DARTS_OPS if o != op]
            edges[e] = (ops[int(rng.integers(len(ops)))], inp)
        cell = make_cell(edges, kind)
        return self.index_of(DartsGenotype(cell, g.reduce) if kind == "normal" else DartsGenotype(g.normal, cell))

    # ---- networks and costs -------------------------------------------------------------------------------------
    def _options(self, options: dict[str, Any]) -> tuple[int, int, bool]:
        unknown = set(options) - {"C", "layers", "auxiliary"}
        if unknown:
            raise TypeError(f"unknown DARTS network options {sorted(unknown)}; DARTS takes C, layers and auxiliary")
        C = int(options.get("C") or self.default_C)
        layers = int(options.get("layers") or self.default_layers)
        if C < 1 or layers < 1:
            raise ValueError(f"DARTS networks need C >= 1 and layers >= 1, got C={C} layers={layers}")
        return C, layers, bool(options.get("auxiliary", False))

    def build_network(self, arch: object, num_classes: int = 10, *, mean: Sequence[float] = CIFAR_MEAN,
                      std: Sequence[float] = CIFAR_STD, in_channels: int = 3, **options: Any) -> Any:
        """DARTS's ``NetworkCIFAR`` (built by :attr:`network_module`, ``robustbench_nas.models.darts``); options ``C``
        (default 36),
        ``layers`` (default 20) and ``auxiliary`` (default off: the auxiliary head is for training only)."""
        C, layers, auxiliary = self._options(options)
        return self.network_builder()(self.decode(arch), num_classes=num_classes, C=C, layers=layers,
                                      auxiliary=auxiliary, mean=mean, std=std, in_channels=in_channels)

    def network_options(self, profile: Any) -> dict[str, Any]:
        """Width ``C`` and ``layers = 3 N + 2`` from the profile: ``N`` cells per stage between the two reduction
        cells, as in NB201 (NB301: N=2 -> 8 layers; the DARTS evaluation network: N=6 -> 20)."""
        return {"C": int(profile.C), "layers": 3 * int(profile.N) + 2}

    def training_network_options(self, profile: Any) -> dict[str, Any]:
        """:meth:`network_options` with the auxiliary head when the profile weighs its loss."""
        return {**self.network_options(profile), "auxiliary": float(getattr(profile, "auxiliary_weight", 0.0)) > 0}

    def published_flops(self, tally: Mapping[str, int]) -> int:
        return tally["conv_macs"] + tally["linear_macs"]

    def measure_cost(self, arch: object, num_classes: int = 10, input_shape: Sequence[int] = (3, 32, 32),
                     **options: Any) -> CellCost:
        """Counted on the built network, parameters as DARTS counts them (names with ``auxiliary`` left out)."""
        c = int(input_shape[0])
        norm = {} if c == 3 else {"mean": (0.5,) * c, "std": (0.25,) * c}  # CIFAR's would broadcast to 3 channels
        net = self.build_network(arch, num_classes, in_channels=c, **norm, **options)
        params = sum(p.numel() for n, p in net.named_parameters() if "auxiliary" not in n)
        return CellCost(params, self.count_flops(net, input_shape))

    def cost(self, arch: object, num_classes: int = 10, input_shape: Sequence[int] = (3, 32, 32),
             **options: Any) -> CellCost:
        """Closed-form parameters and FLOPs (:func:`~.darts_costs.darts_cost`; equal to :meth:`measure_cost`)."""
        C, layers, _aux = self._options(options)
        return darts_cost(self.decode(arch), C, layers, num_classes, input_shape)

    # ---- analysis -----------------------------------------------------------------------------------------------
    def layer_labels(self) -> list[str]:
        """The 16 edges, ``"<cell> node <j> edge <e>"``, canonical order."""
        return [f"{kind} node {e // 2 + 2} edge {e % 2}" for kind in CELL_TYPES for e in range(2 * NUM_NODES)]

    def layer_choices(self, indices: Sequence[int]) -> np.ndarray:
        """``"op~input"`` on each edge (canonical order), shape ``(n, 16)``."""
        rows = []
        for i in indices:
            g = self.decode(int(i))
            rows.append([f"{op}~{inp}" for kind in CELL_TYPES for op, inp in g.cell(kind).edges])
        return np.array(rows, dtype=object).reshape(len(indices), 2 * 2 * NUM_NODES)


__all__ = ["CELL_CHOICES", "DartsSearchSpace", "NAMED_GENOTYPES", "NUM_GENOTYPES", "cell_at", "cell_index",
           "named_genotype"]
