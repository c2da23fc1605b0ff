"""Sweeps: a spec expanded into points, each an ordinary run directory inside one sweep
directory, run by an executor (DESIGN.md "Sweeps", docs/sweeps.md)."""

from __future__ import annotations

from nctui.sweep.state import is_sweep_dir, sweep_summary

__all__ = ["is_sweep_dir", "sweep_summary"]
