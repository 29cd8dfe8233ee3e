"""The layout's rules (docs/architecture.md): the torch-free core imports neither program, the server imports no
worker module, no module passes 400 lines, and the architecture page names every module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from fixtures import REPO

PACKAGES = ("unitscope", "app", "worker")
MAX_LINES = 400


def _modules(package: str) -> list[Path]:
    return sorted(p for p in (REPO / package).rglob("*.py") if "static" not in p.parts and "templates" not in p.parts)


def _imported(path: Path) -> set[str]:
    """The top-level packages a module imports, at any depth of its code (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize(("package", "forbidden"), [
    ("unitscope", {"app", "worker", "torch", "torchvision"}),
    ("app", {"worker", "torch", "torchvision"}),
])
def test_the_import_boundaries_hold(package: str, forbidden: set[str]) -> None:
    crossing = {str(p.relative_to(REPO)): sorted(_imported(p) & forbidden) for p in _modules(package)}
    assert {path: names for path, names in crossing.items() if names} == {}


def test_the_boundary_check_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from worker import store\n    import torch.nn\n")
    assert _imported(module) == {"worker", "torch"}


def test_no_module_passes_400_lines() -> None:
    lengths = {str(p.relative_to(REPO)): len(p.read_text().splitlines()) for pkg in PACKAGES for p in _modules(pkg)}
    assert {path: n for path, n in lengths.items() if n > MAX_LINES} == {}


def test_the_architecture_page_names_every_module() -> None:
    text = (REPO / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"[\w/]+\.py", text))
    missing = [str(p.relative_to(REPO)) for pkg in PACKAGES for p in _modules(pkg)
               if p.name != "__init__.py" and str(p.relative_to(REPO)) not in named]
    assert missing == []
