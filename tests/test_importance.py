"""Channel-importance criteria: every criterion on every model family, on real digits, and
tests a random scorer would fail, on every family and eight torchvision CNNs.

The digits runs use each family's cheapest variant as a reduced but structurally complete
instance (the uniform net scaled to at most ~300k parameters), 8x8 single-channel input, width 2.
"""

import copy

import pytest
import torch
from _families import (
    NETWORK_IDS,
    NETWORKS,
    random_batches,
    scaled_config,
)
from sklearn.datasets import load_digits

from hetero.graph import ConvOp, LinearOp, NormOp
from hetero.importance import (
    Scored,
    list_criteria,
    register_criterion,
    score_channels,
    score_network,
)
from hetero.materialize import materialize
from hetero.models import list_models
from hetero.models.factory import check_config, complexity, create_model, graph_of, uniform, widen
from hetero.shrink import shrink_to_target

PARAM_BUDGET = 300_000


def digits_batches(count=2, size=16, offset=0):
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target)
    return [(x[offset + i * size: offset + (i + 1) * size],
             y[offset + i * size: offset + (i + 1) * size]) for i in range(count)]


def small_instance(family, variant):
    """The family's uniform 8x8 net, scaled down to at most PARAM_BUDGET parameters."""
    base = uniform(family, variant, num_classes=10, input_size=8, in_channels=1)
    mult = min(1.0, (PARAM_BUDGET / complexity(base).params) ** 0.5)
    return widen(base, mult) if mult < 1 else base


def cheapest_variant(family):
    return min(list_models()[family], key=lambda v: complexity(
        uniform(family, v, num_classes=10, input_size=8, in_channels=1)).flops)


FAMILIES = sorted(list_models())
CASES = [(c, f) for c in list_criteria() for f in FAMILIES]


@pytest.fixture(scope="module")
def wide_nets():
    """family -> (base config, widened config, widened model), built once per module."""
    nets = {}
    for family in FAMILIES:
        base = small_instance(family, cheapest_variant(family))
        wide = widen(base, 2.0)
        torch.manual_seed(0)
        nets[family] = (base, wide, create_model(config=wide))
    return nets


def test_registry_lists_the_criteria_and_rejects_unknown_names():
    assert {"dhp", "gate", "bn", "l1", "random"} <= set(list_criteria())
    wide = uniform("resnet_cifar", "20", input_size=8, in_channels=1)
    model = create_model(config=wide)
    with pytest.raises(ValueError, match="choose one of .*dhp"):
        score_channels("nope", model, wide, digits_batches())


def test_registered_criterion_is_called_and_its_scores_checked():
    config = uniform("resnet_cifar", "20", input_size=8, in_channels=1)
    model = create_model(config=config)

    @register_criterion("_test_ones")
    def ones(ctx):
        return Scored({unit[0]: torch.ones(ctx.config.widths[unit[0]])
                       for unit in ctx.config.units()}, ctx.model)

    @register_criterion("_test_short")
    def short(ctx):
        return Scored({unit[0]: torch.ones(1) for unit in ctx.config.units()}, ctx.model)

    try:
        scores = score_channels("_test_ones", model, config, [])
        assert set(scores) == {unit[0] for unit in config.units()}
        with pytest.raises(RuntimeError, match="bad score vector"):
            score_channels("_test_short", model, config, [])
    finally:
        from hetero import importance
        importance._CRITERIA.pop("_test_ones")
        importance._CRITERIA.pop("_test_short")


@pytest.mark.parametrize("criterion,family", CASES)
def test_criterion_scores_every_unit_and_shrinks_to_target(criterion, family, wide_nets):
    base, wide, model = wide_nets[family]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scores = score_channels(criterion, model, wide, digits_batches())

    units = wide.units()
    assert list(scores) == [unit[0] for unit in units]
    for unit in units:
        vector = scores[unit[0]]
        assert vector.shape == (wide.widths[unit[0]],) and vector.device.type == "cpu"
        assert torch.isfinite(vector).all() and (vector >= 0).all()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "scoring changed the model"

    result = shrink_to_target(wide, scores, base_config=base, target=1.0, width_mult=2.0)
    assert abs(result.flops / result.target_value - 1) <= 0.005
    check_config(result.config)
    for unit in units:
        assert all(result.kept[name] == result.kept[unit[0]] for name in unit)
    x, _ = digits_batches(1, 4)[0]
    for net in (materialize(result.config), materialize(result.config, source=model,
                                                        kept=result.kept)):
        assert net.eval()(x).shape == (4, 10)


