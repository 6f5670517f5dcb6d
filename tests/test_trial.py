"""A trial's MLflow params (hetero.trial.params_of): what a uniform baseline logs."""

from __future__ import annotations

from hetero.trial import BASELINE_CRITERION, TrialSpec, params_of, settings

# Settings that only mean something for an LW-DNA search (named, not only read from the
# declarations: a flag dropped from a declaration would otherwise go unnoticed).
SEARCH_ONLY = ("target", "target_metric", "remain_ratio", "linear_ratio", "score_batches",
               "init", "dhp_score", "embedding_dim")


def test_a_uniform_baseline_logs_no_lwdna_setting():
    """A baseline is no search: its params hold no target, floors or scoring settings, and its
    criterion says uniform, whatever the spec it was built from carries."""
    baseline = params_of(TrialSpec(baseline=True, width_mult=1.5, target=0.5, criterion="l1",
                                   remain_ratio=0.3, seed=3))
    lwdna_only = {name for name, s in settings().items() if s.lwdna_only}
    assert set(SEARCH_ONLY) <= lwdna_only
    assert baseline["criterion"] == BASELINE_CRITERION
    assert not (lwdna_only - {"criterion"}) & set(baseline), sorted(lwdna_only & set(baseline))
    assert "baseline" not in baseline
    # What both arms share is still there: the width, the seed, the protocol.
    assert baseline["width_mult"] == 1.5 and baseline["seed"] == 3 and "lr" in baseline


def test_an_lwdna_trial_logs_its_search_settings():
    params = params_of(TrialSpec(target=0.5, criterion="l1", remain_ratio=0.3))
    assert set(SEARCH_ONLY) <= set(params)
    assert (params["criterion"], params["target"], params["remain_ratio"]) == ("l1", 0.5, 0.3)
