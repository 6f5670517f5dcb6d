"""The knowledge-distillation teacher: the widened uniform network, trained once per setting.

The paper's CIFAR LW-DNA rows distil from the *pretrained widened baseline* (method.md 1.6). Here
the teacher is trained with the trial's own protocol (no KD itself) and cached on disk under
``$HETERO_CACHE/teachers/``, keyed by everything that decides its weights: the network and width,
the protocol, the seed, the device type and a digest of the training data. So the uniform-KD
and LW-DNA-KD arms of one seed distil from the very same teacher, trained once, as the
reference's pretrained one would be; concurrent trials wait on a lock instead of training it
twice. Training is deterministic for a seed, so the cache changes only the time, not the result.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from hetero.config import ChannelConfig
from hetero.protocol import TrainProtocol

__all__ = ["Teacher", "trained_teacher"]

# Protocol fields that do not change the weights a protocol trains (RESUME_MAY_DIFFER's kind).
_NOT_IN_KEY = ("device", "eval_batch_size")


@dataclass
class Teacher:
    network: nn.Module          # in eval mode
    config: ChannelConfig
    accuracy: float             # its test accuracy after training
    train_accuracy: float
    seconds: float              # training time (when it was trained, in whichever trial did)
    cached: bool                # read from the cache rather than trained by this call

    def info(self) -> dict[str, float]:
        """What a trial logs about the teacher it used (metric names: ``teacher_*``)."""
        width = sum(self.config.widths.values())
        return {"teacher_accuracy": self.accuracy, "teacher_train_accuracy": self.train_accuracy,
                "teacher_seconds": self.seconds, "teacher_cached": float(self.cached),
                "teacher_channels": float(width)}


def trained_teacher(config: ChannelConfig, protocol: TrainProtocol, data, *, seed: int,
                    device: torch.device) -> Teacher:
    """The network of ``config`` trained with ``protocol`` (KD off) on ``data``: from the cache
    when this exact teacher was trained before, else trained now and cached."""
    key = _key(config, protocol, data, seed, device)
    path = _cache_folder() / f"{key}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second trial waits, then reads what the first saved
        if path.is_file():
            return _load(path, config)
        teacher = _train(config, protocol, data, seed)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save({"state": teacher.network.state_dict(), "accuracy": teacher.accuracy,
                    "train_accuracy": teacher.train_accuracy, "seconds": teacher.seconds}, tmp)
        os.replace(tmp, path)
        return teacher


def _train(config: ChannelConfig, protocol: TrainProtocol, data, seed: int) -> Teacher:
    from hetero.materialize import materialize
    from hetero.train import Trainer

    torch.manual_seed(seed)
    network = materialize(config)
    start = time.perf_counter()
    summary = Trainer(network, data, protocol, seed=seed).fit()
    return Teacher(network.eval(), config, summary.accuracy, summary.train_accuracy,
                   time.perf_counter() - start, cached=False)


def _load(path: Path, config: ChannelConfig) -> Teacher:
    from hetero.materialize import materialize

    saved = torch.load(path, weights_only=True, map_location="cpu")
    network = materialize(config)
    network.load_state_dict(saved["state"])
    return Teacher(network.eval(), config, float(saved["accuracy"]),
                   float(saved["train_accuracy"]), float(saved["seconds"]), cached=True)


def _key(config: ChannelConfig, protocol: TrainProtocol, data, seed: int,
         device: torch.device) -> str:
    from hetero.data import data_digest

    recipe = {k: v for k, v in protocol.to_dict().items() if k not in _NOT_IN_KEY}
    text = json.dumps({"config": config.to_dict(), "protocol": recipe, "seed": seed,
                       "device": torch.device(device).type, "data": data_digest(data),
                       "torch": torch.__version__}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _cache_folder() -> Path:
    from hetero.data import cache_dir

    return cache_dir() / "teachers"
