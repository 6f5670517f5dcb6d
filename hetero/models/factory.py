"""The model factory: names -> networks, configurations and costs, all through the channel graph.

Above the registry (:mod:`hetero.models._registry`) and the graph (:mod:`hetero.graph`):

- :func:`resolve_model` turns what a user typed (``resnet56``, ``regnet``, ``torchvision:NAME``,
  ``package.module:callable``) into a registered family and variant;
- :func:`graph_of` builds that family's network at its regular widths once per input shape and
  derives its channel graph (cached);
- :func:`uniform` / :func:`widen` give :class:`~hetero.config.ChannelConfig` s;
  :func:`create_model` builds the network of a configuration (module surgery, one init);
  :func:`complexity` counts it.
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from hetero.complexity import Complexity
from hetero.config import ChannelConfig, make_divisible
from hetero.graph import ChannelGraph, derive_graph
from hetero.models._registry import ALIASES, FamilySpec, family_names, get_family, register_family
from hetero.models.common import init_weights
from hetero.surgery import conv_like, replace_module, resize
from hetero.trial import MAX_WIDTH_MULT

__all__ = ["resolve_model", "family_spec", "graph_of", "base_config", "uniform", "widen",
           "create_model", "complexity", "register_model", "list_models", "MAX_WIDTH_MULT"]

TORCHVISION = "torchvision:"
EXTERNAL_VARIANT = "default"
# An option every family takes, read by the channel graph and never passed to a builder: module
# paths left unpruned and opaque (derive_graph's ``exclude``).
EXCLUDE = "exclude"


# ---------------------------------------------------------------------------- names
def family_spec(name: str) -> FamilySpec:
    """The registered family for ``name``, registering torchvision and user models on demand."""
    import hetero.models  # noqa: F401  (built-in families register by being imported)

    if ":" in name:
        try:
            return get_family(name)
        except ValueError:
            _register_external(name)
    return get_family(name)


def resolve_model(name: str, variant: str | int | None = None,
                  input_size: int | None = None) -> tuple[str, str]:
    """(family, variant) for a family or short name; an explicit ``variant`` that contradicts a
    short name's own is an error. Without one, the family picks its default for ``input_size``."""
    spec = family_spec(name)
    if name in ALIASES:
        implied = ALIASES[name][1]
        if variant is not None and implied is not None and str(variant) != implied:
            raise ValueError(f"{name} implies variant {implied}, but variant {variant} was given")
        variant = variant if variant is not None else implied
    return spec.name, spec.variant_for(variant, input_size)


def list_models() -> dict[str, tuple[str, ...]]:
    """Family name -> its variants (built-in and registered)."""
    import hetero.models  # noqa: F401

    return {name: get_family(name).variants for name in family_names()}


def register_model(name: str, builder: Callable[..., nn.Module], *, description: str = ""
                   ) -> None:
    """Make a user network searchable: ``builder(num_classes=...)`` returns an ``nn.Module``.

    ``hetero.register_model("mynet", lambda num_classes: MyNet(num_classes))``; then
    ``uniform("mynet")``, ``create_model("mynet")`` and ``--model mynet`` in the CLI and sweeps
    (for sweeps, register it in a module that the workers import, or use ``package.module:fn``).
    """
    register_family(name, variants=(EXTERNAL_VARIANT,), default_variant=EXTERNAL_VARIANT,
                    description=description or f"user model {name}")(_external_builder(builder))


def _register_external(name: str) -> None:
    options = {}
    if name.startswith(TORCHVISION):
        arch = name[len(TORCHVISION):]
        builder, what = _torchvision_builder(arch), "torchvision model"
        if _takes_aux_logits(arch):  # googlenet, inception_v3: their heads can be left out
            options = {"aux_logits": (True, False)}
    else:
        builder, what = _import_callable(name), "user model"
    register_family(name, variants=(EXTERNAL_VARIANT,), default_variant=EXTERNAL_VARIANT,
                    options=options, description=f"{what} {name}")(_external_builder(builder))


def _takes_aux_logits(arch: str) -> bool:
    """Whether the torchvision network's class takes ``aux_logits`` (has auxiliary heads)."""
    import inspect
    import sys

    import torchvision

    module = sys.modules[torchvision.models.get_model_builder(arch).__module__]
    return any(isinstance(c, type) and issubclass(c, nn.Module)
               and "aux_logits" in inspect.signature(c.__init__).parameters
               for c in vars(module).values())


