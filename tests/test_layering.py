"""The layering is visible in the folders: hetero is the method, analysis reads results.

Each package is imported in a fresh interpreter and the forbidden modules must be absent.
"""

import subprocess
import sys

import pytest

FORBIDDEN = {
    "hetero": ("ray", "optuna", "mlflow"),
    "hetero.method": ("ray", "optuna", "mlflow"),
    "hetero.cli": ("ray", "optuna", "mlflow", "torch"),
    "analysis": ("torch", "ray", "hetero"),
    "sweeps": ("ray", "optuna", "mlflow", "torch"),
    "sweeps.keys": ("ray", "optuna", "mlflow", "torch", "pandas"),
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_forbidden_modules(package):
    code = (
        f"import sys, {package}\n"
        f"bad = [m for m in {FORBIDDEN[package]!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{package} imported {out.stdout.strip()}"


def test_analysis_modules_do_not_import_torch_or_ray():
    code = (
        "import sys, pkgutil, importlib, analysis\n"
        "for m in pkgutil.iter_modules(analysis.__path__):\n"
        "    importlib.import_module('analysis.' + m.name)\n"
        "print(','.join(m for m in ('torch', 'ray') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_hetero_modules_do_not_import_ray_optuna_mlflow():
    code = (
        "import sys, pkgutil, importlib, hetero\n"
        "for m in pkgutil.walk_packages(hetero.__path__, 'hetero.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(','.join(m for m in ('ray', 'optuna', 'mlflow') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
