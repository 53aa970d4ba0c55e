"""NAS-Bench-201 (NATS-Bench topology) cell search space.

A cell has 4 nodes; node ``j`` sums ``op(i -> j)(node_i)`` over ``i < j``. The six edges, in the order of the
NB201 string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``, are 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2.

The index order is NAS-Bench-201's own (a public fact, not derivable): it ships as ``nb201_order.bin``, 15625
little-endian uint16 codes, the cell at index ``i`` having base-5 code ``sum(op_k * 5**(5-k))`` over its edge ops
in the order of :data:`OPS`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from typing import Any, Mapping, Sequence

import numpy as np

from ..constants import CIFAR_MEAN, CIFAR_STD
from .base import ArchitectureError, CellCost, CellDAG, FlopCount, SearchSpace, register_search_space

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: (target node, source node) of each edge, in string order.
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
NUM_EDGES = len(EDGES)
_TOKEN = re.compile(r"^([a-z0-9_]+)~(\d+)$")


@dataclass(frozen=True)
class Cell:
    """One NB201 cell: the op on each of the 6 edges (string order)."""

    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.ops) != NUM_EDGES:
            raise ArchitectureError(f"a NB201 cell has {NUM_EDGES} edges, got {len(self.ops)} ops")
        for op in self.ops:
            if op not in OPS:
                raise ArchitectureError(f"unknown op {op!r}; NB201 ops are {list(OPS)}")

    @property
    def code(self) -> int:
        """Base-5 code of the ops (the key of the shipped index table)."""
        c = 0
        for op in self.ops:
            c = c * len(OPS) + OPS.index(op)
        return c

    @classmethod
    def from_code(cls, code: int) -> "Cell":
        ops = []
        for _ in range(NUM_EDGES):
            code, r = divmod(code, len(OPS))
            ops.append(OPS[r])
        return cls(tuple(reversed(ops)))

    def edges(self) -> list[tuple[int, int, str]]:
        """``(target, source, op)`` for every edge."""
        return [(j, i, op) for (j, i), op in zip(EDGES, self.ops)]

    def __str__(self) -> str:
        nodes = []
        k = 0
        for j in (1, 2, 3):
            toks = []
            for i in range(j):
                toks.append(f"{self.ops[k]}~{i}")
                k += 1
            nodes.append("|" + "|".join(toks) + "|")
        return "+".join(nodes)


def parse_arch(s: str) -> Cell:
    """Parse a NB201 string into a :class:`Cell`, with an error naming what is wrong.

    Example:
        >>> parse_arch("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|").ops[0]
        'nor_conv_3x3'
    """
    if not isinstance(s, str):
        raise ArchitectureError(f"expected a NB201 architecture string, got {type(s).__name__}")
    text = s.strip()
    nodes = text.split("+")
    if len(nodes) != 3:
        raise ArchitectureError(
            f"malformed NB201 string {s!r}: expected 3 nodes separated by '+', got {len(nodes)}; "
            "form: |op~0|+|op~0|op~1|+|op~0|op~1|op~2|"
        )
    ops: list[str] = []
    for j, node in enumerate(nodes, start=1):
        if not (node.startswith("|") and node.endswith("|")) or len(node) < 2:
            raise ArchitectureError(f"malformed NB201 string {s!r}: node {j} {node!r} must be enclosed in '|'")
        toks = node[1:-1].split("|")
        if len(toks) != j:
            raise ArchitectureError(f"malformed NB201 string {s!r}: node {j} needs {j} inputs, got {len(toks)}")
        for i, tok in enumerate(toks):
            m = _TOKEN.match(tok)
            if not m:
                raise ArchitectureError(f"malformed NB201 string {s!r}: token {tok!r} is not 'op~input'")
            op, src = m.group(1), int(m.group(2))
            if src != i:
                raise ArchitectureError(
                    f"malformed NB201 string {s!r}: node {j} input {i} names node {src} (inputs must be 0..{j - 1} in order)"
                )
            if op not in OPS:
                raise ArchitectureError(f"unknown op {op!r} in {s!r}; NB201 ops are {list(OPS)}")
            ops.append(op)
    return Cell(tuple(ops))


def isomorphism_key(cell: Cell) -> str:
    """NB201's unique-string rule: equal keys <=> same isomorphism class (6466 classes).

    Node 0 is labelled ``"0"``. For node ``j``, each incoming edge ``(op, i)`` contributes ``"#"`` if ``op`` is
    ``none`` or node ``i``'s label is exactly ``"#"``, node ``i``'s label if ``op`` is ``skip_connect``, else
    ``"(" + label_i + ")@" + op``; the node's label is its terms sorted and joined by ``"+"``. The key is node 3's
    label. Deliberately reproduces the published rule (a node labelled ``"#+#"`` is *not* zero downstream), since a
    tighter rule would break compatibility with every published NB201 dataset.
    """
    labels = ["0"]
    k = 0
    for j in (1, 2, 3):
        terms = []
        for i in range(j):
            op = cell.ops[k]
            k += 1
            if op == "none" or labels[i] == "#":
                terms.append("#")
            elif op == "skip_connect":
                terms.append(labels[i])
            else:
                terms.append(f"({labels[i]})@{op}")
        labels.append("+".join(sorted(terms)))
    return labels[3]


def functional_key(cell: Cell) -> str:
    """A key equal for cells that compute the same function (4660 classes of the 15625 cells).

    Each node's value is written as a sum of terms: the input ``0``, ``(sum)@conv`` for a ReLU-conv-BN op (not
    linear, so the sum it reads stays inside), and the average pool distributed over the sum it reads (it is
    linear and has no parameters: ``pool(a + b) = pool(a) + pool(b)``); ``skip_connect`` passes the terms on,
    ``none`` and zero nodes add nothing. The key is the output node's sorted terms (``"#"``: a zero cell).

    NB201's rule (:func:`isomorphism_key`, 6466 classes) is finer: it keeps a ``"#"`` for every zero summand and
    does not distribute the pool, so it tells apart cells that differ only in where a zero sits — e.g. with edge
    ``2<-1`` = ``none`` swapping nodes 1 and 2 (``|A~0|+|B~0|none~1|+|X~0|C~1|D~2|`` vs
    ``|B~0|+|A~0|none~1|+|X~0|D~1|C~2|``) is a graph isomorphism NB201 counts twice — or whether two branches are
    pooled before or after they are summed. Every published NB201 dataset trained and evaluated each of the 6466
    separately, so the members of such a group are repeated measurements of one architecture
    (:mod:`robustbench_nas.analysis.twins`). Assumes, as NB201's rule does, that an op on a zero input gives
    zero.

    Example:
        >>> a = parse_arch("|nor_conv_3x3~0|+|avg_pool_3x3~0|none~1|+|skip_connect~0|nor_conv_1x1~1|none~2|")
        >>> b = parse_arch("|avg_pool_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")
        >>> isomorphism_key(a) == isomorphism_key(b), functional_key(a) == functional_key(b)
        (False, True)
    """
    terms: list[list[str]] = [["0"]]
    k = 0
    for j in (1, 2, 3):
        node: list[str] = []
        for i in range(j):
            op = cell.ops[k]
            k += 1
            if op == "none" or not terms[i]:
                continue
            if op == "skip_connect":
                node += terms[i]
            elif op == "avg_pool_3x3":
                node += [f"({t})@{op}" for t in terms[i]]
            else:
                node.append("(" + "+".join(terms[i]) + f")@{op}")
        terms.append(sorted(node))
    return "+".join(terms[3]) or "#"


#: A constant in NAS-Bench-201's published FLOPs of unknown origin; with it, the ``published`` count equals the
#: published value on every cell checked (see docs/protocols in the shared folder).
NB201_FLOPS_CONSTANT = 1078


@register_search_space("nb201", aliases=("nasbench201", "nas-bench-201", "natsbenchtss", "nats-tss", "tss"))
class NB201SearchSpace(SearchSpace):
    """NAS-Bench-201: 15625 cells in NB201's index order, 6466 isomorphism classes."""

    name = "nb201"
    description = "NAS-Bench-201 / NATS-Bench topology space: 6 edges x 5 ops, 15625 cells, 6466 unique"
    flops_convention = ("NAS-Bench-201's published flops: conv + linear multiply-adds + linear bias + "
                        "3 x conv output elements + 9 x in-cell 3x3 average-pool output elements + 1078")
    default_encodings = ("opcount", "graf")
    sparse_encodings = ("onehot", "path")
    signal_encodings = ("pathstats", "propagation")
    network_module = "robustbench_nas.models.nb201"
    ops = OPS
    edges = EDGES

    def __init__(self) -> None:
        raw = resources.files(__package__).joinpath("nb201_order.bin").read_bytes()
        codes = np.frombuffer(raw, dtype="<u2").astype(np.int64)
        if codes.shape != (15625,) or len(np.unique(codes)) != 15625:
            raise RuntimeError("corrupt nb201_order.bin: expected 15625 distinct cell codes")
        self._codes = codes
        self._index_of_code = np.empty(15625, dtype=np.int64)
        self._index_of_code[codes] = np.arange(15625)

    @property
    def num_cells(self) -> int:
        return 15625

    def cell(self, arch: object) -> Cell:
        """The :class:`Cell` of an index, string or cell."""
        return Cell.from_code(int(self._codes[self.index_of(arch)]))

    def decode(self, arch: object) -> Cell:
        return arch if isinstance(arch, Cell) else self.cell(arch)

    def parse(self, s: str) -> Cell:
        return parse_arch(s)

    def format(self, cell: Cell) -> str:
        return str(cell)

    def arch_str(self, index: int) -> str:
        return str(self.cell(index))

    def index_of(self, arch: object) -> int:
        if isinstance(arch, Cell):
            return int(self._index_of_code[arch.code])
        if isinstance(arch, (int, np.integer)) and not isinstance(arch, bool):
            if not 0 <= int(arch) < self.num_cells:
                raise ArchitectureError(f"NB201 index {arch} out of range 0..{self.num_cells - 1}")
            return int(arch)
        if isinstance(arch, str):
            text = arch.strip()
            if text.lstrip("-").isdigit():
                return self.index_of(int(text))
            return int(self._index_of_code[parse_arch(text).code])
        raise ArchitectureError(f"cannot read an architecture from {arch!r}")

    @cached_property
    def _uids(self) -> np.ndarray:
        first: dict[str, int] = {}
        uids = np.empty(self.num_cells, dtype=np.int64)
        for idx in range(self.num_cells):  # increasing index: the first seen is the smallest
            key = isomorphism_key(Cell.from_code(int(self._codes[idx])))
            uids[idx] = first.setdefault(key, idx)
        return uids

    def uid(self, arch: object) -> int:
        return int(self._uids[self.index_of(arch)])

    def functional_key(self, arch: object) -> str:
        """:func:`functional_key` of the cell: equal for the NB201-distinct cells that compute the same function."""
        return functional_key(self.cell(arch))

    def uid_table(self) -> np.ndarray:
        """``uid`` of every index, shape ``(15625,)``."""
        return self._uids.copy()

    @cached_property
    def _unique(self) -> list[int]:
        return sorted(int(u) for u in np.unique(self._uids))

    def unique_indices(self) -> list[int]:
        return list(self._unique)

    def neighbours(self, arch: object) -> list[int]:
        cell = self.cell(arch)
        out = []
        for e in range(NUM_EDGES):
            for op in OPS:
                if op != cell.ops[e]:
                    ops = list(cell.ops)
                    ops[e] = op
                    out.append(self.index_of(Cell(tuple(ops))))
        return out

    def mutate(self, arch: object, rng: np.random.Generator) -> int:
        cell = self.cell(arch)
        e = int(rng.integers(NUM_EDGES))
        choices = [op for op in OPS if op != cell.ops[e]]
        ops = list(cell.ops)
        ops[e] = choices[int(rng.integers(len(choices)))]
        return self.index_of(Cell(tuple(ops)))

    # ---- store coordinates --------------------------------------------------------------------------------------
    def arch_coords(self, indices: Sequence[int]) -> dict[str, list]:
        """``nb201_index``: the NB201 index each cell was requested as (its uid is the ``arch`` coordinate)."""
        return {"nb201_index": [int(i) for i in indices]}

    def arch_coord_descriptions(self) -> dict[str, str]:
        return {"nb201_index": "NB201 index the cell was requested as"}

    # ---- networks and costs -------------------------------------------------------------------------------------
    def build_network(self, arch: object, num_classes: int = 10, *, mean: Sequence[float] = CIFAR_MEAN,
                      std: Sequence[float] = CIFAR_STD, in_channels: int = 3, C: int = 16, N: int = 5,
                      **options: Any) -> Any:
        """The NB201 macro network (:class:`robustbench_nas.models.NB201Network`); ``C`` channels, ``N`` cells/stage."""
        if options:
            raise TypeError(f"unknown NB201 network options {sorted(options)}; NB201 takes C and N")
        return self.network_builder()(self.decode(arch), num_classes, C=C, N=N, mean=mean, std=std,
                                      in_channels=in_channels)

    def network_options(self, profile: Any) -> dict[str, Any]:
        """NB201 networks take their width ``C`` and depth ``N`` from the training profile."""
        return {"C": int(profile.C), "N": int(profile.N)}

    def published_flops(self, tally: Mapping[str, int]) -> int:
        return (tally["conv_macs"] + tally["linear_macs"] + tally["linear_bias"] + 3 * tally["conv_out"]
                + 9 * tally["pool3_out"] + NB201_FLOPS_CONSTANT)

    def cost(self, arch: object, num_classes: int = 10, input_shape: Sequence[int] = (3, 32, 32), *,
             C: int = 16, N: int = 5, **options: Any) -> CellCost:
        """Parameters and FLOPs without building the network.

        Every edge of a NB201 cell sees the same channels and resolution, so a network's counts are the counts of
        the all-``none`` network plus one increment per edge op. The increments are measured once (per
        configuration) on built networks with a single non-zero edge, so the result equals :meth:`measure_cost`
        exactly (tested), about 1000x faster: ``rbnas space list`` covers 15625 cells in seconds.
        """
        if options:
            raise TypeError(f"unknown NB201 network options {sorted(options)}; NB201 takes C and N")
        base, deltas = self._cost_table(num_classes, C, N, tuple(int(v) for v in input_shape))
        params, plain, pub = base.params, base.flops.plain, base.flops.published
        for op in self.decode(arch).ops:
            params += deltas[op].params
            plain += deltas[op].flops.plain
            pub += deltas[op].flops.published
        return CellCost(params, FlopCount(plain, pub))

    def _cost_table(self, num_classes: int, C: int, N: int,
                    input_shape: tuple[int, ...]) -> tuple[CellCost, dict[str, CellCost]]:
        key = (num_classes, C, N, input_shape)
        if key not in self._costs:
            def measure(ops: tuple[str, ...]) -> CellCost:
                return self.measure_cost(Cell(ops), num_classes, input_shape, C=C, N=N)

            base = measure(("none",) * NUM_EDGES)
            deltas = {}
            for op in OPS:
                one = measure((op,) + ("none",) * (NUM_EDGES - 1))
                deltas[op] = CellCost(one.params - base.params,
                                      FlopCount(one.flops.plain - base.flops.plain,
                                                one.flops.published - base.flops.published))
            self._costs[key] = (base, deltas)
        return self._costs[key]

    @cached_property
    def _costs(self) -> dict:
        return {}

    # ---- analysis -----------------------------------------------------------------------------------------------
    def cell_dag(self, arch: object) -> CellDAG:
        """The 4-node cell: edges ``(j, i, op)`` without the ``none`` ones (the zero op), output node 3."""
        return CellDAG(tuple(e for e in self.decode(arch).edges() if e[2] != "none"), output=3)

    def layer_labels(self) -> list[str]:
        """The six edges, ``"j<-i"``, in string order."""
        return [f"{j}<-{i}" for j, i in EDGES]

    def layer_choices(self, indices: Sequence[int]) -> np.ndarray:
        """The op on each edge, shape ``(n, 6)`` (strings)."""
        return np.array([self.cell(int(i)).ops for i in indices], dtype=object).reshape(len(indices), NUM_EDGES)

