"""NATS-Bench size search space (SSS; Dong et al., TPAMI 2021): 8^5 = 32,768 channel configurations of one cell.

Facts from the NATS-Bench code (xautodl ``DynamicShapeTinyNet`` in ``models/shape_infers/InferTinyCellNet.py``,
``InferCell`` in ``models/cell_infers/cells.py``, ``ResNetBasicblock`` and ``FactorizedReduce`` in
``models/cell_operations.py``):

- an architecture is five channel counts ``C1:C2:C3:C4:C5``, each in {8, 16, 24, 32, 40, 48, 56, 64}; the index has
  C1 as its most significant base-8 digit (0 = ``8:8:8:8:8``, 1 = ``8:8:8:8:16``, 32767 = ``64:64:64:64:64``);
  there is no isomorphism: every architecture is its own class (``uid(i) == i``);
- the network: stem conv 3x3 (3 -> C1) + BN; cell (C1 -> C1); residual block (C1 -> C2, stride 2); cell
  (C2 -> C3); residual block (C3 -> C4, stride 2); cell (C4 -> C5); BN, ReLU, global pooling, linear. The cell is
  :data:`SSS_CELL` (the best NB201 cell); edges leaving its input node map C_in -> C_out, the others
  C_out -> C_out; ``skip_connect`` from the input becomes conv 1x1 + BN (no ReLU) when C_in != C_out;
- costs: NATS-Bench's ``get_model_infos`` (``utils/flop_benchmark.py``) sums, over Conv2d and Linear modules
  only, ``out_h * out_w * Cout * Cin * k * k / groups`` (+ bias elements) and ``in * out`` (+ ``out`` for the
  bias): BN, ReLU and pooling are not counted. Parameters are all parameters (BN affine included), in units of
  1e6. This gives the published ``8:8:8:8:8`` = 0.011714 M params / 4.481114 MFLOPs and ``64:64:64:64:64`` =
  0.713674 M / 274.399882 MFLOPs (CIFAR-10 head) exactly; :meth:`NATSSizeSpace.cost` is its closed form.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..constants import CIFAR_MEAN, CIFAR_STD
from .base import (
    ArchitectureError,
    CellCost,
    FlopCount,
    SearchSpace,
    register_encoding,
    register_search_space,
)

#: The channel choices of every layer.
SSS_CHANNELS: tuple[int, ...] = (8, 16, 24, 32, 40, 48, 56, 64)
NUM_LAYERS = 5
#: The fixed cell of every SSS network (NB201 string).
SSS_CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"

Channels = tuple[int, int, int, int, int]


def parse_channels(s: str) -> Channels:
    """Parse ``"C1:C2:C3:C4:C5"`` with an error naming what is wrong.

    Example:
        >>> parse_channels("8:16:24:32:64")
        (8, 16, 24, 32, 64)
    """
    if not isinstance(s, str):
        raise ArchitectureError(f"expected a NATS-Bench SSS string 'C1:C2:C3:C4:C5', got {type(s).__name__}")
    parts = s.strip().split(":")
    if len(parts) != NUM_LAYERS:
        raise ArchitectureError(
            f"malformed NATS-Bench SSS string {s!r}: expected {NUM_LAYERS} channel counts separated by ':', "
            f"got {len(parts)}; form: C1:C2:C3:C4:C5 with each Ci in {list(SSS_CHANNELS)}"
        )
    out = []
    for k, p in enumerate(parts, start=1):
        p = p.strip()
        if not p.isdigit():
            raise ArchitectureError(f"malformed NATS-Bench SSS string {s!r}: C{k} = {p!r} is not a whole number")
        out.append(int(p))
    return _checked(tuple(out), s)


def _checked(ch: Sequence[Any], what: object) -> Channels:
    if len(ch) != NUM_LAYERS:
        raise ArchitectureError(f"a NATS-Bench SSS architecture has {NUM_LAYERS} channel counts, got {len(ch)} in {what!r}")
    for k, c in enumerate(ch, start=1):
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or int(c) not in SSS_CHANNELS:
            raise ArchitectureError(f"NATS-Bench SSS C{k} = {c!r} in {what!r} is not one of {list(SSS_CHANNELS)}")
    return tuple(int(c) for c in ch)  # type: ignore[return-value]


def sss_params(ch: Sequence[int], num_classes: int = 10, in_channels: int = 3) -> int:
    """Closed-form parameter count of the SSS network with channels ``ch`` (BN affine included)."""
    c1, c2, c3, c4, c5 = ch

    def cell(ci: int, co: int) -> int:  # 2 conv3x3 from the input, 3 inside, skip projected if the width changes
        return 2 * (9 * ci * co + 2 * co) + 3 * (9 * co * co + 2 * co) + ((ci * co + 2 * co) if ci != co else 0)

    def block(ci: int, co: int) -> int:  # conv_a (stride 2), conv_b, shortcut conv 1x1 (no BN)
        return (9 * ci * co + 2 * co) + (9 * co * co + 2 * co) + ci * co

    return (9 * in_channels * c1 + 2 * c1 + cell(c1, c1) + block(c1, c2) + cell(c2, c3) + block(c3, c4)
            + cell(c4, c5) + 2 * c5 + c5 * num_classes + num_classes)


def sss_flops(ch: Sequence[int], num_classes: int = 10, input_shape: Sequence[int] = (3, 32, 32)) -> FlopCount:
    """Closed-form FLOPs of the SSS network: ``plain`` (conv + linear MACs) and NATS-Bench's ``published``."""
    c1, c2, c3, c4, c5 = ch
    cin, h, w = (int(v) for v in input_shape)

    def down(n: int) -> int:  # 3x3 conv, stride 2, padding 1
        return (n - 1) // 2 + 1

    def cell(ci: int, co: int, hw: int) -> int:
        return hw * (2 * 9 * ci * co + 3 * 9 * co * co + (ci * co if ci != co else 0))

    def block(ci: int, co: int, hw: int) -> int:
        return hw * (9 * ci * co + 9 * co * co + ci * co)

    h2, w2 = down(h), down(w)
    h3, w3 = down(h2), down(w2)
    plain = (h * w * 9 * cin * c1 + cell(c1, c1, h * w) + block(c1, c2, h2 * w2) + cell(c2, c3, h2 * w2)
             + block(c3, c4, h3 * w3) + cell(c4, c5, h3 * w3) + c5 * num_classes)
    return FlopCount(plain=plain, published=plain + num_classes)


