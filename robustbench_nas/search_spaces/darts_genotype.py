"""DARTS genotypes (Liu et al., ICLR 2019): the architecture object, its two string forms and their errors.

Facts from the DARTS repository (quark0/darts, ``cnn/genotypes.py``) and NASLib (``search_spaces/nasbench301``):

- a genotype is two cells, ``normal`` and ``reduce``; each has 4 intermediate nodes (DARTS numbers them 2..5; 0 and 1
  are the cell's inputs, the outputs of the two previous cells); node ``j`` sums two edges ``(op, input)`` whose
  inputs are distinct nodes ``< j``; the cell's output concatenates nodes 2..5 (``normal_concat=[2, 3, 4, 5]``, written
  ``range(2, 6)`` in some genotypes of the DARTS repository);
- DARTS's ``PRIMITIVES`` are ``none`` followed by the 7 ops of :data:`DARTS_OPS`; a discrete genotype never chooses
  ``none``;
- the DARTS string is the ``repr`` of its namedtuple, ``Genotype(normal=[('sep_conv_3x3', 0), ...],
  normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=[2, 3, 4, 5])``; NASLib's compact form is two tuples of 8
  ``(input, op index)`` pairs, op index = position in :data:`DARTS_OPS` (= DARTS ``PRIMITIVES`` index - 1).

This module has no torch and no search-space logic, so that the network builder can take a decoded genotype.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any, Sequence

from .base import ArchitectureError

#: The 7 operations of a discrete DARTS genotype, in DARTS ``PRIMITIVES`` order without ``none`` (NASLib's order).
DARTS_OPS: tuple[str, ...] = (
    "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5",
)
#: Intermediate nodes per cell.
NUM_NODES = 4
#: Edges per cell (two per intermediate node).
NUM_EDGES = 2 * NUM_NODES
#: The nodes every cell concatenates (all intermediate nodes, DARTS numbering).
CONCAT: tuple[int, ...] = tuple(range(2, 2 + NUM_NODES))
#: The two cell types, in genotype order.
CELL_TYPES: tuple[str, str] = ("normal", "reduce")

Edge = tuple[str, int]


@dataclass(frozen=True)
class DartsCell:
    """One cell: 8 edges ``(op, input)`` in DARTS order (edges ``2k`` and ``2k + 1`` feed node ``k + 2``).

    The order of the two edges of a node is kept as given (the DARTS string round-trips); :meth:`canonical`
    sorts them by input, the order in which the space indexes a cell.
    """

    edges: tuple[Edge, ...]

    def node_edges(self, k: int) -> tuple[Edge, Edge]:
        """The two edges of intermediate node ``k`` (0-based; DARTS node ``k + 2``)."""
        return self.edges[2 * k], self.edges[2 * k + 1]

    def canonical(self) -> "DartsCell":
        """The same cell with each node's two edges sorted by input (the sum of a node does not depend on order)."""
        out: list[Edge] = []
        for k in range(NUM_NODES):
            out.extend(sorted(self.node_edges(k), key=lambda e: e[1]))
        return DartsCell(tuple(out))

    def compact(self) -> tuple[tuple[int, int], ...]:
        """NASLib's compact cell: 8 ``(input, op index in DARTS_OPS)`` pairs."""
        return tuple((i, DARTS_OPS.index(op)) for op, i in self.edges)

    def __str__(self) -> str:
        return "[" + ", ".join(f"({op!r}, {i})" for op, i in self.edges) + "]"


