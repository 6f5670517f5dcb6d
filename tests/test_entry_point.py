"""The README's path through the one entry point: `hetero sweep SPEC --smoke-test`, then
`hetero pareto`, then `analysis.load_sweep` on the store that real sweep wrote.

The spec names DenseNet-40 (concatenations, a classifier reading 39 units): the any-CNN path
end to end, from a sweep spec to the report.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

QUICKSTART = Path(__file__).resolve().parents[1] / "sweeps" / "configs" / "quickstart.yaml"


@pytest.fixture(scope="module")
def smoke_sweep(tmp_path_factory):
    from hetero_cli import main

    folder = tmp_path_factory.mktemp("entry")
    spec = yaml.safe_load(QUICKSTART.read_text())
    spec.update(name="dn", model="densenet40", storage=str(folder / "ray_results"),
                tracking={"experiment": "dn"})
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    code = main(["sweep", str(folder / "spec.yaml"), "--smoke-test", "--tracking-uri", uri])
    return folder, uri, code


def test_smoke_sweep_of_a_densenet_spec_finishes(smoke_sweep):
    from mlflow import MlflowClient

    from sweeps import keys

    _, uri, code = smoke_sweep
    assert code == 0
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("dn-smoke")
    runs = client.search_runs([experiment.experiment_id])
    children = [r for r in runs if r.data.tags.get(keys.TAG_KIND) != keys.KIND_SWEEP]
    assert children and all(r.info.status == "FINISHED" for r in runs)
    assert {r.data.params["model"] for r in children} == {"densenet40"}


def test_pareto_and_load_sweep_read_what_the_sweep_wrote(smoke_sweep, capsys):
    from mlflow import MlflowClient

    from analysis import load_sweep
    from hetero_cli import main
    from sweeps import keys

    folder, uri, _ = smoke_sweep
    out = folder / "report"
    assert main(["pareto", "--experiment", "dn-smoke", "--out", str(out), "--tracking-uri", uri]) == 0
    assert "report of sweep" in capsys.readouterr().out
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    sweep = load_sweep("dn-smoke", tracking_uri=uri)
    client = MlflowClient(uri)
    finished = [r for r in client.search_runs(
        [client.get_experiment_by_name("dn-smoke").experiment_id],
        filter_string=f"tags.{keys.TAG_KIND} != '{keys.KIND_SWEEP}'")
        if r.info.status == "FINISHED"]
    assert len(sweep.trials) == len(finished)
    assert set(sweep.trials["kind"]) == {keys.KIND_LWDNA, keys.KIND_BASELINE}
    lwdna = sweep.trials[sweep.trials["kind"] == keys.KIND_LWDNA].iloc[0]
    # The per-layer widths come from the LW-DNA artifact: DenseNet-40's 39 prunable layers.
    assert len(lwdna["widths"]) == 39 and lwdna["widths"] != lwdna["base_widths"]
