"""Module surgery: rebuild a network's convs, batch norms and linears at new channel widths.

A network's constructor rarely takes per-layer widths (torchvision's never does), so hetero
builds a network at its regular widths and then replaces every ``nn.Conv2d``, ``nn.BatchNorm``
and ``nn.Linear`` whose channel counts differ from the target, reading the counts off the channel
graph. The same walk slices the kept channels out of a wider network's weights (``inherit``):
a conv keeps its output channels' rows and, for every unit it reads, that unit's kept channels at
the unit's offset in the input (a concatenation is sliced piece by piece).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from hetero.graph import ChannelGraph, Layout

__all__ = ["resize", "inherit_weights", "layout_indices", "replace_module", "conv_like",
           "linear_like", "out_channels", "device_of"]


def resize(model: nn.Module, graph: ChannelGraph, widths: Sequence[int]) -> nn.Module:
    """Replace every module whose channel counts differ at unit ``widths`` (in place)."""
    grouped = graph.group_widths
    for path, out_layout in graph.modules.items():
        module = model.get_submodule(path)
        cout = graph.channels(out_layout, widths)
        if isinstance(module, nn.Conv2d):
            cin = graph.channels(graph.module_inputs[path], widths)
            groups = cin // grouped[path] if path in grouped else 1
            if (cin, cout, groups) != (module.in_channels, module.out_channels, module.groups):
                replace_module(model, path, conv_like(module, cin, cout, groups))
        elif isinstance(module, nn.Linear):
            cin = graph.channels(graph.module_inputs[path], widths)
            if (cin, cout) != (module.in_features, module.out_features):
                replace_module(model, path, linear_like(module, cin, cout))
        elif isinstance(module, nn.modules.batchnorm._BatchNorm) and cout != module.num_features:
            replace_module(model, path, _norm_like(module, cout))
    for path, (layout, dim) in graph.params.items():
        tensor = _tensor(model, path)
        size = graph.channels(layout, widths)
        if tensor.shape[dim] != size:
            _put_tensor(model, path, _resized(tensor.detach(), dim, size))
    return model


def _tensor(model: nn.Module, path: str) -> torch.Tensor:
    owner, _, name = path.rpartition(".")
    return getattr(model.get_submodule(owner) if owner else model, name)


def _put_tensor(model: nn.Module, path: str, value: torch.Tensor) -> None:
    """Replace the parameter or buffer at ``path`` by ``value`` (same kind, same grad flag)."""
    owner, _, name = path.rpartition(".")
    module = model.get_submodule(owner) if owner else model
    old = getattr(module, name)
    if isinstance(old, nn.Parameter):
        setattr(module, name, nn.Parameter(value, requires_grad=old.requires_grad))
    else:
        module.register_buffer(name, value, persistent=name not in module._non_persistent_buffers_set)


def _resized(values: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """A per-channel parameter at ``size`` channels along ``dim``: a constant initialisation
    (a layer scale's 1e-6) stays that constant; other values repeat cyclically."""
    index = torch.arange(size, device=values.device) % values.shape[dim]
    return values.index_select(dim, index).clone()


def replace_module(model: nn.Module, path: str, new: nn.Module) -> None:
    """Put ``new`` where the submodule at ``path`` is (in place)."""
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, new)


def _factory(module: nn.Module) -> dict:
    param = next(module.parameters(), None)
    return {"device": param.device, "dtype": param.dtype} if param is not None else {}


def conv_like(conv: nn.Conv2d, cin: int, cout: int, groups: int) -> nn.Conv2d:
    """A new, freshly initialised conv like ``conv`` (its class, kernel, stride, padding,
    dilation, bias, padding mode, device and dtype) from ``cin`` to ``cout`` channels in
    ``groups`` groups."""
    return _like(conv, nn.Conv2d(cin, cout, conv.kernel_size, conv.stride, conv.padding,
                                 conv.dilation, groups, conv.bias is not None, conv.padding_mode,
                                 **_factory(conv)))


def linear_like(linear: nn.Linear, cin: int, cout: int) -> nn.Linear:
    """A new, freshly initialised linear like ``linear`` (its class, bias, device and dtype)
    from ``cin`` to ``cout`` features."""
    return _like(linear, nn.Linear(cin, cout, linear.bias is not None, **_factory(linear)))


