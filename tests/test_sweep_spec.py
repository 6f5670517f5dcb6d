"""Sweep spec validation, the shipped sweep files, smoke-test shrinking, and CLI errors (no Ray)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sweeps.samplers import SAMPLERS, build_sampler
from sweeps.spec import SpecError, load_spec, smoke_test, spec_from_dict

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "sweeps" / "configs").glob("*.yaml"))
MINIMAL = {"name": "t", "model": "resnet20", "dataset": "digits",
           "space": {"remain_ratios": [0.25]}}


def spec_with(**changes):
    return spec_from_dict({**MINIMAL, **changes})


def error_of(**changes) -> str:
    with pytest.raises(SpecError) as info:
        spec_with(**changes)
    return str(info.value)


# -------------------------------------------------------------------- structure and values
def test_unknown_top_level_key_names_it_and_the_allowed_keys():
    message = error_of(serach={"type": "grid"})
    assert "'serach'" in message and "did you mean 'search'" in message
    for allowed in ("name", "model", "dataset", "protocol", "space", "baselines", "search",
                    "scheduler", "resources", "tracking", "storage", "retries"):
        assert allowed in message


def test_unknown_nested_key_names_its_path_and_the_allowed_keys():
    message = error_of(search={"smapler": "tpe"})
    assert "'search.smapler'" in message
    assert "type, num_samples, sampler, seed" in message


def test_unknown_protocol_key_names_the_protocol_fields():
    message = error_of(protocol={"epoch": 3})
    assert "'protocol.epoch'" in message and "epochs" in message and "weight_decay" in message


@pytest.mark.parametrize("changes, path, accepted", [
    ({"space": {"remain_ratios": [0.4, 1.5]}}, "space.remain_ratios[1]", "(0, 1]"),
    ({"space": {"width_mults": [17]}}, "space.width_mults[0]", "(0, 16]"),
    ({"space": {"data_fractions": [0]}}, "space.data_fractions[0]", "(0, 1]"),
    ({"search": {"type": "bayes"}}, "search.type", "grid, random, optuna"),
    ({"scheduler": {"type": "asha", "grace_period": 50}}, "scheduler.grace_period",
     "[1, 10]"),
    ({"resources": {"cpus": 0}}, "resources.cpus", "> 0"),
    ({"retries": -1}, "retries", ">= 0"),
    ({"protocol": {"epochs": "ten"}}, "protocol.epochs", "an integer"),
    ({"protocol": {"epochs": 0}}, "protocol.epochs", ">= 1"),
    ({"name": "my sweep"}, "name", "letters, digits"),
])
def test_bad_value_names_its_path_and_accepted_range(changes, path, accepted):
    message = error_of(**changes)
    assert message.startswith(path), message
    assert accepted in message


def test_unknown_model_dataset_and_criterion_are_refused():
    assert "model: unknown model 'resnet21'" in error_of(model="resnet21")
    assert "dataset: unknown dataset 'mnist'" in error_of(dataset="mnist")
    message = error_of(space={"criteria": ["dhp", "magic"], "remain_ratios": [0.25]})
    assert message.startswith("space.criteria[1]") and "dhp" in message


def test_unreachable_combination_is_refused_naming_it():
    # rho 0.4 at width 2 keeps every layer >= 0.8x the baseline: 0.3 of its FLOPs is too low.
    message = error_of(space={"width_mults": [1.5, 2.0], "targets": [0.3, 1.0],
                              "remain_ratios": [0.4]})
    assert "width_mult 2, remain_ratio 0.4, linear_ratio 0.45, target 0.3" in message
    assert "target 1 " not in message  # reachable combinations are not listed
    assert "Lower remain_ratios" in message


def test_a_latency_target_is_left_to_the_trials_device():
    # Only the device that runs the trial can time what the floors allow: no FLOPs-style check.
    space = {"targets": [0.3, 1.0], "remain_ratios": [0.4]}
    spec = spec_with(space={"target_metric": "latency", **space})
    assert spec.space.target_metric == "latency"
    assert list(spec.space.targets) == [0.3, 1.0]
    # the same space with a FLOPs target is checked, and 0.3 is out of reach at width 2
    message = error_of(space={"target_metric": "flops", **space})
    assert message.startswith("unreachable combinations")
    assert "width_mult 2, remain_ratio 0.4, linear_ratio 0.45, target 0.3 (flops;" in message


def test_random_search_cannot_ask_for_more_points_than_exist():
    message = error_of(search={"type": "random", "num_samples": 5})
    assert message.startswith("search.num_samples") and "[1, 1]" in message


def test_there_is_no_testing_section():
    # Faults are injected by the tests (run_sweep(trainable=...)), never through the spec.
    message = error_of(testing={"fail_first_attempt": True})
    assert message.startswith("unknown key 'testing'; allowed keys at the top level: "), message
    assert "retries" in message and "did you mean" not in message



def test_malformed_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nspace: {width_mults: [1.5\n")
    with pytest.raises(SpecError, match="bad.yaml.*not valid YAML"):
        load_spec(path)


# -------------------------------------------------------------------- points
def test_grid_runs_the_product_plus_baselines_per_seed_and_fraction():
    spec = spec_with(space={"width_mults": [1.5, 2.0], "targets": [0.5, 1.0],
                            "remain_ratios": [0.25], "seeds": [0, 1]}, baselines=[0.5, 1.0])
    points = spec.fixed_points()
    assert sum(p["kind"] == "lwdna" for p in points) == 8
    assert sum(p["kind"] == "baseline" for p in points) == 4
    assert len({tuple(sorted(p.items())) for p in points}) == 12
    # seed by seed: a sweep cut short has both arms of its first seeds
    assert [p["seed"] for p in points] == [0] * 6 + [1] * 6


def test_random_search_samples_distinct_points_reproducibly():
    data = {**MINIMAL, "space": {"width_mults": [1.5, 2.0], "targets": [0.5, 0.75, 1.0],
                                 "remain_ratios": [0.25]},
            "search": {"type": "random", "num_samples": 4, "seed": 3}}
    first, again = spec_from_dict(data).fixed_points(), spec_from_dict(data).fixed_points()
    lwdna = [p for p in first if p["kind"] == "lwdna"]
    assert first == again and len(lwdna) == 4
    assert len({(p["width_mult"], p["target"]) for p in lwdna}) == 4


# -------------------------------------------------------------------- shipped files, smoke test
@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_sweep_files_load_and_their_smoke_versions_are_valid(path):
    from sweeps.spec import check_spec

    # Wherever the data folders are: what a smoke test checks of the spec itself.
    spec = load_spec(path, check=False)
    check_spec(spec, read_data=False)
    small = smoke_test(spec)
    points = small.fixed_points()
    # optuna proposes its lwdna points while it runs: the smoke version asks it for two
    lwdna = (small.search.num_samples if small.search.type == "optuna"
             else sum(p["kind"] == "lwdna" for p in points))
    assert lwdna == 2 * (1 + len(spec.ablations))  # two, and two per ablation (its first value)
    # one baseline per smoke seed (a single-target spec gets two seeds, so that they pair), and
    # per KD setting when KD is a lever
    kd = {v for sp in small.spaces for v in sp.kd_weights}
    assert sum(p["kind"] == "baseline" for p in points) == len(small.space.seeds) * len(kd)
    assert {p["data_fraction"] for p in points} == {small.space.data_fractions[0]}
    assert small.dataset.name == "digits" and small.protocol.epochs == 1
    assert small.resources.gpus == 0 and small.scheduler.type == "fifo"
    assert small.protocol.device == "cpu"
    # none of the spec's stores: Tune state in ./ray_results, its own MLflow experiment
    assert small.storage == "ray_results" and small.tracking.uri is None
    assert small.experiment == f"{spec.experiment}-smoke"
    check_spec(small)  # the shrunk targets are reachable on digits too


SOURCE_TAG = re.compile(r"#.*\[(paper|code|ours)\]")
SOURCED_SECTIONS = ("model", "dataset", "protocol", "space", "baselines", "resources")


def _unsourced_settings(path: Path) -> list[str]:
    """Setting lines (leaf keys of the sourced sections) without a [paper]/[code]/[ours] tag;
    a setting may carry its tag on the line before or in a block comment above the section."""
    missing, section = [], None
    for line in path.read_text().splitlines():
        top = re.match(r"^([a-z_]+):", line)
        if top:
            section = top.group(1)
        leaf = re.match(r"^\s*([a-z_]+): *[^\s#]", line)
        if section in SOURCED_SECTIONS and leaf and leaf.group(1) not in ("name", "data_dir") \
                and not SOURCE_TAG.search(line):
            missing.append(line.strip())
    return missing


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_setting_states_its_source(path):
    assert _unsourced_settings(path) == []


def test_cifar_resnet56_presets_can_reach_the_papers_point():
    # Table 1: LW-DNA ResNet-56 at 99.06 % of the baseline's FLOPs and 62.62 % of its params
    from hetero.models import widen
    from hetero.shrink import reachable_range
    from sweeps.spec import base_config

    for name in ("cifar10_resnet56", "cifar100_resnet56", "cifar10_science_resnet56"):
        spec = load_spec(CONFIGS[0].parent / f"{name}.yaml", check=False)
        base = base_config(spec, shape=(3, 32, 10 if "cifar10_" in name else 100))
        wide = widen(base, spec.space.width_mults[0])
        floors = [reachable_range(wide, base_config=base, target_metric=metric,
                                  remain_ratio=min(spec.space.remain_ratios),
                                  linear_ratio=min(spec.space.linear_ratios))[0]
                  for metric in ("flops", "params")]
        assert floors[0] < 0.9906 and floors[1] < 0.6262, name
        assert spec.space.linear_ratios == (1.0,)   # the reference's CIFAR rule
        assert spec.space.width_mults == (2.0,) and spec.space.score_batches == 2
        assert spec.protocol.lr == 0.1 and spec.protocol.weight_decay == 1e-4


def test_spec_round_trips_through_its_yaml_artifact():
    spec = load_spec(CONFIGS[0])
    assert spec_from_dict(yaml.safe_load(yaml.safe_dump(spec.to_dict()))) == spec


def test_parent_run_description_names_every_searched_setting():
    """The searched settings are the space's axes with more than one value, whatever TrialSpec
    calls them: the datasize sweep searches data fractions and seeds, a range counts as one."""
    from sweeps.tracking import sweep_description

    datasize = load_spec(CONFIGS[0].parent / "cifar10_datasize.yaml", check=False)
    assert datasize.space.varying() == ("seed", "data_fraction")
    text = sweep_description(datasize, "1", "run")
    assert "grid search over seeds [0, 1, 2], data_fractions [0.1, 0.3, 1.0];" in text
    ranged = spec_with(space={"width_mults": {"low": 1.5, "high": 2.0}, "remain_ratios": [0.25]},
                       search={"type": "optuna", "num_samples": 2}, baselines=[1.0])
    assert ranged.space.varying() == ("width_mult",)
    assert "over width_mults {'low': 1.5, 'high': 2.0};" in sweep_description(ranged, "1", "r")
    assert "over one combination;" in sweep_description(spec_with(), "1", "r")


# -------------------------------------------------------------------- CLI and imports
def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hetero_cli", "sweep", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_cli_reports_a_bad_spec_in_one_paragraph(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "space": {"remain_ratio": [0.3]}}))
    done = run_cli([str(path)], tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "'space.remain_ratio'" in done.stderr and "remain_ratios" in done.stderr


def test_unreachable_tracking_server_is_reported_before_anything_starts(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "storage": str(tmp_path / "results")}))
    start = time.monotonic()
    done = run_cli([str(path), "--tracking-uri", "http://127.0.0.1:9"], tmp_path)
    assert done.returncode == 2, done.stderr
    assert "http://127.0.0.1:9" in done.stderr and "not reachable" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "results").exists()      # no Tune experiment was started
    assert not (tmp_path / "mlflow.db").exists()
    assert time.monotonic() - start < 60


def test_importing_sweeps_stays_light():
    code = ("import sys, sweeps, sweeps.keys, sweeps.cli, sweeps.spec; "
            "heavy = {'ray', 'mlflow', 'optuna', 'torch'} & set(sys.modules); print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ}, timeout=60).stdout.strip()
    assert out == "[]"


def test_the_space_section_is_derived_from_trial_spec():
    """Every searched or per-sweep TrialSpec setting is a space key (searched ones under their
    plural), each accepted value reaches the trials, and nothing else is a space key."""
    from hetero.trial import axes, settings
    from sweeps.runner import TrialSpec  # noqa: F401  (the runner builds trials from it)
    from sweeps.spec import SPACE_SCHEMA, SpaceSpec

    expected = {s.plural if s.sweep == "axis" else name
                for name, s in settings().items() if s.sweep}
    assert set(SPACE_SCHEMA) == expected == {f for f in SpaceSpec.__dataclass_fields__}
    spec = spec_with(space={"score_batch_fraction": 0.25, "remain_ratios": [0.3]})
    assert spec.space.fixed_settings()["score_batch_fraction"] == 0.25
    assert set(spec.space.DIMENSIONS) == set(axes())
    assert "space.score_batch_fraction" in error_of(space={"score_batch_fraction": 2})


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_optuna_sampler_survives_tunes_pickling_with_its_state(name):
    # Tune pickles OptunaSearch (with its sampler) to checkpoint and restore the searcher;
    # optuna 5.1's NSGA-II holds a lock that plain pickle refuses.
    import pickle

    import optuna
    from ray.tune.search.optuna import OptunaSearch

    sampler = build_sampler(name, seed=3)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)),
                   n_trials=3)
    copy = pickle.loads(pickle.dumps(sampler))
    assert type(copy) is type(sampler)
    assert vars(copy).keys() == vars(sampler).keys()
    searcher = OptunaSearch(metric=["a", "b"], mode=["max", "min"], sampler=sampler)
    pickle.loads(pickle.dumps(searcher))


# -------------------------------------------------------------------- ablations and controls
ABLATION = {"name": "a", "model": "resnet20", "dataset": "digits",
            "space": {"width_mults": [2.0], "targets": [1.0], "criteria": ["dhp"],
                      "remain_ratios": [0.1], "linear_ratios": [1.0], "seeds": [0, 1]},
            "ablations": [{"criteria": ["random", "l1"]}, {"inits": ["hyper"]},
                          {"kd_weights": [0.4]}],
            "baselines": [1.0]}


def _settings(points, *names):
    return sorted(tuple(p[n] for n in names) for p in points)


def test_ablations_run_one_change_at_a_time_beside_the_space():
    spec = spec_from_dict(ABLATION)
    lwdna = spec.lwdna_points()
    # dhp fresh no-KD (the space), random and l1, dhp hyper, dhp with KD; per seed, no repeats
    assert _settings(lwdna, "criterion", "init", "kd_weight", "seed") == sorted(
        (c, i, k, s) for s in (0, 1) for c, i, k in [("dhp", "fresh", 0.0), ("random", "fresh", 0.0),
                                                     ("l1", "fresh", 0.0), ("dhp", "hyper", 0.0),
                                                     ("dhp", "fresh", 0.4)])
    # the uniform arm runs with KD off and on too: "Baseline KD" against "LW-DNA KD"
    assert _settings(spec.baseline_points(), "width_mult", "kd_weight", "seed") == sorted(
        (1.0, k, s) for k in (0.0, 0.4) for s in (0, 1))
    assert set(spec.varying()) == {"criterion", "init", "kd_weight", "seed"}
    again = spec_from_dict(yaml.safe_load(yaml.safe_dump(spec.to_dict())))
    assert again.lwdna_points() == lwdna  # the logged spec says the same


def test_a_combination_that_is_no_trial_is_refused_with_the_fix():
    bad = {**ABLATION, "space": {**ABLATION["space"], "criteria": ["dhp", "l1"],
                                 "inits": ["fresh", "hyper"]}, "ablations": []}
    with pytest.raises(SpecError, match="init 'hyper'.*ablation"):
        spec_from_dict(bad)


@pytest.mark.parametrize("ablation, message", [
    ({}, "a mapping of the space lists"),
    ({"dhp_score": "latent"}, "unknown key 'ablations\\[0\\].dhp_score'"),
    ({"criteria": ["nope"]}, "ablations\\[0\\].criteria\\[0\\]"),
])
def test_a_bad_ablation_names_its_path(ablation, message):
    with pytest.raises(SpecError, match=message):
        spec_from_dict({**ABLATION, "ablations": [ablation]})


def test_optuna_samples_the_space_alone_so_ablations_are_refused_there():
    with pytest.raises(SpecError, match="ablations"):
        spec_from_dict({**ABLATION, "space": {**ABLATION["space"], "seeds": [0]},
                        "search": {"type": "optuna", "num_samples": 2}})


def test_matched_baselines_add_the_uniform_width_of_each_target():
    spec = spec_with(space={"remain_ratios": [0.25], "targets": [0.5, 1.0]},
                     baselines=[0.5, "matched"])
    widths = spec.baseline_widths()
    assert widths[0] == 0.5 and 1.0 in widths and len(widths) == 3
    from hetero.models.factory import complexity, uniform, widen

    base = uniform("resnet20", num_classes=10, input_size=8, in_channels=1)
    half = next(w for w in widths if w not in (0.5, 1.0))
    assert complexity(widen(base, half)).flops / complexity(base).flops == pytest.approx(0.5,
                                                                                         abs=0.03)
    assert "matched" in error_of(space={"target_metric": "latency"}, baselines=["matched"])


def test_kd_moved_from_the_protocol_to_the_space_and_the_error_says_where():
    message = error_of(protocol={"kd_weight": 0.4})
    assert "protocol.kd_weight has moved" in message and "space.kd_weights" in message


# -------------------------------------------------------------------- YAML as users write it
@pytest.mark.parametrize("text, value", [("1e6", 1e6), ("1.0e6", 1e6), ("5.0e-4", 5e-4),
                                         ("1E-3", 1e-3), ("2e+2", 200.0), ("+3e0", 3.0)])
def test_exponents_are_numbers_as_the_readme_writes_them(tmp_path, text, value):
    path = tmp_path / "s.yaml"
    path.write_text(f"name: x\nmodel: resnet20\ndataset: digits\nprotocol: {{lr: {text}}}\n"
                    "space: {remain_ratios: [0.25]}\n")
    assert load_spec(path, check=False).protocol.lr == value


def test_a_huge_value_makes_a_short_error(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: x\nmodel: resnet20\ndataset: digits\nspace: {width_mults: ["
                    + ", ".join(["99.0"] * 100_000) + "]}\n")
    with pytest.raises(SpecError) as info:
        load_spec(path, check=False)
    assert "space.width_mults[0] must be" in str(info.value) and len(str(info.value)) < 400


def test_an_alias_bomb_fails_fast_in_bounded_memory(tmp_path):
    import tracemalloc

    levels = zip("abcdefgh", "bcdefghi", strict=True)
    laughs = "a: &a [" + ",".join(["lol"] * 9) + "]\n" + "".join(
        f"{b}: &{b} [" + ",".join([f"*{a}"] * 9) + "]\n" for a, b in levels)
    path = tmp_path / "bomb.yaml"
    path.write_text("name: x\n" + laughs)
    assert len(path.read_bytes()) < 420
    tracemalloc.start()
    try:
        with pytest.raises(SpecError, match="aliases .* expand to more than 10,000 values"):
            load_spec(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20


def test_aliases_within_the_bound_still_work(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: x\nmodel: resnet20\ndataset: digits\n"
                    "space: {remain_ratios: &r [0.25]}\nextra: *r\n")
    with pytest.raises(SpecError, match="unknown key 'extra'"):   # parsed, then validated
        load_spec(path, check=False)