def _torchvision_builder(arch: str) -> Callable[..., nn.Module]:
    import torchvision

    available = torchvision.models.list_models(module=torchvision.models)
    if arch not in available:
        raise ValueError(f"torchvision has no classification model {arch!r}; choose one of "
                         f"{', '.join(sorted(available))}")
    return lambda num_classes, **options: torchvision.models.get_model(
        arch, weights=None, num_classes=num_classes, **options)


def _import_callable(name: str) -> Callable[..., nn.Module]:
    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        raise ValueError(f"model {name!r}: write a user model as package.module:callable")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"model {name!r}: cannot import {module_name!r} ({exc}); put its folder "
                         "on PYTHONPATH or install it") from exc
    builder = getattr(module, attr, None)
    if not callable(builder):
        raise ValueError(f"model {name!r}: {module_name} has no callable {attr!r}")
    return builder


def _external_builder(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Adapt ``builder(num_classes=...)`` to the family signature; a network built for RGB gets
    its first conv rebuilt for other input channels (e.g. the 1-channel digits)."""

    def build(variant: str, *, num_classes: int, input_size: int, in_channels: int,
              **options: Any) -> nn.Module:
        name = getattr(builder, "__qualname__", type(builder).__name__)
        try:
            model = builder(num_classes=num_classes, **options)
        except SystemExit as exc:   # the user's code, not a CLI: exiting is no answer
            raise ValueError(f"the model builder {name} called sys.exit({exc.code}) instead of "
                             "returning an nn.Module") from None
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise ValueError(f"the model builder {name}(num_classes={num_classes}) failed "
                             f"({type(exc).__name__}: {first}): it must take num_classes= and "
                             "return an nn.Module") from exc
        if not isinstance(model, nn.Module):
            raise ValueError(f"the model builder returned {type(model).__name__}, not an nn.Module")
        path, first = next(((p, m) for p, m in model.named_modules()
                            if isinstance(m, nn.Conv2d)), ("", None))
        if first is not None and first.in_channels != in_channels and first.groups == 1:
            replace_module(model, path, conv_like(first, in_channels, first.out_channels, 1))
        return model

    return build


# ---------------------------------------------------------------------------- graphs
def _build_base(family: str, variant: str, num_classes: int, input_size: int, in_channels: int,
                options: tuple[tuple[str, Any], ...]) -> nn.Module:
    spec = family_spec(family)
    return spec.builder(variant, num_classes=num_classes, input_size=input_size,
                        in_channels=in_channels, **{k: v for k, v in options if k != EXCLUDE})


@functools.lru_cache(maxsize=64)
def _graph(family: str, variant: str, num_classes: int, input_size: int, in_channels: int,
           options: tuple[tuple[str, Any], ...]) -> ChannelGraph:
    model = _build_base(family, variant, num_classes, input_size, in_channels, options)
    return derive_graph(model, torch.zeros(1, in_channels, input_size, input_size),
                        exclude=dict(options).get(EXCLUDE, ()))


def _key(config: ChannelConfig) -> tuple:
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in config.options.items()}
    return (config.family, config.variant, config.num_classes, config.input_size,
            config.in_channels, tuple(sorted(options.items())))


def _resolve(spec: FamilySpec, options: dict[str, Any]) -> dict[str, Any]:
    """The family's options, plus ``exclude`` (a comma-separated text or a sequence of module
    paths) as a sorted tuple when given."""
    options = dict(options)
    exclude = options.pop(EXCLUDE, None)
    resolved = spec.resolve_options(options)
    if isinstance(exclude, str):
        exclude = [p for p in exclude.replace(" ", "").split(",") if p]
    if exclude:
        resolved[EXCLUDE] = tuple(sorted(set(exclude)))
    return resolved


def graph_of(config: ChannelConfig) -> ChannelGraph:
    """The channel graph of ``config``'s network (derived once per family, variant and input)."""
    return _graph(*_key(config))


# ---------------------------------------------------------------------------- configurations
def base_config(family: str, variant: str | None = None, *, num_classes: int = 10,
                input_size: int = 32, in_channels: int = 3, **options: Any) -> ChannelConfig:
    """The family's regular-width configuration, read off its network's channel graph."""
    spec = family_spec(family)
    variant = spec.variant_for(variant, input_size)
    resolved = _resolve(spec, options)
    graph = _graph(spec.name, variant, num_classes, input_size, in_channels,
                   tuple(sorted(resolved.items())))
    widths = {layer: graph.units[u].width for layer, u in graph.layer_unit.items()}
    if not widths:
        raise ValueError(f"{spec.name}: the network has no prunable conv or linear layer")
    return ChannelConfig(family=spec.name, variant=variant, num_classes=num_classes,
                         input_size=input_size, in_channels=in_channels, widths=widths,
                         groups=graph.coupled_groups, options=resolved)