def test_dhp_scores_vary_across_channels_and_repeat_for_a_seed(wide_nets):
    _, wide, model = wide_nets["resnet_cifar"]
    first = score_channels("dhp", model, wide, digits_batches(), seed=3)
    again = score_channels("dhp", model, wide, digits_batches(), seed=3)
    other = score_channels("dhp", model, wide, digits_batches(), seed=4)
    for key, vector in first.items():
        assert torch.equal(vector, again[key])
        assert vector.std() > 0, f"unit {key}: all channels scored alike"
    assert any(not torch.equal(first[k], other[k]) for k in first)


def test_dhp_accepts_a_smaller_embedding_and_more_batches(wide_nets):
    _, wide, model = wide_nets["resnet_cifar"]
    scores = score_channels("dhp", model, wide, digits_batches(3), num_batches=3,
                            embedding_dim=2)
    assert all(v.shape == (wide.widths[k],) for k, v in scores.items())


def test_gate_scores_sum_over_the_batches(wide_nets):
    _, wide, model = wide_nets["resnet_cifar"]
    batches = digits_batches(2)
    both = score_channels("gate", model, wide, batches, num_batches=2)
    one = score_channels("gate", model, wide, batches[:1], num_batches=1)
    two = score_channels("gate", model, wide, batches[1:], num_batches=1)
    for key in both:
        torch.testing.assert_close(both[key], one[key] + two[key])


def test_l1_is_the_filter_norm_summed_over_the_unit(wide_nets):
    _, wide, model = wide_nets["resnet_cifar"]
    scores = score_channels("l1", model, wide, [])
    unit = max(wide.units(), key=len)  # a residual stream: several layers
    expected = sum(model.get_submodule(n).weight.abs().sum((1, 2, 3)) for n in unit)
    torch.testing.assert_close(scores[unit[0]], expected.detach())


def test_scoring_a_model_of_another_config_names_the_layer():
    config = uniform("resnet_cifar", "20", input_size=8, in_channels=1)
    model = create_model(config=config)
    with pytest.raises(ValueError, match="layer 'stem.conv'.*create_model"):
        score_channels("l1", model, widen(config, 2.0), [])


def test_data_criteria_refuse_empty_batches(wide_nets):
    _, wide, model = wide_nets["resnet_cifar"]
    with pytest.raises(ValueError, match="mini-batch"):
        score_channels("gate", model, wide, [])


# ---------------------------------------------------------------------------- criteria that a
# random scorer would fail: one channel made useless by hand must rank last.
def probe_channel(width: int) -> int:
    return width // 2


def offsets(layout, widths):
    """unit -> its first channel in a tensor of ``layout`` (before any flatten repeat)."""
    out, start = {}, 0
    for unit in layout.units:
        out[unit] = start
        start += widths[unit]
    return out


def instance(family, variant, seed=0):
    config = scaled_config(family, variant)
    torch.manual_seed(seed)
    return config, create_model(config=config)


def assert_ranks_last(scores, config, units, *, exactly_zero=False):
    for unit in units:
        key = unit.layers[0]
        vector, c = scores[key], probe_channel(config.widths[key])
        others = torch.cat([vector[:c], vector[c + 1:]])
        if exactly_zero:
            assert vector[c] == 0 and others.max() > 0, key
        else:
            assert vector[c] < others.min(), f"{key}: {float(vector[c])} vs {float(others.min())}"


