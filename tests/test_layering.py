"""Imports go downwards: vhe <- experiments <- analysis <- paper_figures, and pipeline on vhe and
experiments only (paper_figures may import pipeline). Every import statement counts, at module
level or inside a function, relative ones resolved; so does ``importlib.import_module("literal")``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("vhe", "experiments", "analysis", "paper_figures", "pipeline")
#: the project packages each package must not import
FORBIDDEN = {
    "vhe": {"experiments", "analysis", "paper_figures", "pipeline"},
    "experiments": {"analysis", "paper_figures", "pipeline"},
    "analysis": {"paper_figures"},
    "pipeline": {"analysis", "paper_figures"},
    "paper_figures": set(),
}


def _package_of(path: Path) -> list[str]:
    """The dotted package a module file belongs to, as parts (``vhe/data/runs.py`` -> vhe, data)."""
    return list(path.relative_to(REPO).parent.parts)


def _is_import_module(node) -> bool:
    """``importlib.import_module("a.b")`` (or ``import_module("a.b")``) with a literal name."""
    name = getattr(node.func, "attr", getattr(node.func, "id", None)) if isinstance(node, ast.Call) else None
    return (
        name == "import_module"
        and bool(node.args)
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    )


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _package_of(path)[: len(_package_of(path)) - node.level + 1] if node.level else []
            out.append((node.lineno, ".".join(base + ([node.module] if node.module else []))))
        elif _is_import_module(node):
            out.append((node.lineno, node.args[0].value))
    return out


def upward_imports(package: str) -> list[str]:
    bad = []
    for path in sorted((REPO / package).rglob("*.py")):
        for line, module in imported_modules(path):
            if module.split(".")[0] in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    return bad


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_only_go_down(package):
    assert (REPO / package / "__init__.py").is_file()
    assert upward_imports(package) == [], f"{package} may not import {sorted(FORBIDDEN[package])}"


def test_the_checker_sees_relative_and_nested_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "vhe" / "data"
    pkg.mkdir(parents=True)
    (tmp_path / "vhe" / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(
        "import os\nfrom . import runs\nfrom ..files import x\n\n\ndef f():\n"
        "    from paper_figures.metrics import COLUMNS\n"
        "    importlib.import_module('analysis.stats')\n"
    )
    monkeypatch.setitem(globals(), "REPO", tmp_path)
    assert [m for _, m in imported_modules(pkg / "mod.py")] == [
        "os",
        "vhe.data",
        "vhe.files",
        "paper_figures.metrics",
        "analysis.stats",
    ]
    assert upward_imports("vhe") == [
        "vhe/data/mod.py:7 imports paper_figures.metrics",
        "vhe/data/mod.py:8 imports analysis.stats",
    ]
