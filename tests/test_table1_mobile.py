"""The plain-module families: the paper's Table 1 costs, fx tracing, and the module rules.

Costs are measured with the forward-hook counter in the paper's accounting (conv/linear MACs, BN 2
and every ReLU/ReLU6 module 1 per output element, BN gamma/beta as params; method.md sections 2
and 6). Every family here must trace with ``torch.fx`` to the same outputs, since hetero derives its
channel graph from the trace.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from _hook_count import hook_complexity
from torch import nn
from torch.fx import symbolic_trace

import hetero.models.mnasnet
import hetero.models.mobilenet_v1
import hetero.models.mobilenet_v2
import hetero.models.mobilenet_v3
import hetero.models.resnet_cifar
import hetero.models.resnet_imagenet
import hetero.models.vgg_cifar  # noqa: F401  (the imports above register the families)
from hetero.models._registry import ALIASES, get_family
from hetero.models.mobilenet_v3 import HSigmoid, HSwish
from hetero.models.resnet_cifar import BasicBlock, Subsample

OWN = ("resnet_cifar", "vgg_cifar", "mobilenet_v2", "resnet_imagenet", "mobilenet_v1",
       "mobilenet_v3", "mnasnet")


def build(name: str, size: int, classes: int, variant: str | None = None,
          **options) -> nn.Module:
    """What a user typing ``name`` gets for this input size (an alias implies its variant)."""
    family = get_family(name)
    implied = ALIASES.get(name, (None, None))[1]
    chosen = family.variant_for(variant or implied, size)
    return family.builder(chosen, num_classes=classes, input_size=size, in_channels=3,
                          **family.resolve_options(options))


# Exact figures the ported families had before the port (the analytic counter agreed). The
# paper's Table 1: ResNet-56 0.1274 G / 0.856 M, ResNet-50 4.1177 G / 25.557 M.
EXACT = [
    ("resnet56", 32, 10, "paper", 127_369_856, 855_770),
    ("resnet50", 224, 1000, "macs", 4_089_184_256, 25_503_912),
    ("resnet50", 224, 1000, "paper", 4_117_734_400, 25_557_032),
    ("resnet18", 224, 1000, "paper", 1_820_596_224, 11_689_512),
    ("mobilenet_v2", 224, 1000, "paper", 320_236_288, 3_504_872),
    ("mobilenet_v2", 32, 10, "paper", 92_758_528, 2_236_682),
    ("vgg16", 32, 10, "paper", 314_031_104, 14_724_042),
]


@pytest.mark.parametrize(("name", "size", "classes", "accounting", "flops", "params"), EXACT,
                         ids=[f"{row[0]}-{row[1]}px-{row[3]}" for row in EXACT])
def test_ported_families_cost_what_they_did(name, size, classes, accounting, flops, params):
    measured = hook_complexity(build(name, size, classes), (3, size, size), accounting)
    assert (measured.flops, measured.params) == (flops, params)


@pytest.mark.parametrize(("name", "torchvision_name"),
                         [("resnet18", "resnet18"), ("resnet50", "resnet50"),
                          ("mobilenet_v2", "mobilenet_v2"), ("mnasnet", "mnasnet1_0")])
def test_parameter_tensors_are_torchvisions(name, torchvision_name):
    with torch.device("meta"):  # shapes only: no memory, no init cost
        ours = build(name, 224, 1000)
        theirs = getattr(torchvision.models, torchvision_name)(weights=None)
    assert (sorted(tuple(p.shape) for p in ours.parameters())
            == sorted(tuple(p.shape) for p in theirs.parameters()))


def _cases() -> list[tuple[str, str, dict]]:
    cases = [(name, v, {}) for name in OWN for v in get_family(name).variants]
    return cases + [("resnet_cifar", "20", {"shortcut": "zeropad"})]


CASES = _cases()


def _size(name: str, variant: str) -> int:
    return 32 if variant == "cifar" or name in ("resnet_cifar", "vgg_cifar") else 64


@pytest.mark.parametrize(("name", "variant", "options"), CASES,
                         ids=[f"{n}-{v}{'-' + '-'.join(o.values()) if o else ''}"
                              for n, v, o in CASES])
def test_fx_trace_matches_eager_and_output_is_batch_by_classes(name, variant, options):
    size = _size(name, variant)
    model = build(name, size, 7, variant, **options).eval()
    traced = symbolic_trace(model)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        eager, fx_out = model(x), traced(x)
    assert eager.shape == (2, 7)
    assert torch.isfinite(eager).all()
    torch.testing.assert_close(fx_out, eager, rtol=0, atol=0)


@pytest.mark.parametrize("name", OWN)
def test_every_parameter_lives_in_a_conv_bn_or_linear(name):
    """Channel counts live only in these constructors, so rebuilding them is a full resize."""
    family = get_family(name)
    model = family.builder(family.variants[0], num_classes=7, input_size=32, in_channels=3)
    allowed = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)
    for path, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            assert isinstance(module, allowed), f"{path} is a {type(module).__name__}"


@pytest.mark.parametrize(("size", "variant"), [(32, "cifar"), (64, "tiny"), (224, "imagenet")])
@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "mnasnet"])
def test_mobile_layout_follows_the_input_size(name, size, variant):
    assert get_family(name).variant_for(None, size) == variant


def test_aliases_users_type_reach_their_family_and_variant():
    assert ALIASES["resnet56"] == ("resnet_cifar", "56")
    assert ALIASES["resnet110"] == ("resnet_cifar", "110")
    assert ALIASES["resnet50"] == ("resnet_imagenet", "50")
    assert ALIASES["vgg16"] == ("vgg_cifar", "16")
    for name in ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "mnasnet"):
        assert ALIASES[name][1] is None  # the input size picks the layout
    assert get_family("mobilenet_v3_small").name == "mobilenet_v3"


@pytest.mark.parametrize(("act", "per_element"),
                         [(HSwish, 1), (HSigmoid, 1), (nn.Sigmoid, 0), (nn.ReLU6, 1)])
def test_paper_counts_h_swish_and_h_sigmoid_once_per_element(act, per_element):
    measured = hook_complexity(nn.Sequential(act()), (3, 4, 4), "paper")
    assert measured.flops == per_element * 3 * 4 * 4


def test_h_swish_and_h_sigmoid_compute_their_formulas():
    x = torch.linspace(-5, 5, 41)
    torch.testing.assert_close(HSigmoid()(x), torch.clamp(x + 3, 0, 6) / 6)
    torch.testing.assert_close(HSwish()(x), x * torch.clamp(x + 3, 0, 6) / 6)


@pytest.mark.parametrize(("cin", "cout"), [(4, 8), (8, 4)])
def test_zero_pad_shortcut_pads_or_crops_to_the_block_output(cin, cout):
    block = BasicBlock(cin, 3, cout, 2, Subsample(2)).eval()
    x = torch.randn(1, cin, 8, 8)
    with torch.no_grad():
        out = block(x)
        body = block.conv2(block.conv1(x))
        kept = min(cin, cout)
        identity = torch.zeros_like(body)
        identity[:, :kept] = x[:, :kept, ::2, ::2]
    torch.testing.assert_close(out, torch.relu(body + identity))
    torch.testing.assert_close(symbolic_trace(block)(x), out)


def test_vgg_skips_the_pools_a_small_input_cannot_take():
    model = build("vgg16", 8, 10).eval()
    assert model.pooled == {"stage1", "stage2", "stage3"}  # 8 -> 4 -> 2 -> 1
    with torch.no_grad():
        assert symbolic_trace(model)(torch.randn(1, 3, 8, 8)).shape == (1, 10)
