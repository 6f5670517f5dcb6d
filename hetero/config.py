"""The one description of an architecture's widths: :class:`ChannelConfig` (an LW-DNA).

A configuration names a model family and variant, the input it is built for, and the output
width of every prunable layer under a stable layer name. Layers that must share a channel index
(a residual stream, a depthwise conv and the conv feeding it) are listed as *coupled groups*;
every layer of a group has the same width. Models are built from a configuration, complexity is
counted from it, sweeps log it as JSON and analysis plots it: nothing else describes widths.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["ChannelConfig", "make_divisible"]


def _freeze(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, eq=False)
class ChannelConfig:
    """Per-layer output widths of one network (immutable; round-trips through JSON).

    ``widths`` maps layer name -> output channels, in forward order. ``groups`` lists the
    coupled groups (two or more layer names that must have equal widths). ``options`` holds
    family options that change the graph but not the widths (e.g. the ResNet shortcut type).
    """

    family: str
    variant: str
    num_classes: int
    input_size: int
    in_channels: int
    widths: Mapping[str, int]
    groups: tuple[tuple[str, ...], ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "variant", str(self.variant))
        object.__setattr__(self, "widths", _freeze(self.widths))
        object.__setattr__(self, "options", _freeze(self.options))
        object.__setattr__(self, "groups", tuple(tuple(g) for g in self.groups))
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise ``ValueError`` naming the offending layer if the configuration is invalid."""
        for key in ("num_classes", "input_size", "in_channels"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        if not self.widths:
            raise ValueError(f"{self.family}: configuration has no layers")
        for name, width in self.widths.items():
            if not isinstance(width, int) or isinstance(width, bool) or width < 1:
                raise ValueError(
                    f"layer {name!r} of {self.family}: width must be a positive integer, "
                    f"got {width!r}"
                )
        seen: dict[str, int] = {}
        for index, group in enumerate(self.groups):
            for name in group:
                if name not in self.widths:
                    raise ValueError(f"coupled group {index} names unknown layer {name!r}")
                if name in seen:
                    raise ValueError(f"layer {name!r} is in coupled groups {seen[name]} and {index}")
                seen[name] = index
            first = group[0]
            for name in group[1:]:
                if self.widths[name] != self.widths[first]:
                    raise ValueError(
                        f"layer {name!r} has width {self.widths[name]} but is coupled with "
                        f"{first!r} (width {self.widths[first]}): every layer of a coupled group "
                        "(residual stream / depthwise pair) must have the same width"
                    )

    # ------------------------------------------------------------------ views
    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.widths)

    def units(self) -> tuple[tuple[str, ...], ...]:
        """Every channel unit in forward order: each coupled group once, every other layer alone.

        A unit is what scoring and shrinking treat as one: its layers keep the same channels.
        """
        group_of = {name: g for g in self.groups for name in g}
        units: list[tuple[str, ...]] = []
        emitted: set[tuple[str, ...]] = set()
        for name in self.widths:
            unit = group_of.get(name, (name,))
            if unit not in emitted:
                emitted.add(unit)
                units.append(unit)
        return tuple(units)

    def with_unit_widths(self, unit_widths: Mapping[str, int]) -> ChannelConfig:
        """A copy where each unit (keyed by its first layer name) gets a new width."""
        widths = dict(self.widths)
        for unit in self.units():
            if unit[0] in unit_widths:
                for name in unit:
                    widths[name] = int(unit_widths[unit[0]])
        return self.replace(widths=widths)

    def replace(self, **changes: Any) -> ChannelConfig:
        data = self.to_dict()
        data.update(changes)
        return ChannelConfig.from_dict(data)

    def ratios_to(self, base: ChannelConfig) -> dict[str, float]:
        """Per-layer width ratio against another configuration of the same family/variant."""
        if base.layers != self.layers:
            raise ValueError(
                f"cannot compare {self.family}/{self.variant} widths with "
                f"{base.family}/{base.variant}: the layer names differ"
            )
        return {name: self.widths[name] / base.widths[name] for name in self.widths}

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "variant": self.variant,
            "num_classes": self.num_classes,
            "input_size": self.input_size,
            "in_channels": self.in_channels,
            "widths": dict(self.widths),
            "groups": [list(g) for g in self.groups],
            "options": dict(self.options),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChannelConfig:
        allowed = {"family", "variant", "num_classes", "input_size", "in_channels", "widths",
                   "groups", "options"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown channel-config keys {sorted(unknown)}; allowed: {sorted(allowed)}")
        missing = {"family", "variant", "num_classes", "input_size", "in_channels", "widths"} - set(data)
        if missing:
            raise ValueError(f"channel config is missing keys {sorted(missing)}")
        return cls(
            family=data["family"],
            variant=data["variant"],
            num_classes=data["num_classes"],
            input_size=data["input_size"],
            in_channels=data["in_channels"],
            widths=dict(data["widths"]),
            groups=tuple(tuple(g) for g in data.get("groups", ())),
            options=dict(data.get("options", {})),
        )

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> ChannelConfig:
        return cls.from_dict(json.loads(text))

    def save(self, path) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(self.to_json() + "\n")

    @classmethod
    def load(cls, path) -> ChannelConfig:
        with open(path, encoding="utf-8") as fh:
            return cls.from_json(fh.read())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ChannelConfig):
            return NotImplemented
        return self.to_dict() == other.to_dict() and self.layers == other.layers

    def __hash__(self) -> int:
        return hash(self.to_json(indent=None))


def make_divisible(value: float, divisor: int) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never down by more than 10 %."""
    if divisor <= 1:
        return max(1, int(value))
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded
