"""Where the shipped presets live, and a preset name to its file: one lookup for `nctui run`,
`nctui presets` and a sweep spec's `base`."""

from __future__ import annotations

from pathlib import Path

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"   # of the source checkout


def find_presets_dir() -> Path:
    """presets/ of the source checkout, or of the current directory."""
    for candidate in (PRESETS_DIR, Path.cwd() / "presets"):
        if candidate.is_dir():
            return candidate
    return PRESETS_DIR


def preset_path(name: str) -> Path | None:
    """The file of the preset called `name` (e.g. `quickstart`), or None when there is none."""
    for presets in (PRESETS_DIR, Path.cwd() / "presets"):
        if (presets / f"{name}.yaml").is_file():
            return presets / f"{name}.yaml"
    return None
