"""The Textual front end: a live or replayed run as five panes. Never imports torch."""

from __future__ import annotations

from nctui.tui.app import Feed, NctuiApp

__all__ = ["Feed", "NctuiApp"]
