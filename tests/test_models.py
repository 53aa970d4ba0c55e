"""NB201 networks: published parameter counts and FLOPs, structure, normalisation inside the model."""

from __future__ import annotations

import pytest
import torch

from robustbench_nas.models import CIFAR_MEAN, CIFAR_STD, build_model, count_flops, count_params
from robustbench_nas.search_spaces import get_search_space

# (arch, params in M, FLOPs in M) as published by NAS-Bench-201 (CIFAR-10 head).
PUBLISHED = [
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|", 1.531546, 222.860992),
    ("|nor_conv_1x1~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|none~0|none~1|skip_connect~2|", 0.101306, 14.886592),
    ("|skip_connect~0|+|none~0|avg_pool_3x3~1|+|nor_conv_3x3~0|none~1|nor_conv_1x1~2|", 0.344346, 49.415872),
]


@pytest.mark.parametrize("arch, params, flops", PUBLISHED)
def test_published_params_and_flops(arch, params, flops):
    model = build_model(arch)
    assert count_params(model) == round(params * 1e6)
    fc = count_flops(model, (3, 32, 32))
    assert fc.nb201 == round(flops * 1e6)
    assert fc.plain < fc.nb201


def test_params_by_hand_for_all_skip_cell():
    """A cell of skip/none ops has no parameters: the count is stem + reductions + head, computed by hand."""
    model = build_model("|skip_connect~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|")
    stem = 3 * 16 * 9 + 2 * 16
    red1 = 16 * 32 * 9 + 2 * 32 + 32 * 32 * 9 + 2 * 32 + 16 * 32
    red2 = 32 * 64 * 9 + 2 * 64 + 64 * 64 * 9 + 2 * 64 + 32 * 64
    head = 2 * 64 + 64 * 10 + 10
    assert count_params(model) == stem + red1 + red2 + head


def test_plain_flops_by_hand_tiny():
    """Plain multiply-adds of a C=2, N=1 all-1x1 network on 4x4 inputs, counted by hand."""
    model = build_model("|nor_conv_1x1~0|+|none~0|none~1|+|none~0|none~1|nor_conv_1x1~2|", C=2, N=1)
    hw = [16, 4, 1]  # spatial positions per stage for a 4x4 input
    c = [2, 4, 8]
    stem = hw[0] * 2 * 3 * 9
    cells = sum(2 * hw[s] * c[s] * c[s] for s in range(3))
    reds = sum(hw[s + 1] * (c[s + 1] * c[s] * 9 + c[s + 1] * c[s + 1] * 9 + c[s + 1] * c[s]) for s in range(2))
    head = 8 * 10
    assert count_flops(model, (3, 4, 4)).plain == stem + cells + reds + head


def test_structure_and_shapes():
    model = build_model(1462, num_classes=7, C=8, N=2)
    assert len(model.cells) == 3 * 2 + 2
    out = model(torch.rand(3, 3, 32, 32))
    assert out.shape == (3, 7)
    assert model.features(torch.rand(1, 3, 32, 32)).shape == (1, 32, 8, 8)
    assert model.arch_str == get_search_space().arch_str(1462)


def test_normalization_is_first_layer():
    torch.manual_seed(0)
    model = build_model(1462, C=4, N=1).eval()
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    inner = model.stem(model.normalize(x))
    assert torch.allclose(model.normalize(x), (x - mean) / std)
    assert torch.allclose(inner, model.stem((x - mean) / std))


def test_zero_cell_output_does_not_depend_on_cell_input():
    """With every edge `none`, each cell outputs zeros: the logits are the same for any input."""
    model = build_model("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", C=4, N=1).eval()
    a = model(torch.rand(1, 3, 16, 16))
    b = model(torch.rand(1, 3, 16, 16))
    assert torch.allclose(a, b)


def test_bad_config():
    with pytest.raises(ValueError, match="positive"):
        build_model(0, C=0)


def test_fast_cost_equals_built_model_counts():
    """NB201's space.cost (additive per-edge increments) equals counting on the built network, on a seeded sample."""
    space = get_search_space()
    for idx in space.sample(12, seed=7, unique=False) + [1462]:
        m = build_model(idx)
        c = space.cost(idx)
        assert c.params == count_params(m)
        assert c.flops == count_flops(m, (3, 32, 32))
    small = space.cost(5, num_classes=10, input_shape=(3, 16, 16), C=4, N=1)
    m = build_model(5, C=4, N=1)
    assert small.params == count_params(m) and small.flops == count_flops(m, (3, 16, 16))


def test_network_classes_take_a_decoded_architecture():
    """The networks do not parse: NB201Network takes a Cell (or its op tuple), NATSSizeNetwork the five widths;
    the space's build_network decodes strings and indices and hands the result to the registered builder."""
    from robustbench_nas.models.nats_sss import NATSSizeNetwork
    from robustbench_nas.models.nb201 import NB201Network
    from robustbench_nas.search_spaces import ArchitectureError

    space = get_search_space("nb201")
    cell = space.decode(1462)
    net = NB201Network(cell.ops, C=4, N=1)
    assert net.arch_str == space.arch_str(1462)
    assert NB201Network(cell, C=4, N=1).arch_str == net.arch_str
    for bad in (space.arch_str(1462), 1462):
        with pytest.raises(TypeError, match="decoded cell"):
            NB201Network(bad)
    with pytest.raises(ArchitectureError, match="unknown op"):
        NB201Network(("conv_5x5",) * 6)
    sss = get_search_space("nats-sss")
    assert NATSSizeNetwork((8, 16, 24, 32, 64)).arch_str == "8:16:24:32:64"
    with pytest.raises(TypeError, match="decoded channels"):
        NATSSizeNetwork("8:16:24:32:64")
    with pytest.raises(ArchitectureError, match="C2"):
        NATSSizeNetwork((8, 12, 24, 32, 64))
    assert type(sss.build_network("8:16:24:32:64")) is NATSSizeNetwork


def test_network_builder_registry():
    """Each space finds its builder in the bottom-layer registry, filled by the module its network_module names;
    a second builder for one space is refused."""
    from robustbench_nas.models.nb201 import build_nb201_network
    from robustbench_nas.search_spaces.networks import get_network_builder, register_network

    space = get_search_space("nb201")
    assert space.network_builder() is build_nb201_network
    with pytest.raises(ValueError, match="already registered"):
        register_network("nb201")(build_nb201_network)
    with pytest.raises(LookupError, match="registered no network builder"):
        get_network_builder("no-such-space", "robustbench_nas.models.nb201")
    with pytest.raises(LookupError, match="names no network module"):
        get_network_builder("no-such-space", "")


def test_counting_and_clean_evaluation_keep_each_modules_mode() -> None:
    """FLOP counting and clean evaluation run in eval mode and give every module its own mode back (a frozen BN
    inside a training model stays frozen)."""
    from robustbench_nas.evaluation import evaluate_clean

    net = build_model(5, C=4, N=1).train()
    bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.eval()
    before = {name: m.training for name, m in net.named_modules()}
    count_flops(net, (3, 8, 8))
    evaluate_clean(net, torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3]))
    assert {name: m.training for name, m in net.named_modules()} == before and not bn.training