@pytest.mark.parametrize(("family", "variant"), NETWORKS, ids=NETWORK_IDS)
def test_l1_ranks_a_zeroed_filter_last_in_every_unit(family, variant):
    config, model = instance(family, variant)
    graph = graph_of(config)
    units = [u for u in graph.free_units() if config.widths[u.layers[0]] > 1]
    with torch.no_grad():
        for unit in units:
            for layer in unit.layers:
                model.get_submodule(layer).weight[probe_channel(config.widths[layer])] = 0
    assert_ranks_last(score_channels("l1", model, config, []), config, units)


@pytest.mark.parametrize(("family", "variant"), NETWORKS, ids=NETWORK_IDS)
def test_bn_ranks_a_zeroed_gamma_last_in_every_unit_a_norm_carries(family, variant):
    config, model = instance(family, variant)
    graph = graph_of(config)
    widths = graph.unit_widths(dict(config.widths), config.in_channels)
    free = {u.id: u for u in graph.free_units() if widths[u.id] > 1}
    carried = set()
    with torch.no_grad():
        for op in graph.ops:
            if not isinstance(op, NormOp) or op.layout.repeat != 1:
                continue
            gamma = model.get_submodule(op.path).weight
            for unit, start in offsets(op.layout, widths).items():
                if unit in free:
                    gamma[start + probe_channel(widths[unit])] = 0
                    carried.add(unit)
    assert carried
    # lr 0: the score is then exactly the sum of |gamma| over every norm carrying the unit (at
    # its offset in concatenations), which is what this checks. (With steps, a narrow net on
    # noise at 1x1 maps gets BN gradients in the thousands and any gamma can move anywhere.)
    scores = score_channels("bn", model, config, random_batches(config, batch=4), lr=0.0)
    assert_ranks_last(scores, config, [free[u] for u in sorted(carried)], exactly_zero=True)


def classifier_only_unit(graph):
    """A free unit whose channels reach the output only through the classifier (a linear with
    fixed outputs): (unit, the linear's op), or None."""
    readers: dict[int, list] = {}
    for op in graph.ops:
        if isinstance(op, (ConvOp, LinearOp)):
            for unit in op.inputs.units:
                readers.setdefault(unit, []).append(op)
    for unit in graph.free_units():
        ops = readers.get(unit.id, [])
        if unit.feeds_classifier and len(ops) == 1 and isinstance(ops[0], LinearOp) and all(
                graph.units[u].fixed for u in ops[0].output.units):
            return unit, ops[0]
    return None


# Networks with a unit that only the classifier reads (a head conv, VGG's last conv, DenseNet's
# last layer, MobileNetV3's hidden linear); residual networks have none.
CLASSIFIER_ONLY = [("vgg_cifar", "16"), ("densenet_cifar", "40"), ("mobilenet_v2", "cifar"),
                   ("mobilenet_v3", "cifar"), ("efficientnet", "b0"), ("mnasnet", "cifar"),
                   ("torchvision:densenet121", None), ("torchvision:mobilenet_v3_small", None),
                   ("torchvision:efficientnet_b0", None)]


def silence_in_classifier(family, variant):
    """A network, one of its units and a channel of it whose classifier columns are zeroed."""
    config, model = instance(family, variant)
    graph = graph_of(config)
    found = classifier_only_unit(graph)
    assert found is not None, "no unit reaches the output through the classifier alone"
    unit, op = found
    widths = graph.unit_widths(dict(config.widths), config.in_channels)
    start = offsets(op.inputs, widths)[unit.id] + probe_channel(widths[unit.id])
    repeat = op.inputs.repeat
    with torch.no_grad():
        model.get_submodule(op.path).weight[:, start * repeat:(start + 1) * repeat] = 0
    return config, model, unit


@pytest.mark.parametrize(("family", "variant"), CLASSIFIER_ONLY,
                         ids=[f"{f}-{v}" for f, v in CLASSIFIER_ONLY])
def test_gate_scores_a_channel_the_classifier_ignores_zero(family, variant):
    config, model, unit = silence_in_classifier(family, variant)
    scores = score_channels("gate", model, config, random_batches(config, batch=4))
    assert_ranks_last(scores, config, [unit], exactly_zero=True)


