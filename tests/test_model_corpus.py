"""Bring your own model, truthfully (issue 17): every network of the corpus (tests/_corpus.py) is
either handled exactly (its cost is what FlopCounterMode counts in eval mode, at uniform and at
random widths, and a derived network that inherits the kept weights computes what the wide
network restricted to those channels computes) or refused with one line naming the op."""

from __future__ import annotations

import json
import random

import pytest
import torch
from _corpus import HANDLED, REFUSED
from _families import masked, random_scores, random_widths, randomize_norms
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import hetero
from hetero.graph import UnsupportedModel, derive_graph
from hetero.materialize import materialize
from hetero.models.factory import complexity, create_model, graph_of, uniform, widen
from hetero.outputs import classification_loss, leaves, split_logits
from hetero.shrink import shrink_to_target

SIZE = 16
_REGISTERED: dict[str, str] = {}


def registered(name: str, builder) -> str:
    """The corpus network as a registered model (once per session)."""
    if name not in _REGISTERED:
        _REGISTERED[name] = f"corpus-{name}"
        hetero.register_model(_REGISTERED[name], builder)
    return _REGISTERED[name]


def base_of(name: str, builder, options: dict) -> hetero.ChannelConfig:
    return uniform(registered(name, builder), num_classes=10, input_size=SIZE, **options)


def eval_macs(model: nn.Module) -> int:
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, SIZE, SIZE))
    return counter.get_total_flops() // 2


def outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    return [t for _, t in leaves(model(x))]


HANDLED_IDS = [case[0] for case in HANDLED]


@pytest.mark.parametrize(("name", "builder", "options"), HANDLED, ids=HANDLED_IDS)
def test_handled_network_costs_what_the_flop_counter_counts(name, builder, options):
    base = base_of(name, builder, options)
    assert base.layers, "nothing left to prune: not a useful case"
    original = [t.shape for t in outputs(builder(num_classes=10).eval(), torch.zeros(2, 3, SIZE,
                                                                                   SIZE))]
    for config in (base, widen(base, 2.0), random_widths(base, random.Random(name))):
        model = create_model(config=config)
        assert complexity(config).flops == eval_macs(model), config.widths
        # Every output keeps its channels; a training forward (aux heads included) still runs.
        x = torch.randn(2, 3, SIZE, SIZE)
        assert [t.shape for t in outputs(model.eval(), x)] == original
        model.train()(x)


@pytest.mark.parametrize(("name", "builder", "options"), HANDLED, ids=HANDLED_IDS)
def test_handled_network_inherits_exactly(name, builder, options):
    base = base_of(name, builder, options)
    wide = widen(base, 2.0)
    torch.manual_seed(0)
    model = randomize_norms(create_model(config=wide)).eval()
    with torch.no_grad():   # per-channel parameters away from their constant init too
        for path in graph_of(wide).params:
            model.get_parameter(path).uniform_(0.5, 1.5)
    result = shrink_to_target(wide, random_scores(wide, seed=1), base_config=base, target=1.0)
    assert result.config != wide
    derived = materialize(result.config, source=model, kept=result.kept).eval().double()
    x = torch.randn(2, 3, SIZE, SIZE, dtype=torch.float64)
    with torch.no_grad():
        want = outputs(masked(model, wide, result.kept).double(), x)
        got = outputs(derived, x)
        unmasked = outputs(model.double(), x)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert (g - w).abs().max() <= 1e-9
    assert max((u - w).abs().max() for u, w in zip(unmasked, want, strict=True)) > 1e-6, \
        "removing channels changed nothing: weak test"


