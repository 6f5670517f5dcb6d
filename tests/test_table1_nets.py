"""The paper's Table 1 DenseNet, RegNet and EfficientNet baselines: their cost in the paper's
accounting, their layout at each input size, and that torch.fx can trace them (the channel graph
is derived from the traced module)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hetero.models.densenet
import hetero.models.efficientnet
import hetero.models.regnet  # noqa: F401  (the imports register the families)
from hetero.models._registry import ALIASES, get_family

TOLERANCE = 0.005
SHORT_NAMES = ["densenet40", "regnetx_400mf", "regnety_400mf", "efficientnet_b0", "regnetx_4gf"]


def build(short: str, num_classes: int = 10, input_size: int = 32, in_channels: int = 3) -> nn.Module:
    family, variant = ALIASES[short]
    return get_family(family).builder(variant, num_classes=num_classes, input_size=input_size,
                                      in_channels=in_channels).eval()


@pytest.mark.parametrize("short", SHORT_NAMES)
def test_fx_trace_matches_eager(short):
    # Tracing does not depend on the input size; a 16x16 input keeps the 4GF model cheap.
    model = build(short, input_size=16)
    traced = torch.fx.symbolic_trace(model)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x))


def _final_map_and_logits(model: nn.Module, in_channels: int, size: int) -> tuple[int, torch.Size]:
    """Spatial size of the map entering the global pool, and the logits' shape, at batch 1."""
    seen = {}
    pool = model.pool if hasattr(model, "pool") else model.features[-1]
    handle = pool.register_forward_hook(lambda _m, inp, _out: seen.update(size=inp[0].shape[-1]))
    with torch.no_grad():
        logits = model(torch.randn(1, in_channels, size, size))
    handle.remove()
    return seen["size"], logits.shape


# Final map per input size: the CIFAR layout ends at 8x8, the Tiny-ImageNet one at 4x4 (stride-1
# stem, every stage strided) and the ImageNet one at 7x7. A digits image (1x8x8) must also run.
@pytest.mark.parametrize(("short", "size", "final"), [
    ("densenet40", 32, 8), ("densenet40", 64, 16),
    ("regnetx_400mf", 32, 8), ("regnetx_400mf", 64, 4), ("regnetx_400mf", 224, 7),
    ("regnety_400mf", 32, 8), ("regnety_400mf", 64, 4),
    ("regnetx_4gf", 64, 4),
    ("efficientnet_b0", 32, 8), ("efficientnet_b0", 64, 4), ("efficientnet_b0", 224, 7),
])
def test_layout_for_input_size(short, size, final):
    assert _final_map_and_logits(build(short, 7, size), 3, size) == (final, torch.Size([1, 7]))


@pytest.mark.parametrize("short", SHORT_NAMES)
def test_single_channel_small_input_runs(short):
    _, shape = _final_map_and_logits(build(short, 10, 8, in_channels=1), 1, 8)
    assert shape == torch.Size([1, 10])


def test_short_names_and_default_variants():
    assert ALIASES["regnety_400mf"] == ("regnet", "y_400mf")
    regnet = get_family("regnet")
    assert regnet.variant_for(None, 224) == "x_4gf"
    assert regnet.variant_for(None, 32) == "x_400mf"
    assert get_family("densenet40").variant_for(None, 32) == "40"
    assert get_family("efficientnet_b0").variant_for(None, 32) == "b0"


def test_se_squeezes_to_block_input_width_over_four():
    # Y-400MF block 1 (48 -> 104) and EfficientNet's second block (16 -> 24, expansion 6):
    # the squeeze width follows the block's *input*, not its output or expanded width.
    assert build("regnety_400mf").blocks[1].se.reduce.out_channels == 48 // 4
    block = build("efficientnet_b0").blocks[1]
    assert (block.se.reduce.in_channels, block.se.reduce.out_channels) == (96, 16 // 4)


def test_paper_activations_are_relu_and_relu6_only():
    from hetero.graph import PAPER_ACTIVATIONS
    from hetero.models.efficientnet import Swish

    assert set(PAPER_ACTIVATIONS) == {nn.ReLU, nn.ReLU6}
    assert not isinstance(Swish(), PAPER_ACTIVATIONS)
    # The reference EfficientNet uses swish everywhere, SE included: nothing in it is charged.
    assert not any(isinstance(m, PAPER_ACTIVATIONS) for m in build("efficientnet_b0").modules())
