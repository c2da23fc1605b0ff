"""The TUI's pure drawing and formatting functions, on ordinary and hostile input."""

from __future__ import annotations

import math

import pytest
from rich.text import Text

from nctui.records import EndRecord, StartRecord, StepRecord
from nctui.tui.chrome import eta, header_items, steps_per_second, timeline
from nctui.tui.format import dig, fmt_duration, fmt_int, fmt_num, fmt_pct, metric, num, trend
from nctui.tui.state import RunState, View
from nctui.tui.widgets.bars import draw_bars, sparkline
from nctui.tui.widgets.boxplot import draw_quantiles
from nctui.tui.widgets.heatmap import diverging, fit_grid, off_diagonal
from nctui.tui.widgets.plot import Line, PlotData, Series, draw_plot, legend, tick_label, transform
from nctui.tui.widgets.item_row import pack
from tui_fixtures import eval_record, full_run, start_record, step_record

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("value, text", [
    (None, "–"), (NAN, "–"), (INF, "–"), (True, "–"), ("3", "–"), (0, "0"), (0.0042, "4.2e-3"),
    (0.031, "0.031"), (3.14159, "3.14"), (314.2, "314"), (1024, "1.02k"), (3.9e7, "39M"),
    (2.5e13, "2.5e13"), (-0.0042, "-4.2e-3"),
])
def test_fmt_num_is_compact_and_total(value: object, text: str) -> None:
    assert fmt_num(value) == text


def test_other_formats() -> None:
    assert fmt_int(17353) == "17,353"
    assert fmt_pct(0.9876) == "98.8%"
    assert fmt_duration(134) == "02:14"
    assert fmt_duration(3734) == "1:02:14"
    assert fmt_duration(3 * 86400 + 4 * 3600) == "3d04h"
    assert fmt_duration(None) == fmt_duration(-1) == fmt_pct(NAN) == fmt_int(INF) == "–"


def test_num_and_dig_never_raise() -> None:
    assert num(3) == 3.0 and num(False) is None and num(NAN) is None
    data = {"a": [{"b": 1}], "c": None}
    assert dig(data, "a", 0, "b") == 1
    assert dig(data, "a", 5, "b") is None
    assert dig(data, "c", "x") is None
    assert dig("junk", "a") is None
    assert dig(data, "a", "b") is None


def test_trend_arrow_colours_follow_the_good_direction() -> None:
    assert trend(1.0, 2.0, "down").plain == "▼" and "green" in str(trend(1.0, 2.0, "down").style)
    assert "red" in str(trend(3.0, 2.0, "down").style)
    assert trend(2.0, 2.0).plain == "→"
    assert trend(None, 2.0).plain == " "
    assert metric("NC1", 0.0042, 0.01).plain == "NC1 4.2e-3 ▼"
    assert metric("NC1", None).plain == "NC1 –"


def test_transform_rejects_what_a_log_axis_cannot_show() -> None:
    assert transform(0.0, "log10") is None
    assert transform(-1.0, "log2") is None
    assert transform(NAN, "linear") is None
    assert transform(1024.0, "log2") == 10.0
    assert tick_label(10.0, "log2") == "2¹⁰"
    assert tick_label(-3.0, "log10") == "1e-3"
    assert tick_label(0.0, "log10") == "1"


def _rows(text: Text) -> list[str]:
    return text.plain.split("\n")


def test_plot_fills_exactly_its_size() -> None:
    data = PlotData([Series("a", [(float(i), math.exp(-i / 10)) for i in range(50)], "#ffffff")])
    rows = _rows(draw_plot(data, 40, 10, "log10"))
    assert len(rows) == 10
    assert all(len(row) == 40 for row in rows)
    assert any(ch != " " and 0x2800 <= ord(ch) <= 0x28FF for row in rows for ch in row)
    assert rows[-1].strip().startswith("└0")


