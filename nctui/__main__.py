"""`python -m nctui`: the same command line as `nctui` (torchrun needs a module to run)."""

from nctui.cli import entry

entry()
