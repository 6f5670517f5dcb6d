"""The whole method as one function: widen, score, shrink, build, train, evaluate.

:func:`run_trial` takes a :class:`TrialSpec` and returns a :class:`TrialResult`. The uniform
baseline arm goes through the same function (``baseline=True``) with the same protocol, so the
comparison is fair by construction. Progress reaches the caller through ``on_epoch``, which is how
sweeps report to Ray Tune and log to MLflow without hetero knowing about either.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from hetero.config import ChannelConfig
from hetero.models.factory import complexity, create_model, uniform, widen
from hetero.trial import TrialSpec

__all__ = ["TrialSpec", "TrialResult", "Derivation", "derive", "run_trial", "base_config_for",
           "costs"]

EpochCallback = Callable[[dict[str, Any], dict[str, Any]], None]


@dataclass
class TrialResult:
    """What one trial produced. Metric names match ``sweeps.keys``."""

    kind: str
    accuracy: float                 # top-1 on the test split, fraction in [0, 1]
    top5: float
    train_accuracy: float           # the last epoch's running accuracy over its training batches
    flops: int                      # macs accounting
    params: int
    flops_paper: int                # paper accounting (+ BN, ReLU)
    params_paper: int
    baseline_flops: int             # the width-1.0 uniform network, macs accounting
    baseline_params: int
    baseline_flops_paper: int
    baseline_params_paper: int
    config: ChannelConfig
    base_config: ChannelConfig
    width_ratios: dict[str, float]  # per layer: width / baseline width
    search_seconds: float           # scoring + shrinking
    train_seconds: float
    images_per_second: float
    epochs: int
    history: list[dict[str, Any]] = field(default_factory=list)
    search_info: dict[str, float] = field(default_factory=dict)  # what scoring chose (dhp: m)
    teacher_info: dict[str, float] = field(default_factory=dict)  # KD: the teacher used

    @property
    def flops_ratio(self) -> float:
        return cost_ratios(self.flops, self.params, self.baseline_flops,
                           self.baseline_params)["flops_ratio"]

    @property
    def params_ratio(self) -> float:
        return cost_ratios(self.flops, self.params, self.baseline_flops,
                           self.baseline_params)["params_ratio"]

    def metrics(self) -> dict[str, float]:
        """The final scalar metrics (names as in ``sweeps.keys``)."""
        names = ("accuracy", "top5", "train_accuracy", "flops", "params", "flops_paper",
                 "params_paper", "baseline_flops", "baseline_params", "search_seconds",
                 "train_seconds", "images_per_second")
        out = {n: float(getattr(self, n)) for n in names}
        out.update(flops_ratio=self.flops_ratio, params_ratio=self.params_ratio,
                   epochs_completed=float(self.epochs),
                   **{f"search_{k}": float(v) for k, v in self.search_info.items()},
                   **{k: float(v) for k, v in self.teacher_info.items()})
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, **self.metrics()}
        for name in ("flops", "params", "flops_paper", "params_paper", "baseline_flops",
                     "baseline_params", "baseline_flops_paper", "baseline_params_paper"):
            out[name] = int(getattr(self, name))
        out["epochs"] = self.epochs
        out["channels"] = dict(self.config.widths)
        out["width_ratios"] = self.width_ratios
        out["config"] = self.config.to_dict()
        out["history"] = self.history
        return out


@dataclass
class Derivation:
    """The outcome of widen -> score -> shrink (no training yet)."""

    base_config: ChannelConfig
    wide_config: ChannelConfig
    config: ChannelConfig
    kept: dict[str, list[int]] | None
    target_value: float | None      # absolute target in the chosen metric (None for baselines)
    search_seconds: float
    wide_model: torch.nn.Module | None = None  # the scored wide network
    target_metric: str = "flops"
    generated: dict[str, torch.Tensor] | None = None  # dhp: full-width generated weights
    search_info: dict[str, float] = field(default_factory=dict)  # e.g. dhp's embedding size

    def summary(self) -> dict[str, Any]:
        """A JSON-able description (what ``hetero shrink --json`` prints)."""
        cost = costs(self.config, self.base_config)
        return {
            "family": self.config.family, "variant": self.config.variant,
            **cost,
            "wide_flops": complexity(self.wide_config).flops,
            "target_value": self.target_value,
            "target_metric": self.target_metric,
            "target_flops": self.target_value if self.target_metric == "flops" else None,
            "target_params": self.target_value if self.target_metric == "params" else None,
            "search_seconds": self.search_seconds, **self.search_info,
            "channels": dict(self.config.widths),
            "width_ratios": self.config.ratios_to(self.base_config),
            "config": self.config.to_dict(),
        }


def costs(config: ChannelConfig, base: ChannelConfig) -> dict[str, float]:
    """The network's cost in both accountings, the width-1.0 baseline's, and their ratios (macs).

    The one place a trial's cost figures are computed; names as in ``sweeps.keys``.
    """
    macs, paper = complexity(config, "macs"), complexity(config, "paper")
    base_macs, base_paper = complexity(base, "macs"), complexity(base, "paper")
    return {"flops": macs.flops, "params": macs.params,
            "flops_paper": paper.flops, "params_paper": paper.params,
            "baseline_flops": base_macs.flops, "baseline_params": base_macs.params,
            "baseline_flops_paper": base_paper.flops, "baseline_params_paper": base_paper.params,
            **cost_ratios(macs.flops, macs.params, base_macs.flops, base_macs.params)}


def cost_ratios(flops: float, params: float, baseline_flops: float,
                baseline_params: float) -> dict[str, float]:
    """``flops_ratio`` and ``params_ratio``: the network's cost over the width-1.0 baseline's
    (macs accounting). The one definition: :func:`costs` and :class:`TrialResult` both read it."""
    return {"flops_ratio": flops / baseline_flops, "params_ratio": params / baseline_params}


def base_config_for(spec: TrialSpec, data_shape: tuple[int, int, int]) -> ChannelConfig:
    """The width-1.0 uniform configuration of the spec's model for (channels, size, classes)
    (``spec.input_size``, when set, is the size)."""
    in_channels, input_size, num_classes = data_shape
    return uniform(spec.model, spec.variant, num_classes=num_classes,
                   input_size=spec.input_size or input_size, in_channels=in_channels,
                   **model_options(spec))


def model_options(spec: TrialSpec) -> dict[str, Any]:
    """The family options a trial builds its network with: the spec's own, the excluded
    sub-modules, and ``aux_logits=False`` where aux_weight 0 drops a network's auxiliary heads."""
    from hetero.models.factory import EXCLUDE, family_spec

    options = dict(spec.options)
    if spec.exclude:
        options[EXCLUDE] = spec.exclude
    if spec.protocol.aux_weight == 0 and "aux_logits" in family_spec(spec.model).options:
        options["aux_logits"] = False
    return options


