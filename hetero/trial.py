"""One typed spec for a trial: every setting once, with its help, its range and how sweeps use it.

:class:`TrialSpec` is the single owner of a trial's hyperparameters. Each field is declared with
:func:`setting`, and everything else is derived from those declarations:

- the ``hetero run`` / ``hetero shrink`` flags (:func:`hetero.cli` reads :func:`settings`);
- the sweep spec's ``space:`` schema (``sweeps.spec``): ``axis`` settings are searched lists under
  their plural name (``width_mults: [1.5, 2.0]``), ``fixed`` ones take one value per sweep;
- the MLflow params of every trial and the columns analysis reads (:func:`params_of`);
- how sweeps and analysis treat a setting (``param``, ``replicate``, ``curve``, ``lwdna_only``):
  what tells experiments apart and what both arms must share (``sweeps.keys``);
- a searched setting's run-name token and when a name writes it (``token``, ``token_shown``),
  and how the smoke test trims its list (``smoke``).

Adding a hyperparameter is one field here plus the code that uses it. This module imports only
the standard library (analysis reads it without torch).
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from hetero.dataset_info import DATASETS
from hetero.protocol import TrainProtocol, from_known_keys
from hetero.settings import Setting, check_declared, declared, setting

__all__ = ["TrialSpec", "settings", "axes", "defaults", "params_of", "BASELINE_CRITERION", "INITS",
           "DHP_SCORES", "DHP_GROUPED_INPUTS", "DHP_GROUP_LATENTS", "TARGET_METRICS",
           "MAX_WIDTH_MULT"]

INITS = ("fresh", "inherit", "hyper")
DHP_SCORES = ("grad", "latent")
DHP_GROUPED_INPUTS = ("learned", "ones")
DHP_GROUP_LATENTS = ("shared", "channel")
TARGET_METRICS = ("flops", "params", "latency")
# Wider than this is a typo, not an experiment (a 2x ResNet-50 already has ~100 M parameters).
MAX_WIDTH_MULT = 16.0


def _width_token(mult: float) -> str:
    """``w2.0``, ``w0.75``, ``w1.25``: three significant digits, always a decimal point."""
    text = f"{mult:.3g}"
    return f"w{text if '.' in text else text + '.0'}"


@dataclass(frozen=True)
class TrialSpec:
    """Everything one trial needs. ``target`` is a fraction of the width-1.0 baseline's cost."""

    model: str = setting("resnet20", "family or short name (see `hetero models`), "
                         "torchvision:NAME, or package.module:callable")
    variant: str | None = setting(None, "family variant, e.g. depth 56 of resnet_cifar; default: "
                                  "picked by the input size")
    dataset: str = setting("digits", "bundled digits (default) or a folder dataset",
                           choices=DATASETS)
    data_dir: str | None = setting(None, "dataset folder (cifar, tinyimagenet, imagefolder, "
                                   "imagenet)")
    download: bool = setting(False, "let torchvision download CIFAR", cli=True)
    input_size: int | None = setting(None, "input image size in pixels (square); the images are "
                                     "resized to it; default: the dataset's own", lo=1,
                                     integer=True, sweep="fixed")
    exclude: str | None = setting(None, "module paths to leave unpruned, comma-separated: each "
                                  "is kept as an opaque block (its channels and cost fixed), for "
                                  "a part the channel graph cannot follow", sweep="fixed")
    baseline: bool = setting(False, "train the uniform network at --width-mult instead",
                             cli=False, param=False)   # the run's kind says it
    width_mult: float = setting(2.0, "widening multiplier beta", lo=0, hi=MAX_WIDTH_MULT,
                                lo_open=True, sweep="axis", plural="width_mults", curve=True,
                                token=_width_token, token_shown="always")
    target: float = setting(1.0, "cost target as a fraction of the width-1.0 baseline's",
                            lo=0, hi=MAX_WIDTH_MULT ** 2, lo_open=True, sweep="axis",
                            plural="targets", lwdna_only=True, token="t{:.2f}",
                            token_shown="always", smoke="two_largest")
    target_metric: str = setting("flops", "what the target counts: FLOPs (macs), params, or "
                                 "batch-1 latency on the trial's device",
                                 choices=TARGET_METRICS,
                                 sweep="fixed", lwdna_only=True)
    criterion: str = setting("dhp", "channel score: dhp | gate | bn | l1, or random (the "
                             "control: a random LW-DNA at the same target and floors)",
                             sweep="axis", plural="criteria", lwdna_only=True, token="{}",
                             token_shown="always")
    remain_ratio: float = setting(0.4, "rho: every unit keeps at least this share of its "
                                  "widened channels", lo=0, hi=1, lo_open=True, sweep="axis",
                                  plural="remain_ratios", lwdna_only=True, token="r{:.3g}")
    linear_ratio: float = setting(0.45, "tau: the floor of every unit the classifier reads; 1.0 "
                                  "never prunes it (the reference CIFAR ResNet)", lo=0, hi=1,
                                  lo_open=True, sweep="axis", plural="linear_ratios", lwdna_only=True,
                                  token="l{:.3g}")
    score_batches: int = setting(2, "scoring mini-batches (the reference: 2)", lo=1,
                                 integer=True, sweep="fixed", lwdna_only=True)
    score_batch_fraction: float = setting(1.0, "scoring mini-batch size as a fraction of the "
                                          "training batch (the reference: 1/4 for ImageNet "
                                          "ResNet and RegNet, 1/2 otherwise)", lo=0, hi=1,
                                          lo_open=True, sweep="fixed", lwdna_only=True)
    divisor: int = setting(1, "round derived widths to a multiple of this", lo=1, integer=True,
                           sweep="fixed")
    init: str = setting("fresh", "the derived network's starting weights: fresh (the paper's "
                        "'from scratch'), inherit (the scored wide network's kept weights), "
                        "hyper (dhp: generated from the kept latents, as the reference code)",
                        choices=INITS, sweep="axis", plural="inits", lwdna_only=True, token="{}")
    dhp_score: str = setting("grad", "dhp: rank by |dL/dz| (grad, the paper's text) or |z| "
                             "(latent, the released ResNet-50 code)", choices=DHP_SCORES,
                             sweep="fixed", lwdna_only=True)
    embedding_dim: int | None = setting(None, "dhp hypernetwork embedding size m; default 8 (the "
                                        "reference's), or 2 (its ImageNet setting) where 8 "
                                        "would need over 50 M hypernetwork parameters; the "
                                        "size used is reported", lo=1, integer=True,
                                        sweep="fixed", lwdna_only=True)
    dhp_grouped_input: str = setting("learned", "dhp: the input latent of a grouped or depthwise "
                                     "conv, a learnable N(0,1) vector of length in/groups "
                                     "(learned, the reference) or constant ones",
                                     choices=DHP_GROUPED_INPUTS, sweep="fixed", lwdna_only=True)
    dhp_group_latent: str = setting("shared", "dhp: a grouped conv's unit (RegNet's bottleneck) "
                                    "scored through one latent element per group, shared by its "
                                    "channels (shared, the reference) or one per channel, "
                                    "summed per group", choices=DHP_GROUP_LATENTS, sweep="fixed",
                                    lwdna_only=True)
    dhp_last_step: bool = setting(True, "dhp: take the last scoring batch's SGD step too, two "
                                  "steps in all as the reference's --epochs_grad 1 (moves the "
                                  "latents and the weights init hyper generates; the grad "
                                  "score is taken before it)", sweep="fixed", lwdna_only=True)
    kd_weight: float = setting(0.0, "> 0: distil from the widened uniform network trained "
                               "first with the same protocol (the paper's CIFAR LW-DNA rows: "
                               "0.4); both arms of a sweep get it (baselines distil from a 2x "
                               "teacher)", lo=0, hi=1, sweep="axis", plural="kd_weights",
                               token="kd{:g}", token_shown="set")
    kd_temperature: float = setting(4.0, "distillation temperature (the paper: 4)", lo=0,
                                    lo_open=True, sweep="fixed")
    seed: int = setting(0, "seed of the scoring batches, init and data order", lo=0,
                        integer=True, sweep="axis", plural="seeds", replicate=True,
                        token="s{}", token_shown="always", smoke="pair")
    data_fraction: float = setting(1.0, "fraction of the training split to use", lo=0,
                                   hi=1, lo_open=True, sweep="axis", plural="data_fractions",
                                   token="f{:g}", token_shown="set", smoke=(0.25,))
    protocol: TrainProtocol = field(default_factory=TrainProtocol)
    options: dict[str, Any] = field(default_factory=dict)  # family options, e.g. shortcut

    def __post_init__(self) -> None:
        if isinstance(self.protocol, dict):
            object.__setattr__(self, "protocol", TrainProtocol.from_dict(self.protocol))
        check_declared(self, skip=("target",) if self.baseline else ())
        if self.init == "hyper" and self.criterion != "dhp" and not self.baseline:
            raise ValueError("init 'hyper' takes the weights the dhp hypernetwork generates: use "
                             "criterion dhp, or init fresh / inherit")

    @property
    def kind(self) -> str:
        return "baseline" if self.baseline else "lwdna"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["protocol"] = self.protocol.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialSpec:
        return from_known_keys(cls, data, "trial")


def settings() -> dict[str, Setting]:
    """Every declared setting of :class:`TrialSpec`, in field order."""
    return declared(TrialSpec)


def defaults() -> dict[str, Any]:
    return {f.name: f.default for f in fields(TrialSpec) if f.default is not MISSING}


def axes() -> dict[str, str]:
    """Searched settings: field name -> its plural key in a sweep spec, in enumeration order."""
    return {name: s.plural for name, s in settings().items() if s.sweep == "axis"}


BASELINE_CRITERION = "uniform"   # what a uniform baseline's criterion param says


def params_of(spec: TrialSpec) -> dict[str, Any]:
    """The trial's hyperparameters as flat MLflow params, named as the fields: every setting
    (a baseline's LW-DNA-only ones left out, its criterion ``uniform``), the protocol's fields,
    and the family options (``options``)."""
    out = {name: getattr(spec, name) for name, s in settings().items()
           if s.param and not (spec.baseline and s.lwdna_only)}
    if spec.baseline:
        out["criterion"] = BASELINE_CRITERION
    return {**out, **spec.protocol.to_dict(), "options": dict(spec.options)}
