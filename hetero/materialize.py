"""Build the derived network: freshly initialised (the paper's "trained from scratch"), or
starting from the kept slices of the scored wide network (``inherit``), or from the weights the
DHP hypernetwork generates from the kept latents (``hyper``, the reference's
``set_parameters(calc_weight=True)``). Slicing follows the channel graph
(:func:`hetero.surgery.inherit_weights`): concatenations, groups and flattened classifiers
included.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from hetero.config import ChannelConfig
from hetero.surgery import device_of, inherit_weights, out_channels

__all__ = ["materialize"]


def materialize(config: ChannelConfig, *, source: nn.Module | None = None,
                kept: Mapping[str, Sequence[int]] | None = None,
                generated: Mapping[str, torch.Tensor] | None = None) -> nn.Module:
    """The network of ``config``; with ``source`` (the wide network) and ``kept`` (layer ->
    kept channel indices, :attr:`ShrinkResult.kept`), its kept weights; with ``generated`` (layer
    -> full-width weight, from DHP) those replace the source's conv/linear weights first."""
    from hetero.models.factory import check_config, create_model

    model = create_model(config=config)
    if source is None and kept is None:
        return model
    if source is None or kept is None:
        raise ValueError("weight inheritance needs both source= (the wide network) and kept= "
                         "(ShrinkResult.kept); pass neither for a fresh initialisation")
    graph = check_config(config)
    if generated:
        source = _with_weights(source, generated)
    wide = graph.unit_widths({layer: out_channels(source.get_submodule(layer))
                              for layer in graph.layer_unit}, config.in_channels)
    device = device_of(source)
    units = _kept_units(graph, kept, config, wide, device)
    model.to(device)
    inherit_weights(model, source, graph, units, wide)
    return model


def _with_weights(source: nn.Module, generated: Mapping[str, torch.Tensor]) -> nn.Module:
    net = copy.deepcopy(source)
    with torch.no_grad():
        for layer, weight in generated.items():
            net.get_submodule(layer).weight.copy_(weight)
    return net


def _kept_units(graph, kept: Mapping[str, Sequence[int]], config: ChannelConfig,
                wide: list[int], device: torch.device) -> dict[int, torch.Tensor]:
    units = {u.id: torch.arange(wide[u.id], device=device) for u in graph.units}
    for unit in graph.free_units():
        layer = unit.layers[0]
        if layer not in kept:
            raise ValueError(f"kept has no entry for layer {layer!r}; pass ShrinkResult.kept")
        index = torch.as_tensor(list(kept[layer]), dtype=torch.long, device=device)
        if index.numel() != config.widths[layer]:
            raise ValueError(f"layer {layer!r}: kept lists {index.numel()} channels but the "
                             f"configuration's width is {config.widths[layer]}")
        if index.numel() and int(index.max()) >= wide[unit.id]:
            raise ValueError(f"layer {layer!r}: kept index {int(index.max())} is out of range "
                             f"for the source network's {wide[unit.id]} channels")
        units[unit.id] = index
    return units
