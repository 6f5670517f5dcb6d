"""Build the derived network: freshly initialised (the paper's "trained from scratch"), or with
the kept slices of the widened network's weights (``inherit``).

Slicing follows the layer convention of :mod:`hetero.models.common`: each layer's conv keeps
output channels ``kept[layer]`` and input channels ``kept[its wiring input]`` (all image
channels for the stem); a depthwise conv is sliced on its output channels only; BN affine
parameters and running statistics follow the outputs; the classifier keeps the input columns of
``kept[classifier_input]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from hetero.config import ChannelConfig
from hetero.models.registry import create_model, get_family

__all__ = ["materialize"]


def materialize(config: ChannelConfig, *, source: nn.Module | None = None,
                kept: Mapping[str, Sequence[int]] | None = None) -> nn.Module:
    """The network of ``config``; with ``source`` (the widened model) and ``kept``, its weights."""
    model = create_model(config=config)
    if source is None and kept is None:
        return model
    if source is None or kept is None:
        raise ValueError("weight inheritance needs both source= (the widened model) and kept= "
                         "(ShrinkResult.kept); pass neither for a fresh initialisation")
    device = next(source.parameters()).device
    model.to(device)
    family = get_family(config.family)
    wiring = family.wiring(config)
    index = {name: _indices(name, kept, config, device) for name in config.layers}
    covered: set[str] = set()
    with torch.no_grad():
        for name in config.layers:
            inputs = None if wiring[name] is None else index[wiring[name]]
            covered |= _copy_conv_bn(name, model, source, index[name], inputs)
        head = family.classifier_input(config)
        covered |= _copy_classifier(family.classifier, model, source, index[head], head)
    _check_everything_inherited(model, covered)
    return model


def _indices(name: str, kept: Mapping[str, Sequence[int]], config: ChannelConfig,
             device: torch.device) -> torch.Tensor:
    if name not in kept:
        raise ValueError(f"kept has no entry for layer {name!r}; pass ShrinkResult.kept")
    indices = torch.as_tensor(list(kept[name]), dtype=torch.long, device=device)
    if indices.numel() != config.widths[name]:
        raise ValueError(f"layer {name!r}: kept lists {indices.numel()} channels but the "
                         f"configuration's width is {config.widths[name]}")
    return indices


def _copy_conv_bn(name: str, model: nn.Module, source: nn.Module, outputs: torch.Tensor,
                  inputs: torch.Tensor | None) -> set[str]:
    src, dst = source.get_submodule(name), model.get_submodule(name)
    weight = _slice(src.conv.weight, 0, outputs, name)
    conv = src.conv
    depthwise = conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels
    if depthwise:
        if inputs is not None and not torch.equal(inputs, outputs):
            raise ValueError(f"depthwise layer {name!r} keeps channels that differ from its "
                             "input layer's: a depthwise conv must share a unit with its input")
    elif src.conv.groups != 1:
        raise ValueError(f"layer {name!r}: cannot slice a grouped conv (groups="
                         f"{src.conv.groups}); use a fresh initialisation (inherit off)")
    elif inputs is not None:
        weight = _slice(weight, 1, inputs, name)
    _assign(dst.conv.weight, weight, f"{name}.conv.weight")
    for attr in ("weight", "bias", "running_mean", "running_var"):
        _assign(getattr(dst.bn, attr), _slice(getattr(src.bn, attr), 0, outputs, name),
                f"{name}.bn.{attr}")
    dst.bn.num_batches_tracked.copy_(src.bn.num_batches_tracked)
    return {f"{name}.conv.weight", f"{name}.bn.weight", f"{name}.bn.bias"}


def _copy_classifier(path: str, model: nn.Module, source: nn.Module, channels: torch.Tensor,
                     head: str) -> set[str]:
    src, dst = source.get_submodule(path), model.get_submodule(path)
    wide_channels = source.get_submodule(head).conv.out_channels
    if src.in_features % wide_channels:
        raise ValueError(f"classifier {path!r} reads {src.in_features} features, not a multiple "
                         f"of {head!r}'s {wide_channels} channels: cannot map kept channels")
    # A flattened (C, H, W) map puts each channel's positions next to each other.
    positions = src.in_features // wide_channels
    columns = (channels[:, None] * positions + torch.arange(positions, device=channels.device))
    _assign(dst.weight, _slice(src.weight, 1, columns.flatten(), path), f"{path}.weight")
    if src.bias is not None:
        _assign(dst.bias, src.bias, f"{path}.bias")
    return {f"{path}.weight", f"{path}.bias"}


def _slice(tensor: torch.Tensor, dim: int, indices: torch.Tensor, name: str) -> torch.Tensor:
    if indices.numel() and int(indices.max()) >= tensor.shape[dim]:
        raise ValueError(f"layer {name!r}: kept index {int(indices.max())} is out of range for "
                         f"{tensor.shape[dim]} channels of the source model (dim {dim})")
    return tensor.index_select(dim, indices)


def _assign(target: torch.Tensor, value: torch.Tensor, name: str) -> None:
    if target.shape != value.shape:
        raise ValueError(f"{name}: the kept slice has shape {tuple(value.shape)} but the derived "
                         f"model expects {tuple(target.shape)}; are source, kept and config "
                         "from the same shrink?")
    target.copy_(value)


def _check_everything_inherited(model: nn.Module, covered: set[str]) -> None:
    # A parameter outside the layer convention would silently stay random: refuse instead.
    missing = [n for n, _ in model.named_parameters() if n not in covered]
    if missing:
        raise ValueError(f"cannot inherit parameters {missing[:5]}: they are outside the layer "
                         "convention (ConvBN per layer + classifier); extend materialize() for "
                         "this family or train from scratch (inherit off)")
