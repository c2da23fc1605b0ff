"""Drawing widgets shared by the panes: braille plots, heatmap, bars, box plot, strip."""
