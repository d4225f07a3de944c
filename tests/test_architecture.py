"""The layout holds: layers import only downward, no import cycles, light imports, no printing outside the CLI."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "qtransfer"


def _lint(src: Path) -> subprocess.CompletedProcess:
    """lint-imports with the project's contracts, on the package found under `src`."""
    code = ("import sys; from importlinter.cli import lint_imports; "
            f"sys.exit(lint_imports(config_filename={str(ROOT / 'pyproject.toml')!r}, no_cache=True, no_logo=True))")
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.subprocess
def test_the_layers_and_acyclic_contracts_are_kept() -> None:
    done = _lint(ROOT / "src")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 kept, 0 broken" in done.stdout


@pytest.mark.subprocess
@pytest.mark.parametrize(("module", "line", "contract"), [
    ("quantum/circuits.py", "from qtransfer.training import loop  # noqa",
     "each layer imports only the layers below it"),
    ("experiments/stats.py", "from qtransfer.experiments import cv  # noqa", "no import cycles"),
])
def test_an_upward_import_or_a_cycle_breaks_the_contracts(tmp_path: Path, module: str, line: str,
                                                          contract: str) -> None:
    copy = tmp_path / "src" / "qtransfer"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text(target.read_text() + f"\n{line}\n")
    done = _lint(tmp_path / "src")
    assert done.returncode == 1
    assert f"{contract}" in done.stdout and "BROKEN" in done.stdout


def _modules_loaded_by(code: str) -> set[str]:
    probe = f"{code}\nimport sys; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True)
    return set(done.stdout.split())


@pytest.mark.subprocess
def test_importing_the_package_loads_no_heavy_library() -> None:
    loaded = _modules_loaded_by("import qtransfer")
    assert not loaded & {"torch", "torchvision", "matplotlib", "pennylane", "scipy", "tensorboard", "mlflow", "timm",
                         "statsmodels", "scikit_posthocs", "pandas"}


@pytest.mark.subprocess
def test_help_answers_before_torch_is_imported() -> None:
    for argv in (["--help"], ["train", "--help"], ["compare", "--help"]):
        loaded = _modules_loaded_by(f"from qtransfer.cli import main\ntry:\n    main({argv!r})\n"
                                    "except SystemExit:\n    pass")
        assert "torch" not in loaded, argv


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.subprocess
def test_training_imports_neither_matplotlib_nor_pennylane_until_they_are_used() -> None:
    loaded = _modules_loaded_by("import qtransfer.training.run, qtransfer.experiments.compare, "
                                "qtransfer.experiments.cv, qtransfer.training.trained")
    assert not loaded & {"matplotlib", "pennylane", "scipy", "tensorboard", "mlflow", "timm", "statsmodels",
                         "scikit_posthocs"}


@pytest.mark.slow
def test_only_the_cli_prints_or_reads_the_command_line() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name in {"cli.py", "__main__.py"}:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} print")
            if isinstance(node, ast.Attribute) and node.attr == "argv":
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} sys.argv")
    assert offenders == []


def _imported_at_load(tree: ast.Module) -> set[str]:
    """Top-level package names a module imports when it is loaded (not inside functions or TYPE_CHECKING)."""
    names: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                visit(node.body + node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body + [s for h in node.handlers for s in h.body] + node.orelse + node.finalbody)

    visit(tree.body)
    return names


@pytest.mark.slow
def test_every_package_imported_when_a_module_loads_is_declared() -> None:
    import re
    from importlib.metadata import packages_distributions

    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # modules that serve an extra (tracking/mlflow.py) are loaded only when it is asked for
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    declared = {re.split(r"[ <>=;\[!~]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}
    distributions = packages_distributions()
    missing = {}
    for path in PACKAGE.rglob("*.py"):
        for name in _imported_at_load(ast.parse(path.read_text())):
            if name in sys.stdlib_module_names or name in ("qtransfer", "__future__"):
                continue
            dists = {d.lower().replace("_", "-") for d in distributions.get(name, [name])}
            if not dists & declared:
                missing.setdefault(name, []).append(str(path.relative_to(PACKAGE)))
    assert not missing, f"imported when loaded but not declared in pyproject.toml: {missing}"
