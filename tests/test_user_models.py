"""Bring your own model (issue 8): a user's ``package.module:callable`` through the CLI (in
process), a network registered with ``hetero.register_model``, and networks the channel graph
cannot follow, refused with one line that names the op and its module path."""

from __future__ import annotations

import importlib
import json
import textwrap
import uuid

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import hetero
from hetero.materialize import materialize
from hetero.models.factory import create_model, uniform, widen
from hetero.shrink import shrink_to_target
from hetero_cli import main

# A user's network: a concatenation, a grouped conv, a flatten straight into the classifier
# (each channel spans 4 features), and biases.
USER_NET = '''
import torch
from torch import nn


def block(cin, cout, k=3, groups=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())


class Net(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = block(3, 32)
        self.left = block(32, 32)
        self.right = block(32, 16, k=1)
        self.mix = block(48, 64, k=1)
        self.grouped = block(64, 64, groups=4)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(64 * 4, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = self.mix(torch.cat([self.left(x), self.right(x)], 1))
        return self.fc(torch.flatten(self.pool(self.grouped(x)), 1))


def build(num_classes):
    return Net(num_classes)


class Shuffle(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.up = nn.PixelShuffle(2)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(self.up(self.conv(x)).mean((2, 3)))


class Gate(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x


class Branchy(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.block = Gate()
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(self.block(self.conv(x)).mean((2, 3)))
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """The name of a fresh module holding USER_NET, importable from tmp_path."""
    name = f"usernet_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(USER_NET))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    return name


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_user_callable_complexity_through_the_cli(user_module, capsys):
    code, out, err = cli(capsys, "complexity", f"{user_module}:build", "--dataset", "digits",
                         "--json")
    assert code == 0, err
    result = json.loads(out)
    # The digits are 1x8x8 with 10 classes: the user's RGB stem is rebuilt for one channel.
    net = importlib.import_module(user_module).build(num_classes=10)
    net.stem[0] = nn.Conv2d(1, 32, 3, padding=1, bias=False)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net.eval()(torch.zeros(1, 1, 8, 8))
    assert result["flops"] == counter.get_total_flops() // 2
    assert result["params"] == sum(p.numel() for m in net.modules()
                                   if isinstance(m, (nn.Conv2d, nn.Linear))
                                   for p in m.parameters(recurse=False))


def test_user_callable_shrinks_on_digits_through_the_cli(user_module, capsys):
    code, out, err = cli(capsys, "shrink", "--model", f"{user_module}:build", "--dataset",
                         "digits", "--width-mult", "2", "--target", "1.0", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["flops"] == pytest.approx(result["target_flops"], rel=0.005)
    assert result["channels"]["grouped.0"] % 16 == 0  # whole groups of the grouped conv


def test_registered_model_goes_through_the_whole_method(user_module, capsys):
    name = f"mynet_{uuid.uuid4().hex[:8]}"
    hetero.register_model(name, importlib.import_module(user_module).build)
    base = uniform(name, num_classes=10, input_size=16)
    assert base.widths["grouped.0"] == 64 and base.groups == (("mix.0", "grouped.0"),)
    wide = widen(base, 2.0)
    model = create_model(config=wide).eval()
    scores = {u[0]: torch.rand(wide.widths[u[0]]) for u in wide.units()}
    result = shrink_to_target(wide, scores, base_config=base, target=1.0)
    derived = materialize(result.config, source=model, kept=result.kept)
    assert derived.eval()(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    code, out, err = cli(capsys, "complexity", name, "--json")
    assert code == 0, err
    assert json.loads(out)["model"] == name


@pytest.mark.parametrize(("callable_", "needles"), [
    ("Shuffle", ("PixelShuffle", "'up'")),
    ("Branchy", ("cannot trace", "'block'")),
])
@pytest.mark.parametrize("command", ["complexity", "shrink"])
def test_unsupported_model_is_a_one_line_error(user_module, capsys, command, callable_, needles):
    model = f"{user_module}:{callable_}"
    args = (["complexity", model, "--dataset", "digits"] if command == "complexity"
            else ["shrink", "--model", model, "--dataset", "digits"])
    code, out, err = cli(capsys, *args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


def test_missing_user_module_is_a_one_line_error(capsys):
    code, _, err = cli(capsys, "complexity", "no_such_module_xyz:build")
    assert code == 2 and "cannot import 'no_such_module_xyz'" in err
    assert len(err.strip().splitlines()) == 1


def test_inherit_through_concat_groups_and_flatten_matches_the_masked_network(user_module):
    from _families import masked, randomize_norms

    name = f"mynet_{uuid.uuid4().hex[:8]}"
    hetero.register_model(name, importlib.import_module(user_module).build)
    base = uniform(name, num_classes=10, input_size=16)
    wide = widen(base, 2.0)
    torch.manual_seed(0)
    model = randomize_norms(create_model(config=wide)).eval()
    scores = {u[0]: torch.rand(wide.widths[u[0]]) for u in wide.units()}
    result = shrink_to_target(wide, scores, base_config=base, target=1.0)
    assert result.config != wide   # channels were removed: the masks below do something
    derived = materialize(result.config, source=model, kept=result.kept).eval().double()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        want = masked(model, wide, result.kept).double()(x)
        got = derived(x)
        unmasked = model.double()(x)
    assert (got - want).abs().max() <= 1e-4
    assert (unmasked - want).abs().max() > 1e-3, "removing channels changed nothing: weak test"
