"""Channel-importance criteria: how much each channel of a widened network matters.

A criterion scores every *unit* of a configuration (a coupled group, or a lone layer) as one
vector, one score per channel, so that the layers meeting at a residual add are later kept or
dropped together. Scores are raw and un-normalised: the shrinker applies one global threshold.

Criteria (register more with :func:`register_criterion`):

- ``dhp``: the paper's. Convs are re-parameterised by per-unit latent vectors and hypernetworks
  (DHP); after ``num_batches`` SGD steps the score is |dL/dz| of the last mini-batch.
- ``gate``: a multiplicative gate (init 1) per unit on every ConvBN output of its layers; the
  score is |dL/dg| summed over ``num_batches`` mini-batches. No weights are updated.
- ``bn``: network slimming in miniature: ``num_batches`` SGD steps with an L1 penalty on the BN
  scales (``l1_penalty``, default 1e-4), then the sum of |gamma| over the unit's layers.
- ``l1``: the L1 norm of each output filter, summed over the unit's layers (no data).

Scoring never changes the caller's model: criteria that train or run batches work on a deep copy.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hetero.config import ChannelConfig

__all__ = ["register_criterion", "list_criteria", "score_channels", "ScoreSettings"]

Scores = dict[str, torch.Tensor]


@dataclass(frozen=True)
class ScoreSettings:
    """The knobs every data-driven criterion shares (the training protocol's optimiser)."""

    num_batches: int = 2
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4


Criterion = Callable[..., Scores]
_CRITERIA: dict[str, Criterion] = {}


def register_criterion(name: str) -> Callable[[Criterion], Criterion]:
    """Decorator: ``fn(model, config, batches, settings, **options) -> {unit key: scores}``."""

    def decorate(fn: Criterion) -> Criterion:
        _CRITERIA[name] = fn
        return fn

    return decorate


def list_criteria() -> tuple[str, ...]:
    return tuple(sorted(_CRITERIA))


def score_channels(criterion: str, model: nn.Module, config: ChannelConfig,
                   batches: Iterable, *, num_batches: int = 2, lr: float = 0.1,
                   momentum: float = 0.9, weight_decay: float = 5e-4, seed: int = 0,
                   **options) -> Scores:
    """Score every channel of every unit of ``config`` (key: the unit's first layer name).

    ``model`` is the network built from ``config``; ``batches`` yields (x, y) on its device.
    ``options`` go to the criterion (``dhp``: ``embedding_dim``; ``bn``: ``l1_penalty``).
    Returns 1-D float CPU tensors, one score per channel of the widened unit.
    """
    if criterion not in _CRITERIA:
        raise ValueError(f"unknown importance criterion {criterion!r}; "
                         f"choose one of {', '.join(list_criteria())}")
    if num_batches < 1:
        raise ValueError(f"num_batches must be >= 1, got {num_batches}")
    _check_model_matches(model, config)
    settings = ScoreSettings(num_batches, lr, momentum, weight_decay)
    device = _device_of(model)
    # A private RNG stream: scoring is reproducible per seed and leaves the caller's RNG alone.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        scores = _CRITERIA[criterion](model, config, batches, settings, **options)
    return _checked_scores(scores, config, criterion)


# ---------------------------------------------------------------------------- shared helpers
def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _conv_bn(model: nn.Module, layer: str) -> nn.Module:
    return model.get_submodule(layer)


def _unit_of(config: ChannelConfig) -> dict[str, str]:
    """Layer name -> its unit's key (the unit's first layer name)."""
    return {name: unit[0] for unit in config.units() for name in unit}


def _is_depthwise(conv: nn.Conv2d) -> bool:
    return conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels


def _check_model_matches(model: nn.Module, config: ChannelConfig) -> None:
    for name, width in config.widths.items():
        conv = _conv_bn(model, name).conv
        if conv.out_channels != width:
            raise ValueError(
                f"layer {name!r}: the model's conv has {conv.out_channels} output channels but "
                f"the configuration says {width}; build the model with create_model(config=...)"
            )


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


def _sum_per_unit(config: ChannelConfig, per_layer: Callable[[str], torch.Tensor]) -> Scores:
    return {unit[0]: sum(per_layer(name) for name in unit) for unit in config.units()}


# ---------------------------------------------------------------------------- l1
@register_criterion("l1")
def _l1_scores(model, config, batches, settings) -> Scores:
    def filter_norms(name: str) -> torch.Tensor:
        weight = _conv_bn(model, name).conv.weight.detach()
        return weight.abs().flatten(1).sum(1)

    return _sum_per_unit(config, filter_norms)


# ---------------------------------------------------------------------------- bn
@register_criterion("bn")
def _bn_scores(model, config, batches, settings, l1_penalty: float = 1e-4) -> Scores:
    # Network slimming (Liu et al. 2017) shortened to `num_batches` steps, the same search budget
    # as dhp; from BN's init (gamma = 1) the scores therefore stay close to 1.
    net = _training_copy(model)
    gammas = [_conv_bn(net, name).bn.weight for name in config.layers]
    optimizer = _SGD(net.parameters(), settings)
    for x, y in _take_batches(batches, settings.num_batches):
        optimizer.zero_grad()
        penalty = sum(g.abs().sum() for g in gammas)
        loss = F.cross_entropy(net(x), y) + l1_penalty * penalty
        loss.backward()
        optimizer.step()
    return _sum_per_unit(config, lambda name: _conv_bn(net, name).bn.weight.detach().abs())


# ---------------------------------------------------------------------------- gate
@register_criterion("gate")
def _gate_scores(model, config, batches, settings) -> Scores:
    net = _training_copy(model).requires_grad_(False)
    device = _device_of(net)
    gates = {unit[0]: torch.ones(config.widths[unit[0]], device=device, requires_grad=True)
             for unit in config.units()}
    unit_of = _unit_of(config)
    handles = [_conv_bn(net, name).register_forward_hook(_gate_hook(gates[unit_of[name]]))
               for name in config.layers]
    totals = {key: torch.zeros_like(g) for key, g in gates.items()}
    try:
        for x, y in _take_batches(batches, settings.num_batches):
            grads = torch.autograd.grad(F.cross_entropy(net(x), y), list(gates.values()),
                                        allow_unused=True)
            for key, grad in zip(gates, grads, strict=True):
                if grad is not None:
                    totals[key] += grad.abs()
    finally:
        for handle in handles:
            handle.remove()
    return totals


def _gate_hook(gate: torch.Tensor):
    # On the ConvBN output, i.e. before any residual add, so every branch of a stream is gated.
    def hook(_module, _inputs, output):
        return output * gate.view(1, -1, 1, 1)

    return hook


# ---------------------------------------------------------------------------- dhp
# Above this many hypernetwork parameters the default embedding dim drops from 8 to 2, the
# paper's ImageNet setting (a 2x ResNet-50 with m = 8 would need ~1e9 parameters).
HYPERNET_BUDGET = 50_000_000


@register_criterion("dhp")
def _dhp_scores(model, config, batches, settings, embedding_dim: int | None = None) -> Scores:
    net = _training_copy(model)
    hyper = _HyperNetwork(net, config, embedding_dim or _default_embedding_dim(net, config))
    weight_names = {f"{name}.conv.weight" for name in config.layers}
    others = [p for n, p in net.named_parameters() if n not in weight_names]
    optimizer = _SGD([*hyper.parameters(), *others], settings)
    taken = _take_batches(batches, settings.num_batches)
    for step, (x, y) in enumerate(taken):
        optimizer.zero_grad()
        logits = torch.func.functional_call(net, hyper.weights(), (x,))
        F.cross_entropy(logits, y).backward()
        if step < len(taken) - 1:  # the score is the last batch's gradient, taken before its step
            optimizer.step()
    return hyper.latent_gradients()


_IMAGE, _DEPTHWISE = "<image>", "<depthwise>"  # latent keys that are not layer names


class _HyperNetwork:
    """DHP: one latent vector per unit (+ the image's) and one hypernetwork per conv."""

    def __init__(self, net: nn.Module, config: ChannelConfig, m: int) -> None:
        device = _device_of(net)
        generator = torch.Generator().manual_seed(torch.initial_seed())
        self.convs = {name: _conv_bn(net, name).conv for name in config.layers}
        self.unit_of = _unit_of(config)
        self.inputs = _dhp_inputs(self.convs, config)
        keys = [unit[0] for unit in config.units()]
        latents = {key: torch.randn(config.widths[key], generator=generator) for key in keys}
        latents[_IMAGE] = torch.randn(config.in_channels, generator=generator)  # never pruned
        latents[_DEPTHWISE] = torch.ones(1)  # constant: a depthwise filter sees one channel
        self.latents = {k: z.to(device).requires_grad_(k != _DEPTHWISE) for k, z in latents.items()}
        self.hypers = {name: _init_hypernet(conv, m, generator, device)
                       for name, conv in self.convs.items()}

    def parameters(self) -> list[torch.Tensor]:
        latents = [z for z in self.latents.values() if z.requires_grad]
        return latents + [t for h in self.hypers.values() for t in h.values()]

    def weights(self) -> dict[str, torch.Tensor]:
        return {f"{name}.conv.weight": _generate_weight(
                    conv, self.latents[self.inputs[name]], self.latents[self.unit_of[name]],
                    self.hypers[name])
                for name, conv in self.convs.items()}

    def latent_gradients(self) -> Scores:
        return {key: z.grad.abs() if z.grad is not None else torch.zeros_like(z)
                for key, z in self.latents.items() if key not in (_IMAGE, _DEPTHWISE)}


def _dhp_inputs(convs: dict[str, nn.Conv2d], config: ChannelConfig) -> dict[str, str]:
    """Layer -> the latent key of its conv's input channels (image, depthwise or a unit)."""
    from hetero.models.registry import get_family

    unit_of = _unit_of(config)
    wiring = get_family(config.family).wiring(config)
    inputs: dict[str, str] = {}
    for name, conv in convs.items():
        if _is_depthwise(conv):
            inputs[name] = _DEPTHWISE
            continue
        if conv.groups != 1:
            raise ValueError(f"layer {name!r}: dhp handles plain and depthwise convs, not "
                             f"groups={conv.groups}; use criterion gate, bn or l1")
        source = wiring[name]
        expected = config.in_channels if source is None else config.widths[source]
        if conv.in_channels != expected:
            raise ValueError(f"layer {name!r}: conv reads {conv.in_channels} channels but its "
                             f"wiring input has {expected}; fix the family's wiring()")
        inputs[name] = _IMAGE if source is None else unit_of[source]
    return inputs


def _hypernet_size(conv: nn.Conv2d, m: int) -> int:
    cout, cin, kh, kw = conv.weight.shape
    k2 = kh * kw
    return cin * cout * (1 + 2 * m + k2 + m * k2)


def _default_embedding_dim(net: nn.Module, config: ChannelConfig) -> int:
    size = sum(_hypernet_size(_conv_bn(net, name).conv, 8) for name in config.layers)
    return 8 if size <= HYPERNET_BUDGET else 2


def _init_hypernet(conv: nn.Conv2d, m: int, generator: torch.Generator,
                   device: torch.device) -> dict[str, torch.Tensor]:
    """b0, W1, b1, W2, b2 with DHP's hyperfan-in init (generated weights: var ~ 1/fan_in)."""
    cout, cin, kh, kw = conv.weight.shape
    k2 = kh * kw
    bound2 = math.sqrt(3.0 / (m * cin * k2))
    tensors = {
        "b0": torch.zeros(cin, cout),
        "w1": (torch.rand(cin, cout, m, generator=generator) * 2 - 1) * math.sqrt(3.0),
        "b1": torch.zeros(cin, cout, m),
        "w2": (torch.rand(cin, cout, k2, m, generator=generator) * 2 - 1) * bound2,
        "b2": torch.zeros(cin, cout, k2),
    }
    return {k: t.to(device).requires_grad_() for k, t in tensors.items()}


def _generate_weight(conv: nn.Conv2d, z_in: torch.Tensor, z_out: torch.Tensor,
                     hyper: dict[str, torch.Tensor]) -> torch.Tensor:
    """K = W2 @ (W0[..., None] * W1 + b1) + b2, W0 = z_in (x) z_out + b0; as (Cout, Cin, k, k)."""
    cout, cin, kh, kw = conv.weight.shape
    w0 = torch.outer(z_in, z_out) + hyper["b0"]
    embedding = w0.unsqueeze(-1) * hyper["w1"] + hyper["b1"]
    kernel = torch.einsum("iokm,iom->iok", hyper["w2"], embedding) + hyper["b2"]
    return kernel.permute(1, 0, 2).reshape(cout, cin, kh, kw)