def test_x_axis_labels_whole_ranges_with_whole_numbers() -> None:
    def x_axis(xs: list[float]) -> list[str]:
        data = PlotData([Series("a", [(x, 1.0 + x) for x in xs], "#ffffff")])
        return _rows(draw_plot(data, 60, 10, "linear"))[-1].strip("└─ ").split("─")

    assert [label for label in x_axis([1.0, 40.0, 90.0]) if label] == ["1", "45", "90"]   # not 45.5
    assert [label for label in x_axis([0.0, 0.5, 1.5]) if label] == ["0", "0.75", "1.5"]


@pytest.mark.parametrize("points", [
    [], [(0.0, None)], [(0.0, 0.0)], [(0.0, NAN), (1.0, INF), (2.0, -INF)], [(NAN, 1.0)],
])
def test_plot_without_drawable_points_says_so(points: list) -> None:
    text = draw_plot(PlotData([Series("a", points, "#ffffff")]), 40, 10, "log10")
    assert text.plain == "no data yet"


def test_plot_survives_single_points_zeros_and_tiny_sizes() -> None:
    single = PlotData([Series("a", [(5.0, 2.0)], "#ffffff")], [Line(1.0), Line(5.0, vertical=True)], marker=5.0)
    for scale in ("linear", "log10", "log2"):
        for width, height in ((40, 10), (9, 2), (3, 1), (0, 0)):
            draw_plot(single, width, height, scale)  # type: ignore[arg-type]
    mixed = PlotData([Series("a", [(0.0, 0.0), (1.0, 1e-3), (2.0, None), (3.0, 1e3)], "#ffffff")])
    assert "1e3" in draw_plot(mixed, 40, 10, "log10").plain


def test_plot_reduces_long_series() -> None:
    """100k points draw in a bounded time and still reach both ends of the range."""
    points = [(float(i), 1.0 + (i % 97)) for i in range(100_000)]
    rows = _rows(draw_plot(PlotData([Series("a", points, "#ffffff")]), 60, 12, "linear"))
    assert "100k" in rows[-1]


def test_plot_marker_shows_in_empty_cells() -> None:
    data = PlotData([Series("a", [(0.0, 1.0), (10.0, 1.0)], "#ffffff")], marker=5.0)
    assert "│" in draw_plot(data, 40, 10).plain.replace("┤", "").split("\n", 1)[1]


def test_legend_names_series_and_labelled_lines() -> None:
    data = PlotData([Series("train", [], "#111111"), Series("", [], "#222222")],
                    [Line(1.0, label="tol [x]"), Line(2.0)])
    text = legend(data)
    assert "train" in text and "tol \\[x]" in text and text.count("[/]") == 2


@pytest.mark.parametrize("classes, width, height", [(2, 30, 10), (10, 30, 14), (10, 30, 6), (100, 40, 20),
                                                    (100, 200, 60), (1, 10, 5)])
def test_heatmap_grid_fits(classes: int, width: int, height: int) -> None:
    grid = fit_grid(classes, width, height)
    assert grid is not None
    assert grid.label_w + grid.cells * grid.cell_w <= width
    rows = grid.cells * grid.cell_h if grid.cell_h else math.ceil(grid.cells / 2)
    assert rows + (1 if grid.header else 0) <= height
    assert grid.cells * grid.block >= classes


def test_heatmap_grid_and_colours() -> None:
    assert fit_grid(10, 30, 14).block == 1
    assert fit_grid(100, 40, 20).block > 1
    assert fit_grid(10, 2, 2) is None
    assert fit_grid(10, 30, 14).class_at(2, 1) == (0, 0)
    assert fit_grid(10, 30, 14).class_at(0, 1) is None
    assert diverging(-5).triplet == diverging(-1).triplet
    assert off_diagonal([[1.0, -0.5], [None, 1.0]]) == [-0.5]


