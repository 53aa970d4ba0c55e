"""Constants shared by the search spaces and the networks (the bottom layer: this module imports nothing).

They sit below both ``search_spaces`` and ``models`` so that neither has to import the other for a number
(docs/architecture.md, "Layers"). A constant that belongs to one space (NB201's FLOP offset, SSS's channel choices)
stays in that space's module.
"""

from __future__ import annotations

#: NAS-Bench-201 / NATS-Bench CIFAR normalisation (pixel units / 255), the default of every network builder.
CIFAR_MEAN: tuple[float, float, float] = (125.3 / 255, 123.0 / 255, 113.9 / 255)
CIFAR_STD: tuple[float, float, float] = (63.0 / 255, 62.1 / 255, 66.7 / 255)

__all__ = ["CIFAR_MEAN", "CIFAR_STD"]
