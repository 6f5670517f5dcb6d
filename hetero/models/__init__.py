"""Model families built from channel configurations."""

from hetero.models.registry import create_model, get_family, list_models, resolve_model

__all__ = ["create_model", "get_family", "list_models", "resolve_model"]
