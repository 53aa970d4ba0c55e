"""The one seed derivation and the one generator factory: every value recorded before they were unified is kept.

The pinned numbers were recorded on main (commit 5625a04) from the five separate derivations this module replaced
(pipelines.stages.derived_seed, corruptions.registry.cell_seed, proxies.api.proxy_generator, measures'
_generator_for, attacks._common.make_generator(device, *keys)); a change to any of them changes stored results.
"""

from __future__ import annotations

import hashlib
import zlib

import numpy as np
import pytest
import torch

from robustbench_nas.corruptions.registry import cell_seed
from robustbench_nas.measures.registry import _generator_for
from robustbench_nas.pipelines.stages import derived_seed
from robustbench_nas.proxies.api import proxy_generator
from robustbench_nas.utils.seeding import derive_seed, make_generator


def test_pipeline_seeds_are_the_recorded_values():
    got = [derived_seed("tiny", "test", 64), derived_seed(777, "pgd@Linf"), derived_seed(0, "corruptions"),
           derived_seed(3, "measures"), derived_seed(-5, 1.5, "x")]
    assert got == [1216967501, 1567820662, 1083056843, 306152490, 157374806]


def test_corruption_cell_seeds_are_the_recorded_values():
    got = [cell_seed(0, "fog", 3), cell_seed(777, "gaussian_noise", 5), cell_seed(-1, "snow", 1),
           cell_seed(2**62, "fog", 1)]
    assert got == [1693773935, 1154408168, 1558908384, 4611686020759564900]


def test_proxy_and_measure_generators_are_the_recorded_values():
    assert [proxy_generator("synflow", 0).initial_seed(), proxy_generator("jacov", 777).initial_seed(),
            proxy_generator("nwot", -1).initial_seed()] == [960989569, 3052993514, 503292273]
    assert [_generator_for("hessian_eig", 0).initial_seed(),
            _generator_for("jacobian_fro", 42).initial_seed()] == [481316361, 3927665918]


def test_attack_seeds_are_the_recorded_values():
    # attacks/evaluate.py: (seed, mode 0/1, group or level, first row) through the "seedsequence" form
    got = [derive_seed(*k, form="seedsequence") for k in [(0, 0, 1, 2), (777, 1, 3, 0), (-3, 0, 0, 0), (2**40, 1, 0, 4)]]
    assert got == [1876953174983354445, 7634823238054376479, 5831613858431430843, 2443717713246383667]


def test_forms_against_their_definitions():
    """Independent re-computation of each documented form from its definition (hashlib, zlib, NumPy)."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        seed, sev = int(rng.integers(-(2**31), 2**31)), int(rng.integers(1, 6))
        h = hashlib.sha256(f"{seed}/fog/{sev}".encode()).digest()
        assert derive_seed(seed, "fog", sev) == int.from_bytes(h[:4], "little") & 0x7FFFFFFF
        crc = zlib.crc32(f"fog:{sev}".encode())
        assert derive_seed(seed, "fog", sev, form="crc32") == (seed * 1_000_003 + crc) % 2**63
        assert derive_seed(seed, "fog", sev, form="crc32-cell") == (seed * 1_000_003 + crc) % (2**63 - 1)
        words = np.random.SeedSequence([seed & 0xFFFFFFFF, sev]).generate_state(2, dtype=np.uint64)
        assert derive_seed(seed, sev, form="seedsequence") == int(words[0]) & (2**63 - 1)
    # the two crc32 forms agree wherever no modulus wraps (every seed a run ever used)
    assert all(derive_seed(s, "snow", form="crc32") == derive_seed(s, "snow", form="crc32-cell") for s in (0, 1, 777, 10**9))


def test_make_generator_has_one_argument_order_and_reproduces_draws():
    g = make_generator(123)
    assert g.device == torch.device("cpu") and g.initial_seed() == 123
    a = torch.rand(5, generator=make_generator(derive_seed(1, "x"), "cpu"))
    assert torch.equal(a, torch.rand(5, generator=torch.Generator().manual_seed(derive_seed(1, "x"))))
    from robustbench_nas import corruptions

    assert corruptions.make_generator is make_generator  # the corruption part re-exports the one factory


@pytest.mark.parametrize("parts,form,msg", [
    ((), "sha256", "at least one part"),
    ((1,), "md5", "unknown seed form 'md5'"),
    (("seven", "fog"), "crc32", "integer parts"),
    ((1, "x"), "seedsequence", "integer parts"),
    ((1.5, 2), "seedsequence", "integer parts"),
])
def test_bad_parts_are_named(parts, form, msg):
    with pytest.raises(ValueError, match=msg):
        derive_seed(*parts, form=form)
