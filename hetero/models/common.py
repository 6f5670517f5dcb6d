"""Pieces shared by every model family: the conv-BN unit and the :class:`Family` interface.

Convention every family follows (scoring, shrinking and weight inheritance rely on it): for every
layer name ``L`` of a configuration, ``model.get_submodule(L)`` is a :class:`ConvBN` whose ``conv``
produces that layer's channels, and ``model.get_submodule(family.classifier)`` is the final
``nn.Linear``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hetero.complexity import Op
from hetero.config import ChannelConfig

__all__ = ["ConvBN", "Family", "init_convs"]


def init_convs(model: nn.Module) -> None:
    """He (fan-out) initialisation of every conv: the one init all families share."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


class ConvBN(nn.Module):
    """Conv (no bias) -> BatchNorm -> optional activation module."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: type[nn.Module] | None = nn.ReLU) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = act(inplace=True) if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Family:
    """One model family: its variants, base widths, wiring, operations and builder.

    Subclasses set the class attributes and implement :meth:`layout`, :meth:`ops`,
    :meth:`build` and :meth:`wiring`.
    """

    name: str = ""
    variants: tuple[str, ...] = ()
    default_variant: str = ""
    classifier: str = "fc"  # module path of the final nn.Linear
    option_defaults: dict[str, Any] = {}
    option_choices: dict[str, tuple[Any, ...]] = {}
    description: str = ""

    def default_variant_for(self, input_size: int | None) -> str:
        """The variant to use when none is given (families with input-size layouts override)."""
        return self.default_variant

    def resolve_variant(self, variant: str | int | None, input_size: int | None = None) -> str:
        v = self.default_variant_for(input_size) if variant is None else str(variant)
        if v not in self.variants:
            raise ValueError(
                f"{self.name} has no variant {v!r}; choose one of {', '.join(self.variants)}"
            )
        return v

    def resolve_options(self, options: dict[str, Any]) -> dict[str, Any]:
        unknown = set(options) - set(self.option_defaults)
        if unknown:
            raise ValueError(
                f"{self.name} has no option(s) {sorted(unknown)}; "
                f"known: {sorted(self.option_defaults) or 'none'}"
            )
        merged = {**self.option_defaults, **options}
        for key, value in merged.items():
            choices = self.option_choices.get(key)
            if choices and value not in choices:
                raise ValueError(f"{self.name} option {key}={value!r}; choose one of {choices}")
        return merged

    def base_config(self, variant: str, *, num_classes: int, input_size: int, in_channels: int,
                    **options: Any) -> ChannelConfig:
        resolved = self.resolve_options(options)
        widths, groups = self.layout(variant, resolved)
        return ChannelConfig(
            family=self.name, variant=variant, num_classes=num_classes, input_size=input_size,
            in_channels=in_channels, widths=widths, groups=groups, options=resolved,
        )

    def check(self, config: ChannelConfig) -> None:
        """Raise ``ValueError`` if ``config`` is not a configuration of this family."""
        if config.family != self.name:
            raise ValueError(f"configuration is for {config.family!r}, not {self.name!r}")
        self.resolve_variant(config.variant)
        expected, groups = self.layout(config.variant, self.resolve_options(dict(config.options)))
        if tuple(expected) != config.layers:
            missing = [n for n in expected if n not in config.widths]
            extra = [n for n in config.widths if n not in expected]
            raise ValueError(
                f"{self.name}/{config.variant}: layer names do not match the family "
                f"(missing {missing[:5]}, unexpected {extra[:5]})"
            )
        if tuple(map(tuple, groups)) != config.groups:
            raise ValueError(f"{self.name}/{config.variant}: coupled groups do not match the family")

    # -- to implement -------------------------------------------------------------------
    def layout(self, variant: str, options: dict[str, Any]
               ) -> tuple[dict[str, int], tuple[tuple[str, ...], ...]]:
        """Base (width 1.0) widths in forward order, and the coupled groups."""
        raise NotImplementedError

    def wiring(self, config: ChannelConfig) -> dict[str, str | None]:
        """For every layer: the layer whose channels its conv reads (``None`` = the image)."""
        raise NotImplementedError

    def classifier_input(self, config: ChannelConfig) -> str:
        """The layer whose channels feed the classifier."""
        raise NotImplementedError

    def ops(self, config: ChannelConfig) -> list[Op]:
        """Every counted operation, batch size 1, at ``config.input_size``."""
        raise NotImplementedError

    def build(self, config: ChannelConfig) -> nn.Module:
        raise NotImplementedError
