"""Model families. Each module registers its builder when imported (timm's ``_registry`` /
``_factory`` split); the factory turns names into networks, configurations and costs."""

from hetero.models import (  # noqa: F401  (registration)
    densenet,
    efficientnet,
    mnasnet,
    mobilenet_v1,
    mobilenet_v2,
    mobilenet_v3,
    regnet,
    resnet_cifar,
    resnet_imagenet,
    vgg_cifar,
)
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
