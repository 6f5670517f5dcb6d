"""Model families. Each module registers its builder when imported (timm's ``_registry`` /
``_factory`` split); the factory turns names into networks, configurations and costs."""

from hetero.models import densenet, efficientnet, regnet  # noqa: F401  (registration)
from hetero.models.factory import (
    base_config,
    complexity,
    create_model,
    family_spec,
    graph_of,
    list_models,
    register_model,
    resolve_model,
    uniform,
    widen,
)

__all__ = ["base_config", "complexity", "create_model", "family_spec", "graph_of", "list_models",
           "register_model", "resolve_model", "uniform", "widen"]