@dataclass(frozen=True)
class DartsGenotype:
    """A DARTS genotype: a normal and a reduction cell (both concatenate nodes 2..5)."""

    normal: DartsCell
    reduce: DartsCell

    def cell(self, kind: str) -> DartsCell:
        """``"normal"`` or ``"reduce"``."""
        if kind not in CELL_TYPES:
            raise ValueError(f"unknown DARTS cell type {kind!r}; known: {list(CELL_TYPES)}")
        return self.normal if kind == "normal" else self.reduce

    def canonical(self) -> "DartsGenotype":
        """Both cells with each node's edges sorted by input."""
        return DartsGenotype(self.normal.canonical(), self.reduce.canonical())

    def compact(self) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
        """NASLib's compact form ``(normal, reduce)``."""
        return self.normal.compact(), self.reduce.compact()

    def compact_str(self) -> str:
        """The compact form as a string (Python ``repr`` of the nested tuples)."""
        return repr(self.compact())

    def __str__(self) -> str:
        concat = list(CONCAT)
        return (f"Genotype(normal={self.normal}, normal_concat={concat}, reduce={self.reduce}, "
                f"reduce_concat={concat})")


def make_cell(edges: Sequence[Any], kind: str = "normal", what: object = None) -> DartsCell:
    """A checked :class:`DartsCell` from 8 ``(op name, input)`` pairs (errors name the cell, node and problem)."""
    where = f"DARTS genotype{'' if what is None else f' {what!r}'}: {kind} cell"
    if isinstance(edges, (str, bytes)) or not isinstance(edges, Sequence):
        raise ArchitectureError(f"{where}: expected a list of {NUM_EDGES} (op, input) pairs, "
                                f"got {type(edges).__name__}")
    if len(edges) != NUM_EDGES:
        raise ArchitectureError(f"{where} has {len(edges)} edges, expected {NUM_EDGES} "
                                f"(2 per intermediate node, {NUM_NODES} nodes)")
    out: list[Edge] = []
    for e, edge in enumerate(edges):
        node = e // 2 + 2
        here = f"{where}, node {node} (edge {e})"
        if not isinstance(edge, (tuple, list)) or len(edge) != 2:
            raise ArchitectureError(f"{here}: expected an (op, input) pair, got {edge!r}")
        op, inp = edge
        if op == "none":
            raise ArchitectureError(f"{here}: op 'none' is not chosen in a discrete DARTS genotype; "
                                    f"known: {list(DARTS_OPS)}")
        if op not in DARTS_OPS:
            raise ArchitectureError(f"{here}: unknown op {op!r}; known: {list(DARTS_OPS)}")
        if isinstance(inp, bool) or not isinstance(inp, int):
            raise ArchitectureError(f"{here}: input {inp!r} is not a node number")
        if not 0 <= inp < node:
            raise ArchitectureError(f"{here}: input {inp} is not an earlier node (choices 0..{node - 1}: 0 and 1 are "
                                    "the cell inputs, 2.. the intermediate nodes)")
        out.append((str(op), int(inp)))
    for k in range(NUM_NODES):
        (_, a), (_, b) = out[2 * k], out[2 * k + 1]
        if a == b:
            raise ArchitectureError(f"{where}, node {k + 2}: both edges take input {a}; the two inputs of a node must "
                                    "be distinct")
    return DartsCell(tuple(out))


def cell_from_compact(pairs: Sequence[Any], kind: str = "normal", what: object = None) -> DartsCell:
    """A :class:`DartsCell` from NASLib's 8 ``(input, op index)`` pairs."""
    where = f"DARTS compact genotype{'' if what is None else f' {what!r}'}: {kind} cell"
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence) or len(pairs) != NUM_EDGES:
        n = len(pairs) if isinstance(pairs, Sequence) else type(pairs).__name__
        raise ArchitectureError(f"{where}: expected {NUM_EDGES} (input, op index) pairs, got {n}")
    edges: list[Any] = []
    for e, pair in enumerate(pairs):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ArchitectureError(f"{where}, node {e // 2 + 2} (edge {e}): expected an (input, op index) pair, "
                                    f"got {pair!r}")
        inp, op = pair
        if isinstance(op, bool) or not isinstance(op, int) or not 0 <= op < len(DARTS_OPS):
            raise ArchitectureError(f"{where}, node {e // 2 + 2} (edge {e}): op index {op!r} is not in "
                                    f"0..{len(DARTS_OPS) - 1} "
                                    f"({', '.join(f'{i}={o}' for i, o in enumerate(DARTS_OPS))})")
        edges.append((DARTS_OPS[op], inp))
    return make_cell(edges, kind, what)