@register_search_space("nats-sss", aliases=("sss", "natsbenchsss", "nats-bench-sss", "nats_sss", "natssss"))
class NATSSizeSpace(SearchSpace):
    """NATS-Bench SSS: 32768 channel configurations ``C1:C2:C3:C4:C5`` of one fixed cell, no isomorphism."""

    name = "nats-sss"
    description = "NATS-Bench size space: 5 layers x 8 widths (8..64), 32768 architectures, all unique"
    flops_convention = ("NATS-Bench's get_model_infos: conv + linear multiply-adds + linear bias "
                        "(BN, ReLU and pooling not counted)")
    default_encodings = ("channels", "width")
    network_module = "robustbench_nas.models.nats_sss"
    channels = SSS_CHANNELS
    fixed_cell = SSS_CELL

    @property
    def num_cells(self) -> int:
        return len(SSS_CHANNELS) ** NUM_LAYERS

    @property
    def num_unique(self) -> int:
        return self.num_cells

    # ---- strings and indices ------------------------------------------------------------------------------------
    def parse(self, s: str) -> Channels:
        return parse_channels(s)

    def format(self, arch: Channels) -> str:
        return ":".join(str(c) for c in _checked(arch, arch))

    def decode(self, arch: object) -> Channels:
        i = self._check_index(arch)
        if i is not None:
            digits = []
            for _ in range(NUM_LAYERS):
                i, r = divmod(i, len(SSS_CHANNELS))
                digits.append(SSS_CHANNELS[r])
            return tuple(reversed(digits))  # type: ignore[return-value]
        if isinstance(arch, str):
            return parse_channels(arch)
        if isinstance(arch, (tuple, list)):
            return _checked(arch, arch)
        raise ArchitectureError(f"cannot read a NATS-Bench SSS architecture from {arch!r}")

    def index_of(self, arch: object) -> int:
        i = self._check_index(arch)
        if i is not None:
            return i
        idx = 0
        for c in self.decode(arch):
            idx = idx * len(SSS_CHANNELS) + SSS_CHANNELS.index(c)
        return idx

    def arch_str(self, index: int) -> str:
        return self.format(self.decode(index))

    def uid(self, arch: object) -> int:
        return self.index_of(arch)

    def uid_table(self) -> np.ndarray:
        return np.arange(self.num_cells, dtype=np.int64)

    def unique_indices(self) -> list[int]:
        return list(range(self.num_cells))

    def channel_table(self, indices: Sequence[int] | None = None) -> np.ndarray:
        """Channels of each index, shape ``(n, 5)`` (all 32768 when ``indices`` is ``None``), vectorised."""
        idx = np.arange(self.num_cells) if indices is None else np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_cells):
            raise ArchitectureError(f"{self.name} index out of range 0..{self.num_cells - 1}")
        digits = np.stack([(idx // 8 ** (NUM_LAYERS - 1 - k)) % 8 for k in range(NUM_LAYERS)], axis=1)
        return np.asarray(SSS_CHANNELS, dtype=np.int64)[digits].reshape(len(idx), NUM_LAYERS)

    def arch_coords(self, indices: Sequence[int]) -> dict[str, list]:
        """``c1`` .. ``c5``: the channels of each layer, so that ``ds.where(ds.c3 == 64)`` selects by width."""
        table = self.channel_table(indices)
        return {f"c{k + 1}": [int(v) for v in table[:, k]] for k in range(NUM_LAYERS)}

    def arch_coord_descriptions(self) -> dict[str, str]:
        return {f"c{k}": f"channels of layer {k} (C{k} of C1:C2:C3:C4:C5)" for k in range(1, NUM_LAYERS + 1)}

    # ---- search -------------------------------------------------------------------------------------------------
    def neighbours(self, arch: object) -> list[int]:
        """The 35 architectures with one layer's width changed."""
        ch = self.decode(arch)
        out = []
        for k in range(NUM_LAYERS):
            for c in SSS_CHANNELS:
                if c != ch[k]:
                    out.append(self.index_of(ch[:k] + (c,) + ch[k + 1:]))
        return out

    def mutate(self, arch: object, rng: np.random.Generator) -> int:
        """A random layer set to a random other width."""
        ch = list(self.decode(arch))
        k = int(rng.integers(NUM_LAYERS))
        choices = [c for c in SSS_CHANNELS if c != ch[k]]
        ch[k] = choices[int(rng.integers(len(choices)))]
        return self.index_of(tuple(ch))

    # ---- networks and costs -------------------------------------------------------------------------------------
    def build_network(self, arch: object, num_classes: int = 10, *, mean: Sequence[float] = CIFAR_MEAN,
                      std: Sequence[float] = CIFAR_STD, in_channels: int = 3, N: int = 1, **options: Any) -> Any:
        """The SSS network (:class:`robustbench_nas.models.nats_sss.NATSSizeNetwork`).

        ``N`` (cells per stage) is fixed at 1 by NATS-Bench and accepted only as 1; the width comes from ``arch``.
        """
        if options:
            raise TypeError(f"unknown NATS-Bench SSS network options {sorted(options)}: the architecture fixes the "
                            "widths (C does not apply)")
        if N != 1:
            raise ValueError(f"NATS-Bench SSS networks have one cell per stage, got N={N}")
        return self.network_builder()(self.decode(arch), num_classes, mean=mean, std=std, in_channels=in_channels)

    def published_flops(self, tally: Mapping[str, int]) -> int:
        return tally["conv_macs"] + tally["conv_bias"] + tally["linear_macs"] + tally["linear_bias"]

    def cost(self, arch: object, num_classes: int = 10, input_shape: Sequence[int] = (3, 32, 32), *, N: int = 1,
             **options: Any) -> CellCost:
        """Closed-form parameters and FLOPs (equal to :meth:`measure_cost` on the built network; tested)."""
        if options or N != 1:
            raise TypeError(f"NATS-Bench SSS costs take no network options, got {sorted(options) or f'N={N}'}")
        ch = self.decode(arch)
        return CellCost(sss_params(ch, num_classes, int(input_shape[0])), sss_flops(ch, num_classes, input_shape))

    # ---- analysis -----------------------------------------------------------------------------------------------
    def layer_labels(self) -> list[str]:
        return [f"C{k}" for k in range(1, NUM_LAYERS + 1)]

    def layer_choices(self, indices: Sequence[int]) -> np.ndarray:
        return self.channel_table(indices)


@register_encoding("channels", NATSSizeSpace)
def channels_encoding(ch: Channels) -> dict[str, float]:
    """The five channel counts ``C1`` .. ``C5``."""
    return {f"C{k}": float(c) for k, c in enumerate(ch, start=1)}


@register_encoding("onehot", NATSSizeSpace)
def onehot_encoding(ch: Channels) -> dict[str, float]:
    """40 binary features ``C<k>=<width>``."""
    return {f"C{k}={w}": float(c == w) for k, c in enumerate(ch, start=1) for w in SSS_CHANNELS}


@register_encoding("width", NATSSizeSpace)
def width_encoding(ch: Channels) -> dict[str, float]:
    """Width statistics: min, max, mean, log2-mean, bottleneck ratio (min / max), the cells' (C1, C3, C5) and the
    residual blocks' (C2, C4) mean width, and the number of layers narrower / wider than the one before."""
    a = np.asarray(ch, dtype=np.float64)
    steps = np.diff(a)
    return {
        "width_min": float(a.min()), "width_max": float(a.max()), "width_mean": float(a.mean()),
        "width_log2_mean": float(np.log2(a).mean()), "width_bottleneck": float(a.min() / a.max()),
        "width_cells_mean": float(a[[0, 2, 4]].mean()), "width_blocks_mean": float(a[[1, 3]].mean()),
        "width_narrowings": float((steps < 0).sum()), "width_widenings": float((steps > 0).sum()),
    }


__all__ = ["NATSSizeSpace", "NUM_LAYERS", "SSS_CELL", "SSS_CHANNELS", "parse_channels", "sss_flops", "sss_params"]
