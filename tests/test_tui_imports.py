"""The TUI must start without torch: `nctui open` on a laptop without it, and a fast start."""

from __future__ import annotations

import subprocess
import sys


def test_tui_never_imports_torch() -> None:
    """Importing every module under nctui.tui loads no torch, and still works when torch cannot load."""
    code = (
        "import sys\n"
        "if sys.argv[1] == 'blocked':\n"
        "    sys.modules['torch'] = None  # any `import torch` now raises ImportError\n"
        "import importlib, pkgutil, nctui.tui\n"
        "for module in pkgutil.walk_packages(nctui.tui.__path__, 'nctui.tui.'):\n"
        "    importlib.import_module(module.name)\n"
        "bad = sorted(m for m, mod in sys.modules.items() if mod and (m == 'torch' or m.startswith('torch.')))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    for how in ("plain", "blocked"):
        result = subprocess.run([sys.executable, "-c", code, how], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, how + ": " + result.stdout + result.stderr
