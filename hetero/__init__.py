"""hetero: widen-shrink search for layer-wise differentiated channel configurations (LW-DNA).

This package is the method. It imports torch, torchvision, numpy and scikit-learn only, never
ray, optuna or mlflow: sweeps and tracking attach through callbacks (see ``sweeps``).
"""

from hetero.complexity import Complexity, complexity
from hetero.config import ChannelConfig, make_divisible, uniform, widen

__all__ = ["ChannelConfig", "Complexity", "complexity", "make_divisible", "uniform", "widen",
           "__version__"]
__version__ = "0.1.0"
