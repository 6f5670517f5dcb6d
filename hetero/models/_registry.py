"""Model families by name: builders registered by being imported (timm's ``_registry``).

A family is a builder function that returns a plain ``nn.Module`` at the family's regular widths:
``builder(variant, *, num_classes, input_size, in_channels, **options)``. Nothing else about the
architecture is declared by hand: hetero derives the channel graph, the coupled groups and the
cost of every op from the module itself (:mod:`hetero.graph`), and builds other widths by
rebuilding layers (:mod:`hetero.surgery`). Register with :func:`register_family`; look up with
:func:`get_family`.

This module is a leaf: it imports nothing from hetero and no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FamilySpec", "register_family", "get_family", "family_names", "ALIASES"]

Builder = Callable[..., Any]


@dataclass(frozen=True)
class FamilySpec:
    """One registered family: its builder and what users may type to reach it."""

    name: str
    builder: Builder
    variants: tuple[str, ...]
    default_variant: str | Callable[[int], str]   # or a function of the input size
    aliases: Mapping[str, str | None] = field(default_factory=dict)  # short name -> variant
    options: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)  # first = default
    description: str = ""

    def variant_for(self, variant: str | int | None, input_size: int | None) -> str:
        if variant is None:
            default = self.default_variant
            v = default(input_size or 32) if callable(default) else default
        else:
            v = str(variant)
        if v not in self.variants:
            raise ValueError(f"{self.name} has no variant {v!r}; choose one of "
                             f"{', '.join(self.variants)}")
        return v

    def resolve_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(options) - set(self.options)
        if unknown:
            raise ValueError(f"{self.name} has no option(s) {sorted(unknown)}; "
                             f"known: {sorted(self.options) or 'none'}")
        merged = {key: choices[0] for key, choices in self.options.items()}
        merged.update(options)
        for key, value in merged.items():
            if value not in self.options[key]:
                raise ValueError(f"{self.name} option {key}={value!r}; choose one of "
                                 f"{self.options[key]}")
        return merged


_FAMILIES: dict[str, FamilySpec] = {}
ALIASES: dict[str, tuple[str, str | None]] = {}   # short name -> (family, variant or None)


def register_family(name: str, *, variants: tuple[str, ...],
                    default_variant: str | Callable[[int], str],
                    aliases: Mapping[str, str | None] | None = None,
                    options: Mapping[str, tuple[Any, ...]] | None = None,
                    description: str = "") -> Callable[[Builder], Builder]:
    """Decorator for a builder ``fn(variant, *, num_classes, input_size, in_channels, **options)``."""

    def decorate(builder: Builder) -> Builder:
        spec = FamilySpec(name, builder, tuple(str(v) for v in variants), default_variant,
                          dict(aliases or {}), dict(options or {}), description)
        if name in _FAMILIES and _FAMILIES[name].builder is not builder:
            raise ValueError(f"model family {name!r} is registered twice")
        _FAMILIES[name] = spec
        for alias, variant in spec.aliases.items():
            ALIASES[alias] = (name, variant)
        return builder

    return decorate


def get_family(name: str) -> FamilySpec:
    """The family registered as ``name`` or reached by the short name ``name``."""
    if name in _FAMILIES:
        return _FAMILIES[name]
    if name in ALIASES:
        return _FAMILIES[ALIASES[name][0]]
    raise ValueError(
        f"unknown model {name!r}; known families: {', '.join(sorted(_FAMILIES))}; short names: "
        f"{', '.join(sorted(ALIASES))}; or torchvision:NAME, or package.module:callable "
        "(see `hetero models`)")


def family_names() -> tuple[str, ...]:
    return tuple(sorted(_FAMILIES))
