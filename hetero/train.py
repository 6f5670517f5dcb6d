"""The trainer both arms use: SGD, cosine or step schedule, warm-up, label smoothing, optional KD.

Everything it does is set by one :class:`~hetero.protocol.TrainProtocol`. It is deterministic on
CPU (same seed, same weights, bit for bit) and resumable: ``state_dict()`` after epoch k, loaded
into a new Trainer with a fresh model, continues to the same final weights and metrics.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hetero.errors import TrainingDiverged
from hetero.outputs import classification_loss, primary_logits
from hetero.protocol import TrainProtocol

__all__ = ["Trainer", "TrainSummary", "Distillation", "TrainingDiverged", "resolve_device",
           "lr_factor"]

EpochCallback = Callable[[dict[str, Any], "Trainer"], None]
# Protocol fields that may differ when resuming: they do not change what is computed.
RESUME_MAY_DIFFER = ("device", "eval_batch_size")


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` is CUDA when available, else CPU; ``cuda``/``cuda:N`` must exist."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {spec!r} requested but CUDA is not available; "
                           "use device 'auto' or 'cpu'")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise RuntimeError(f"device {spec!r} does not exist: {torch.cuda.device_count()} "
                           "CUDA device(s) visible")
    return device


def lr_factor(protocol: TrainProtocol, epoch: int) -> float:
    """Multiplier of ``protocol.lr`` during 0-based ``epoch`` (per-epoch, like the reference)."""
    p = protocol
    if epoch < p.warmup_epochs:  # linear from lr/10 towards lr
        return 0.1 + 0.9 * epoch / p.warmup_epochs
    if p.schedule == "cosine":  # reaches 0 at `epochs` (over all epochs, warm-up included)
        return 0.5 * (1 + math.cos(math.pi * epoch / p.epochs))
    passed = sum(epoch >= round(m * p.epochs) for m in p.milestones)
    return p.gamma ** passed


@dataclass(frozen=True)
class Distillation:
    """Knowledge distillation from a trained teacher: ``weight`` x KD + (1 - weight) x CE, the KD
    term KL(softmax(teacher / T) || softmax(student / T)) x T^2 (the paper: 0.4, T = 4)."""

    teacher: nn.Module
    weight: float = 0.4
    temperature: float = 4.0

    def __post_init__(self) -> None:
        if not 0 < self.weight <= 1 or not self.temperature > 0:
            raise ValueError(f"distillation needs a weight in (0, 1] and a temperature > 0, got "
                             f"{self.weight} and {self.temperature}")


@dataclass
class TrainSummary:
    accuracy: float
    top5: float
    train_accuracy: float       # the last epoch's running accuracy over its training batches
    test_loss: float
    train_seconds: float        # training and per-epoch evaluation, all epochs
    images_per_second: float    # training images / training seconds (evaluation excluded)
    epochs: int
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """Trains ``model`` on ``data`` with ``protocol``; ``distill`` adds knowledge distillation.

    Runs exactly ``protocol.epochs`` epochs in both arms. (The reference code stops at
    ``epochs - 1`` in both its baseline and LW-DNA trainers; what matters is that both arms match.)
    """

    def __init__(self, model: nn.Module, data, protocol: TrainProtocol, *, seed: int = 0,
                 distill: Distillation | None = None) -> None:
        if protocol.nesterov and protocol.momentum == 0:
            raise ValueError("nesterov needs momentum > 0; set momentum or nesterov=False")
        self.protocol, self.data, self.seed = protocol, data, seed
        self.device = resolve_device(protocol.device)
        cuda = self.device.type == "cuda"
        # bf16 autocast and channels_last pay off on GPUs; on CPU they are slower.
        self.amp = cuda and protocol.amp
        self.memory_format = (torch.channels_last if cuda and protocol.channels_last
                              else torch.contiguous_format)
        if cuda:
            torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest kernels
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.distill = distill
        if distill is not None:
            distill.teacher.to(self.device, memory_format=self.memory_format).eval()
        self.optimizer, self.scheduler = self._make_optimizer()
        self.epoch = 0  # completed epochs
        self.history: list[dict[str, Any]] = []

    def _make_optimizer(self):
        p = self.protocol
        # Weight decay on every parameter, BN and biases included, as the reference does.
        optimizer = torch.optim.SGD(self.model.parameters(), lr=p.lr, momentum=p.momentum,
                                    nesterov=p.nesterov, weight_decay=p.weight_decay)
        # Stepped once per epoch, like the reference's schedulers.
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lr_factor(p, e))
        return optimizer, scheduler

    # -- training --------------------------------------------------------------------------

    def fit(self, *, on_epoch: EpochCallback | None = None) -> TrainSummary:
        """Train from the current epoch to ``protocol.epochs``; evaluate after every epoch."""
        while self.epoch < self.protocol.epochs:
            metrics = self._run_epoch()
            self.epoch += 1
            self.history.append(metrics)
            if on_epoch is not None:
                on_epoch(metrics, self)
        return self.summary()

    def _run_epoch(self) -> dict[str, Any]:
        # Reseeding from (seed, epoch) keeps stochastic layers reproducible even when a callback
        # draws random numbers between epochs.
        torch.manual_seed(_mix_seed(self.seed, self.epoch))
        lr = self.optimizer.param_groups[0]["lr"]
        start = time.perf_counter()
        train_loss, train_accuracy = self._train_one_epoch()
        self._check_finite(train_loss, lr)
        self._sync()
        train_seconds = time.perf_counter() - start
        self.scheduler.step()
        test = self.evaluate() if self._evaluates(self.epoch + 1) else _NOT_MEASURED
        return {"epoch": self.epoch + 1, "train_loss": train_loss,
                "train_accuracy": train_accuracy, "test_loss": test["test_loss"],
                "accuracy": test["accuracy"], "top5": test["top5"], "lr": lr,
                "epoch_seconds": time.perf_counter() - start,
                "images_per_second": self.data.num_train / max(train_seconds, 1e-9)}

    def _evaluates(self, epoch: int) -> bool:
        """Whether the test split is scored after (1-based) ``epoch``: every ``eval_every``
        epochs and always after the last."""
        p = self.protocol
        return epoch % p.eval_every == 0 or epoch >= p.epochs

    def _train_one_epoch(self) -> tuple[float, float]:
        self.model.train()
        p = self.protocol
        # Sums stay on the device: no host sync per batch.
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        seen = 0
        for x, y in self.data.train_batches(p.batch_size, augment=p.augment, flip=p.flip,
                                            seed=self.seed, epoch=self.epoch, device=self.device):
            x = x.contiguous(memory_format=self.memory_format)
            loss, logits = self._step(x, y)
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
        return loss_sum.item() / seen, correct.item() / seen

    def _check_finite(self, train_loss: float, lr: float) -> None:
        # Checked once per epoch (the loss sum is already on the host): a NaN never recovers,
        # and reporting the epoch's chance-level accuracy as a result would be a lie.
        if not math.isfinite(train_loss):
            raise TrainingDiverged(
                f"training diverged in epoch {self.epoch + 1}: the training loss is "
                f"{train_loss} (learning rate {lr:g}); lower the learning rate (lr) or add "
                "warm-up epochs (warmup_epochs)")

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            output = self.model(x)
            loss = self._loss(x, output, y)
            logits = primary_logits(output, self.protocol.logits)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss, logits.detach()

    def _loss(self, x: torch.Tensor, output, y: torch.Tensor) -> torch.Tensor:
        """The loss of the network's ``output``: its primary logits and auxiliary heads
        (:mod:`hetero.outputs`), distilled from the teacher when kd_weight > 0."""
        p = self.protocol
        ce, logits = classification_loss(output, y, aux_weight=p.aux_weight, key=p.logits,
                                         label_smoothing=p.label_smoothing)
        if self.distill is None:
            return ce
        with torch.no_grad():
            teacher_logits = primary_logits(self.distill.teacher(x), p.logits).float()
        t, weight = self.distill.temperature, self.distill.weight
        # KL(softmax(teacher/T) || softmax(student/T)) * T^2, batch mean.
        kd = F.kl_div(F.log_softmax(logits.float() / t, dim=1),
                      F.log_softmax(teacher_logits / t, dim=1),
                      reduction="batchmean", log_target=True) * t * t
        return weight * kd + (1 - weight) * ce

    # -- evaluation ------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Plain cross-entropy (no smoothing), top-1 and top-5 accuracy on the test split."""
        self.model.eval()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        top1 = torch.zeros((), dtype=torch.int64, device=self.device)
        top5 = torch.zeros_like(top1)
        k = min(5, self.data.num_classes)
        for x, y in self.data.test_batches(self.protocol.eval_batch_size, device=self.device):
            x = x.contiguous(memory_format=self.memory_format)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                logits = primary_logits(self.model(x), self.protocol.logits).float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            hits = logits.topk(k, dim=1).indices == y[:, None]
            top1 += hits[:, 0].sum()
            top5 += hits.any(dim=1).sum()
        n = self.data.num_test
        return {"test_loss": loss_sum.item() / n, "accuracy": top1.item() / n,
                "top5": top5.item() / n}

    def summary(self) -> TrainSummary:
        if not self.history:
            raise RuntimeError("no epoch trained yet: call fit() first")
        last = self.history[-1]
        train_seconds = sum(m["epoch_seconds"] for m in self.history)
        pure = sum(self.data.num_train / m["images_per_second"] for m in self.history)
        images = self.data.num_train * len(self.history)
        return TrainSummary(accuracy=last["accuracy"], top5=last["top5"],
                            train_accuracy=last["train_accuracy"],
                            test_loss=last["test_loss"], train_seconds=train_seconds,
                            images_per_second=images / max(pure, 1e-9), epochs=self.epoch,
                            history=[dict(m) for m in self.history])

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # -- checkpoints -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """A detached CPU copy (safe to keep while training goes on; loads with weights_only)."""
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "epoch": self.epoch,
                 "seed": self.seed, "protocol": self.protocol.to_dict(),
                 "history": self.history, "rng": _rng_state()}
        return _cpu_copy(state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._check_resumable(state)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self.history = [dict(m) for m in state["history"]]
        _set_rng_state(state["rng"])

    def _check_resumable(self, state: dict[str, Any]) -> None:
        saved, current = dict(state["protocol"]), self.protocol.to_dict()
        differ = sorted(k for k in current
                        if k not in RESUME_MAY_DIFFER and saved.get(k) != current[k])
        if differ or int(state["seed"]) != self.seed:
            fields = differ + (["seed"] if int(state["seed"]) != self.seed else [])
            raise ValueError(f"checkpoint was trained with different {', '.join(fields)}; "
                             "resume with the same protocol and seed, or start a fresh run")


# The test metrics of an epoch that is not evaluated (protocol.eval_every > 1).
_NOT_MEASURED = {"test_loss": float("nan"), "accuracy": float("nan"), "top5": float("nan")}


def _mix_seed(seed: int, epoch: int) -> int:
    entropy = [int(seed) % 2**64, int(epoch) % 2**64, 1]  # 1: not the data order's stream
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def _cpu_copy(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        # A state dict's type and its _metadata (module versions) stay: some modules' loaders
        # check the version (torchvision's MNASNet refuses a state dict without it).
        out = type(obj)((k, _cpu_copy(v)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):
            out._metadata = copy.deepcopy(obj._metadata)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return copy.deepcopy(obj)


def _rng_state() -> dict[str, Any]:
    # Plain lists and tensors only, so torch.load(weights_only=True) accepts the checkpoint.
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
             "python": [version, list(internal), gauss_next]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