@pytest.mark.parametrize(("name", "builder", "needles"), REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_network_names_the_op_in_one_line(name, builder, needles):
    with pytest.raises(UnsupportedModel) as info:
        derive_graph(builder(num_classes=10), torch.zeros(1, 3, SIZE, SIZE))
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


def test_excluded_block_is_an_opaque_constant_and_unpruned():
    from _corpus import WithOpaqueBlock

    base = base_of("excluded-permute", WithOpaqueBlock, {"exclude": "block"})
    assert not any(layer.startswith("block.") for layer in base.layers)
    assert "stem.0" not in base.layers   # the block reads the stem: its channels are kept
    with pytest.raises(ValueError, match="no sub-module of that name"):
        base_of("excluded-permute-typo", WithOpaqueBlock, {"exclude": "blokc"})


def test_a_user_rule_makes_an_unknown_module_channelwise():
    class Swish(nn.Module):   # a user activation with control flow the tracer cannot follow
        def forward(self, x):
            return x * torch.sigmoid(x) if x.dim() == 4 and bool(x.sum() != 0) else x

    class Net(nn.Module):
        def __init__(self, num_classes=10):
            super().__init__()
            self.conv, self.act, self.head = nn.Conv2d(3, 8, 3, padding=1), Swish(), nn.Linear(8, 10)

        def forward(self, x):
            return self.head(self.act(self.conv(x)).mean((2, 3)))

    with pytest.raises(UnsupportedModel, match="cannot trace"):
        derive_graph(Net(), torch.zeros(1, 3, 8, 8))
    hetero.register_op(Swish, "channelwise")
    graph = derive_graph(Net(), torch.zeros(1, 3, 8, 8))
    assert graph.layers == ("conv",)


def test_auxiliary_heads_are_trained_with_their_weight_and_not_costed():
    from _corpus import AuxInTraining

    base = base_of("aux-in-training", AuxInTraining, {})
    assert not any(layer.startswith("aux.") for layer in base.layers)
    graph = graph_of(base)
    assert graph.train_only and all(t.startswith("aux.") for t in graph.train_only)
    model = create_model(config=widen(base, 2.0)).train()
    y = torch.tensor([1, 2])
    output = model(torch.randn(2, 3, SIZE, SIZE))
    logits, aux = split_logits(output)
    assert logits is output.logits and len(aux) == 1
    loss, _ = classification_loss(output, y, aux_weight=0.3)
    ce = torch.nn.functional.cross_entropy
    assert loss.item() == pytest.approx((ce(logits, y) + 0.3 * ce(output.features, y)).item())
    # A named output is the logits; an unknown name is one clear error.
    assert split_logits({"a": y, "b": logits}, "b")[0] is logits
    with pytest.raises(ValueError, match="no output 'c'"):
        split_logits({"a": y, "b": logits}, "c")


def test_a_module_only_the_eval_forward_calls_is_refused():
    class EvalOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.head = nn.Conv2d(3, 8, 1), nn.Conv2d(3, 8, 1), nn.Linear(8, 10)

        def forward(self, x):
            y = self.a(x) if self.training else self.b(x)
            return self.head(y.mean((2, 3)))

    with pytest.raises(UnsupportedModel, match="calls 'b' in eval mode but not in training"):
        derive_graph(EvalOnly(), torch.zeros(1, 3, 8, 8))


# ---------------------------------------------------------------------------- the command line
def cli(capsys, *args: str) -> tuple[int, str, str]:
    from hetero_cli import main

    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_does_not_run_at_this_size_is_one_line_with_torchs_cause(capsys):
    code, _, err = cli(capsys, "complexity", "torchvision:alexnet", "--dataset", "digits")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "does not run on input 1x8x8" in err and "'features.2'" in err
    assert "Output size is too small" in err and "--input-size" in err
    code, out, err = cli(capsys, "complexity", "torchvision:alexnet", "--dataset", "digits",
                         "--input-size", "64", "--json")
    assert code == 0, err
    assert json.loads(out)["input"] == [1, 64, 64]


def test_exclude_and_input_size_reach_the_trial_spec_and_the_network(capsys):
    from hetero.trial import TrialSpec, params_of

    spec = TrialSpec(input_size=24, exclude="block")
    assert params_of(spec)["input_size"] == 24 and params_of(spec)["exclude"] == "block"
    code, out, err = cli(capsys, "shrink", "--model", "tests._corpus:Branchy", "--dataset",
                         "digits", "--input-size", "16", "--exclude", "block", "--criterion",
                         "l1", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["config"]["input_size"] == 16
    assert summary["config"]["options"] == {"exclude": ["block"]}
    assert summary["flops"] == pytest.approx(summary["target_flops"], rel=0.005)


def test_input_size_resizes_the_data():
    from hetero.data import load_dataset

    data = load_dataset("digits", input_size=16)
    x, _ = next(data.train_batches(4))
    assert data.input_size == 16 and x.shape == (4, 1, 16, 16)


def test_dropping_aux_heads_builds_the_network_without_them():
    from hetero.method import base_config_for
    from hetero.protocol import TrainProtocol
    from hetero.trial import TrialSpec

    kept = TrialSpec(model="torchvision:googlenet")
    dropped = TrialSpec(model="torchvision:googlenet", protocol=TrainProtocol(aux_weight=0.0))
    with_heads, without = (base_config_for(s, (3, 32, 10)) for s in (kept, dropped))
    assert without.options["aux_logits"] is False and with_heads.options["aux_logits"] is True
    assert complexity(with_heads) == complexity(without)   # the eval graph alike
    model = create_model(config=without).train()
    assert model.aux1 is None and isinstance(model(torch.randn(2, 3, 32, 32)), torch.Tensor)
    heads = create_model(config=with_heads).train()(torch.randn(2, 3, 32, 32))
    assert len(leaves(heads)) == 3 and all(t.shape == (2, 10) for _, t in leaves(heads))


def test_trainer_state_dict_keeps_module_versions():
    import io

    import torchvision

    from hetero.data import load_dataset
    from hetero.protocol import TrainProtocol
    from hetero.train import Trainer

    model = torchvision.models.mnasnet0_5(num_classes=10)
    trainer = Trainer(model, load_dataset("digits"), TrainProtocol(epochs=1, device="cpu"))
    state = trainer.state_dict()["model"]
    assert state._metadata == model.state_dict()._metadata
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    # MNASNet's loader refuses a state dict without its version.
    torchvision.models.mnasnet0_5(num_classes=10).load_state_dict(
        torch.load(buffer, weights_only=True))


def test_a_sweep_spec_takes_the_input_size_and_exclusions_in_its_space():
    from sweeps.spec import SpecError, base_config, spec_from_dict

    data = {"name": "t", "model": "tests._corpus:Branchy", "dataset": "digits",
            "space": {"input_size": 16, "exclude": "block", "criteria": ["l1"]},
            "protocol": {"aux_weight": 0.0}}
    spec = spec_from_dict(data)
    config = base_config(spec)
    assert config.input_size == 16 and dict(config.options) == {"exclude": ("block",)}
    with pytest.raises(SpecError, match="input_size"):
        spec_from_dict({**data, "space": {"input_size": 0}})
