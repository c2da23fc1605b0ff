"""Compare mode: several runs, or the runs of a sweep, in one view (`nctui open RUN RUN...`).

`state` holds what the user compares and how (UI thread only); `metrics` the quantities on
offer; `plot` the braille plot with line styles and bands; `sidebar`, `timeplot` and `vsparam`
are the panes; `screen` puts them together with the keys; `app` follows the runs from a worker
and opens one run in the ordinary monitor.
"""
