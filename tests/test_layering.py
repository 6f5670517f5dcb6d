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
    "hetero_cli": ("ray", "optuna", "mlflow", "torch"),
    "analysis": ("torch", "ray", "hetero.models", "hetero.method"),
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


@pytest.mark.parametrize("package, forbidden", [
    ("analysis", ("torch", "ray")),
    ("hetero", ("ray", "optuna", "mlflow")),
])
def test_no_submodule_imports_forbidden_modules(package, forbidden):
    code = (
        f"import sys, pkgutil, importlib, {package}\n"
        f"for m in pkgutil.walk_packages({package}.__path__, '{package}.'):\n"
        "    importlib.import_module(m.name)\n"
        f"print(','.join(m for m in {forbidden!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"a {package} module imported {out.stdout.strip()}"