def _literal(node: ast.AST, s: str, field: str) -> Any:
    """The value of a literal (or ``range(a, b)``) in a Genotype string."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
        try:
            return list(range(*(ast.literal_eval(a) for a in node.args)))
        except (ValueError, TypeError) as e:
            raise ArchitectureError(f"malformed DARTS genotype {s!r}: {field} = range(...) with bad arguments") from e
    try:
        return ast.literal_eval(node)
    except ValueError as e:
        raise ArchitectureError(f"malformed DARTS genotype {s!r}: {field} is not a literal list") from e


def _check_concat(value: Any, kind: str, s: str) -> None:
    if isinstance(value, (list, tuple)) and [v for v in value] == list(CONCAT):
        return
    raise ArchitectureError(f"DARTS genotype {s!r}: {kind}_concat = {value!r}; the DARTS space concatenates the "
                            f"intermediate nodes {list(CONCAT)} (or range(2, 6))")


def parse_genotype(s: str) -> DartsGenotype:
    """Parse a DARTS ``Genotype(...)`` string or NASLib's compact form (errors name cell, node and problem).

    Example:
        >>> g = parse_genotype("(((0, 3), (1, 3), (0, 3), (1, 3), (1, 3), (0, 2), (0, 2), (2, 5)), "
        ...                    "((0, 0), (1, 0), (2, 2), (1, 0), (0, 0), (2, 2), (2, 2), (1, 0)))")
        >>> g.normal.edges[0]
        ('sep_conv_3x3', 0)
    """
    if not isinstance(s, str):
        raise ArchitectureError(f"expected a DARTS genotype string, got {type(s).__name__}")
    text = s.strip()
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as e:
        raise ArchitectureError(f"malformed DARTS genotype {s!r}: not a Genotype(...) string or compact tuple "
                                f"({e.msg} at column {e.offset})") from None
    if isinstance(tree, ast.Call):
        if not (isinstance(tree.func, ast.Name) and tree.func.id == "Genotype"):
            raise ArchitectureError(f"malformed DARTS genotype {s!r}: expected Genotype(normal=..., normal_concat=..., "
                                    "reduce=..., reduce_concat=...)")
        names = ("normal", "normal_concat", "reduce", "reduce_concat")
        if len(tree.args) > len(names):
            raise ArchitectureError(f"malformed DARTS genotype {s!r}: Genotype takes 4 fields, got {len(tree.args)}")
        fields = {names[i]: a for i, a in enumerate(tree.args)}
        for kw in tree.keywords:
            if kw.arg not in names or kw.arg in fields:
                raise ArchitectureError(f"malformed DARTS genotype {s!r}: unexpected or repeated field {kw.arg!r}; "
                                        f"fields: {list(names)}")
            fields[kw.arg] = kw.value
        missing = [n for n in names if n not in fields]
        if missing:
            raise ArchitectureError(f"malformed DARTS genotype {s!r}: missing field(s) {missing}")
        values = {n: _literal(fields[n], s, n) for n in names}
        for kind in CELL_TYPES:
            _check_concat(values[f"{kind}_concat"], kind, s)
        return DartsGenotype(make_cell(values["normal"], "normal", s), make_cell(values["reduce"], "reduce", s))
    try:
        value = ast.literal_eval(tree)
    except ValueError:
        raise ArchitectureError(f"malformed DARTS genotype {s!r}: not a Genotype(...) string or compact "
                                "tuple") from None
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ArchitectureError(f"malformed DARTS compact genotype {s!r}: expected two cells (normal, reduce) of "
                                f"{NUM_EDGES} (input, op index) pairs")
    return DartsGenotype(cell_from_compact(value[0], "normal", s), cell_from_compact(value[1], "reduce", s))


__all__ = ["CELL_TYPES", "CONCAT", "DARTS_OPS", "DartsCell", "DartsGenotype", "NUM_EDGES", "NUM_NODES",
           "cell_from_compact", "make_cell", "parse_genotype"]
