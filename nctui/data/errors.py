"""The one exception the data package raises for problems the user can fix."""

from __future__ import annotations


class DataError(Exception):
    """A problem with the data the user can fix.

    str() is one clear line (or a few) saying what to do.
    """
