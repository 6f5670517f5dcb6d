"""hetero: widen-shrink search for layer-wise differentiated channel configurations (LW-DNA).

This package is the method. It imports torch, torchvision, numpy and scikit-learn only, never
ray, optuna or mlflow: sweeps and tracking attach through callbacks (see ``sweeps``).
"""

import sys
import types

from hetero.config import ChannelConfig, make_divisible

__all__ = ["ChannelConfig", "Complexity", "complexity", "create_model", "make_divisible",
           "register_model", "register_op", "uniform", "widen", "__version__"]
__version__ = "0.1.0"

_FACTORY = ("complexity", "create_model", "register_model", "uniform", "widen")


def __getattr__(name: str):
    # The factory imports torch and the model families, Complexity numpy: only when asked for,
    # so `hetero --help` and the stdlib-only modules (trial, settings, config) stay light.
    if name in _FACTORY:
        from hetero.models import factory

        return getattr(factory, name)
    if name == "register_op":
        from hetero.graph import register_op

        return register_op
    if name == "Complexity":
        from hetero.complexity import Complexity

        return Complexity
    raise AttributeError(f"module 'hetero' has no attribute {name!r}")


class _Package(types.ModuleType):
    """``hetero.complexity`` is the public function, not the submodule of the same name.

    Importing a submodule binds it on its package (``hetero.complexity = <module>``), which
    would shadow the factory's function for everyone after the first import of the submodule.
    Refusing that binding keeps ``hetero.complexity(...)`` and ``from hetero import complexity``
    the function; ``from hetero.complexity import Complexity`` still reads the submodule.
    """

    def __setattr__(self, name: str, value) -> None:
        if name in _FACTORY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
