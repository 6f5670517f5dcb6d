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
- ``random``: the control. Every unit draws a random keep level ``p ~ U(0, 1)`` and every
  channel of it the score ``1 + p - r / n`` (``r`` its rank in a random order of the unit's ``n``
  channels), so under one global threshold each unit keeps a share ``p - t`` of its channels
  (clipped to its floor and its full width): a random LW-DNA at the target, widths spread
  between the floors and the widened network, seeded. (Independent per-channel scores would not
  do: under one global threshold every unit would keep about the same share, which is close to
  the uniform network, not a random configuration.) No data, no training.

Scoring never changes the caller's model: criteria that train work on a deep copy, which
:func:`score_network` returns (the "scored network" whose kept slices ``inherit`` starts from).
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from hetero.config import ChannelConfig
from hetero.graph import ChannelGraph, NormOp
from hetero.outputs import DEFAULT_AUX_WEIGHT, classification_loss
from hetero.surgery import device_of, out_channels
from hetero.trial import DHP_GROUP_LATENTS, DHP_GROUPED_INPUTS, DHP_SCORES

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


# ---------------------------------------------------------------------------- random
@register_criterion("random")
def _random_scores(ctx: _Context) -> Scored:
    # score_network seeded the global generator with the trial's seed: draws are reproducible.
    scores = {}
    for u in ctx.free():
        n = ctx.widths[u]
        level = torch.rand(()).item()
        rank = torch.empty(n)
        rank[torch.randperm(n)] = torch.arange(n, dtype=torch.float32)
        scores[ctx.key(u)] = 1.0 + level - rank / n
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
def _dhp_scores(ctx: _Context, embedding_dim: int | None = None, dhp_score: str = "grad",
                grouped_input: str = "learned", group_latent: str = "shared",
                last_step: bool = True) -> Scored:
    """``grouped_input``, ``group_latent`` and ``last_step`` default to the reference code's
    choices (see hetero.trial.TrialSpec's dhp_* settings for what each changes)."""
    for name, value, allowed in (("dhp_score", dhp_score, DHP_SCORES),
                                 ("grouped_input", grouped_input, DHP_GROUPED_INPUTS),
                                 ("group_latent", group_latent, DHP_GROUP_LATENTS)):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    net = _training_copy(ctx.model)
    m = embedding_dim or _default_embedding_dim(net, ctx.config.layers)
    steps = ctx.settings.num_batches - (0 if last_step else 1)
    _check_hypernet_memory(net, ctx.config.layers, m, momentum=steps > 1)
    hyper = _HyperNetwork(net, ctx, m, grouped_input=grouped_input, group_latent=group_latent)
    weight_names = {f"{name}.weight" for name in ctx.config.layers}
    others = [p for n, p in net.named_parameters() if n not in weight_names]
    # Each layer's hypernetwork is stepped on its own, as soon as its gradient is complete.
    optimizer = _SGD([*hyper.latent_parameters(), *others], ctx.settings)
    taken = _take_batches(ctx.batches, ctx.settings.num_batches)
    # The score is the last batch's gradient; its step (the reference's second SGD step)
    # leaves that gradient as it is and moves the latents and hypernetworks.
    updates = [step < len(taken) - 1 or last_step for step in range(len(taken))]
    for step, (x, y) in enumerate(taken):
        optimizer.zero_grad()
        hyper.backward(net, x, y, loss=ctx.settings.loss, update=updates[step],
                      keep_momentum=any(updates[step + 1:]))
        if updates[step]:
            optimizer.step()
    with torch.no_grad():
        generated = {name[: -len(".weight")]: w.detach() for name, w in hyper.weights().items()}
    scores = {ctx.key(u): hyper.channel_scores(u, dhp_score)
              for u in hyper.latents if not ctx.graph.units[u].fixed}
    return Scored(scores, net, generated, {"embedding_dim": m})