@pytest.mark.parametrize(("family", "variant"), [("vgg_cifar", "16"), ("densenet_cifar", "40"),
                                                 ("torchvision:mobilenet_v3_small", None)],
                         ids=["vgg_cifar-16", "densenet_cifar-40", "tv-mobilenet_v3_small"])
def test_dhp_scores_a_channel_the_classifier_ignores_zero(family, variant):
    # One batch: the score is |dL/dz| before any step (a step would let the zeroed classifier
    # columns learn). The classifier is not generated (its outputs are fixed), so its zeroed
    # columns stay; the unit's latent then reaches the loss only through that channel.
    config, model, unit = silence_in_classifier(family, variant)
    scores = score_channels("dhp", model, config, random_batches(config, count=1, batch=4),
                            num_batches=1, embedding_dim=2)
    assert_ranks_last(scores, config, [unit], exactly_zero=True)


class TwoLayer(torch.nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.fc = torch.nn.Linear(6, num_classes)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def test_dhp_score_is_dl_dz_worked_out_by_hand(monkeypatch):
    # On conv -> relu -> pool -> fc only the conv is generated: K = W2 @ (W0 * W1 + b1) + b2 with
    # W0 = z_in (x) z_out + b0, so dK[o, i, k] / dz_out[o] = z_in[i] * sum_m W2[i,o,k,m] W1[i,o,m]
    # and dL/dz_out[o] = sum_{i,k} dL/dK[o,i,k] * that. One batch: no step before the score.
    import uuid

    import hetero
    from hetero import importance

    name = f"twolayer_{uuid.uuid4().hex[:8]}"
    hetero.register_model(name, TwoLayer)
    config = uniform(name, num_classes=10, input_size=8)
    model = create_model(config=config)
    captured = []

    class Capturing(importance._HyperNetwork):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            captured.append(self)

    monkeypatch.setattr(importance, "_HyperNetwork", Capturing)
    batches = random_batches(config, count=1, batch=4)
    # last_step=False: the hypernetwork stays where the gradient was taken (the reference's
    # last step moves it afterwards; tests below check that it leaves the score alone).
    scored = importance.score_network("dhp", model, config, batches, num_batches=1,
                                      embedding_dim=3, last_step=False)
    (hyper,) = captured
    graph = graph_of(config)
    z_in = hyper.latents[graph.image_unit].detach()
    w1, w2 = hyper.hypers["conv"]["w1"].detach(), hyper.hypers["conv"]["w2"].detach()
    kernel = scored.generated["conv"].clone().requires_grad_()
    x, y = batches[0]
    logits = torch.func.functional_call(scored.network, {"conv.weight": kernel}, (x,))
    (grad_k,) = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, y), kernel)
    dk_dz = z_in[:, None, None] * torch.einsum("iokm,iom->iok", w2, w1)    # (i, o, k)
    by_hand = torch.einsum("oik,iok->o", grad_k.flatten(2), dk_dz).abs()
    torch.testing.assert_close(scored.scores["conv"], by_hand, rtol=1e-4, atol=1e-7)
    assert by_hand.std() > 0


# ---------------------------------------------------------------------------- the random control
def _shrunk(criterion, family, wide_nets, seed, **options):
    base, wide, model = wide_nets[family]
    scores = score_channels(criterion, model, wide, digits_batches(), seed=seed, **options)
    return base, shrink_to_target(wide, scores, base_config=base, target=1.0, width_mult=2.0,
                                  remain_ratio=0.1, linear_ratio=0.1)


@pytest.mark.parametrize("family", ["resnet_cifar", "mobilenet_v2", "regnet"])
def test_random_gives_other_widths_for_other_seeds_at_the_same_flops(family, wide_nets):
    results = [_shrunk("random", family, wide_nets, seed)[1] for seed in (0, 1, 2, 0)]
    for result in results:
        assert abs(result.flops / result.target_value - 1) <= 0.005
    widths = [dict(r.config.widths) for r in results]
    assert widths[0] == widths[3], "the same seed must give the same LW-DNA"
    assert widths[0] != widths[1] and widths[1] != widths[2] and widths[0] != widths[2]


