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


# ---- every named component sits on the one type: a taken name is refused, the first registration stays -----------
def _duplicates():
    """(label, registry, register an existing name) for every component registry of the project."""
    from robustbench_nas import attacks, corruptions
    from robustbench_nas.analysis import prediction, search
    from robustbench_nas.attacks import protocols as grids
    from robustbench_nas.attacks.params import FGSMParams
    from robustbench_nas.data import base as data
    from robustbench_nas.measures import registry as measures
    from robustbench_nas.pipelines import protocol as pprotocol, stages
    from robustbench_nas.proxies import engine, registry as proxies
    from robustbench_nas.search_spaces import base as spaces
    from robustbench_nas.training import profiles

    fn = lambda *a, **k: None  # noqa: E731  (never called: the registration must fail first)
    nb201 = type(spaces.get_search_space("nb201"))
    return [
        ("search space", spaces.SEARCH_SPACES, lambda: spaces.register_search_space("nb201")(type("X", (), {}))),
        ("space alias", spaces.SEARCH_SPACES, lambda: spaces.register_search_space("new-space", aliases=("NAS-Bench-201",))(type("X", (), {}))),
        ("encoding", nb201.encoders, lambda: spaces.register_encoding("opcount", nb201)(fn)),
        ("dataset", data.DATASETS, lambda: data.register_dataset("CIFAR10")(fn)),
        ("profile", profiles.PROFILES, lambda: profiles.register_profile("tiny")(fn)),
        ("attack", attacks.registry.ATTACKS,
         lambda: attacks.register_attack("fgsm@Linf", norm="Linf", defaults=FGSMParams(), description="x")(fn)),
        ("attack alias", attacks.registry.ATTACKS,
         lambda: attacks.register_attack("x@Linf", norm="Linf", defaults=FGSMParams(), description="x",
                                         aliases=("autoattack",))(fn)),
        ("attack grid", grids.ATTACK_GRIDS, lambda: grids.register_attack_grid("tiny", {"fgsm@Linf": (1,)})),
        ("corruption", corruptions.registry.CORRUPTIONS,
         lambda: corruptions.registry.register_corruption("fog", "weather", False)(fn)),
        ("measure", measures.MEASURES, lambda: measures.register_measure("hessian_eig", outputs=("hessian_eig",), summary="x")(fn)),
        ("proxy", proxies.PROXIES, lambda: proxies.register_proxy("synflow", summary="x", reference="x")(fn)),
        ("pass group", engine.PASS_GROUPS, lambda: engine.register_pass_group("static", ("nothing_else",))(fn)),
        ("pass group proxy", engine.PASS_GROUPS, lambda: engine.register_pass_group("new_group", ("params",))(fn)),
        ("search", search.SEARCHES, lambda: search.register_search("random")(fn)),
        ("prediction model", prediction.MODELS, lambda: prediction.register_model("rf")(fn)),
        ("pipeline protocol", pprotocol.PROTOCOLS, lambda: pprotocol.register_protocol("tiny")(fn)),
        ("stage", stages.STAGE_DEFS, lambda: stages.register_stage("train")(fn)),
    ]


@pytest.mark.parametrize("index", range(17))
def test_every_component_registry_refuses_a_taken_name(index):
    label, reg, register = _duplicates()[index]
    assert isinstance(reg, Registry), label
    before = reg.items()
    with pytest.raises(ValueError, match="already"):
        register()
    assert reg.items() == before, f"{label}: a refused registration changed the registry"


def test_the_duplicate_table_covers_every_registry():
    assert len(_duplicates()) == 17


def test_wildcard_listing_of_the_public_list_functions():
    from robustbench_nas import attacks, corruptions, data, measures, training
    from robustbench_nas.pipelines import list_protocols, list_stages
    from robustbench_nas.proxies.api import list_proxies
    from robustbench_nas.search_spaces import list_search_spaces

    assert list_search_spaces("nats*") == ["nats-sss"]
    assert data.list_datasets("cifar*") == ["cifar10", "cifar100"]
    assert training.list_profiles("nb201-*") == ["nb201-12e", "nb201-200e"]
    assert set(attacks.list_attacks("*@L2")) == {a for a in attacks.list_attacks() if a.endswith("@L2")} != set()
    assert corruptions.list_corruptions(pattern="*_noise") == ["gaussian_noise", "shot_noise", "impulse_noise",
                                                               "speckle_noise"]
    assert measures.list_measures("hessian_*") == ["hessian_eig", "hessian_trace"]
    assert list_proxies(pattern="grad_*") == ["grad_norm"]
    assert list_protocols("nb201-*") == ["nb201-proxies", "nb201-proxies-all", "nb201-proxies-all-seeds", "nb201-proxies-seeds"]
    assert list_stages("c*") == ["clean", "corruptions"]  # pipeline order, not alphabetical


def test_replaced_is_scoped_and_needs_an_existing_name():
    reg: Registry[int] = Registry("widget")
    reg.add("alpha", 1, aliases=("a",))
    with reg.replaced("a", 5) as original:
        assert original == 1 and reg.get("alpha") == 5
    assert reg.get("alpha") == 1
    with pytest.raises(KeyError, match="unknown widget 'beta'"):
        with reg.replaced("beta", 2):
            pass


def test_encoding_listing_by_space_and_pattern():
    from robustbench_nas.analysis.encodings import list_encodings

    assert list_encodings(pattern="path*") == ["path", "pathstats"]
    assert list_encodings("nats-sss")[-2:] == ["all", "default"] and "channels" in list_encodings("sss")