def _norm_like(norm: nn.Module, channels: int) -> nn.Module:
    torch_class = next(c for c in type(norm).__mro__ if c.__module__.startswith("torch.nn"))
    return _like(norm, torch_class(channels, norm.eps, norm.momentum, norm.affine,
                                   norm.track_running_stats, **_factory(norm)))


def _like(old: nn.Module, new: nn.Module) -> nn.Module:
    """``new`` (built by its torch class) as ``old``'s class: a user subclass whose constructor
    takes other arguments keeps its own attributes, extra parameters, buffers and children."""
    if type(old) is type(new):
        return new
    for store in ("_parameters", "_buffers", "_modules"):
        mine = getattr(new, store)
        for name, value in getattr(old, store).items():
            mine.setdefault(name, value)
    for key, value in vars(old).items():
        new.__dict__.setdefault(key, value)
    new.__class__ = type(old)
    return new


def out_channels(module: nn.Conv2d | nn.Linear) -> int:
    """A conv's output channels or a linear's output features."""
    return module.out_channels if isinstance(module, nn.Conv2d) else module.out_features


def device_of(model: nn.Module) -> torch.device:
    """The device of ``model``'s (first) parameter."""
    return next(model.parameters()).device


def layout_indices(layout: Layout, kept: Mapping[int, torch.Tensor],
                   wide_widths: Sequence[int]) -> torch.Tensor:
    """Indices into a wide tensor's channel dimension of the channels a layout keeps."""
    parts, offset = [], 0
    for unit in layout.units:
        parts.append(kept[unit] + offset)
        offset += wide_widths[unit]
    index = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)
    if layout.repeat > 1:
        index = (index[:, None] * layout.repeat + torch.arange(layout.repeat)).flatten()
    return index


@torch.no_grad()
def inherit_weights(derived: nn.Module, source: nn.Module, graph: ChannelGraph,
                    kept: Mapping[int, torch.Tensor], wide_widths: Sequence[int]) -> None:
    """Copy the kept slices of ``source`` (the wide network) into ``derived`` (in place).

    ``kept`` maps every unit to the sorted wide channel indices it keeps (all of a fixed unit's).
    Modules the graph does not resize (none of their channels change) are copied whole.
    """
    grouped = graph.group_widths
    sliced: set[str] = set()
    for path, (layout, dim) in graph.params.items():
        tensor = _tensor(source, path)
        index = layout_indices(layout, kept, wide_widths).to(tensor.device)
        _assign(_tensor(derived, path), tensor.index_select(dim, index), path)
        sliced.add(path)
    for path, out_layout in graph.modules.items():
        src, dst = source.get_submodule(path), derived.get_submodule(path)
        out_index = layout_indices(out_layout, kept, wide_widths)
        in_index = (None if path in grouped or path not in graph.module_inputs
                    else layout_indices(graph.module_inputs[path], kept, wide_widths))
        for name, tensor in list(src.named_parameters(recurse=False)) + list(
                src.named_buffers(recurse=False)):
            value = tensor
            if tensor.dim() >= 1 and name != "num_batches_tracked":
                value = value.index_select(0, out_index.to(tensor.device))
                if in_index is not None and name == "weight" and tensor.dim() >= 2:
                    value = value.index_select(1, in_index.to(tensor.device))
            _assign(getattr(dst, name), value, f"{path}.{name}")
            sliced.add(f"{path}.{name}")
    for name, tensor in list(source.named_parameters()) + list(source.named_buffers()):
        if name not in sliced:
            _assign(derived.get_parameter(name) if name in dict(derived.named_parameters())
                    else derived.get_buffer(name), tensor, name)


def _assign(target: torch.Tensor, value: torch.Tensor, name: str) -> None:
    if target.shape != value.shape:
        raise ValueError(f"{name}: the kept slice has shape {tuple(value.shape)} but the derived "
                         f"network expects {tuple(target.shape)}; are the source network, the "
                         "kept channels and the configuration from the same shrink?")
    target.copy_(value)
