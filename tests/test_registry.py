"""The one registry type: names, aliases, wildcard listing, and duplicates always an error."""

from __future__ import annotations

import pytest

from robustbench_nas.utils.registry import Registry


def test_register_get_list_and_aliases():
    reg: Registry[int] = Registry("widget")
    assert reg.register("alpha", aliases=("a",))(1) == 1
    reg.add("beta", 2)
    reg.add("alphabet", 3)
    assert reg.get("a") == 1 and reg.get("alpha") == 1 and reg.resolve("a") == "alpha"
    assert reg.list() == ["alpha", "beta", "alphabet"]  # registration order
    assert reg.list("alpha*") == ["alpha", "alphabet"] and reg.list("*a", sort=True) == ["alpha", "beta"]
    assert "a" in reg and "gamma" not in reg and len(reg) == 3
    with pytest.raises(KeyError, match="unknown widget 'gamma'; known: alpha, beta, alphabet"):
        reg.get("gamma")


@pytest.mark.parametrize("name,aliases", [("alpha", ()), ("a", ()), ("new", ("alpha",)), ("new", ("a",))])
def test_duplicate_names_and_aliases_are_errors(name, aliases):
    reg: Registry[int] = Registry("widget")
    reg.add("alpha", 1, aliases=("a",))
    with pytest.raises(ValueError, match="already registered"):
        reg.add(name, 2, aliases=aliases)
    assert reg.get("alpha") == 1 and reg.list() == ["alpha"]  # the first registration is untouched


def test_normalized_names_and_remove():
    reg: Registry[str] = Registry("space", normalize=str.lower)
    reg.add("NB201", "x", aliases=("NAS-Bench-201",))
    assert reg.get("nas-bench-201") == "x" and reg.list() == ["nb201"]
    assert reg.remove("nb201") == "x" and "nas-bench-201" not in reg and len(reg) == 0
