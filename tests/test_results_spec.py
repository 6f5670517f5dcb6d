"""Fast checks of the spec settings and names issue 11 added (no Ray, no training)."""

import pytest
import yaml

from sweeps import keys
from sweeps.spec import Range, SpecError, spec_from_dict
from sweeps.trainable import run_name

BASE = {"name": "r", "model": "resnet20", "dataset": "digits",
        "space": {"width_mults": {"low": 1.5, "high": 2.0}, "targets": [0.5, 1.0],
                  "remain_ratios": [0.25]},
        "baselines": [1.0], "search": {"type": "optuna", "num_samples": 2}}


def test_range_is_accepted_for_optuna_and_round_trips_through_the_spec_yaml():
    spec = spec_from_dict(BASE)
    assert spec.space.width_mults == Range(1.5, 2.0)
    again = spec_from_dict(yaml.safe_load(yaml.safe_dump(spec.to_dict())))
    assert again.space.width_mults == Range(1.5, 2.0)


def test_range_with_grid_search_names_the_fix():
    with pytest.raises(SpecError, match="width_mult given as a {low, high} range.*optuna"):
        spec_from_dict({**BASE, "search": {"type": "grid"}})


@pytest.mark.parametrize("bad, message", [({"low": 2.0, "high": 1.5}, "low < high"),
                                          ({"low": 1.5}, "a list or a range"),
                                          ({"low": 1.5, "high": 17}, r"space.width_mults.high")])
def test_bad_ranges_are_refused_by_path(bad, message):
    with pytest.raises(SpecError, match=message):
        spec_from_dict({**BASE, "space": {**BASE["space"], "width_mults": bad}})


def test_unreachable_range_corner_is_refused():
    space = {**BASE["space"], "targets": {"low": 0.05, "high": 1.0}}
    with pytest.raises(SpecError, match="unreachable"):
        spec_from_dict({**BASE, "space": space})


def test_tracking_models_and_latency_batch():
    assert spec_from_dict(BASE).tracking.models == keys.MODELS_ALL
    spec = spec_from_dict({**BASE, "tracking": {"models": "none", "latency_batch": 0}})
    assert (spec.tracking.models, spec.tracking.latency_batch) == ("none", 0)
    with pytest.raises(SpecError, match="tracking.models must be one of all, none"):
        spec_from_dict({**BASE, "tracking": {"models": "best"}})


def test_run_names_lead_with_what_differs():
    hp = {"kind": keys.KIND_LWDNA, "width_mult": 2.0, "target": 0.5, "criterion": "dhp",
          "remain_ratio": 0.25, "linear_ratio": 0.45, "seed": 0, "data_fraction": 1.0}
    assert run_name("resnet56", ("width_mult", "target"), hp) == "w2.0 t0.50 · resnet56 dhp s0"
    assert run_name("resnet56", (), hp) == "resnet56 w2.0 t0.50 dhp s0"
    base = {"kind": keys.KIND_BASELINE, "width_mult": 0.75, "seed": 1, "data_fraction": 1.0}
    assert run_name("resnet56", ("seed",), base) == "uniform w0.75 s1 · resnet56"
    # levers: init and KD lead when they vary; KD off is not written when nothing varies it
    lever = {**hp, "init": "hyper", "kd_weight": 0.4}
    assert run_name("resnet56", ("init", "kd_weight"), lever) == "hyper kd0.4 · resnet56 w2.0 t0.50 dhp s0"
    assert run_name("resnet56", ("kd_weight",), {**base, "kd_weight": 0.4}) == (
        "uniform w0.75 kd0.4 · resnet56 s1")
    assert run_name("resnet56", (), {**base, "kd_weight": 0.0}) == "uniform w0.75 · resnet56 s1"


def test_optuna_study_lives_in_the_sweep_folder_and_survives_a_restore(tmp_path):
    """What --resume relies on: Tune pickles the searcher; the restored one reopens the study."""
    import optuna
    from ray import tune

    from sweeps.plans import optuna_search, study_storage

    spec = spec_from_dict(BASE)
    url = study_storage(str(tmp_path), "r")
    assert url == f"sqlite:///{tmp_path / 'r' / 'r.optuna.db'}"
    first = optuna_search(spec, "r", str(tmp_path))
    first.set_search_properties(None, None, {"width_mult": tune.uniform(1.5, 2.0)})
    first.suggest("a")
    first.on_trial_complete("a", {keys.METRIC_ACCURACY: 0.9, keys.METRIC_FLOPS_RATIO: 1.0})
    first.save(str(tmp_path / "searcher.pkl"))
    again = optuna_search(spec, "r", str(tmp_path))
    again.restore(str(tmp_path / "searcher.pkl"))
    again.suggest("b")
    again.on_trial_complete("b", {keys.METRIC_ACCURACY: 0.8, keys.METRIC_FLOPS_RATIO: 0.5})
    study = optuna.load_study(study_name="r", storage=url)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert len(study.best_trials) == 2   # two objectives: neither point dominates the other