def derive(spec: TrialSpec, data, *, device: torch.device | str = "cpu") -> Derivation:
    """Widen, score and shrink: the LW-DNA for ``spec`` (or the uniform net for baselines)."""
    from hetero.importance import score_network
    from hetero.shrink import shrink_to_target

    base = base_config_for(spec, (data.in_channels, data.input_size, data.num_classes))
    if spec.baseline:
        config = widen(base, spec.width_mult, divisor=spec.divisor)
        return Derivation(base, config, config, None, None, 0.0)
    start = time.perf_counter()
    wide = widen(base, spec.width_mult, divisor=spec.divisor)
    torch.manual_seed(spec.seed)
    wide_model = create_model(config=wide).to(device)
    score_batch = max(1, round(spec.protocol.batch_size * spec.score_batch_fraction))
    batches = data.train_batches(score_batch, augment=spec.protocol.augment,
                                 flip=spec.protocol.flip,
                                 seed=spec.seed, device=device)
    scored = score_network(spec.criterion, wide_model, wide, batches,
                           num_batches=spec.score_batches, lr=spec.protocol.lr,
                           momentum=spec.protocol.momentum,
                           weight_decay=spec.protocol.weight_decay, seed=spec.seed,
                           aux_weight=spec.protocol.aux_weight, logits=spec.protocol.logits,
                           **_criterion_options(spec))
    floors = dict(remain_ratio=spec.remain_ratio, linear_ratio=spec.linear_ratio,
                  divisor=spec.divisor, width_mult=spec.width_mult)
    info = dict(scored.info)
    if spec.target_metric == "latency":
        shrunk, timed, steps = _shrink_to_latency(wide, scored.scores, base, spec.target,
                                                  device, floors)
        # What the device said: the timed ratio the loop settled on and how many shrinks it took.
        info.update(latency_timed_ratio=timed, latency_steps=len(steps))
    else:
        shrunk = shrink_to_target(wide, scored.scores, base_config=base, target=spec.target,
                                  target_metric=spec.target_metric, **floors)
    seconds = time.perf_counter() - start
    # The scored network (the trained copy for bn and dhp) is what `inherit` slices from.
    return Derivation(base, wide, shrunk.config, shrunk.kept, shrunk.target_value, seconds,
                      scored.network, spec.target_metric, scored.generated, info)


def _shrink_to_latency(wide: ChannelConfig, scores, base: ChannelConfig, target: float,
                       device, floors: dict[str, Any]):
    from hetero.latency_model import build_latency_model
    from hetero.shrink_latency import shrink_to_latency

    return shrink_to_latency(wide, scores, base_config=base, target=target,
                             latency=build_latency_model(wide, base, device), **floors)


