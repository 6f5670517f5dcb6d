"""Channel-importance criteria: how much each channel of a widened network matters.

A criterion scores every *unit* of the channel graph (channels that share one index: a residual
stream, a depthwise conv and its input, an SE gate and its block) as one vector, one score per
channel, so that everything meeting at an add or a concatenation is later kept or dropped
together. Scores are raw and un-normalised: the shrinker applies one global threshold.

Criteria (register more with :func:`register_criterion`):

- ``dhp``: the paper's. Every conv/linear is re-parameterised by a hypernetwork driven by one
  latent vector per unit; a layer's input latent is the concatenation, in channel order, of the
  latents of the units it reads (DHP). After ``num_batches`` SGD steps the score is |dL/dz| of the
  last mini-batch (``dhp_score="latent"``: |z| instead, what the released ResNet-50 code ranks).
- ``gate``: a multiplicative gate (init 1) per unit channel after every batch norm that carries
  it (after the layer itself where no BN follows); the score is |dL/dg| summed over
  ``num_batches`` mini-batches. No weights are updated.
- ``bn``: network slimming in miniature: ``num_batches`` SGD steps with an L1 penalty on the BN
  scales, then the sum of |gamma| over every BN that carries the unit's channels.
- ``l1``: the L1 norm of each output filter, summed over the unit's layers (no data).

Scoring never changes the caller's model: criteria that train work on a deep copy, which
:func:`score_network` returns (the "scored network" whose kept slices ``inherit`` starts from).
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from hetero.config import ChannelConfig
from hetero.graph import ChannelGraph, NormOp
from hetero.outputs import DEFAULT_AUX_WEIGHT, classification_loss
from hetero.surgery import device_of, out_channels
from hetero.trial import DHP_SCORES

__all__ = ["register_criterion", "list_criteria", "score_channels", "score_network",
           "ScoreSettings", "Scored", "DHP_SCORES"]

Scores = dict[str, torch.Tensor]


@dataclass(frozen=True)
class ScoreSettings:
    """The knobs every data-driven criterion shares (the training protocol's optimiser)."""

    num_batches: int = 2
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    aux_weight: float = DEFAULT_AUX_WEIGHT  # the training loss's (hetero.outputs)
    logits: str | None = None

    def loss(self, output, y: torch.Tensor) -> torch.Tensor:
        """The training loss of a network's output (its primary logits and aux heads)."""
        return classification_loss(output, y, aux_weight=self.aux_weight, key=self.logits)[0]


@dataclass
class Scored:
    """One score vector per unit (key: its first layer) and the network they were taken on.

    ``generated`` holds, for ``dhp``, every layer's hypernetwork-generated weight (full width).
    """

    scores: Scores
    network: nn.Module
    generated: dict[str, torch.Tensor] = field(default_factory=dict)
    info: dict[str, float] = field(default_factory=dict)  # settings the criterion chose


@dataclass
class _Context:
    """What a criterion works with: the network, its graph and configuration."""

    model: nn.Module
    config: ChannelConfig
    graph: ChannelGraph
    batches: Iterable
    settings: ScoreSettings
    widths: list[int] = field(init=False)   # every unit's width at the configuration

    def __post_init__(self) -> None:
        self.widths = self.graph.unit_widths(dict(self.config.widths), self.config.in_channels)

    def key(self, unit: int) -> str:
        return self.graph.units[unit].layers[0]

    def free(self) -> list[int]:
        return [u.id for u in self.graph.free_units()]


Criterion = Callable[..., Scored]
_CRITERIA: dict[str, Criterion] = {}


def register_criterion(name: str) -> Callable[[Criterion], Criterion]:
    """Decorator: ``fn(ctx: _Context, **options) -> Scored``."""

    def decorate(fn: Criterion) -> Criterion:
        _CRITERIA[name] = fn
        return fn

    return decorate


def list_criteria() -> tuple[str, ...]:
    return tuple(sorted(_CRITERIA))


def score_network(criterion: str, model: nn.Module, config: ChannelConfig, batches: Iterable, *,
                  num_batches: int = 2, lr: float = 0.1, momentum: float = 0.9,
                  weight_decay: float = 5e-4, seed: int = 0,
                  aux_weight: float = DEFAULT_AUX_WEIGHT, logits: str | None = None,
                  **options) -> Scored:
    """Score every channel of every unit of ``config`` and return the scored network too.

    ``model`` is the network built from ``config``; ``batches`` yields (x, y) on its device.
    ``options`` go to the criterion (``dhp``: ``embedding_dim``, ``dhp_score``; ``bn``:
    ``l1_penalty``). Scores are 1-D float CPU tensors, one per channel of the widened unit.
    """
    from hetero.models.factory import check_config

    if criterion not in _CRITERIA:
        raise ValueError(f"unknown importance criterion {criterion!r}; "
                         f"choose one of {', '.join(list_criteria())}")
    if num_batches < 1:
        raise ValueError(f"num_batches must be >= 1, got {num_batches}")
    graph = check_config(config)
    _check_model_matches(model, config)
    ctx = _Context(model, config, graph, batches,
                   ScoreSettings(num_batches, lr, momentum, weight_decay, aux_weight, logits))
    device = device_of(model)
    # A private RNG stream: scoring is reproducible per seed and leaves the caller's RNG alone.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        scored = _CRITERIA[criterion](ctx, **options)
    scored.scores = _checked_scores(scored.scores, config, criterion)
    return scored


def score_channels(criterion: str, model: nn.Module, config: ChannelConfig, batches: Iterable,
                   **kwargs) -> Scores:
    """Just the scores of :func:`score_network`."""
    return score_network(criterion, model, config, batches, **kwargs).scores


# ---------------------------------------------------------------------------- shared helpers
def _check_model_matches(model: nn.Module, config: ChannelConfig) -> None:
    for name, width in config.widths.items():
        got = out_channels(model.get_submodule(name))
        if got != width:
            raise ValueError(
                f"layer {name!r}: the model has {got} output channels but the configuration "
                f"says {width}; build the model with create_model(config=...)")


def _checked_scores(scores: Scores, config: ChannelConfig, criterion: str) -> Scores:
    out = {}
    for unit in config.units():
        vector = torch.as_tensor(scores.get(unit[0], [])).detach().float().flatten().cpu()
        if vector.numel() != config.widths[unit[0]] or not torch.isfinite(vector).all():
            raise RuntimeError(f"criterion {criterion!r} gave a bad score vector for unit "
                               f"{unit[0]!r} (length {vector.numel()}, expected "
                               f"{config.widths[unit[0]]}, or non-finite values)")
        out[unit[0]] = vector
    return out


def _take_batches(batches: Iterable, count: int) -> list:
    taken = list(itertools.islice(iter(batches), count))
    if not taken:
        raise ValueError("scoring needs at least one (x, y) mini-batch; `batches` was empty")
    return taken


def _training_copy(model: nn.Module) -> nn.Module:
    # Train mode (batch statistics) on a copy: the caller's weights and BN buffers stay as given.
    return copy.deepcopy(model).train()


class _SGD:
    """torch.optim.SGD's update (momentum, no dampening, coupled weight decay), inlined: its
    first step imports torch._dynamo (seconds), which would dominate a 2-step search."""

    def __init__(self, params: Iterable[torch.Tensor], settings: ScoreSettings) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.settings = settings
        self.buffers: dict[int, torch.Tensor] = {}

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        s = self.settings
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            d_p = p.grad.add(p, alpha=s.weight_decay) if s.weight_decay else p.grad
            if s.momentum:
                buf = self.buffers.get(i)
                d_p = self.buffers[i] = d_p.clone() if buf is None else buf.mul_(s.momentum).add_(d_p)
            p.add_(d_p, alpha=-s.lr)


def _segments(ctx: _Context, op: NormOp) -> list[tuple[int, slice]]:
    """(unit, channel slice) of every unit a norm op carries, at the current widths."""
    widths, out, start = ctx.widths, [], 0
    for unit in op.layout.units:
        out.append((unit, slice(start, start + widths[unit])))
        start += widths[unit]
    return out


def _norms(ctx: _Context) -> dict[str, NormOp]:
    """Every batch norm once (a norm called twice carries the same units)."""
    return {op.path: op for op in ctx.graph.ops if isinstance(op, NormOp) and op.layout.repeat == 1}


# ---------------------------------------------------------------------------- l1
@register_criterion("l1")
def _l1_scores(ctx: _Context) -> Scored:
    def filter_norms(layer: str) -> torch.Tensor:
        return ctx.model.get_submodule(layer).weight.detach().abs().flatten(1).sum(1)

    scores = {ctx.key(u): sum(filter_norms(layer) for layer in ctx.graph.units[u].layers)
              for u in ctx.free()}
    return Scored(scores, ctx.model)


# ---------------------------------------------------------------------------- bn
@register_criterion("bn")
def _bn_scores(ctx: _Context, l1_penalty: float = 1e-4) -> Scored:
    # Network slimming (Liu et al. 2017) shortened to `num_batches` steps, the same search budget
    # as dhp; from BN's init (gamma = 1) the scores therefore stay close to 1.
    net = _training_copy(ctx.model)
    norms = _norms(ctx)
    gammas = [net.get_submodule(path).weight for path in norms]
    optimizer = _SGD(net.parameters(), ctx.settings)
    for x, y in _take_batches(ctx.batches, ctx.settings.num_batches):
        optimizer.zero_grad()
        loss = ctx.settings.loss(net(x), y) + l1_penalty * sum(g.abs().sum() for g in gammas)
        loss.backward()
        optimizer.step()
    totals = {u: torch.zeros(ctx.widths[u], device=device_of(net)) for u in ctx.free()}
    for path, op in norms.items():
        gamma = net.get_submodule(path).weight.detach().abs()
        for unit, span in _segments(ctx, op):
            if unit in totals:
                totals[unit] += gamma[span]
    carried = {unit for op in norms.values() for unit in op.layout.units}
    # A unit no batch norm carries (an SE squeeze, a linear head) gets a neutral score: the
    # median BN score, so the global threshold neither favours nor drops it wholesale.
    neutral = torch.cat([totals[u] for u in totals if u in carried]).median() if carried else 1.0
    scores = {ctx.key(u): (v if u in carried else torch.full_like(v, float(neutral)))
              for u, v in totals.items()}
    return Scored(scores, net)


# ---------------------------------------------------------------------------- gate
@register_criterion("gate")
def _gate_scores(ctx: _Context) -> Scored:
    net = _training_copy(ctx.model).requires_grad_(False)
    device, widths = device_of(net), ctx.widths
    gates = {u: torch.ones(widths[u], device=device, requires_grad=True) for u in ctx.free()}
    handles = _install_gates(ctx, net, gates)
    totals = {u: torch.zeros_like(g) for u, g in gates.items()}
    try:
        for x, y in _take_batches(ctx.batches, ctx.settings.num_batches):
            grads = torch.autograd.grad(ctx.settings.loss(net(x), y), list(gates.values()),
                                        allow_unused=True)
            for unit, grad in zip(gates, grads, strict=True):
                if grad is not None:
                    totals[unit] += grad.abs()
    finally:
        for handle in handles:
            handle.remove()
    return Scored({ctx.key(u): v for u, v in totals.items()}, net)


def _install_gates(ctx: _Context, net: nn.Module, gates: dict[int, torch.Tensor]) -> list:
    """Gate after every batch norm (a gate before a BN would be normalised away in train mode);
    units no BN carries are gated at their layers' outputs."""
    handles, carried, device = [], set(), device_of(net)
    for path, op in _norms(ctx).items():
        parts = [gates[u] if u in gates else torch.ones(ctx.widths[u], device=device)
                 for u in op.layout.units]
        carried.update(op.layout.units)
        handles.append(net.get_submodule(path).register_forward_hook(_gate_hook(parts)))
    for unit, gate in gates.items():
        if unit not in carried:
            for layer in ctx.graph.units[unit].layers:
                handles.append(net.get_submodule(layer).register_forward_hook(_gate_hook([gate])))
    return handles


def _gate_hook(parts: list[torch.Tensor]):
    def hook(_module, _inputs, output):
        gate = torch.cat(parts)
        return output * gate.view(1, -1, *([1] * (output.dim() - 2)))

    return hook


# ---------------------------------------------------------------------------- dhp
@register_criterion("dhp")
def _dhp_scores(ctx: _Context, embedding_dim: int | None = None, dhp_score: str = "grad"
                ) -> Scored:
    if dhp_score not in DHP_SCORES:
        raise ValueError(f"dhp_score must be one of {DHP_SCORES}, got {dhp_score!r}")
    net = _training_copy(ctx.model)
    m = embedding_dim or _default_embedding_dim(net, ctx.config.layers)
    _check_hypernet_size(net, ctx.config.layers, m)
    hyper = _HyperNetwork(net, ctx, m)
    weight_names = {f"{name}.weight" for name in ctx.config.layers}
    others = [p for n, p in net.named_parameters() if n not in weight_names]
    optimizer = _SGD([*hyper.parameters(), *others], ctx.settings)
    taken = _take_batches(ctx.batches, ctx.settings.num_batches)
    for step, (x, y) in enumerate(taken):
        optimizer.zero_grad()
        output = torch.func.functional_call(net, hyper.weights(), (x,))
        ctx.settings.loss(output, y).backward()
        if step < len(taken) - 1:  # the score is the last batch's gradient, taken before its step
            optimizer.step()
    with torch.no_grad():
        generated = {name[: -len(".weight")]: w.detach() for name, w in hyper.weights().items()}
    scores = {ctx.key(u): (z.grad.abs() if dhp_score == "grad" and z.grad is not None
                           else z.detach().abs() if dhp_score == "latent"
                           else torch.zeros_like(z))
              for u, z in hyper.latents.items() if not ctx.graph.units[u].fixed}
    return Scored(scores, net, generated, {"embedding_dim": m})


class _HyperNetwork:
    """DHP: one latent vector per unit and one hypernetwork per prunable conv/linear."""

    def __init__(self, net: nn.Module, ctx: _Context, m: int) -> None:
        device = device_of(net)
        generator = torch.Generator().manual_seed(torch.initial_seed())
        self.graph = ctx.graph
        self.layers = {name: net.get_submodule(name) for name in ctx.config.layers}
        # Fixed units (the image, the outputs) have latents too; they are trained, never scored.
        self.latents = {u.id: torch.randn(w, generator=generator).to(device).requires_grad_()
                        for u, w in zip(ctx.graph.units, ctx.widths, strict=True)}
        self.hypers = {name: _init_hypernet(layer.weight.shape, m, generator, device)
                       for name, layer in self.layers.items()}

    def parameters(self) -> list[torch.Tensor]:
        return [*self.latents.values(), *(t for h in self.hypers.values() for t in h.values())]

    def _input_latent(self, name: str, layer: nn.Module) -> torch.Tensor:
        if isinstance(layer, nn.Conv2d) and layer.groups > 1:
            # A grouped filter sees only its group's channels: a constant input latent.
            return torch.ones(layer.in_channels // layer.groups, device=layer.weight.device)
        layout = self.graph.module_inputs[name]
        z = torch.cat([self.latents[u] for u in layout.units])
        return z.repeat_interleave(layout.repeat) if layout.repeat > 1 else z

    def weights(self) -> dict[str, torch.Tensor]:
        out = {}
        for name, layer in self.layers.items():
            z_out = self.latents[self.graph.layer_unit[name]]
            w = _generate_weight(layer.weight.shape, self._input_latent(name, layer), z_out,
                                 self.hypers[name])
            out[f"{name}.weight"] = w
        return out


# Without an explicit embedding size m, dhp uses the reference's default 8, or its ImageNet
# setting 2 where m = 8 would need more than this many hypernetwork parameters (a 2x RegNet or
# ResNet-50); the size used is reported with the result.
HYPERNET_BUDGET = 50_000_000
# A hypernetwork beyond this many parameters does not fit a typical machine (4 bytes each, plus
# its gradient and momentum): refuse with the fix instead of running out of memory.
HYPERNET_LIMIT = 400_000_000


def _hypernet_size(net: nn.Module, layers: Iterable[str], m: int) -> int:
    size = 0
    for name in layers:
        shape = net.get_submodule(name).weight.shape
        k2 = math.prod(shape[2:])
        size += shape[0] * shape[1] * (1 + 2 * m + k2 + m * k2)
    return size


def _default_embedding_dim(net: nn.Module, layers: Iterable[str]) -> int:
    return 8 if _hypernet_size(net, layers, 8) <= HYPERNET_BUDGET else 2


def _check_hypernet_size(net: nn.Module, layers: Iterable[str], m: int) -> None:
    size = _hypernet_size(net, layers, m)
    if size > HYPERNET_LIMIT:
        raise ValueError(f"the dhp hypernetwork would have {size / 1e6:.0f} M parameters at "
                         f"embedding_dim {m}: use embedding_dim 2 (the paper's ImageNet setting), "
                         "a smaller width multiplier, or criterion gate/bn/l1")


def _init_hypernet(shape: torch.Size, m: int, generator: torch.Generator,
                   device: torch.device) -> dict[str, torch.Tensor]:
    """b0, W1, b1, W2, b2 with DHP's hyperfan-in init (generated weights: var ~ 1/fan_in)."""
    cout, cin = shape[0], shape[1]
    k2 = math.prod(shape[2:])
    bound2 = math.sqrt(3.0 / (m * cin * k2))
    tensors = {
        "b0": torch.zeros(cin, cout),
        "w1": (torch.rand(cin, cout, m, generator=generator) * 2 - 1) * math.sqrt(3.0),
        "b1": torch.zeros(cin, cout, m),
        "w2": (torch.rand(cin, cout, k2, m, generator=generator) * 2 - 1) * bound2,
        "b2": torch.zeros(cin, cout, k2),
    }
    return {k: t.to(device).requires_grad_() for k, t in tensors.items()}


def _generate_weight(shape: torch.Size, z_in: torch.Tensor, z_out: torch.Tensor,
                     hyper: dict[str, torch.Tensor]) -> torch.Tensor:
    """K = W2 @ (W0[..., None] * W1 + b1) + b2, W0 = z_in (x) z_out + b0; as (Cout, Cin, k, k)."""
    w0 = torch.outer(z_in, z_out) + hyper["b0"]
    embedding = w0.unsqueeze(-1) * hyper["w1"] + hyper["b1"]
    kernel = torch.einsum("iokm,iom->iok", hyper["w2"], embedding) + hyper["b2"]
    return kernel.permute(1, 0, 2).reshape(shape)
