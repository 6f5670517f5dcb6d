"""Building the derived network: fresh, or inheriting the kept slices of the widened one.

Every family and variant, as a reduced instance (uniform 8x8 net scaled to at most ~300k
parameters) widened 2x, on digits.
"""

import pytest
import torch
from sklearn.datasets import load_digits

from hetero.complexity import complexity
from hetero.config import uniform, widen
from hetero.importance import score_channels
from hetero.materialize import materialize
from hetero.models import create_model, get_family, list_models
from hetero.shrink import shrink_to_target

ALL_VARIANTS = [(f, v) for f, variants in sorted(list_models().items()) for v in variants]
PARAM_BUDGET = 300_000


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    return torch.tensor(data.images[:64], dtype=torch.float32).unsqueeze(1) / 16.0


def wide_net(family, variant, digits):
    """(base, wide config, wide model with trained-looking BN statistics)."""
    base = uniform(family, variant, num_classes=10, input_size=8, in_channels=1)
    mult = min(1.0, (PARAM_BUDGET / complexity(base).params) ** 0.5)
    base = widen(base, mult) if mult < 1 else base
    wide = widen(base, 2.0)
    torch.manual_seed(0)
    model = create_model(config=wide)
    model.train()
    with torch.no_grad():  # move running stats away from (0, 1) so slicing them matters
        model(digits)
    return base, wide, model.eval()


@pytest.mark.parametrize("family,variant", ALL_VARIANTS)
def test_keeping_everything_reproduces_the_wide_model(family, variant, digits):
    _, wide, model = wide_net(family, variant, digits)
    everything = {name: list(range(width)) for name, width in wide.widths.items()}
    derived = materialize(wide, source=model, kept=everything).eval()
    with torch.no_grad():
        torch.testing.assert_close(derived(digits[:8]), model(digits[:8]))


@pytest.mark.parametrize("family,variant", ALL_VARIANTS)
def test_inherited_slices_follow_kept_and_wiring(family, variant, digits):
    base, wide, model = wide_net(family, variant, digits)
    result = shrink_to_target(wide, score_channels("l1", model, wide, []), base_config=base)
    derived = materialize(result.config, source=model, kept=result.kept).eval()
    fam = get_family(family)
    wiring = fam.wiring(result.config)
    for name in result.config.layers:
        src, dst = model.get_submodule(name), derived.get_submodule(name)
        out = torch.tensor(result.kept[name])
        weight = src.conv.weight[out]
        if src.conv.groups == 1 and wiring[name] is not None:
            weight = weight[:, torch.tensor(result.kept[wiring[name]])]
        torch.testing.assert_close(dst.conv.weight, weight)
        torch.testing.assert_close(dst.bn.running_var, src.bn.running_var[out])
        torch.testing.assert_close(dst.bn.bias, src.bn.bias[out])
    head = torch.tensor(result.kept[fam.classifier_input(result.config)])
    torch.testing.assert_close(derived.get_submodule(fam.classifier).weight,
                               model.get_submodule(fam.classifier).weight[:, head])
    assert derived(digits[:4]).shape == (4, 10)


def test_default_is_a_fresh_model_of_the_config(digits):
    base, wide, model = wide_net("resnet_cifar", "20", digits)
    result = shrink_to_target(wide, score_channels("l1", model, wide, []), base_config=base)
    torch.manual_seed(1)
    fresh = materialize(result.config)
    for name, width in result.config.widths.items():
        assert fresh.get_submodule(name).conv.out_channels == width
        assert float(fresh.get_submodule(name).bn.running_var.mean()) == 1.0
    assert fresh(digits[:2]).shape == (2, 10)


def test_source_and_kept_go_together(digits):
    _, wide, model = wide_net("resnet_cifar", "20", digits)
    with pytest.raises(ValueError, match="both source= .* and kept="):
        materialize(wide, source=model)


def test_mismatched_kept_names_the_layer(digits):
    _, wide, model = wide_net("resnet_cifar", "20", digits)
    kept = {name: list(range(width)) for name, width in wide.widths.items()}
    with pytest.raises(ValueError, match="'layer1.0.conv1'.*width"):
        materialize(wide, source=model, kept={**kept, "layer1.0.conv1": [0, 1]})
    with pytest.raises(ValueError, match="'layer1.0.conv1'"):
        materialize(wide, source=model, kept={k: v for k, v in kept.items()
                                              if k != "layer1.0.conv1"})
    too_far = kept["layer1.0.conv1"][:-1] + [10_000]
    with pytest.raises(ValueError, match="'layer1.0.conv1'.*out of range"):
        materialize(wide, source=model, kept={**kept, "layer1.0.conv1": too_far})


def test_source_of_another_network_is_refused(digits):
    base, wide, model = wide_net("resnet_cifar", "20", digits)
    kept = {name: list(range(width)) for name, width in wide.widths.items()}
    narrow_model = create_model(config=base)
    with pytest.raises(ValueError, match="out of range|expects"):
        materialize(wide, source=narrow_model, kept=kept)
