"""The layering is visible in the folders: hetero is the method, analysis reads results.

Each package is imported in a fresh interpreter and the forbidden modules must be absent; and
every import statement of every module, lazy ones in function bodies included, is checked
against the rules (hetero never reaches ray/optuna/mlflow/sweeps/analysis, analysis never torch,
ray or hetero's torch code, sweeps never analysis: arrows point down only).
"""

import ast
import subprocess
import sys
from pathlib import Path

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


# ---- every import statement, lazy ones included ------------------------------------------------
# The import-time checks above miss an import inside a function (sweeps used to reach into
# analysis that way), so the rules are also checked on the source: every Import/ImportFrom node
# anywhere in every module of the package.

ROOT = Path(__file__).resolve().parents[1]
TORCH = ("torch", "torchvision")

IMPORT_RULES = {
    "hetero": ("ray", "optuna", "mlflow", "sweeps", "analysis"),
    # torch code of hetero (the models, the method, ...) is added below: see torch_modules()
    "analysis": ("torch", "torchvision", "ray", "hetero.models", "hetero.method"),
    "sweeps": ("analysis",),
}


def module_files(package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``package``."""
    files = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        files[name] = path
    return files


def imported_names(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, name) for every import anywhere in ``source``, function bodies included.

    ``from a import b`` yields both ``a`` and ``a.b`` (b may be a submodule); relative imports are
    resolved against ``module``.
    """
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            names.append((node.lineno, base))
            names += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return names


def matches(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def torch_modules() -> set[str]:
    """hetero modules that import torch, directly or through another hetero module, anywhere in
    their source. The package itself is left out: its lazy ``__getattr__`` is what keeps
    ``import hetero`` (and so ``hetero.trial``) free of torch."""
    files = module_files("hetero")
    imports = {m: [n for _, n in imported_names(p.read_text(), m, p.name == "__init__.py")]
               for m, p in files.items()}
    found = {m for m, names in imports.items() if any(matches(n, TORCH) for n in names)}
    grew = True
    while grew:
        more = {m for m, names in imports.items() if m not in found and any(n in found for n in names)}
        found |= more
        grew = bool(more)
    return found - {"hetero"}


def violations(package: str, forbidden, modules=frozenset()) -> list[str]:
    """Imports of a ``forbidden`` package (or anything under it) or of one of ``modules``."""
    found = []
    for module, path in module_files(package).items():
        for line, name in imported_names(path.read_text(), module, path.name == "__init__.py"):
            if matches(name, forbidden) or name in modules:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return found


@pytest.mark.parametrize("package", sorted(IMPORT_RULES))
def test_no_import_statement_breaks_the_layering(package):
    torch_code = torch_modules() if package == "analysis" else frozenset()
    assert violations(package, IMPORT_RULES[package], torch_code) == []


def test_the_source_check_sees_lazy_and_relative_imports():
    source = ("import os\n"
              "def summary():\n"
              "    from analysis.pareto import hypervolume\n"
              "    return hypervolume\n"
              "class A:\n"
              "    def f(self):\n"
              "        import ray.tune\n"
              "        from . import tracking\n")
    names = [n for _, n in imported_names(source, "sweeps.runner")]
    assert "analysis.pareto" in names and "ray.tune" in names and "sweeps.tracking" in names
    assert matches("analysis.pareto", IMPORT_RULES["sweeps"])
    assert not matches("analysis_tools", IMPORT_RULES["sweeps"])


def test_torch_code_of_hetero_is_found():
    found = torch_modules()
    assert {"hetero.method", "hetero.models", "hetero.models.factory"} <= found
    assert not found & {"hetero", "hetero.trial", "hetero.settings", "hetero.protocol"}
