"""Helpers shared by the tests that run over every registered model family."""

from __future__ import annotations

import random

from hetero.config import ChannelConfig
from hetero.models import list_models

CASES = [(family, variant) for family, variants in list_models().items() for variant in variants]
IDS = [f"{family}-{variant}" for family, variant in CASES]


def random_widths(config: ChannelConfig, rng: random.Random, low: int = 1) -> ChannelConfig:
    """Each channel unit (coupled group or lone layer) gets its own width in [low, base]."""
    return config.with_unit_widths(
        {unit[0]: rng.randint(low, max(low, config.widths[unit[0]])) for unit in config.units()}
    )