def _criterion_options(spec: TrialSpec) -> dict[str, Any]:
    if spec.criterion == "dhp":
        return {"embedding_dim": spec.embedding_dim, "dhp_score": spec.dhp_score,
                "grouped_input": spec.dhp_grouped_input, "group_latent": spec.dhp_group_latent,
                "last_step": spec.dhp_last_step}
    return {}


def _initial_model(spec: TrialSpec, derivation: Derivation) -> torch.nn.Module:
    """The derived network at its starting weights (``spec.init``); baselines start fresh."""
    from hetero.materialize import materialize

    if spec.init == "fresh" or derivation.kept is None:
        return materialize(derivation.config)
    return materialize(derivation.config, source=derivation.wide_model, kept=derivation.kept,
                       generated=derivation.generated if spec.init == "hyper" else None)


# Baselines have no widening of their own; with KD on they distil from a 2x uniform teacher
# (the width of the paper's LW-DNA teachers, method.md 1.1 and 1.6).
BASELINE_TEACHER_WIDTH = 2.0


def _teacher(spec: TrialSpec, base: ChannelConfig, data, device):
    """The paper's KD teacher: the widened uniform network trained with the same protocol,
    shared by every trial of the same seed and data (hetero.teacher caches it)."""
    from hetero.teacher import trained_teacher

    width = BASELINE_TEACHER_WIDTH if spec.baseline else spec.width_mult
    return trained_teacher(widen(base, width, divisor=spec.divisor), spec.protocol, data,
                           seed=spec.seed, device=device)


def run_trial(spec: TrialSpec, *, on_epoch: EpochCallback | None = None,
              checkpoint: dict[str, Any] | None = None, data=None) -> TrialResult:
    """Run one trial end to end and return its result.

    ``on_epoch(metrics, checkpoint)`` is called after every epoch (metrics: the trainer's
    per-epoch metrics plus the network's ``flops``, ``params`` and their ratios to the width-1.0
    baseline, macs accounting); ``checkpoint`` is a
    ``torch.save``-able dict. Passing it back as ``checkpoint=`` resumes the trial: the derived
    configuration is read from it (no re-scoring) and training continues where it stopped, giving
    the same result as an uninterrupted run.
    """
    from hetero.data import load_dataset
    from hetero.train import Distillation, Trainer, resolve_device

    device = resolve_device(spec.protocol.device)
    if data is None:
        data = load_dataset(spec.dataset, spec.data_dir, download=spec.download,
                            fraction=spec.data_fraction, seed=spec.seed, device=device,
                            input_size=spec.input_size)
    if checkpoint is not None:
        config = ChannelConfig.from_dict(checkpoint["config"])
        base = ChannelConfig.from_dict(checkpoint["base_config"])
        search_seconds = float(checkpoint["search_seconds"])
        derivation = Derivation(base, config, config, None, None, search_seconds,
                                search_info=dict(checkpoint.get("search_info", {})))
    else:
        derivation = derive(spec, data, device=device)
    config, base = derivation.config, derivation.base_config

    torch.manual_seed(spec.seed)
    model = _initial_model(spec, derivation)
    # The scored wide network and dhp's generated weights served only the start: free them
    # before training (on a GPU they would hold memory for the whole run).
    derivation.wide_model = derivation.generated = None
    teacher = _teacher(spec, base, data, device) if spec.kd_weight > 0 else None
    distill = (Distillation(teacher.network, spec.kd_weight, spec.kd_temperature)
               if teacher is not None else None)
    trainer = Trainer(model, data, spec.protocol, seed=spec.seed, distill=distill)
    if checkpoint is not None:
        trainer.load_state_dict(checkpoint["trainer"])
    extra = {"config": config.to_dict(), "base_config": base.to_dict(),
             "search_seconds": derivation.search_seconds,
             "search_info": derivation.search_info, "spec": spec.to_dict()}
    # The cost is fixed before training; every epoch report carries it (multi-objective search
    # and schedulers need it at each report), so callers never recount it.
    cost = costs(config, base)
    per_epoch = {k: cost[k] for k in ("flops", "params", "flops_ratio", "params_ratio")}

    def report(metrics: dict[str, Any], trainer_obj) -> None:
        if on_epoch is not None:
            on_epoch({**metrics, **per_epoch}, {**extra, "trainer": trainer_obj.state_dict()})

    summary = trainer.fit(on_epoch=report)
    return TrialResult(
        kind=spec.kind, accuracy=summary.accuracy, top5=summary.top5,
        train_accuracy=summary.train_accuracy,
        **{k: int(v) for k, v in cost.items() if not k.endswith("_ratio")},
        config=config, base_config=base, width_ratios=config.ratios_to(base),
        search_seconds=derivation.search_seconds, train_seconds=summary.train_seconds,
        images_per_second=summary.images_per_second, epochs=summary.epochs,
        history=summary.history, search_info=derivation.search_info,
        teacher_info=teacher.info() if teacher is not None else {},
    )