def test_bars_sparkline_and_quantiles_tolerate_junk() -> None:
    assert draw_bars([NAN, None], 20, 5, "#ffffff").plain == "no data yet"
    bars = draw_bars([1.0, 2.0, None, -1.0], 20, 5, "#ffffff")
    assert "max 2" in bars.plain
    assert len(draw_bars(list(range(100)), 30, 5, "#ffffff").plain.split("\n")[0]) <= 30
    assert sparkline([1, 2, 3], 10) == "▁▅█"
    assert sparkline([None, 2.0], 10) == " ▄"
    assert sparkline([], 5) == ""
    assert draw_quantiles([0.1, None, 0, 0, 0, 0, 0], 40, 2, "#ffffff").plain == "no margins yet"
    box = draw_quantiles([-0.1, -0.05, 0.0, 0.05, 0.1, 0.2, 0.3], 40, 2, "#ffffff")
    assert "┃" in box.plain and "-0.1" in box.plain and "0.3" in box.plain
    assert "\n" not in draw_quantiles([-0.1, -0.05, 0.0, 0.05, 0.1, 0.2, 0.3], 40, 1, "#ffffff").plain


def test_pack_wraps_between_items_and_shrinks_one() -> None:
    items = [Text("aaaa"), Text("bbbbbbbbbbbbbbbbbbbb"), Text("cccc")]
    assert pack(items, 100).plain == "aaaa  bbbbbbbbbbbbbbbbbbbb  cccc"
    assert pack(items, 12).plain == "aaaa\nbbbbbbbbbbb…\ncccc"
    assert pack(items, 26, shrink=1).plain == "aaaa  bbbbbbbbbbbbb…  cccc"
    assert pack(items, 16, shrink=1).plain == "aaaa  cccc"


def test_state_ignores_records_without_a_step_and_tracks_status() -> None:
    state = RunState()
    assert state.status == "waiting"
    state.add(start_record())
    state.add(StepRecord(step=None, epoch=0.0, loss=None, lr=0.1, samples_per_s=None, elapsed=0.0))  # type: ignore[arg-type]
    state.add("junk")  # type: ignore[arg-type]
    assert state.steps == [] and state.status == "running"
    state.paused = True
    assert state.status == "paused"
    state.add(EndRecord(step=5, status="diverged", reason="loss is NaN", elapsed=1.0))
    assert state.status == "diverged" and not state.paused


def test_header_rate_eta_and_timeline() -> None:
    state = RunState()
    for record in full_run()[:12]:
        state.add(record)
    assert steps_per_second(state) == pytest.approx(800 / 40)
    step = state.step
    assert eta(state) == pytest.approx(state.elapsed * (400 - step) / step)
    items, shrink = header_items(state, "live")
    plain = "  ".join(item.plain for item in items)
    assert "● running" in plain and f"step {step:,}" in plain and "20 it/s" in plain and "ETA" in plain
    assert items[shrink].plain.startswith("synthetic")
    line = timeline(View(state, cursor=0), "live", 80).plain
    assert "eval 1/" in line and "●" in line
    assert timeline(View(RunState()), "replay", 80).plain == "no evaluations yet"


def test_rate_falls_back_to_step_deltas() -> None:
    state = RunState()
    state.add(StartRecord(**{**start_record().__dict__, "config": {}}))
    state.add(step_record(20))
    state.add(step_record(40))
    assert steps_per_second(state) == pytest.approx(20 / (20 * 0.05))


def test_view_selection_clamps_and_finds_step_records() -> None:
    state = RunState()
    for record in full_run():
        state.add(record)
    assert View(state).index == 8 and View(state).marker is None
    scrubbed = View(state, cursor=2)
    assert scrubbed.current is state.evals[2] and scrubbed.previous is state.evals[1]
    assert scrubbed.marker == 100.0
    assert scrubbed.step_record.step == 100
    assert View(state, cursor=99).index == 8
    assert View(state, layer=5).layer_index == 1
    assert eval_record(0).layers[0]["drift"] is None
