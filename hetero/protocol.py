"""The training protocol: one frozen object used by both arms (uniform baseline and LW-DNA).

The paper's claim is "same cost, same protocol": the derived network is trained with exactly the
baseline's epochs, batch size, optimizer, schedule and augmentation. Keeping every knob in one
value that both arms receive makes that true by construction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from hetero.settings import check_declared, setting

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
    epochs: int = setting(10, "training epochs (both arms)", lo=1, integer=True)
    batch_size: int = setting(128, "mini-batch size", lo=1, integer=True)
    lr: float = setting(0.1, "SGD learning rate", lo=0, lo_open=True)
    momentum: float = setting(0.9, "SGD momentum", lo=0, hi=0.999, cli=False)
    nesterov: bool = setting(False, "Nesterov momentum", cli=False)
    weight_decay: float = setting(1e-4, "weight decay (the reference code's CIFAR and ImageNet "
                                  "value)", lo=0)
    schedule: str = setting("cosine", "learning-rate schedule", choices=SCHEDULES)
    milestones: tuple[float, ...] = setting((0.5, 0.75), "step schedule: fractions of epochs",
                                            cli=False)
    gamma: float = setting(0.1, "step schedule decay", lo=0, lo_open=True, cli=False)
    warmup_epochs: int = setting(0, "linear warm-up epochs from lr/10", lo=0, integer=True)
    label_smoothing: float = setting(0.0, "label smoothing", lo=0, hi=0.999)
    aux_weight: float = setting(0.3, "loss weight of a network's auxiliary heads (outputs shaped "
                                "like the logits besides them: torchvision googlenet and "
                                "inception_v3 in training; 0.3 as the GoogLeNet paper); 0 drops "
                                "them (a network whose constructor takes aux_logits is built "
                                "without)", lo=0, hi=1)
    logits: str | None = setting(None, "the output holding the class logits when the network "
                                 "returns several (a dict key or NamedTuple field); default: "
                                 "the first")
    eval_batch_size: int = setting(500, "evaluation batch size", lo=1, integer=True, cli=False)
    eval_every: int = setting(1, "evaluate the test split every this many epochs and after the "
                              "last (test metrics of the epochs between are not measured): a "
                              "small training set with a large test split spends most of an "
                              "epoch evaluating", lo=1, integer=True, cli=False)
    augment: bool = setting(True, "random crop (pad: 1/8 of the size) + horizontal flip",
                            cli=False)
    flip: bool = setting(True, "horizontal flip; false reproduces the reference's ImageNet and "
                         "Tiny-ImageNet loaders, whose flip flag is inverted", cli=False)
    amp: bool = setting(True, "bf16 autocast (CUDA only; ignored on CPU)", cli=False)
    channels_last: bool = setting(True, "channels_last memory format (CUDA only)", cli=False)
    device: str = setting("auto", "auto | cpu | cuda | cuda:N", pattern=r"auto|cpu|cuda(:\d+)?",
                          pattern_help="auto, cpu, cuda or cuda:N")

    def __post_init__(self) -> None:
        object.__setattr__(self, "milestones", tuple(float(m) for m in self.milestones))
        check_declared(self)
        if not all(0 < m < 1 for m in self.milestones):
            raise ValueError("training protocol: milestones are fractions in (0, 1)")
        if self.warmup_epochs >= self.epochs:
            raise ValueError("training protocol: warmup_epochs must be below epochs")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["milestones"] = list(self.milestones)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainProtocol:
        return from_known_keys(cls, data, "protocol")

    def replace(self, **changes: Any) -> TrainProtocol:
        return replace(self, **changes)
