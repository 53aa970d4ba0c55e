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

import numpy as np

from .base import ArchitectureError, SearchSpace, register_search_space

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


@register_search_space("nb201")
class NB201SearchSpace(SearchSpace):
    """NAS-Bench-201: 15625 cells in NB201's index order, 6466 isomorphism classes."""

    name = "nb201"
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
