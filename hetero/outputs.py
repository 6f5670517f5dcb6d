"""What a network returns, read one way everywhere: the class logits and its auxiliary heads.

A network may return a tensor, or a tuple, list, dict or NamedTuple of them (torchvision's
``googlenet`` and ``inception_v3`` return ``(logits, aux...)`` in training). The rule, used by the
trainer, the scoring criteria and evaluation alike:

- the **primary logits** are the output named ``key`` (a dict key or NamedTuple field) when one
  is given, else the first tensor leaf (depth first, in the output's own order);
- every other leaf of the primary's shape ``(batch, classes)`` is an **auxiliary head**: training adds its
  cross-entropy times ``aux_weight`` (torchvision's GoogLeNet and Inception heads: 0.3, the
  GoogLeNet paper's weight); leaves of other shapes (features, embeddings) are not trained on.

The channel graph keeps every output's channels fixed, and costs the eval-mode forward only, so
training-only heads never count in a network's FLOPs.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["leaves", "primary_logits", "split_logits", "classification_loss", "DEFAULT_AUX_WEIGHT"]

DEFAULT_AUX_WEIGHT = 0.3


def leaves(output: Any, prefix: str = "") -> list[tuple[str, torch.Tensor]]:
    """Every tensor in ``output`` with its name (``"aux1"``, ``"0"``, ``"heads.1"``), in order."""
    if isinstance(output, torch.Tensor):
        return [(prefix, output)]
    if isinstance(output, dict):
        items = output.items()
    elif isinstance(output, tuple) and hasattr(output, "_fields"):
        items = zip(output._fields, output, strict=True)
    elif isinstance(output, (tuple, list)):
        items = ((str(i), item) for i, item in enumerate(output))
    else:
        return []
    found = []
    for name, item in items:
        found.extend(leaves(item, f"{prefix}.{name}" if prefix else str(name)))
    return found


def primary_logits(output: Any, key: str | None = None) -> torch.Tensor:
    """The class logits of ``output`` (the leaf named ``key``, else the first)."""
    return split_logits(output, key)[0]


def split_logits(output: Any, key: str | None = None
                 ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(primary logits, auxiliary heads) of ``output``: see the module doc for the rule."""
    found = leaves(output)
    if not found:
        raise ValueError(f"the network returned {type(output).__name__}, not a tensor or a "
                         "tuple, list, dict or NamedTuple of tensors")
    if key is None:
        index = 0
    else:
        names = [name for name, _ in found]
        if key not in names:
            raise ValueError(f"the network's outputs are {', '.join(names)}: no output {key!r} "
                             "(set logits to one of them)")
        index = names.index(key)
    primary = found[index][1]
    aux = [t for i, (_, t) in enumerate(found) if i != index and t.shape == primary.shape]
    return primary, aux


def classification_loss(output: Any, y: torch.Tensor, *, aux_weight: float = DEFAULT_AUX_WEIGHT,
                        key: str | None = None, label_smoothing: float = 0.0
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, primary logits): cross-entropy of the primary logits plus ``aux_weight`` times
    that of every auxiliary head."""
    logits, aux = split_logits(output, key)
    loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
    for head in aux if aux_weight else ():
        loss = loss + aux_weight * F.cross_entropy(head.float(), y,
                                                   label_smoothing=label_smoothing)
    return loss, logits
