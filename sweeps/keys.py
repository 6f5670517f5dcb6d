"""Every MLflow name that sweeps write and analysis reads (stdlib only: keep it that way)."""

from __future__ import annotations

# ---- tags -------------------------------------------------------------------------------
TAG_KIND = "kind"                 # KIND_LWDNA | KIND_BASELINE | KIND_SWEEP (parent run)
TAG_MODEL = "model"               # family name, e.g. resnet_cifar
TAG_VARIANT = "variant"           # e.g. 56
TAG_DATASET = "dataset"
TAG_CRITERION = "criterion"       # dhp | gate | bn | l1 | random | uniform (baselines)
TAG_SWEEP = "sweep"               # sweep name, on parent and children
TAG_TRIAL_ID = "trial_id"         # Ray Tune trial id (stable across resume)
TAG_PARENT_RUN_ID = "mlflow.parentRunId"
TAG_RUN_NAME = "mlflow.runName"
TAG_GIT_COMMIT = "git_commit"
TAG_STOPPED_EARLY = "stopped_early"  # "true" when a scheduler stopped the trial before the end
TAG_NODE_IP = "node_ip"           # Ray node that ran the trial
TAG_FAILURE = "failure"           # why a trial failed for good (e.g. diverged), on FAILED runs
TAG_MODEL_URI = "model_uri"       # the trained network's MLflow model (models:/<id>)
TAG_LATENCY_DEVICE = "latency_device"  # where latency was measured (the trial's device)
TAG_LATENCY_TIMING = "latency_timing"  # how: LATENCY_TIMING_EXCLUSIVE (alone, after the trials)
LATENCY_TIMING_EXCLUSIVE = "exclusive"
TAG_NOTE = "mlflow.note.content"  # the run's description in the UI (markdown)
TAG_SOURCE_NAME = "mlflow.source.name"  # the UI's "Source" / "Logged from": what wrote the run
TAG_SOURCE_TYPE = "mlflow.source.type"
TAG_DATASET_DIGEST = "dataset_digest"  # content digest of the data (also in the run's inputs)
TAG_SWEEP_ARGS = "sweep_args"     # on the parent: what `hetero sweep` was started with (JSON)

# experiment tag: MLflow 3's UI opens an experiment of this kind on its training-runs table
# (untagged experiments open on the GenAI overview)
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_TRAINING = "custom_model_development"

KIND_LWDNA = "lwdna"
CRITERION_RANDOM = "random"       # the control criterion: a random LW-DNA at the same target
KIND_BASELINE = "baseline"
KIND_SWEEP = "sweep"

# ---- params ------------------------------------------------------------------------------------
# A trial logs every hyperparameter under its field name in hetero.trial.TrialSpec (and
# TrainProtocol): that dataclass is their one owner (hetero.trial.params_of). The names sweeps and
# analysis refer to by hand are taken from it here, so a rename fails at import, not silently.
from hetero.protocol import TrainProtocol as _TrainProtocol  # noqa: E402 (stdlib-only modules)
from hetero.trial import BASELINE_CRITERION  # noqa: E402,F401
from hetero.trial import settings as _trial_settings  # noqa: E402

_KNOWN = {*_trial_settings(), *_TrainProtocol.__dataclass_fields__, "options"}


def _param(name: str) -> str:
    if name not in _KNOWN:
        raise AssertionError(f"{name!r} is not a TrialSpec or TrainProtocol field")
    return name


PARAM_WIDTH_MULT = _param("width_mult")
PARAM_TARGET = _param("target")
PARAM_TARGET_METRIC = _param("target_metric")
PARAM_CRITERION = _param("criterion")
PARAM_REMAIN_RATIO = _param("remain_ratio")
PARAM_LINEAR_RATIO = _param("linear_ratio")
PARAM_SEED = _param("seed")
PARAM_DATA_FRACTION = _param("data_fraction")
PARAM_EPOCHS = _param("epochs")
PARAM_MODEL = _param("model")
PARAM_VARIANT = _param("variant")
PARAM_DATASET = _param("dataset")
PARAM_INIT = _param("init")
PARAM_KD_WEIGHT = _param("kd_weight")
PARAM_LATENCY_BATCH = "latency_batch"  # the throughput batch of the latency metrics (sweep-level)

# Derived from the declarations (their param / replicate / curve / lwdna_only flags), so a new
# setting needs no edit here:
# - what makes two trials "the same experiment but another seed" (analysis groups by these):
#   every logged setting but the replicate (the seed);
SETTING_PARAMS = (*(n for n, s in _trial_settings().items() if s.param and not s.replicate),
                  PARAM_EPOCHS)
# - what both arms must share to be compared at all: every setting a uniform baseline has too,
#   but the one its curve runs along (the width) and the replicate (matched by the pairing).
CONTEXT_PARAMS = (*(n for n, s in _trial_settings().items() if s.param and not s.lwdna_only
                    and not s.curve and not s.replicate),
                  PARAM_EPOCHS)