def uniform(family: str, variant: str | int | None = None, width_mult: float = 1.0, *,
            num_classes: int = 10, input_size: int = 32, in_channels: int = 3, divisor: int = 1,
            **options: Any) -> ChannelConfig:
    """The family's regular-width configuration, scaled uniformly by ``width_mult``."""
    name, variant = resolve_model(family, variant, input_size)
    base = base_config(name, variant, num_classes=num_classes, input_size=input_size,
                       in_channels=in_channels, **options)
    return base if width_mult == 1.0 and divisor == 1 else widen(base, width_mult, divisor=divisor)


def widen(config: ChannelConfig, mult: float, *, divisor: int = 1) -> ChannelConfig:
    """Every width times ``mult``, truncated as the paper's code (``int(c * mult)``), or rounded
    to a multiple of ``divisor``; a grouped conv's unit stays a multiple of its group width.
    Input channels and the class count are not widths and stay."""
    if not 0 < mult <= MAX_WIDTH_MULT:
        raise ValueError(f"width multiplier must be in (0, {MAX_WIDTH_MULT:g}], got {mult}")
    if divisor < 1:
        raise ValueError(f"divisor must be >= 1, got {divisor}")
    graph = graph_of(config)
    widths = {layer: _scale(config.widths[layer], mult, graph.units[unit].step(divisor))
              for layer, unit in graph.layer_unit.items()}
    return config.replace(widths=widths)


def _scale(width: int, mult: float, step: int) -> int:
    if step > 1:
        return make_divisible(width * mult, step)
    # int() truncation as in the paper's code; the epsilon keeps 16 * 1.5 = 24 exact.
    return max(1, int(math.floor(width * mult + 1e-9)))


def check_config(config: ChannelConfig) -> ChannelGraph:
    """The graph of ``config``'s network, after checking the configuration fits it."""
    graph = graph_of(config)
    if graph.layers != config.layers:
        missing = [n for n in graph.layers if n not in config.widths]
        extra = [n for n in config.widths if n not in graph.layer_unit]
        raise ValueError(f"{config.family}/{config.variant}: the configuration's layers do not "
                         f"match the network (missing {missing[:5]}, unexpected {extra[:5]})")
    if graph.coupled_groups != config.groups:
        raise ValueError(f"{config.family}/{config.variant}: the configuration's coupled groups "
                         "do not match the network's channel graph")
    for layer, unit in graph.layer_unit.items():
        step = graph.units[unit].step()
        if config.widths[layer] % step:
            raise ValueError(f"layer {layer!r}: width {config.widths[layer]} is not a multiple "
                             f"of its group width {step}")
    return graph


# ---------------------------------------------------------------------------- networks
def create_model(name: str | None = None, *, config: ChannelConfig | None = None,
                 variant: str | int | None = None, **config_kw: Any) -> nn.Module:
    """The network of ``config`` (or of the family's uniform configuration), freshly initialised.

    ``create_model("resnet_cifar", config=cfg)`` or ``create_model("resnet56", num_classes=100)``.
    """
    if config is None and name is None:
        raise ValueError("create_model needs a model name or a config")
    if config is not None and name is not None and family_spec(name).name != config.family:
        raise ValueError(f"model {name!r} does not match the configuration's family "
                         f"{config.family!r}")
    # Deriving the channel graph builds and traces networks the first time a process sees a
    # configuration; that must not draw from the caller's random stream, or the same seed would
    # initialise differently depending on what the process built before (a reused worker).
    with torch.random.fork_rng(devices=[]):
        config = config if config is not None else uniform(name, variant, **config_kw)
        graph = check_config(config)
    model = _build_base(*_key(config))
    resize(model, graph, graph.unit_widths(dict(config.widths), config.in_channels))
    init_weights(model)
    return model


def complexity(config: ChannelConfig, accounting: str = "macs") -> Complexity:
    """FLOPs and params of the network described by ``config`` (no forward pass)."""
    graph = graph_of(config)
    return graph.cost(graph.unit_widths(dict(config.widths), config.in_channels), accounting)
