"""The one way to derive a seed from parts, and the one way to make a seeded ``torch.Generator``.

Every random stream of the project (a pipeline's evaluation subset, an attack's restarts at one epsilon, a
corruption cell, a proxy's or a measure's own generator) is seeded from a few parts (a base seed, names, indices)
by :func:`derive_seed`, and the generator is made by :func:`make_generator`. The result depends only on the parts,
never on the process, the evaluation order or the other streams.

Forms. Four derivations grew in different parts before they were brought here; their values are recorded in
stores, reference numbers and tests, so each is kept bit for bit as a named ``form`` of the one function (a new
stream should use the default ``"sha256"``):

- ``"sha256"`` (default; the pipeline's stages): the first 4 bytes (little endian) of SHA-256 of the parts'
  ``str`` joined by ``/``, masked to 31 bits. Any parts.
- ``"crc32"`` (proxies, measures): ``(seed * 1_000_003 + crc32(names joined by ":")) mod 2**63``; parts are
  ``(seed, *names)``.
- ``"crc32-cell"`` (corruption cells): the same, ``mod 2**63 - 1``. It equals ``"crc32"`` for every seed in
  ``[0, 9.2e12)``; they differ only by the modulus, kept so that negative or huge seeds give the values they gave.
- ``"seedsequence"`` (attacks): NumPy's ``SeedSequence`` of the integer parts (each taken mod 2**32), first 64-bit
  word masked to 63 bits. Integer parts only.

Example:
    >>> derive_seed("tiny", "test", 64)
    1216967501
    >>> derive_seed(0, "fog", 3, form="crc32-cell")
    1693773935
    >>> g = make_generator(derive_seed(777, "pgd@Linf"))  # a CPU generator
"""

from __future__ import annotations

import hashlib
import zlib
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:  # torch only for make_generator; deriving a seed needs none
    import torch

SeedForm = Literal["sha256", "crc32", "crc32-cell", "seedsequence"]

#: the forms :func:`derive_seed` accepts
SEED_FORMS: tuple[str, ...] = ("sha256", "crc32", "crc32-cell", "seedsequence")

_CRC_MULTIPLIER = 1_000_003  # a prime well above any crc32 collision structure of short names


def derive_seed(*parts: object, form: SeedForm = "sha256") -> int:
    """A stable non-negative seed from ``parts`` (same parts, same seed, in every process and on every machine).

    Arguments:
        parts: what identifies the stream (``"sha256"``: anything with a stable ``str``; ``"crc32"`` /
            ``"crc32-cell"``: an integer base seed then names; ``"seedsequence"``: integers).
        form: which derivation (see the module docstring); ``"sha256"`` for anything new.

    Returns:
        ``"sha256"``: a 31-bit int; the other forms: an int below 2**63.

    Raises:
        ValueError: no parts, an unknown form, or parts the form cannot take (a non-integer for
            ``"seedsequence"``, a non-integer base seed for the crc32 forms).
    """
    if not parts:
        raise ValueError("derive_seed needs at least one part")
    if form == "sha256":
        h = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
        return int.from_bytes(h[:4], "little") & 0x7FFFFFFF
    if form in ("crc32", "crc32-cell"):
        base = _as_int(parts[0], form)
        modulus = 2**63 if form == "crc32" else 2**63 - 1
        key = ":".join(str(p) for p in parts[1:])
        return (base * _CRC_MULTIPLIER + zlib.crc32(key.encode())) % modulus
    if form == "seedsequence":
        words = [_as_int(p, form) & 0xFFFFFFFF for p in parts]
        state = np.random.SeedSequence(words).generate_state(2, dtype=np.uint64)
        return int(state[0] & np.uint64(0x7FFFFFFFFFFFFFFF))
    raise ValueError(f"unknown seed form {form!r}; known: {', '.join(SEED_FORMS)}")


def _as_int(value: object, form: str) -> int:
    # numpy integers are fine; bool, float and str are refused, so a stray name never becomes a silent seed
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"seed form {form!r} needs integer parts here, got {value!r} ({type(value).__name__})")
    return int(value)


def make_generator(seed: int, device: "torch.device | str" = "cpu") -> "torch.Generator":
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (the one argument order: seed, then device).

    Example:
        >>> make_generator(derive_seed(3, "fog", 2, form="crc32-cell")).initial_seed() > 0
        True
    """
    import torch

    g = torch.Generator(device=torch.device(device))
    g.manual_seed(int(seed))
    return g


__all__ = ["SEED_FORMS", "SeedForm", "derive_seed", "make_generator"]
