"""Complexity measured over a real forward pass with module hooks (a test helper).

An independent check of the channel graph's analytic counts (the tests compare the two for every
family). Same accountings: convs and linears per call; BN 2 FLOPs per output
element per call; an activation module's elements counted once, from its last call (a shared
ReLU in a torchvision-style block is counted at its post-add output, as the paper's counter does).
"""

from __future__ import annotations

import torch
from torch import nn

from hetero.complexity import ACCOUNTINGS, Complexity
from hetero.graph import PAPER_ACTIVATIONS

__all__ = ["hook_complexity"]


def hook_complexity(model: nn.Module, input_shape: tuple[int, ...],
                    accounting: str = "macs") -> Complexity:
    """Run one forward pass at batch size 1 and count FLOPs/params with hooks."""
    if accounting not in ACCOUNTINGS:
        raise ValueError(f"unknown accounting {accounting!r}; choose one of {ACCOUNTINGS}")
    paper = accounting == "paper"
    flops = {"compute": 0, "bn": 0}
    act_elems: dict[nn.Module, int] = {}

    def on_conv(m: nn.Conv2d, _inp, out):
        k = m.kernel_size[0] * m.kernel_size[1]
        flops["compute"] += k * (m.in_channels // m.groups) * out.numel()

    def on_linear(m: nn.Linear, _inp, out):
        flops["compute"] += m.in_features * out.numel()

    def on_bn(_m, _inp, out):
        flops["bn"] += 2 * out.numel()

    def on_act(m, _inp, out):
        act_elems[m] = out.numel()  # last call wins: once per module

    handles = []
    for m in model.modules():
        hook = (on_conv if isinstance(m, nn.Conv2d) else on_linear if isinstance(m, nn.Linear)
                else on_bn if isinstance(m, nn.BatchNorm2d) else on_act if isinstance(m, PAPER_ACTIVATIONS)
                else None)
        if hook is not None:
            handles.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()

    params = 0
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            params += sum(p.numel() for p in m.parameters(recurse=False))
        elif isinstance(m, nn.BatchNorm2d) and paper:
            params += sum(p.numel() for p in m.parameters(recurse=False))
    total = flops["compute"] + (flops["bn"] + sum(act_elems.values()) if paper else 0)
    return Complexity(flops=total, params=params)