# ---- metrics ---------------------------------------------------------------------------------
# per epoch (step = epoch index, starting at 1)
METRIC_EPOCH = "epoch"            # epochs completed so far (Tune reports and the progress table)
METRIC_TRAIN_LOSS = "train_loss"
METRIC_TRAIN_ACCURACY = "train_accuracy"
METRIC_TEST_LOSS = "test_loss"
METRIC_ACCURACY = "accuracy"      # top-1 on the test split, a fraction in [0, 1]
METRIC_TOP5 = "top5"
METRIC_LR = "lr"
METRIC_EPOCH_SECONDS = "epoch_seconds"
METRIC_IMAGES_PER_SECOND = "images_per_second"
METRIC_SECONDS_PER_IMAGE = "seconds_per_image"  # 1 / images_per_second: the training step's cost
# final
METRIC_FLOPS = "flops"            # macs accounting (conv + fc multiply-accumulates)
METRIC_PARAMS = "params"
METRIC_FLOPS_PAPER = "flops_paper"  # paper accounting (+ BN, ReLU; BN params)
METRIC_PARAMS_PAPER = "params_paper"
METRIC_BASELINE_FLOPS = "baseline_flops"
METRIC_BASELINE_PARAMS = "baseline_params"
METRIC_FLOPS_RATIO = "flops_ratio"    # flops / baseline_flops (width-1.0 uniform network)
METRIC_PARAMS_RATIO = "params_ratio"
METRIC_SEARCH_SECONDS = "search_seconds"  # scoring + shrinking
METRIC_TEACHER_ACCURACY = "teacher_accuracy"  # KD: the test accuracy of the teacher used
METRIC_TRAIN_SECONDS = "train_seconds"
METRIC_EPOCHS_COMPLETED = "epochs_completed"
METRIC_TRIAL_SECONDS = "trial_seconds"    # wall time inside the trial worker (last attempt)
METRIC_TRACKING_SECONDS = "tracking_seconds"  # of which: MLflow calls (last attempt)
METRIC_REPORT_SECONDS = "report_seconds"      # of which: tune.report + checkpoint writes
# inference latency on the trial's device (hetero.latency: median and IQR after a warm-up)
METRIC_LATENCY_MS = "latency_ms"                # batch 1, per call
METRIC_LATENCY_IQR_MS = "latency_iqr_ms"
METRIC_BATCH_LATENCY_MS = "batch_latency_ms"    # throughput batch (PARAM_LATENCY_BATCH), per call
METRIC_BATCH_LATENCY_IQR_MS = "batch_latency_iqr_ms"
METRIC_THROUGHPUT = "throughput"                # images/s at the throughput batch
LATENCY_METRICS = (METRIC_LATENCY_MS, METRIC_LATENCY_IQR_MS, METRIC_BATCH_LATENCY_MS,
                   METRIC_BATCH_LATENCY_IQR_MS, METRIC_THROUGHPUT)

# on the sweep's parent run, when the sweep ends (trial counts; the best accuracies of finished
# trials; the accuracy x FLOPs front of finished trials, each seed its own point: its size and
# hypervolume against the worst finished values, as summary.md's with one seed per setting)
METRIC_SWEEP_TRIALS = "trials"
METRIC_SWEEP_FINISHED = "trials_finished"
METRIC_SWEEP_FAILED = "trials_failed"
METRIC_SWEEP_STOPPED = "trials_stopped_early"
METRIC_BEST_ACCURACY = "best_accuracy"
METRIC_BEST_LWDNA_ACCURACY = "best_lwdna_accuracy"
METRIC_BEST_BASELINE_ACCURACY = "best_baseline_accuracy"
METRIC_FRONT_POINTS = "pareto_points"
METRIC_HYPERVOLUME = "hypervolume"

PER_EPOCH_METRICS = (METRIC_TRAIN_LOSS, METRIC_TRAIN_ACCURACY, METRIC_TEST_LOSS, METRIC_ACCURACY,
                     METRIC_TOP5, METRIC_LR, METRIC_EPOCH_SECONDS, METRIC_IMAGES_PER_SECOND)

# ---- Tune results: what a trial reports to Tune besides its metrics ----------------------------
RESULT_RUN_ID = "mlflow_run_id"   # the trial's MLflow run (the Optuna study's user attribute)

# ---- artifacts ---------------------------------------------------------------------------------
ARTIFACT_CONFIG = "lwdna.json"          # ChannelConfig JSON of the trained network
ARTIFACT_BASE_CONFIG = "baseline.json"  # ChannelConfig JSON of the width-1.0 baseline
ARTIFACT_WIDTH_PLOT = "widths.png"
ARTIFACT_SPEC = "sweep.yaml"            # on the parent run
ARTIFACT_REPORT_DIR = "report"          # on the parent run: hetero pareto output
MODEL_NAME = "model"                    # the logged network: runs:/<run_id>/model

# ---- run statuses (MLflow's RunStatus names: what sweeps set, what analysis filters on) -----
STATUS_RUNNING, STATUS_FINISHED = "RUNNING", "FINISHED"
STATUS_FAILED, STATUS_KILLED = "FAILED", "KILLED"

# ---- spec values ---------------------------------------------------------------------------------
MODELS_ALL, MODELS_NONE = "all", "none"  # tracking.models: log every trained network, or none
