"""The `hetero` command as a user meets it (run as a real subprocess)."""

import json
import subprocess
import sys

import pytest


def hetero(*args, check=True):
    out = subprocess.run([sys.executable, "-m", "hetero_cli", *args], capture_output=True,
                         text=True)
    if check and out.returncode != 0:
        raise AssertionError(f"hetero {' '.join(args)} failed ({out.returncode}):\n{out.stderr}")
    return out


def test_help_imports_nothing_heavy():
    code = ("import sys\n"
            "from hetero_cli import build_parser; build_parser()\n"
            "print('torch' in sys.modules, 'ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    torch_loaded, ray_loaded = out.stdout.split()
    assert torch_loaded == "False" and ray_loaded == "False"
    assert "complexity" in hetero("--help").stdout


def test_models_lists_every_family():
    rows = json.loads(hetero("models", "--json").stdout)
    families = {r["family"] for r in rows}
    assert {"resnet_cifar", "vgg_cifar", "mobilenet_v2", "resnet_imagenet", "densenet_cifar",
            "regnet", "efficientnet", "mobilenet_v1", "mobilenet_v3", "mnasnet"} <= families
    short = {s for r in rows for s in r["short_names"]}
    assert {"resnet20", "resnet56", "resnet50", "vgg16", "densenet40", "regnetx_400mf",
            "regnety_400mf", "regnetx_4gf", "efficientnet_b0", "mobilenet_v1",
            "mobilenet_v3_small", "mnasnet"} <= short


def test_complexity_resnet56_paper_accounting_matches_table_1():
    out = json.loads(hetero("complexity", "resnet56", "--dataset", "cifar10",
                            "--accounting", "paper", "--json").stdout)
    assert out["flops"] == pytest.approx(127.4e6, rel=0.005)
    assert out["params"] == pytest.approx(0.856e6, rel=0.005)


def test_complexity_of_a_config_file_matches_the_model(tmp_path):
    from hetero.models.factory import uniform, widen

    path = tmp_path / "wide.json"
    widen(uniform("resnet_cifar", "20"), 2.0).save(path)
    out = json.loads(hetero("complexity", "resnet20", "--config", str(path), "--json").stdout)
    assert out["flops"] == pytest.approx(162e6, rel=0.01)


@pytest.mark.parametrize("args, needle", [
    (("complexity", "resnet57"), "unknown model 'resnet57'"),
    (("complexity", "resnet_cifar", "--depth", "57"), "choose one of"),
])
def test_bad_model_is_a_one_line_error(args, needle):
    out = hetero(*args, check=False)
    assert out.returncode == 2
    assert needle in out.stderr and "Traceback" not in out.stderr


def test_shrink_json_hits_the_flops_target():
    out = json.loads(hetero("shrink", "--model", "resnet20", "--dataset", "digits",
                            "--width-mult", "2", "--target", "1.0", "--criterion", "dhp",
                            "--json").stdout)
    assert out["flops"] == pytest.approx(out["target_flops"], rel=0.005)
    for key in ("params", "baseline_flops", "baseline_params", "channels"):
        assert key in out


def test_unreachable_target_is_a_one_line_error_naming_the_knob():
    out = hetero("shrink", "--model", "resnet20", "--width-mult", "2", "--target", "0.05",
                 check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "remain_ratio" in out.stderr or "rho" in out.stderr


def test_run_writes_config_checkpoint_and_result(tmp_path):
    out = hetero("run", "--model", "resnet20", "--dataset", "digits", "--width-mult", "1.5",
                 "--target", "0.8", "--criterion", "l1", "--epochs", "1", "--data-fraction",
                 "0.3", "--out", str(tmp_path), "--json")
    result = json.loads(out.stdout)
    assert 0.0 <= result["accuracy"] <= 1.0
    assert result["flops"] == pytest.approx(0.8 * result["baseline_flops"], rel=0.005)
    for name in ("lwdna.json", "checkpoint.pt", "result.json"):
        assert (tmp_path / name).exists()
    assert 0.0 <= result["train_accuracy"] <= 1.0  # beside the test accuracy, for the gap


def test_run_with_the_random_control_and_kd_logs_what_it_used(tmp_path):
    env_cache = {"HETERO_CACHE": str(tmp_path / "cache")}
    args = ("run", "--model", "resnet20", "--dataset", "digits", "--width-mult", "1.5",
            "--target", "1.0", "--criterion", "random", "--kd-weight", "0.4", "--epochs", "1",
            "--data-fraction", "0.2", "--json", "--quiet")
    first = json.loads(_hetero_env(env_cache, *args, "--out", str(tmp_path / "a")).stdout)
    assert first["flops"] == pytest.approx(first["baseline_flops"], rel=0.005)
    assert 0 < first["teacher_accuracy"] <= 1 and first["teacher_cached"] == 0.0
    assert first["teacher_channels"] > 0
    # The same seed's second KD trial distils from the very same teacher, trained once.
    again = json.loads(_hetero_env(env_cache, *args, "--out", str(tmp_path / "b")).stdout)
    assert again["teacher_cached"] == 1.0
    assert again["teacher_accuracy"] == first["teacher_accuracy"]
    assert again["accuracy"] == first["accuracy"] and again["channels"] == first["channels"]
    saved = json.loads((tmp_path / "a" / "result.json").read_text())
    assert saved["teacher_accuracy"] == first["teacher_accuracy"]


def _hetero_env(env, *args):
    import os

    out = subprocess.run([sys.executable, "-m", "hetero_cli", *args], capture_output=True,
                         text=True, env={**os.environ, **env})
    if out.returncode != 0:
        raise AssertionError(f"hetero {' '.join(args)} failed ({out.returncode}):\n{out.stderr}")
    return out
