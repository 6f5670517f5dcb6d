"""The training protocol: one frozen object used by both arms (uniform baseline and LW-DNA).

The paper's claim is "same cost, same protocol": the derived network is trained with exactly the
baseline's epochs, batch size, optimizer, schedule and augmentation. Keeping every knob in one
value that both arms receive makes that true by construction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

__all__ = ["TrainProtocol", "from_known_keys"]

SCHEDULES = ("cosine", "step")


def from_known_keys(cls, data: dict[str, Any], what: str):
    """Build dataclass ``cls`` from ``data``, refusing unknown keys with the allowed ones."""
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown {what} keys {sorted(unknown)}; allowed: {sorted(known)}")
    return cls(**data)


@dataclass(frozen=True)
class TrainProtocol:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4          # method.md 1.7: CIFAR and ImageNet use 1e-4
    schedule: str = "cosine"           # cosine | step
    milestones: tuple[float, ...] = (0.5, 0.75)  # step schedule: fractions of `epochs`
    gamma: float = 0.1                 # step schedule decay
    warmup_epochs: int = 0             # linear warm-up from lr/10, then the schedule
    label_smoothing: float = 0.0
    kd_weight: float = 0.0             # > 0: distil from the widened teacher (paper: 0.4)
    kd_temperature: float = 4.0
    eval_batch_size: int = 500
    augment: bool = True               # random crop (pad: 1/8 of the size) + horizontal flip
    flip: bool = True                  # False: no flip, as the reference's ImageNet and
                                       # Tiny-ImageNet loaders by default (method.md pitfall 9)
    amp: bool = True                   # CUDA only (bf16 autocast); ignored on CPU
    channels_last: bool = True         # CUDA only; slower on CPU
    device: str = "auto"               # auto | cpu | cuda | cuda:N

    def __post_init__(self) -> None:
        object.__setattr__(self, "milestones", tuple(float(m) for m in self.milestones))
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (0 <= self.momentum < 1, "momentum must be in [0, 1)"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}"),
            (all(0 < m < 1 for m in self.milestones), "milestones are fractions in (0, 1)"),
            (0 <= self.warmup_epochs < self.epochs, "warmup_epochs must be in [0, epochs)"),
            (0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (0 <= self.kd_weight <= 1, "kd_weight must be in [0, 1]"),
            (self.kd_temperature > 0, "kd_temperature must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"training protocol: {message}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["milestones"] = list(self.milestones)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainProtocol:
        return from_known_keys(cls, data, "protocol")

    def replace(self, **changes: Any) -> TrainProtocol:
        return replace(self, **changes)