class _HyperNetwork:
    """DHP: one latent vector per unit and one hypernetwork per prunable conv/linear.

    ``group_latent="shared"``: a unit that moves in whole groups (a grouped conv's, RegNet's
    bottleneck) has one latent element per group, repeated over the group's channels, as the
    reference's RegNet; ``"channel"``: one element per channel. ``grouped_input="learned"``: a
    grouped or depthwise conv's input latent is its own learnable N(0,1) vector of length
    in/groups, as the reference's; ``"ones"``: a constant vector of ones.
    """

    def __init__(self, net: nn.Module, ctx: _Context, m: int, *, grouped_input: str = "learned",
                 group_latent: str = "shared") -> None:
        device = device_of(net)
        generator = torch.Generator().manual_seed(torch.initial_seed())
        self.graph = ctx.graph
        self.layers = {name: net.get_submodule(name) for name in ctx.config.layers}
        # Elements per latent entry: a shared group latent repeats each entry over its group.
        self.spans = {u.id: (u.granularity if group_latent == "shared" and not u.fixed else 1)
                      for u in ctx.graph.units}
        # Fixed units (the image, the outputs) have latents too; they are trained, never scored.
        self.latents = {u.id: torch.randn(w // self.spans[u.id], generator=generator)
                        .to(device).requires_grad_()
                        for u, w in zip(ctx.graph.units, ctx.widths, strict=True)}
        self.grouped_inputs = {
            name: (torch.randn(width, generator=generator).to(device).requires_grad_()
                   if grouped_input == "learned" else torch.ones(width, device=device))
            for name, width in ctx.graph.group_widths.items() if name in self.layers}
        self.hypers = {name: _init_hypernet(layer.weight.shape, m, generator, device)
                       for name, layer in self.layers.items()}
        self.optimizers = {name: _SGD(h.values(), ctx.settings) for name, h in self.hypers.items()}

    def parameters(self) -> list[torch.Tensor]:
        return [*self.latent_parameters(), *(t for h in self.hypers.values() for t in h.values())]

    def latent_parameters(self) -> list[torch.Tensor]:
        grouped = [z for z in self.grouped_inputs.values() if z.requires_grad]
        return [*self.latents.values(), *grouped]

    def latent(self, unit: int) -> torch.Tensor:
        """The unit's latent, one element per channel."""
        z, span = self.latents[unit], self.spans[unit]
        return z.repeat_interleave(span) if span > 1 else z

    def channel_scores(self, unit: int, dhp_score: str) -> torch.Tensor:
        """One score per channel. A shared group entry's score is spread evenly over its
        channels, so the group (which the shrinker scores by its channels' sum) counts as one
        latent element against the global threshold, as in the reference."""
        z, span = self.latents[unit], self.spans[unit]
        if dhp_score == "latent":
            values = z.detach().abs()
        else:
            values = z.grad.abs() if z.grad is not None else torch.zeros_like(z)
        return values.repeat_interleave(span) / span if span > 1 else values

    def _input_latent(self, name: str) -> torch.Tensor:
        if name in self.grouped_inputs:
            # A grouped filter sees only its group's channels.
            return self.grouped_inputs[name]
        layout = self.graph.module_inputs[name]
        z = torch.cat([self.latent(u) for u in layout.units])
        return z.repeat_interleave(layout.repeat) if layout.repeat > 1 else z

    def _layer_latents(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        z_out = self.latent(self.graph.layer_unit[name])
        return self._input_latent(name), z_out

    def weights(self) -> dict[str, torch.Tensor]:
        return {f"{name}.weight": _generate_weight(layer.weight.shape, *self._layer_latents(name),
                                                   self.hypers[name])
                for name, layer in self.layers.items()}

    def backward(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, *, loss: Callable,
                 update: bool, keep_momentum: bool) -> None:
        """Gradients of one batch's loss and (``update``) an SGD step of every hypernetwork,
        generating and differentiating one layer's weight at a time (method.md 5.11): memory
        holds the hypernetwork and one layer's graph and gradient, not the whole network's
        (momentum only when ``keep_momentum``: another step follows). The latents' gradients
        are bitwise those of one backward through every generated weight."""
        with torch.no_grad():
            leaves = {name: w.requires_grad_() for name, w in self.weights().items()}
        loss(torch.func.functional_call(net, leaves, (x,)), y).backward()
        latent_grads = {}
        for name in self.layers:
            grad = leaves.pop(f"{name}.weight").grad
            if grad is not None:
                latent_grads[name] = self._layer_backward(name, grad)
            optimizer = self.optimizers[name]
            if update:
                optimizer.step()
            if not keep_momentum:
                optimizer.buffers.clear()
            optimizer.zero_grad()
        # The latents last, through their own small graph, each layer's gradients entering
        # where its generation would: the engine then sums them in the same order as it does
        # through the whole hypernetwork (latest layer first), so the scores stay bitwise.
        handovers = [_LatentGrads.apply(*self._layer_latents(name), *grads)
                     for name, grads in latent_grads.items()]
        if handovers:
            torch.autograd.backward(handovers)

    def _layer_backward(self, name: str, grad: torch.Tensor
                        ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """dL/dW of one layer into its hypernetwork's gradients; returns dL/dz_in, dL/dz_out."""
        learns = name not in self.grouped_inputs or self.grouped_inputs[name].requires_grad
        with torch.no_grad():
            z_in, z_out = (z.detach() for z in self._layer_latents(name))
        z_in.requires_grad_(learns)
        z_out.requires_grad_()
        _generate_weight(self.layers[name].weight.shape, z_in, z_out,
                         self.hypers[name]).backward(grad)
        return z_in.grad, z_out.grad


class _LatentGrads(torch.autograd.Function):
    """Passes a layer's precomputed dL/dz_in and dL/dz_out back into the latents' graph."""

    @staticmethod
    def forward(ctx, z_in, z_out, grad_in, grad_out):
        ctx.grads = grad_in, grad_out
        return z_out.new_zeros(())

    @staticmethod
    def backward(ctx, _):
        return (*ctx.grads, None, None)


# Without an explicit embedding size m, dhp uses the reference's default 8, or its ImageNet
# setting 2 where m = 8 would need more than this many hypernetwork parameters (a 2x RegNet or
# ResNet-50); the size used is reported with the result.
HYPERNET_BUDGET = 50_000_000
GIB = 2 ** 30


def _layer_hypernet_size(shape: torch.Size, m: int) -> int:
    k2 = math.prod(shape[2:])
    return shape[0] * shape[1] * (1 + 2 * m + k2 + m * k2)


def _hypernet_size(net: nn.Module, layers: Iterable[str], m: int) -> int:
    return sum(_layer_hypernet_size(net.get_submodule(name).weight.shape, m) for name in layers)


def _default_embedding_dim(net: nn.Module, layers: Iterable[str]) -> int:
    return 8 if _hypernet_size(net, layers, 8) <= HYPERNET_BUDGET else 2


def _dhp_memory_bytes(net: nn.Module, layers: Iterable[str], m: int, *, momentum: bool) -> int:
    """What dhp scoring allocates beyond the network and its activations (bench/dhp_memory.py
    measures it): the hypernetwork (twice with its momentum, kept when two or more steps are
    taken), the largest layer's graph, gradient and step state, and the generated weights with
    their gradients."""
    shapes = [net.get_submodule(name).weight.shape for name in layers]
    hyper = sum(_layer_hypernet_size(shape, m) for shape in shapes)
    largest = max((_layer_hypernet_size(shape, m) for shape in shapes), default=0)
    generated = sum(math.prod(shape) for shape in shapes)
    elements = hyper * (2 if momentum else 1) + 3 * largest + 2 * generated
    return elements * torch.empty(0).element_size()


def _check_hypernet_memory(net: nn.Module, layers: Iterable[str], m: int, *, momentum: bool,
                           free: int | None = None) -> None:
    """Refuse, before allocating it, a hypernetwork the device cannot hold (``free``: the
    device's free bytes, read from it when not given; where that is unknown: no check)."""
    layers = list(layers)
    need = _dhp_memory_bytes(net, layers, m, momentum=momentum)
    device = device_of(net)
    free = _free_memory(device) if free is None else free
    if free is None or need <= free:
        return
    fixes = ["embedding_dim 2 (the paper's ImageNet setting)"] if m > 2 else []
    fixes += ["a device with more free memory", "a smaller width multiplier",
              "criterion gate/bn/l1"]
    raise ValueError(
        f"dhp scoring needs at least {need / GIB:.1f} GiB for its hypernetwork "
        f"({_hypernet_size(net, layers, m) / 1e6:.0f} M parameters at embedding_dim {m}"
        f"{', with momentum' if momentum else ''}) and generated weights, but the "
        f"{device.type} has {free / GIB:.1f} GiB free: use {', '.join(fixes[:-1])} or {fixes[-1]}")


def _free_memory(device: torch.device) -> int | None:
    """Bytes the device can still allocate, None where that is unknown."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        # What PyTorch's allocator holds but has not handed out is free to this process too.
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return _mem_available() if device.type == "cpu" else None


def _mem_available() -> int | None:
    """The kernel's estimate of memory available to new allocations (Linux), in bytes."""
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return None
    line = next((ln for ln in lines if ln.startswith("MemAvailable:")), None)
    return int(line.split()[1]) * 1024 if line else None


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
