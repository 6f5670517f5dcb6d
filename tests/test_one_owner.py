"""One owner per setting: a searched setting declared in hetero.trial and nowhere else reaches
every place that uses settings (CLI, sweep spec, run names, smoke test, MLflow params, analysis).

The declarations are read when sweeps and analysis are imported (the space schema, the grouping
keys), so the dummy setting is added in a fresh interpreter before anything else imports them:
``TrialSpec`` is replaced by a subclass with one more field, declared with nothing but its help,
range and plural (no token, no smoke rule: the defaults must do). The child prints what each place
made of it; the tests below read that.
"""

import json
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent('''
    import contextlib, io, json, sys
    from dataclasses import make_dataclass

    import hetero.trial as trial
    from hetero.settings import setting

    dummy = setting(0.5, "a test-only lever", lo=0, hi=1, sweep="axis", plural="dummies")
    patched = make_dataclass("TrialSpec", [("dummy", float, dummy)], bases=(trial.TrialSpec,),
                             frozen=True, namespace={"__module__": "hetero.trial"})
    trial.TrialSpec = patched

    import pandas as pd

    import hetero_cli
    from analysis import compare, load, pareto
    from sweeps import keys
    from sweeps.spec import SpecError, smoke_test, spec_from_dict
    from sweeps.trainable import TrialContext, _params, run_name, trial_spec

    out = {}
    help_text = io.StringIO()
    with contextlib.redirect_stdout(help_text), contextlib.suppress(SystemExit):
        hetero_cli.build_parser().parse_args(["run", "--help"])
    out["help"] = help_text.getvalue()
    given = ["run", "--model", "resnet20", "--dummy", "0.2"]
    out["flag"] = vars(hetero_cli.build_parser().parse_args(given))["dummy"]

    spec = spec_from_dict({"name": "d", "model": "resnet20", "dataset": "digits",
                           "space": {"dummies": [0.2, 0.7], "targets": [0.5, 1.0]},
                           "baselines": [1.0]}, check=False)
    try:
        spec_from_dict({"name": "d", "model": "resnet20", "dataset": "digits",
                        "space": {"dummies": [2.0]}}, check=False)
        out["out_of_range"] = ""
    except SpecError as exc:
        out["out_of_range"] = str(exc)
    out["space"] = list(spec.space.dummies)
    out["varying"] = list(spec.varying())
    points = spec.fixed_points()
    out["lwdna_values"] = sorted({p["dummy"] for p in points if p["kind"] == "lwdna"})
    out["baseline_values"] = sorted({p["dummy"] for p in points if p["kind"] == "baseline"})
    out["names"] = sorted({run_name("resnet20", spec.varying(), p) for p in points})
    out["smoke"] = list(smoke_test(spec).space.dummies)

    context = TrialContext(fixed=trial.TrialSpec(), tracking=None, model_label="resnet20",
                           family="resnet_cifar", variant="20")
    lwdna = [p for p in points if p["kind"] == "lwdna"][0]
    out["params"] = {k: v for k, v in _params(trial_spec(context, lwdna)).items()
                     if k == "dummy"}

    out["hyperparameters"] = list(pareto.HYPERPARAMETERS)
    out["context"] = list(compare.CONTEXT)
    out["columns"] = list(load.TRIAL_COLUMNS)
    # four finished trials: two settings of the dummy, two seeds each, all else equal
    rows = pd.DataFrame([{**{c: trial.defaults().get(c) for c in keys.SETTING_PARAMS},
                          "kind": "lwdna", "epochs": 1, "dummy": d, "seed": s,
                          "accuracy": 0.5 + d / 10 + s / 100, "flops": 1e6,
                          "run_id": f"{d}-{s}"} for d in (0.2, 0.7) for s in (0, 1)])
    grouped = pareto.aggregate_seeds(rows)
    out["aggregated"] = grouped[["dummy", "n_seeds"]].to_dict("records")
    json.dump(out, sys.stdout)
''')


@pytest.fixture(scope="module")
def seen():
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_cli_has_a_flag_for_it(seen):
    assert "--dummy" in seen["help"] and "a test-only lever" in seen["help"]
    assert seen["flag"] == 0.2


def test_spec_accepts_its_list_checks_its_range_and_searches_it(seen):
    assert seen["space"] == [0.2, 0.7]
    assert "space.dummies[0]" in seen["out_of_range"]
    assert "dummy" in seen["varying"]
    assert seen["lwdna_values"] == [0.2, 0.7]
    assert seen["baseline_values"] == [0.2, 0.7]  # not LW-DNA-only: both arms run over it


def test_run_names_tell_its_values_apart(seen):
    assert any("dummy=0.2" in name for name in seen["names"])
    assert any("dummy=0.7" in name for name in seen["names"])
    assert len(seen["names"]) == 6  # 2 dummies x 2 targets LW-DNA, 2 dummies baseline


def test_smoke_test_trims_its_list(seen):
    assert seen["smoke"] == [0.2]


def test_trial_logs_it_as_a_param(seen):
    assert seen["params"] == {"dummy": 0.2}


def test_analysis_groups_by_it(seen):
    assert "dummy" in seen["hyperparameters"]
    assert "dummy" in seen["context"]
    assert "dummy" in seen["columns"]
    assert sorted((r["dummy"], r["n_seeds"]) for r in seen["aggregated"]) == [(0.2, 2), (0.7, 2)]