def test_random_widths_are_heterogeneous_not_a_rescaled_uniform_network(wide_nets):
    # Independent channel scores under one global threshold would keep about the same share of
    # every unit (a near-uniform network); the control spreads the shares between the floors
    # and the widened width.
    base, result = _shrunk("random", "resnet_cifar", wide_nets, seed=0)
    _, wide, _ = wide_nets["resnet_cifar"]
    shares = torch.tensor([result.config.widths[u[0]] / wide.widths[u[0]]
                           for u in wide.units()])
    assert shares.max() - shares.min() > 0.4, shares
    assert shares.std() > 0.15, shares


# ---------------------------------------------------------------------------- dhp's reference details
def _dhp_run(wide_nets, family, monkeypatch, **options):
    """Score with dhp; also return the _HyperNetwork it built (to look at its latents)."""
    from hetero import importance

    captured = []

    class Capturing(importance._HyperNetwork):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            captured.append(self)

    monkeypatch.setattr(importance, "_HyperNetwork", Capturing)
    _, wide, model = wide_nets[family]
    scored = importance.score_network("dhp", model, wide, digits_batches(), seed=0,
                                      embedding_dim=2, **options)
    return scored, captured[0], wide


def test_a_grouped_convs_input_latent_is_learned_of_length_in_over_groups(wide_nets, monkeypatch):
    _, hyper, wide = _dhp_run(wide_nets, "mobilenet_v2", monkeypatch, grouped_input="learned",
                              last_step=True)
    graph = check_config(wide)
    assert graph.group_widths and set(hyper.grouped_inputs) == set(graph.group_widths)
    for name, z in hyper.grouped_inputs.items():
        layer = hyper.layers[name]
        assert z.shape == (layer.in_channels // layer.groups,) and z.requires_grad
        assert z.grad is not None and z.grad.abs().sum() > 0, f"{name}: not trained"
    _, ones, _ = _dhp_run(wide_nets, "mobilenet_v2", monkeypatch, grouped_input="ones")
    for z in ones.grouped_inputs.values():
        assert not z.requires_grad and torch.equal(z, torch.ones_like(z))


def test_the_grouped_input_latent_changes_the_scores(wide_nets, monkeypatch):
    learned, _, _ = _dhp_run(wide_nets, "mobilenet_v2", monkeypatch, grouped_input="learned")
    ones, _, _ = _dhp_run(wide_nets, "mobilenet_v2", monkeypatch, grouped_input="ones")
    assert any(not torch.allclose(learned.scores[k], ones.scores[k]) for k in learned.scores)


def test_a_shared_group_latent_scores_whole_groups_through_one_element(wide_nets, monkeypatch):
    shared, hyper, wide = _dhp_run(wide_nets, "regnet", monkeypatch, group_latent="shared")
    graph = check_config(wide)
    grouped = [u for u in graph.free_units() if u.granularity > 1]
    assert grouped, "the regnet instance has grouped units"
    for unit in grouped:
        g, width = unit.granularity, wide.widths[unit.layers[0]]
        assert hyper.latents[unit.id].shape == (width // g,)  # one latent element per group
        per_group = shared.scores[unit.layers[0]].view(-1, g)
        assert torch.equal(per_group, per_group[:, :1].expand_as(per_group))  # spread evenly
        element = hyper.latents[unit.id].grad.abs()
        torch.testing.assert_close(per_group.sum(1), element)  # a group counts as one element
    channel, hyper_c, _ = _dhp_run(wide_nets, "regnet", monkeypatch, group_latent="channel")
    unit = grouped[0]
    assert hyper_c.latents[unit.id].shape == (wide.widths[unit.layers[0]],)
    assert not torch.equal(channel.scores[unit.layers[0]].view(-1, unit.granularity)[:, 0],
                           channel.scores[unit.layers[0]].view(-1, unit.granularity)[:, 1])


def test_the_last_step_moves_latents_and_generated_weights_but_not_the_grad_score(
        wide_nets, monkeypatch):
    two, hyper_two, _ = _dhp_run(wide_nets, "resnet_cifar", monkeypatch, last_step=True)
    one, hyper_one, _ = _dhp_run(wide_nets, "resnet_cifar", monkeypatch, last_step=False)
    for key in one.scores:  # the gradient is taken before the step
        torch.testing.assert_close(two.scores[key], one.scores[key])
    assert any(not torch.allclose(two.generated[k], one.generated[k]) for k in one.generated)
    graph = hyper_one.graph
    moved = [not torch.equal(hyper_two.latents[u.id], hyper_one.latents[u.id])
             for u in graph.free_units()]
    assert all(moved), "the second SGD step moves every scored latent"
    latent_two, _, _ = _dhp_run(wide_nets, "resnet_cifar", monkeypatch, last_step=True,
                                dhp_score="latent")
    latent_one, _, _ = _dhp_run(wide_nets, "resnet_cifar", monkeypatch, last_step=False,
                                dhp_score="latent")
    assert any(not torch.equal(latent_two.scores[k], latent_one.scores[k])
               for k in latent_one.scores)


# ---------------------------------------------------------------------------- dhp in chunks:
# every layer's hypernetwork is generated, differentiated and stepped on its own; the scores
# must be bitwise those of one backward through the whole hypernetwork (how dhp scored before).
def unchunked_dhp(model, config, batches, *, seed, last_step=True, **options):
    """dhp as it was: every generated weight in one graph, one backward, one optimiser."""
    from hetero import importance

    graph = check_config(config)
    ctx = importance._Context(model, config, graph, batches,
                              importance.ScoreSettings(num_batches=len(batches)))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = importance._training_copy(model)
        hyper = importance._HyperNetwork(net, ctx, 2, **options)
        names = {f"{name}.weight" for name in config.layers}
        others = [p for n, p in net.named_parameters() if n not in names]
        optimizer = importance._SGD([*hyper.parameters(), *others], ctx.settings)
        for step, (x, y) in enumerate(batches):
            optimizer.zero_grad()
            logits = torch.func.functional_call(net, hyper.weights(), (x,))
            torch.nn.functional.cross_entropy(logits, y).backward()
            if step < len(batches) - 1 or last_step:
                optimizer.step()
    scores = {ctx.key(u): hyper.channel_scores(u, "grad")
              for u in hyper.latents if not graph.units[u].fixed}
    with torch.no_grad():
        generated = {name[: -len(".weight")]: w for name, w in hyper.weights().items()}
    return scores, generated, net


DHP_OPTIONS = [dict(), dict(last_step=False), dict(grouped_input="ones", group_latent="channel")]


@pytest.mark.parametrize("num_batches", [1, 3])
@pytest.mark.parametrize("options", DHP_OPTIONS, ids=["reference", "no-last-step", "ones"])
@pytest.mark.parametrize("family", FAMILIES)
def test_dhp_in_chunks_scores_exactly_as_one_backward(family, options, num_batches, wide_nets):
    _, wide, model = wide_nets[family]
    assert_chunked_is_unchunked(model, wide, digits_batches(num_batches), options)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("family", FAMILIES)
def test_dhp_in_chunks_scores_exactly_as_one_backward_on_cuda(family, wide_nets):
    _, wide, model = wide_nets[family]
    batches = [(x.cuda(), y.cuda()) for x, y in digits_batches(3)]
    assert_chunked_is_unchunked(copy.deepcopy(model).cuda(), wide, batches, {})


def assert_chunked_is_unchunked(model, wide, batches, options):
    expected, generated, net = unchunked_dhp(model, wide, batches, seed=5, **options)
    scored = score_network("dhp", model, wide, batches, num_batches=len(batches),
                           embedding_dim=2, seed=5, **options)
    assert scored.scores.keys() == expected.keys()
    for key, vector in expected.items():
        assert torch.equal(scored.scores[key], vector.cpu()), key
    for name, weight in generated.items():   # every hypernetwork took the same steps
        assert torch.equal(scored.generated[name], weight), name
    state = scored.network.state_dict()
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
