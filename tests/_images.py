"""Helpers for tests that check augmentation on real images: back to pixels, and what kind of
crop of its original an augmented image is."""

from __future__ import annotations

import torch


def to_pixels(data, x: torch.Tensor, levels: int = 255) -> torch.Tensor:
    """Undo ``data``'s normalization: integer pixel levels (255 for images, 16 for digits)."""
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    return torch.round((x * std + mean) * levels).to(torch.uint8)


def crop_kind(result: torch.Tensor, original: torch.Tensor, pad: int) -> str | None:
    """'plain' or 'flip' if ``result`` is a crop of the zero-padded (mirrored) original."""
    size = original.shape[-1]
    padded = torch.nn.functional.pad(original, (pad,) * 4)
    for kind, source in (("plain", padded), ("flip", padded.flip(-1))):
        for dy in range(2 * pad + 1):
            for dx in range(2 * pad + 1):
                if torch.equal(result, source[:, dy:dy + size, dx:dx + size]):
                    return kind
    return None
