"""The layer rules of DESIGN.md, checked on the source: who may import whom."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "nctui"

# package -> the nctui modules and third-party roots its files may import
ALLOWED = {
    "metrics": ({"nctui.metrics"}, {"torch"}),
    "data": ({"nctui.data"}, {"torch", "rich"}),
    "models": ({"nctui.models"}, {"torch"}),
    "train": ({"nctui.train", "nctui.metrics", "nctui.data", "nctui.models", "nctui.records", "nctui.control",
               "nctui.config"}, {"torch"}),
    "store": ({"nctui.store", "nctui.records", "nctui.config", "nctui.models"}, {"safetensors", "torch"}),
    "tui": ({"nctui.tui", "nctui.records", "nctui.control"}, {"textual", "rich"}),
}
STDLIB = set(sys.stdlib_module_names) | {"__future__"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "nctui":
            names.update(f"nctui.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_packages_import_only_what_their_layer_allows():
    problems = []
    for package, (internal, external) in ALLOWED.items():
        for path in sorted((PACKAGE / package).rglob("*.py")):
            for name in _imports(path):
                root = name.split(".")[0]
                if root in STDLIB or root in external:
                    continue
                if root == "nctui" and any(name == a or name.startswith(a + ".") for a in internal):
                    continue
                problems.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert problems == []


def test_store_rundir_and_records_are_stdlib_only():
    for path in (PACKAGE / "store" / "rundir.py", PACKAGE / "records.py", PACKAGE / "control.py"):
        roots = {n.split(".")[0] for n in _imports(path)}
        assert roots - STDLIB <= {"nctui"}, path


def test_tui_loads_without_torch():
    code = "import sys, nctui.tui, nctui.store.rundir; assert 'torch' not in sys.modules, 'torch loaded'"
    subprocess.run([sys.executable, "-c", code], check=True)
