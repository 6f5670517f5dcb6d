"""The model registry: families by name, short aliases, and :func:`create_model`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from hetero.config import ChannelConfig
    from hetero.models.common import Family

__all__ = ["register_family", "get_family", "list_models", "create_model", "resolve_model",
           "ALIASES"]

_FAMILIES: dict[str, Family] = {}

# Short names users type -> (family, variant, options).
ALIASES: dict[str, tuple[str, str | None]] = {}


def register_family(cls: type[Family]) -> type[Family]:
    """Class decorator: register one instance of a family, and its aliases."""
    family = cls()
    _FAMILIES[family.name] = family
    for alias, variant in getattr(cls, "aliases", {}).items():
        ALIASES[alias] = (family.name, variant)
    return cls


BUILTIN_FAMILY_MODULES = ("resnet_cifar", "resnet_imagenet", "vgg_cifar", "mobilenet_v2")


def _load_builtin() -> None:
    # Imported for their @register_family side effect.
    import importlib

    for module in BUILTIN_FAMILY_MODULES:
        importlib.import_module(f"hetero.models.{module}")


def get_family(name: str) -> Family:
    _load_builtin()
    if name in _FAMILIES:
        return _FAMILIES[name]
    if name in ALIASES:
        return _FAMILIES[ALIASES[name][0]]
    raise ValueError(
        f"unknown model {name!r}; known families: {', '.join(sorted(_FAMILIES))}; "
        f"short names: {', '.join(sorted(ALIASES))} (see `hetero models`)"
    )


def resolve_model(name: str, variant: str | int | None = None,
                  input_size: int | None = None) -> tuple[str, str]:
    """(family, variant) for a family name or a short name like ``resnet56``.

    An explicit ``variant`` that contradicts a short name's own variant is an error. Without a
    variant, the family picks its default for ``input_size`` (e.g. MobileNetV2's CIFAR layout).
    """
    family = get_family(name)
    if name in ALIASES:
        implied = ALIASES[name][1]
        if variant is not None and implied is not None and str(variant) != implied:
            raise ValueError(f"{name} implies variant {implied}, but variant {variant} was given")
        variant = variant if variant is not None else implied
    return family.name, family.resolve_variant(variant, input_size)


def list_models() -> dict[str, tuple[str, ...]]:
    """Family name -> its variants."""
    _load_builtin()
    return {name: fam.variants for name, fam in sorted(_FAMILIES.items())}


def create_model(name: str | None = None, *, config: ChannelConfig | None = None,
                 variant: str | int | None = None, **config_kw: Any) -> nn.Module:
    """Build a model from ``config``, or from the family's uniform configuration.

    ``create_model("resnet_cifar", config=cfg)`` or ``create_model("resnet56", num_classes=100)``.
    """
    from hetero.config import uniform

    if config is None:
        if name is None:
            raise ValueError("create_model needs a model name or a config")
        family, variant = resolve_model(name, variant, config_kw.get("input_size"))
        config = uniform(family, variant, **config_kw)
    elif name is not None and get_family(name).name != config.family:
        raise ValueError(f"model {name!r} does not match the configuration's family {config.family!r}")
    family = get_family(config.family)
    family.check(config)
    return family.build(config)
