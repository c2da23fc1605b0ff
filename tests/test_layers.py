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
    "data": ({"nctui.data", "nctui.config"}, {"torch", "rich"}),      # config: its section's type only
    "models": ({"nctui.models", "nctui.config"}, {"torch"}),
    "train": ({"nctui.train", "nctui.metrics", "nctui.data", "nctui.models", "nctui.records", "nctui.control",
               "nctui.config"}, {"torch"}),
    "store": ({"nctui.store", "nctui.records"}, {"safetensors", "torch"}),
    "analysis": ({"nctui.analysis", "nctui.records", "nctui.store"}, set()),
    "sweep": ({"nctui.sweep", "nctui.config", "nctui.store", "nctui.analysis", "nctui.records", "nctui.presets"},
              {"yaml", "rich", "click"}),
    "tui": ({"nctui.tui", "nctui.records", "nctui.control", "nctui.analysis"}, {"textual", "rich"}),
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
                if name == "nctui" or (root == "nctui" and any(name == a or name.startswith(a + ".")
                                                               for a in internal)):
                    continue   # the bare package holds only __version__
                problems.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert problems == []


def test_store_rundir_records_and_presets_are_stdlib_only():
    for path in (PACKAGE / "store" / "rundir.py", PACKAGE / "records.py", PACKAGE / "control.py",
                 PACKAGE / "presets.py"):
        roots = {n.split(".")[0] for n in _imports(path)}
        assert roots - STDLIB <= {"nctui"}, path


def test_tui_loads_without_torch():
    code = "import sys, nctui.tui, nctui.store.rundir; assert 'torch' not in sys.modules, 'torch loaded'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_store_knows_nothing_of_the_trainer():
    """The trainer hands the store Checkpoints; the store never names or calls back into it."""
    for path in sorted((PACKAGE / "store").rglob("*.py")):
        text = path.read_text()
        assert "nctui.train" not in text and "Trainer" not in text and "trainer" not in text, path


def test_no_one_rewires_a_trainer():
    """A record's path is fixed when the run starts: Trainer.run(sink), never `x.emit = ...`."""
    offenders = [f"{path.relative_to(PACKAGE.parent)}:{number}"
                 for path in sorted(PACKAGE.rglob("*.py"))
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if ".emit =" in line or ".sink =" in line and "self.sink" not in line]
    assert offenders == []
